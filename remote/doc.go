// Package remote fetches images from registries into containerd: it resolves registry
// credentials from Docker's config files, speaks plain HTTP only to loopback registries
// and to those the operator lists as insecure, reports progress while layers download,
// and unpacks what it pulled for crun-ci's snapshots.
//
// Words: a reference names an image in a registry ("busybox", normalised as Docker does
// to docker.io/library/busybox:latest); the registry host is its first part
// ("registry-1.docker.io" stands for docker.io). A login is a registry's user and
// password, or identity token.
//
// The host's credentials (a DockerConfig) are read with Docker's own library
// (github.com/docker/cli/cli/config/configfile) from $DOCKER_CONFIG/config.json (default
// ~/.docker/config.json: "auths" with a base64 "auth" of user:password, or
// username/password, or an "identitytoken") and the legacy ~/.dockercfg (the same entries
// at the top level), and resolved as Docker resolves them: a registry named in
// "credHelpers" gets its login from that credential helper (the program
// docker-credential-<name> on $PATH), any other from the helper "credsStore" names, and
// without one from "auths". A helper runs only when a registry asks for a login.
//
// The pipeline's credentials (Credentials, from ParseCredentials: a service's
// encrypted_dockercfg_path, what a dockercfg_service wrote) are logins only: the same
// decoder reads their "auths" (or the legacy form) and nothing else, so a pipeline
// cannot name a program for crun-ci to run. They win over the host's for their
// registries, whose helpers are then not asked.
package remote
