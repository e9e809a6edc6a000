#!/usr/bin/env bash
# Tests the Debian package without a container: builds it (scripts/build-deb.sh), installs it
# with dpkg into a throwaway root that holds just enough userland for the maintainer scripts
# (which dpkg runs chrooted there), runs the unit's ExecStart command line in that chroot,
# checks `palisade status`, bans an address, reloads, upgrades to a second build of the
# package and checks that the local configuration edit, the ban and the history survived.
# Also runs `systemd-analyze verify` on the unit. Needs root (chroot, mknod).
#   scripts/test-package.sh [PALISADE_BIN]     default: target/release/palisade
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$root/target}/release/palisade}"
[ -x "$bin" ] || { echo "test-package: no binary at $bin (cargo build --release -p palisade)" >&2; exit 1; }
bin=$(readlink -f "$bin")
[ "$(id -u)" = 0 ] || { echo "test-package: needs root (chroot)" >&2; exit 1; }
work=$(mktemp -d)
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
passed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }

# --- build two versions of the package from the same binary
v1="0.1.0"; v2="0.1.0+pkgtest2"
deb1=$(bash "$root/scripts/build-deb.sh" --bin "$bin" --version "$v1" --out "$work/debs")
deb2=$(bash "$root/scripts/build-deb.sh" --bin "$bin" --version "$v2" --out "$work/debs")
dpkg-deb -c "$deb1" > "$work/contents"
for f in ./usr/bin/palisade ./etc/palisade/palisade.toml ./lib/systemd/system/palisade.service ./etc/logrotate.d/palisade \
    ./usr/share/bash-completion/completions/palisade ./usr/share/zsh/vendor-completions/_palisade \
    ./usr/share/fish/vendor_completions.d/palisade.fish ./usr/share/man/man1/palisade.1.gz \
    ./usr/share/man/man1/palisade-decisions.1.gz; do
  grep -q " $f\$" "$work/contents" || fail "$f missing from the package"
done
dpkg-deb -f "$deb1" Package Version Architecture Depends | grep -q "^Version: $v1" || fail "control: version"
dpkg-deb -e "$deb1" "$work/control"
grep -qx /etc/palisade/palisade.toml "$work/control/conffiles" || fail "palisade.toml is not a conffile"
ok "package built: binary, conffile config, unit, logrotate, completions, man pages"

# --- the unit file
unit="$root/packaging/systemd/palisade.service"
grep -qx 'ExecStart=/usr/bin/palisade run --config /etc/palisade/palisade.toml' "$unit" || fail "ExecStart"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "ExecReload"
grep -qx 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW' "$unit" || fail "CapabilityBoundingSet"
grep -qx 'ProtectSystem=strict' "$unit" || fail "ProtectSystem"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt-get install systemd)"
# The unit as installed, with its binary at the throwaway path.
mkdir -p "$work/unit"
sed "s#/usr/bin/palisade#$work/unitbin/palisade#" "$unit" > "$work/unit/palisade.service"
mkdir -p "$work/unitbin" && ln -s "$bin" "$work/unitbin/palisade"
systemd-analyze verify "$work/unit/palisade.service" > "$work/verify.out" 2>&1 || { cat "$work/verify.out" >&2; fail "systemd-analyze verify"; }
ok "systemd-analyze verify: the unit is valid"

# --- a throwaway root: merged /usr, the programs the maintainer scripts and the unit use
R="$work/root"
mkdir -p "$R"/usr/{bin,sbin,lib,lib64} "$R"/{dev,tmp,run,etc} "$R"/var/lib/dpkg/{info,updates}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$R/$d"; done
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
copy_prog() {
  local p; p=$(type -P "$1") || fail "$1 is missing on this machine"
  p=$(readlink -f "$p")
  install -D -m 0755 "$p" "$R/usr/bin/$1"
  ldd "$p" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$R$lib" ] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
  done
}
for p in dash cp mkdir install chmod rm rmdir cat dirname basename journalctl kill sleep; do copy_prog "$p"; done
ln -s dash "$R/usr/bin/sh"
# The daemon's own libraries.
ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
  [ -e "$R$lib" ] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
done
mknod -m 0666 "$R/dev/null" c 1 3
mknod -m 0444 "$R/dev/urandom" c 1 9
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"

dpkg_r() { dpkg --root="$R" --force-depends --force-confold --log="$work/dpkg.log" "$@"; }

dpkg_r -i "$deb1" > "$work/install1.out" 2>&1 || { cat "$work/install1.out" >&2; fail "dpkg -i $v1"; }
[ -x "$R/usr/bin/palisade" ] || fail "/usr/bin/palisade not installed"
[ -d "$R/var/lib/palisade" ] || fail "postinst did not create /var/lib/palisade"
dpkg --root="$R" -s palisade | grep -q "^Version: $v1" || fail "dpkg does not list $v1"
ok "installed $v1 with dpkg (maintainer scripts run in the chroot)"

