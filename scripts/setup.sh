#!/usr/bin/env bash
# Sets up a Debian 12 machine, as root, for crun-ci: Debian's containerd, runc,
# iptables (step networks), xz-utils (ADD of xz
# archives) and busybox-static (for the offline test image), then builds bin/crun-ci
# and bin/mkimage.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: run as root (containerd, runc and overlay mounts need it)" >&2
	exit 2
fi

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
# Step networks: iptables (crun-ci makes bridges, veths and addresses itself).
command -v iptables >/dev/null || missing+=(iptables)
# ADD of an xz archive runs xz, as Docker does (dockerfile.unxz); the dockerfile tests
# (TestCopyExtract, TestUnxz) make their xz archives with it too.
command -v xz >/dev/null || missing+=(xz-utils)
# What the tests use besides: git (CI variables), ip (network checks), openssl (an
# independent implementation of Codeship's encrypted files), bzip2 (an archive for ADD),
# script (a terminal for the pull progress), gcc (below).
command -v git >/dev/null || missing+=(git)
command -v bzip2 >/dev/null || missing+=(bzip2)
command -v script >/dev/null || missing+=(bsdutils)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
# gcc: the test of a dynamically linked crun-ci (what go install builds with cgo).
command -v gcc >/dev/null || missing+=(gcc)
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Go 1.26 or newer: on PATH, or where the Go distribution installs itself.
export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
	echo "setup: Go 1.26 or newer is needed (Debian 12's golang-go is too old); install it in /usr/local/go" >&2
	exit 2
fi

mkdir -p bin
# Static: crun-ci mounts itself into containers to hand them their secret variables.
CGO_ENABLED=0 go build -o bin/crun-ci ./cmd/crun-ci
go build -o bin/mkimage ./cmd/mkimage
echo "setup: built bin/crun-ci ($(bin/crun-ci version))" >&2
