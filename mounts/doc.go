// Package mounts decides what each container of a step mounts: it parses the volume specs
// of services, resolves host paths against the build directory, refuses paths that escape
// it, and turns a step's volumes into OCI bind mounts.
//
// Words:
//   - A volume spec is one entry of a service's `volumes` list, as written:
//     "/artifacts" (anonymous), "./tmp/artifacts:/artifacts" (host) or "…:/path:ro".
//   - An anonymous volume is a fresh directory made for one step under the build's state
//     directory, initialised by the caller with the image's content at its target, shared
//     through `volumes_from` with the step's other containers, deleted when the step ends.
//   - A host volume is a path relative to the build directory (the directory that holds the
//     services file). It must exist. It persists across steps and after the build.
//   - A grant is an absolute path prefix the operator allowed with --allow-host-path; host
//     paths outside the build directory are refused unless a grant covers them.
//
// Options after the target: "ro" and "rw" (the default); "nocopy" keeps a new anonymous
// volume empty instead of copying the image's content into it; "z", "Z", "cached",
// "delegated" and "consistent" are accepted and change nothing here (no SELinux labels, no
// file sharing between a VM and a host). Anything else is an error. Named volumes
// ("cache:/path") are refused: Codeship-style pipelines share data through host volumes.
package mounts
