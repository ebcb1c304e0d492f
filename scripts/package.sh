#!/usr/bin/env bash
# Builds dist/crun-ci-linux-amd64 (a static binary) and dist/crun-ci_<version>_amd64.deb
# with it, its manual page and its bash, zsh and fish completion, all made from the
# binary's own command table and flags. VERSION (default: 0.0.0+git<commits>.<commit>,
# which grows with the history) is the package's and the binary's version. Needs Go (as
# setup.sh) and dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
version=${VERSION:-0.0.0+git$(git rev-list --count HEAD 2>/dev/null || echo 0).$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
case $version in
[0-9]*) ;;
*) echo "package: VERSION $version must start with a digit (Debian's rule)" >&2; exit 2 ;;
esac

rm -rf dist
mkdir -p dist
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o dist/crun-ci-linux-amd64 ./cmd/crun-ci

root=dist/deb
install -D -m 0755 dist/crun-ci-linux-amd64 "$root/usr/bin/crun-ci"
mkdir -p "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
	"$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
	"$root/usr/share/doc/crun-ci" "$root/DEBIAN"
# Made with the defaults of a clean environment, not this shell's CRUNCI_* variables.
doc() { env -u CRUNCI_ADDRESS -u CONTAINERD_ADDRESS -u CRUNCI_NAMESPACE -u CRUNCI_STATE_DIR "$root/usr/bin/crun-ci" "$@"; }
doc man | gzip -9n > "$root/usr/share/man/man1/crun-ci.1.gz"
doc completion bash > "$root/usr/share/bash-completion/completions/crun-ci"
doc completion zsh > "$root/usr/share/zsh/vendor-completions/_crun-ci"
doc completion fish > "$root/usr/share/fish/vendor_completions.d/crun-ci.fish"
gzip -9nc README.md > "$root/usr/share/doc/crun-ci/README.md.gz"
cat > "$root/DEBIAN/control" <<EOF
Package: crun-ci
Version: $version
Section: devel
Priority: optional
Architecture: amd64
Maintainer: crun-ci <crun-ci@users.noreply.github.com>
Depends: containerd, runc
Recommends: iptables, busybox-static
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Description: runs Codeship Pro pipelines on containerd, without Docker
 crun-ci reads codeship-services.yml and codeship-steps.yml and runs every step as
 containerd tasks on fresh overlay snapshots, each step on a network of its own,
 leaving nothing behind.
EOF
deb="dist/crun-ci_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
rm -rf "$root"
echo "package: built $deb and dist/crun-ci-linux-amd64 ($("dist/crun-ci-linux-amd64" version))"
