// Package builds keeps track of the builds on a host, so that what a dead build left
// behind can always be found and removed, and a live build is never touched.
//
// Words:
//   - A build is one run of `crun-ci steps`, named by a random id. Every containerd object
//     it makes (containers, snapshots, leases) carries the labels crun-ci.build=<id> and
//     crun-ci.state=<state directory>; its files live in <state>/builds/<id>, the FIFOs
//     of its tasks' output included.
//   - The owner of a build is the process running it. It holds an exclusive flock on
//     <state>/locks/<id> from before it makes anything until after it has removed
//     everything, then deletes the lock file. The kernel drops the lock when the owner
//     dies, however it dies, so "the lock can be taken" means "the owner is gone"; no pid
//     is ever guessed.
//   - An orphan is a build of this state directory whose owner is gone but whose
//     objects or files remain (a kill -9, a crash of crun-ci or of containerd, a failed
//     clean-up). Find lists orphans; Remove removes everything of one.
//   - A kept build is an orphan kept on purpose (--keep-on-failure, --no-remove) for
//     crun-ci debug: its directory holds kept.json (Kept), which says what it kept and
//     until when; clean-ups leave it alone until then, unless asked to remove it.
//
// Objects labelled with another state directory belong to another crun-ci installation
// sharing the same containerd and are never touched.
package builds
