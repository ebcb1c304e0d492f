// Package session is crun-ci as a library. A Session opens containerd (the one at an
// address, or an embedded one it starts), removes what dead builds left, and runs
// pipelines, single services and image loads; the crun-ci command only parses flags into
// Options and a Build, and maps errors to exit statuses.
//
// Words:
//   - A session is one use of containerd by one crun-ci process, with the step networks'
//     manager, the image puller and the image builder that its builds share.
//   - A build is one run of a pipeline's containers (a pipeline, one service, or the
//     loading of images), with its own id, lock, lease and directory (package steps).
package session
