#!/usr/bin/env bash
# Builds BuildKit's buildkitd and buildctl from the Go module proxy, in a throwaway
# module (never the product's), caches them in /var/cache/crun-ci/buildkit-$version, and
# runs BenchmarkBuildAgainstBuildKit: crun-ci's builder against BuildKit's containerd
# worker on the same containerd, cold and fully cached. Run as root after
# scripts/setup.sh; extra arguments go to go test (e.g. -benchtime 10x).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
version=${BUILDKIT_VERSION:-v0.34.2}
dir=/var/cache/crun-ci/buildkit-$version
if [ ! -x "$dir/buildkitd" ] || [ ! -x "$dir/buildctl" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(
		cd "$work"
		go mod init bench-buildkit >/dev/null 2>&1
		go get "github.com/moby/buildkit/cmd/buildkitd@$version" "github.com/moby/buildkit/cmd/buildctl@$version" >/dev/null
		mkdir -p "$dir"
		go build -o "$dir/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
	)
	echo "bench-buildkit: built buildkitd and buildctl $version in $dir" >&2
fi
CRUNCI_BUILDKIT_DIR=$dir go test -run NONE -bench BuildAgainstBuildKit -benchtime 5x "$@" ./integration
