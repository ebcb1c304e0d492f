#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), makes the busybox image offline, imports it, and
# runs the example pipelines of examples/ against the embedded containerd (or the system
# one, if one answers). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

state=${CRUNCI_STATE_DIR:-/var/lib/crun-ci}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crunci() { bin/crun-ci --state-dir "$state" "$@"; }

echo "== make the busybox image offline and import it"
bin/mkimage -o "$work/busybox.tar"
crunci import "$work/busybox.tar"

echo "== examples/volumes: an anonymous volume shared inside a step, empty in the next"
crunci validate --dir examples/volumes
crunci steps --dir examples/volumes

echo "== examples/host-volumes: a host volume persists across steps and after the build"
rm -f examples/host-volumes/tmp/artifacts/build-stamp
crunci steps --dir examples/host-volumes
echo "== on the host afterwards: examples/host-volumes/tmp/artifacts/build-stamp"
cat examples/host-volumes/tmp/artifacts/build-stamp
echo "== examples/dependencies: a healthy dependency reached by name on the step's network"
crunci steps --dir examples/dependencies --stop-timeout 1s
echo "== examples/builds: images built from Dockerfiles when a step needs them; the second"
echo "   image ADDs what the first step wrote into a host volume"
rm -f examples/builds/tmp/artifacts/release.txt
crunci steps --dir examples/builds --ci-branch demo
echo "== again: every layer comes from the cache, except the ADD of a new artifact"
crunci steps --dir examples/builds --ci-branch demo
echo "demo: all example pipelines passed"
