// Package oci builds the OCI runtime spec of one service container from plain data: the
// service's overrides, the image's config, the resolved mounts and the environment.
//
// Spec is a pure function: the same Container always gives the same spec, so the package
// is tested with golden files (testdata/<case>/config.json, refreshed with
// `go test ./oci -update`).
//
// Docker's rules apply: a service's entrypoint replaces the image's ENTRYPOINT and drops its
// CMD; a command (the step's, else the service's) replaces CMD; the environment is the
// image's, then the added entries in order, a later key replacing an earlier one; the
// working directory is the service's, else the image's, else "/"; the user is the
// service's, else the image's, else root, resolved against the image's /etc/passwd and
// /etc/group by User.
//
// A container joins the network namespace it is given (its step's, shared by all the
// step's containers) and gets the step's hosts file at /etc/hosts; without them it shares
// the host's network namespace and /etc/hosts. /etc/resolv.conf is always the host's.
package oci
