// Package images makes present the images a build needs: found in containerd's store, or
// pulled from their registry when they are missing there (or always, with IfPresent),
// each image pulled once per build, however many services, steps and image builds ask
// for it at the same time (a failed pull is tried again by the next who asks). A build's
// services, their dependencies, credential services and the base images of its
// Dockerfiles all get their images here, by the one pull policy. The images of services
// with a build key are built here too, lazily and once per build (Store.Build, keyed by
// service), and named here (BuiltName; Builders says which services use another's built
// image): what runs the build (RUN in a pod, the output) is the caller's.
//
// Words: a reference is an image name as written (busybox); its normalised form is
// Docker's (docker.io/library/busybox:latest), which task.Normalize gives.
package images