# --- the administrator's local edits: no firewall here, a free port, a marker
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cfg="$R/etc/palisade/palisade.toml"
sed -i -e 's/^responders = \["nftables"\]/responders = ["log"]/' \
       -e "s/^listen = \"127.0.0.1:9380\"/listen = \"127.0.0.1:$port\"/" "$cfg"
echo "# local edit kept across upgrades" >> "$cfg"
grep -q "^responders = \[\"log\"\]" "$cfg" && grep -q ":$port\"" "$cfg" || fail "could not edit the installed config"

# --- the unit's command line, as systemd would run it (RuntimeDirectory made first)
exec_start=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/palisade.service")
start_daemon() {
  mkdir -p -m 0750 "$R/run/palisade" "$R/var/lib/palisade"
  # shellcheck disable=SC2086
  chroot "$R" $exec_start > "$work/daemon.log" 2>&1 &
  daemon=$!
  for _ in $(seq 1 200); do
    [ -S "$R/run/palisade/palisade.sock" ] && return 0
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; fail "the daemon exited"; }
    sleep 0.1
  done
  cat "$work/daemon.log" >&2; fail "no control socket after 20 s"
}
stop_daemon() {
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
  rm -f "$R/run/palisade/palisade.sock"
}
pal() { chroot "$R" /usr/bin/palisade "$@"; }

start_daemon
pal status --config /etc/palisade/palisade.toml > "$work/status1" || { cat "$work/status1" "$work/daemon.log" >&2; fail "palisade status"; }
grep -q sshd "$work/status1" || { cat "$work/status1" >&2; fail "status does not show the sshd jail"; }
ok "the unit's ExecStart runs; palisade status answers and shows the sshd jail"

pal decisions add 203.0.113.9 --duration 1d --reason "package upgrade test" --config /etc/palisade/palisade.toml > /dev/null ||
  fail "decisions add"
pal decisions list --config /etc/palisade/palisade.toml | grep -q 203.0.113.9 || fail "the ban is not listed"
kill -HUP "$daemon"; sleep 1
kill -0 "$daemon" || { cat "$work/daemon.log" >&2; fail "the daemon died on reload (SIGHUP)"; }
pal status --config /etc/palisade/palisade.toml > /dev/null || fail "status after reload"
ok "a ban added; ExecReload (SIGHUP) keeps the daemon running"
stop_daemon

# --- upgrade: config, ban and history stay; the store is backed up and migrated
dpkg_r -i "$deb2" > "$work/install2.out" 2>&1 || { cat "$work/install2.out" >&2; fail "dpkg -i $v2"; }
dpkg --root="$R" -s palisade | grep -q "^Version: $v2" || fail "dpkg does not list $v2"
grep -q "local edit kept across upgrades" "$cfg" || fail "the upgrade replaced the edited config"
[ -f "$R/var/lib/palisade/before-upgrade-palisade.db" ] || fail "no store copy from before the upgrade"
grep -q "could not be opened" "$work/install2.out" && { cat "$work/install2.out" >&2; fail "postinst: store not migrated"; }
start_daemon
pal decisions list --config /etc/palisade/palisade.toml | grep -q 203.0.113.9 || fail "the ban did not survive the upgrade"
pal status --config /etc/palisade/palisade.toml | grep -q sshd || fail "status after the upgrade"
stop_daemon
ok "upgraded to $v2: local config edit, ban and history kept; store copy taken"

# --- remove keeps config and state; purge removes them
dpkg_r -r palisade > /dev/null 2>&1 || fail "dpkg -r"
[ ! -e "$R/usr/bin/palisade" ] || fail "binary left after remove"
[ -f "$cfg" ] && [ -f "$R/var/lib/palisade/palisade.db" ] || fail "remove must keep config and store"
dpkg_r -P palisade > /dev/null 2>&1 || fail "dpkg -P"
[ ! -e "$cfg" ] && [ ! -e "$R/var/lib/palisade" ] || fail "purge must remove config and state"
ok "remove keeps config and store; purge removes them"

# --- scripts/install.sh, for systems without dpkg: binary, config if absent, unit
D="$work/plain"
bash "$root/scripts/install.sh" --bin "$bin" --root "$D" --no-start > /dev/null
[ -x "$D/usr/local/bin/palisade" ] || fail "install.sh: binary"
grep -qx 'ExecStart=/usr/local/bin/palisade run --config /etc/palisade/palisade.toml' "$D/etc/systemd/system/palisade.service" ||
  fail "install.sh: unit ExecStart"
"$D/usr/local/bin/palisade" config check "$D/etc/palisade/palisade.toml" > /dev/null || fail "install.sh: config check"
echo "# mine" >> "$D/etc/palisade/palisade.toml"
bash "$root/scripts/install.sh" --bin "$bin" --root "$D" --no-start > /dev/null
grep -qx "# mine" "$D/etc/palisade/palisade.toml" || fail "install.sh replaced an existing config"
ok "install.sh installs binary, unit and config, and keeps an existing config"

echo "$passed passed, 0 failed"
