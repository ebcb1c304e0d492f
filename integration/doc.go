// Package integration holds crun-ci's end-to-end tests: the crun-ci binary, built by
// TestMain, runs pipelines against a real containerd (Debian's containerd and runc), and
// every test checks the result on the host and that nothing of the build is left in
// containerd.
//
// The tests need root. Without root they skip, saying so, unless
// CRUNCI_REQUIRE_CONTAINERD=1 is set (as .ci/run does), which turns the skip into a
// failure. They use the embedded containerd under a temporary state directory, so they
// neither need nor disturb a system containerd. The busybox test image is made offline
// from Debian's busybox-static by package ociarchive.
package integration
