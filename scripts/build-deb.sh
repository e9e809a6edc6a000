#!/usr/bin/env bash
# Builds the Debian package from a built binary, with Debian's own dpkg-deb (no extra
# tool): /usr/bin/palisade, /etc/palisade/palisade.toml (conffile), the hardened systemd
# unit, logrotate, maintainer scripts (packaging/debian/) and the docs.
#   scripts/build-deb.sh [--bin PATH] [--version VERSION] [--out DIR]
# Defaults: target/release/palisade (built when missing), the workspace version, target/debian.
# Prints the path of the .deb.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="" version="" out="$root/target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  bin="${CARGO_TARGET_DIR:-$root/target}/release/palisade"
  [ -x "$bin" ] || (cd "$root" && cargo build --release -p palisade)
fi
[ -x "$bin" ] || { echo "build-deb: no binary at $bin" >&2; exit 1; }
[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
p="$stage/palisade"
install -d "$p/DEBIAN" "$p/usr/bin" "$p/etc/palisade" "$p/etc/logrotate.d" \
  "$p/lib/systemd/system" "$p/usr/share/doc/palisade/examples"
install -m 0755 "$bin" "$p/usr/bin/palisade"
# Debug symbols are not shipped (as dh_strip does).
strip --strip-unneeded "$p/usr/bin/palisade"
install -m 0640 "$root/packaging/palisade.toml" "$p/etc/palisade/palisade.toml"
install -m 0644 "$root/packaging/debian/logrotate" "$p/etc/logrotate.d/palisade"
install -m 0644 "$root/packaging/systemd/palisade.service" "$p/lib/systemd/system/palisade.service"
# Shell completions and man pages, generated from the binary's own CLI definition.
install -d "$p/usr/share/bash-completion/completions" "$p/usr/share/zsh/vendor-completions" \
  "$p/usr/share/fish/vendor_completions.d" "$p/usr/share/man/man1"
"$bin" completions bash > "$p/usr/share/bash-completion/completions/palisade"
"$bin" completions zsh > "$p/usr/share/zsh/vendor-completions/_palisade"
"$bin" completions fish > "$p/usr/share/fish/vendor_completions.d/palisade.fish"
"$bin" man --out "$p/usr/share/man/man1" > /dev/null
gzip -9n "$p"/usr/share/man/man1/*.1
chmod 0644 "$p"/usr/share/bash-completion/completions/palisade "$p"/usr/share/zsh/vendor-completions/_palisade \
  "$p"/usr/share/fish/vendor_completions.d/palisade.fish "$p"/usr/share/man/man1/*.1.gz
install -m 0644 "$root/README.md" "$p/usr/share/doc/palisade/README.md"
install -m 0644 "$root/examples/palisade.toml" "$p/usr/share/doc/palisade/examples/palisade.toml"
printf 'Palisade\nLicense: Apache-2.0\nOn Debian systems the licence text is in /usr/share/common-licenses/Apache-2.0.\n' \
  > "$p/usr/share/doc/palisade/copyright"
for s in preinst postinst prerm postrm; do
  install -m 0755 "$root/packaging/debian/$s" "$p/DEBIAN/$s"
done
install -m 0644 "$root/packaging/debian/conffiles" "$p/DEBIAN/conffiles"
# Shared libraries the binary links (glibc, libgcc) as package dependencies.
depends="libc6, libgcc-s1"
size=$(du -sk --exclude=DEBIAN "$p" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  "$root/packaging/debian/control.in" > "$p/DEBIAN/control"
mkdir -p "$out"
deb="$out/palisade_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z3 --build "$p" "$deb" >/dev/null
echo "$deb"
