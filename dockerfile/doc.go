// Package dockerfile builds images from Dockerfiles on containerd, without dockerd or
// buildkitd.
//
// The Dockerfile is parsed with BuildKit's parser and instructions packages. Every stage
// the last one needs is built in order: metadata instructions (ENV, ARG, WORKDIR, USER,
// CMD, ENTRYPOINT, LABEL, EXPOSE, VOLUME, HEALTHCHECK, SHELL, STOPSIGNAL) change the
// image config; RUN, COPY and ADD each make one layer. A layer is made on a fresh active
// overlay snapshot of the layers before it: RUN runs as a containerd task on it, COPY and
// ADD mount it and write into it. containerd's diff service then turns the snapshot into
// a gzip layer in the content store, and the snapshot is committed under the layers'
// chain id, which is what unpacking the image would make, so the built image needs no
// unpacking. Config and manifest are written to the content store with the labels that
// keep layers, config and snapshot from containerd's garbage collector, and the image is
// created (or moved) in the image store.
//
// # Layer cache
//
// Every layer-making instruction has a cache key: a digest of the key before it (the
// base image's config digest at the start of a stage), the instruction as written after
// variable expansion, the build arguments in scope, and, for COPY and ADD, a digest of
// the content they copy (see Context.Digest). A layer is kept as a small image named
// crun-ci.local/cache:<key> whose manifest lists the layers up to it, labelled with its
// size and when it was last used. An instruction whose key has an entry reuses its layers
// and snapshot; eviction removes the least recently used entries beyond the size bound.
//
// # What is temporary
//
// Active snapshots, views and the containers of RUN carry the build's labels, so the
// clean-up of a killed build finds them; committed layers and content are held by the
// caller's lease while the build runs, and afterwards only by the images (final and
// cache) that refer to them.
package dockerfile
