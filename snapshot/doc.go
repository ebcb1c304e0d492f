// Package snapshot makes and removes the overlayfs snapshots crun-ci's containers run on,
// and read-only views of an image's filesystem.
//
// Words: a snapshot key names an active (writable) or view snapshot, and crun-ci uses the
// container id as the key of a container's snapshot, so that a leftover snapshot names the
// container and build it belonged to. A snapshot's parent is the image's chain id: the
// committed snapshot of its last unpacked layer. Images are unpacked once, into the
// "overlayfs" snapshotter, and every step's containers start from them.
package snapshot
