#!/usr/bin/env bash
# Builds the package (scripts/package.sh), installs it with apt-get on this machine and
# runs a pipeline with the installed crun-ci: its version, manual page and completion
# are there, and a build of examples/volumes passes. Leaves the package installed.
# Run as root on Debian 12, after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/package.sh
deb=$(ls dist/crun-ci_*_amd64.deb)
# What was built, whatever version an earlier run left installed.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "./$deb" >/dev/null
version=$(dpkg-deb -f "$deb" Version)
got=$(/usr/bin/crun-ci version)
case $got in
"crun-ci $version "*) ;;
*) echo "package-test: /usr/bin/crun-ci version says \"$got\", want $version" >&2; exit 1 ;;
esac
man -w crun-ci >/dev/null
bash -c 'source /usr/share/bash-completion/completions/crun-ci && complete -p crun-ci' >/dev/null

state=$(mktemp -d)
work=$(mktemp -d)
trap '/usr/bin/crun-ci --state-dir "$state" cleanup >/dev/null 2>&1 || true; rm -rf "$state" "$work"' EXIT
bin/mkimage -o "$work/busybox.tar"
/usr/bin/crun-ci --state-dir "$state" import "$work/busybox.tar" >/dev/null
/usr/bin/crun-ci --state-dir "$state" steps --dir examples/volumes --junit "$work/junit.xml" >/dev/null
grep -q '<testsuites name="crun-ci"' "$work/junit.xml"
echo "package-test: $deb installed; /usr/bin/crun-ci ran examples/volumes"
