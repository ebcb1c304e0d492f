// Package remote fetches images from registries into containerd: it resolves registry
// credentials from Docker's config files, speaks plain HTTP only to loopback registries
// and to those the operator lists as insecure, reports progress while layers download,
// and unpacks what it pulled for crun-ci's snapshots.
//
// Words: a reference names an image in a registry ("busybox", normalised as Docker does
// to docker.io/library/busybox:latest); the registry host is its first part
// ("registry-1.docker.io" stands for docker.io). Credentials are looked up by host in
// $DOCKER_CONFIG/config.json (default ~/.docker/config.json: "auths" with a base64
// "auth" of user:password, or username/password, or an "identitytoken") and in the
// legacy ~/.dockercfg (the same entries at the top level).
package remote
