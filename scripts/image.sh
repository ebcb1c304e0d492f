#!/usr/bin/env bash
# Builds the crun-ci image with crun-ci's own builder, from deploy/image/Dockerfile, and
# writes it as an OCI archive: bin/crun-ci-image.tar (docker.io/crun-ci/crun-ci:latest).
# As root, on a host with iptables (scripts/setup.sh installs it), offline.
#
# The image holds the static crun-ci, iptables (nft and legacy), git and runc with the
# libraries and extensions they load, copied from this host, plus the host's CA
# certificates (for registries over HTTPS). On a host whose iptables is the legacy one, run the image
# with PATH=/usr/lib/crun-ci/legacy:/usr/sbin:/usr/bin.
#
# Environment: CRUNCI, the crun-ci that builds (default: bin/crun-ci, built static);
# OUT, the archive (default bin/crun-ci-image.tar); IMAGE, its name; and crun-ci's own
# (CRUNCI_STATE_DIR, CRUNCI_ADDRESS).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if [ "$(id -u)" -ne 0 ]; then
	echo "image: run as root (the build runs on containerd)" >&2
	exit 2
fi
out=${OUT:-bin/crun-ci-image.tar}
image=${IMAGE:-docker.io/crun-ci/crun-ci:latest}
ctx=$(mktemp -d /tmp/crun-ci-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p bin "$(dirname "$out")"

# The binary put in the image is always a fresh static one: the crun-ci that builds may
# be any.
CGO_ENABLED=0 go build -trimpath -o "$ctx/crun-ci" ./cmd/crun-ci
crunci=${CRUNCI:-}
if [ -z "$crunci" ]; then
	cp "$ctx/crun-ci" bin/crun-ci
	crunci=bin/crun-ci
fi

root=$ctx/rootfs
# put copies a host file (symlinks followed) to the same path in the image.
put() { install -D -m "$(stat -Lc %a "$1")" "$(readlink -f "$1")" "$root$1"; }
# libs lists the libraries a binary or shared object loads, and the loader.
libs() { ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'; }

xt=$(ls -d /usr/lib/*/xtables | head -1)
# iptables for the step networks; git for the CI variables of the build directory's
# repository; runc for the clean-up of containers whose shim was killed.
bins=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$(command -v git)" "$(command -v runc)")
for b in "${bins[@]}"; do
	[ -x "$b" ] || { echo "image: $b not found: apt-get install iptables git runc (scripts/setup.sh does)" >&2; exit 2; }
done
{
	for f in "${bins[@]}" "$xt"/*.so; do
		echo "$f"
		libs "$f"
	done
} | sort -u | while read -r f; do put "$f"; done
for n in iptables iptables-save iptables-restore; do
	ln -s xtables-nft-multi "$root/usr/sbin/$n"
done
ln -s xtables-legacy-multi "$root/usr/sbin/iptables-legacy"
ln -s xtables-legacy-multi "$root/usr/sbin/iptables-legacy-save"
mkdir -p "$root/usr/lib/crun-ci/legacy"
for n in iptables iptables-save; do
	ln -s /usr/sbin/xtables-legacy-multi "$root/usr/lib/crun-ci/legacy/$n"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	put /etc/ssl/certs/ca-certificates.crt
fi
mkdir -p "$root/etc" "$root/run" "$root/var/lib" "$root/tmp"
chmod 1777 "$root/tmp"

cp deploy/image/Dockerfile "$ctx/Dockerfile"
cat > "$ctx/codeship-services.yml" <<YML
crun-ci:
  build:
    image: $image
YML
"$crunci" load --dir "$ctx"
"$crunci" export "$image" "$out"
echo "image: wrote $out ($image, $(du -h "$out" | cut -f1))" >&2
