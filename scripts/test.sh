#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every check and test: gofmt, go vet, unit
# tests, and the integration tests against a real containerd, which must run, not skip:
# Debian 12's containerd 1.6, then containerd 2.x; then the package; then crun-ci in a
# Debian 12 VM (scripts/vm-test.sh).
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/local/go/bin"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test: not gofmt-formatted:" $unformatted >&2
	exit 1
fi
go vet ./...
# The integration suite turns its root-less skip into a failure here.
export CRUNCI_REQUIRE_CONTAINERD=1
CRUNCI_CONTAINERD_VERSION=1.6. go test -count=1 -timeout 30m ./...
# The integration suite again against containerd 2.x, built from the Go module proxy
# once (kept in /var/cache/crun-ci; the embedded containerd is the first on PATH).
ctrd2=/var/cache/crun-ci/containerd-v2.2.1
if [ ! -x "$ctrd2/containerd" ] || [ ! -x "$ctrd2/containerd-shim-runc-v2" ]; then
	mkdir -p "$ctrd2"
	GOBIN="$ctrd2" go install -tags no_btrfs github.com/containerd/containerd/v2/cmd/containerd@v2.2.1 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.2.1
fi
PATH="$ctrd2:$PATH" CRUNCI_CONTAINERD_VERSION=2. go test -count=1 -timeout 30m ./integration
# Kill crun-ci at 25 random moments of a pipeline: nothing may be left, no host file lost.
# (README: run it with -chaos=100 for the full figure.)
go test -count=1 -timeout 20m -v -run TestChaos ./integration -args -chaos=25
# The package: built, installed with apt-get, and used to run a pipeline.
bash scripts/package-test.sh
# crun-ci inside a VM that scripts/vm-image.sh builds (cached in /var/cache/crun-ci/vm).
bash scripts/vm-test.sh
