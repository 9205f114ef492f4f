#!/usr/bin/env bash
# The Dockerfile's runtime image, measured without a container engine: the
# same Debian release made with debootstrap (minbase), the same packages,
# trimmed as the `-slim` images are (no docs, man pages, locales or apt
# lists), and the binaries of `make build`. Needs root and Debian's mirror.
# Usage: scripts/image-size.sh [target/release]
set -euo pipefail
bins=${1:-target/release}
suite=$(sed -n 's/^FROM debian:\([a-z]*\)-slim.*/\1/p' "$(dirname "$0")/../Dockerfile")
packages=$(sed -n '/^FROM debian/,$ s/.*apt-get install -y --no-install-recommends \([a-z0-9 .-]*\).*/\1/p' \
  "$(dirname "$0")/../Dockerfile" | tr -d '\\')
[ -n "$suite" ] && [ -n "$packages" ] || { echo "image-size: cannot read the Dockerfile's runtime stage" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
root=$(mktemp -d)
trap 'rm -rf "$root" "$root.apt.log"' EXIT
debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian >/dev/null
# shellcheck disable=SC2086 # the package list is words
chroot "$root" sh -c "apt-get install -y --no-install-recommends $packages && apt-get clean" \
  >"$root.apt.log" 2>&1 || { cat "$root.apt.log" >&2; echo "image-size: apt-get in the chroot failed" >&2; exit 1; }
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/log/*
base=$(du -s --apparent-size --block-size=1 "$root" | cut -f1)
install -m 0755 "$bins/mcp-gateway" "$bins/mcp-demo-server" "$root/usr/local/bin/"
total=$(du -s --apparent-size --block-size=1 "$root" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "debian:$suite-slim + $packages: $(mib "$base"); with the binaries: $(mib "$total")"
