// Package task runs service containers as containerd tasks: it finds images in containerd's
// image store, makes a container on a fresh snapshot, starts its task with its output
// streamed to writers, waits for it, and removes task, container and snapshot again.
//
// Words: a container is containerd's record of one service container of one step (its spec,
// labels and snapshot key); a task is its running process, created by the runc shim. A
// container id names the build and step it belongs to, and is also its snapshot's key.
package task
