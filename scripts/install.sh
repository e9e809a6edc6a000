#!/usr/bin/env bash
# Installs Palisade on a systemd Linux without the Debian package: the binary to
# /usr/local/bin (or --prefix), the configuration to /etc/palisade/palisade.toml only if it
# does not exist yet, the systemd unit, and the state folder. Run again to upgrade: the
# configuration, bans and history stay (the daemon migrates the store at start).
#   scripts/install.sh [--bin PATH] [--prefix /usr/local] [--root DESTDIR] [--no-start]
# Default binary: target/release/palisade (built when missing). Run as root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="" prefix=/usr/local dest="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --root) dest="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    *) echo "install: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  bin="${CARGO_TARGET_DIR:-$root/target}/release/palisade"
  [ -x "$bin" ] || (cd "$root" && cargo build --release -p palisade)
fi
[ -x "$bin" ] || { echo "install: no binary at $bin" >&2; exit 1; }

install -d -m 0755 "$dest$prefix/bin" "$dest/etc/palisade" "$dest/etc/systemd/system"
install -d -m 0750 "$dest/var/lib/palisade"
install -m 0755 "$bin" "$dest$prefix/bin/palisade.new"
mv -f "$dest$prefix/bin/palisade.new" "$dest$prefix/bin/palisade"
if [ -e "$dest/etc/palisade/palisade.toml" ]; then
  echo "install: keeping /etc/palisade/palisade.toml (the shipped one is $root/packaging/palisade.toml)"
else
  install -m 0640 "$root/packaging/palisade.toml" "$dest/etc/palisade/palisade.toml"
  # Without journald, sshd logs to a file.
  if ! command -v journalctl >/dev/null; then
    sed -i -e 's|^journal = \["_SYSTEMD_UNIT=ssh.service"\]|files = ["/var/log/auth.log"]|' \
      -e 's|^# files = \["/var/log/auth.log"\] .*$||' "$dest/etc/palisade/palisade.toml"
  fi
  echo "install: wrote /etc/palisade/palisade.toml"
fi
sed "s#/usr/bin/palisade#$prefix/bin/palisade#" "$root/packaging/systemd/palisade.service" \
  > "$dest/etc/systemd/system/palisade.service"
chmod 0644 "$dest/etc/systemd/system/palisade.service"
echo "install: $prefix/bin/palisade, /etc/systemd/system/palisade.service"

if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  "$prefix/bin/palisade" config check /etc/palisade/palisade.toml
  if [ "$start" = 1 ]; then
    systemctl enable palisade.service
    # restart: an upgrade takes the new binary (which migrates the store at start).
    systemctl restart palisade.service
    echo "install: started; first dashboard password: journalctl -u palisade | grep password"
  fi
fi
