// Package daemon connects crun-ci to containerd: the one at the address the operator named,
// or, when nothing answers there, an embedded containerd that crun-ci starts itself.
//
// The embedded containerd is Debian's `containerd` binary from PATH with a private root,
// state and socket under crun-ci's state directory (<state>/containerd/...), so images
// imported into it survive between runs. It runs in its own session, so a Ctrl-C on the
// terminal reaches crun-ci (which cleans up) and not containerd.
//
// Several crun-ci processes may share one embedded containerd. Each holds a shared lock on
// <state>/containerd/users.lock while it uses it; a process that leaves takes the lock
// exclusively if it can, and if it can, nobody else uses containerd and it stops it: the
// last one out turns off the lights. start.lock serialises starting and stopping.
package daemon
