// Package config reads and checks the two files of a pipeline: the services file, which
// says which containers exist, and the steps file, which says what runs in them and in
// which order. It turns them into a [Project] of plain data, with the file and line of
// everything kept, and never talks to containerd.
//
// # Words
//
//   - A service is one entry of the services file (`codeship-services.yml`, Compose
//     syntax): an image, or how to build one, and how to run a container of it (command,
//     environment, volumes, the other services it needs).
//   - A build is a service's `build:` key ([Build]): the image is built from a Dockerfile
//     instead of pulled. `build: ./dir` names the context; the mapping form has `image`
//     (the built image's name), `context` (or `path`), `dockerfile` (or `dockerfile_path`,
//     relative to the context), `args` (a mapping or a KEY=value list, like
//     `environment`), `encrypted_args_file` and `encrypted_args`. The context defaults to
//     the build directory and the Dockerfile to `Dockerfile`; a `dockerfile:` (or
//     `dockerfile_path:`) next to `build:` sets the Dockerfile too. A service has an
//     `image` or a `build`, never both: `build.image` names what a build makes. `cached`
//     and `default_cache_branch` go with builds.
//   - Registry credentials: `encrypted_dockercfg_path` is an encrypted Docker config
//     file, `dockercfg_service` names another service whose container writes one. A
//     service uses them to pull its image, a run step or group for the images its steps
//     pull, a push step to push. A service, run step or group with both takes the
//     encrypted file (the other is listed in [Project.Ignored]); a push step may not
//     have both.
//   - A step is one entry of the steps file. A run step runs a command in a new container
//     of its service; a push step pushes a service's image.
//   - A group is a step with `type: serial` or `type: parallel` and child `steps`. Serial
//     groups (and the top level) stop at the first failure; parallel groups run every
//     child. A group's `service` is the default service of the steps inside it;
//     `services: [a, b]` runs its children once per service: the group's children become
//     one serial group per service, each holding copies of the children with that
//     service as default (in a parallel group the copies run in parallel, in a serial group
//     one after another). A group keeps its own or inherited `service:` in
//     [Step.Service] too.
//   - `on_fail` steps hang from a step or group and run when it fails; they inherit its
//     service.
//   - `timeout` (crun-ci's own key) bounds a step or a whole group: a Go duration such as
//     "90s" or "10m", or a whole number of seconds ([Step.Timeout]).
//   - The build directory is the directory holding the services file ([Project.Dir]).
//     Relative host volumes are relative to it, and messages name files relative to it.
//
// # Files
//
// [Load] looks in the directory it is given for `codeship-services.yml`, else
// `codeship-services.json`, else `docker-compose.yml`, and for `codeship-steps.yml`, else
// `codeship-steps.json`; explicit paths replace that search. JSON files are read as YAML,
// which they are. A file must hold exactly one document of at most 10 MiB. Anchors and
// aliases (and `<<` merge keys) may be used, but a document that grows past a million
// nodes or a depth of 100 once its aliases are expanded is refused, as is a steps tree
// that grows past 100,000 steps once `services:` groups are expanded.
//
// Services are the top-level keys of the services file, or the keys under a top-level
// `services:`. A top-level `version` is ignored, and so are top-level `volumes` and
// `networks` next to `services:`. Scalars keep their source text: `command: true` runs
// `true` and `name: 01` is the name "01". A command or entrypoint written as a string is
// split into words with POSIX shell quoting (single quotes keep everything, double quotes
// allow the escapes \", \\, \$ and \`, a backslash outside quotes escapes the next
// character) but never run by a shell, so nothing is expanded: `sh -c 'echo a && b'` is
// the three words sh, -c and "echo a && b", and `echo $HOME` prints $HOME.
//
// Decoding is strict: an unknown key, a value of the wrong type, a duplicate key and
// syntax of a feature not implemented yet (the long syntax of volumes, wrapping
// [ErrNotSupported]) are errors. Compose keys that make no sense for a CI runner, and
// those jet ignored (`ports`, `external_links`, `stdin_open`, `restart`), are ignored
// and listed in [Project.Ignored]. `add_docker` is read as a boolean; whether a Docker
// daemon is there to pass in is the operator's to say (steps).
//
// Names and patterns written in the steps file (`name`, `tag`, `exclude`) must not hold a
// control character (newline, tab, escape, DEL, C1): they end up in logs and terminals.
// Environment values (`environment`, `build.args`) must not hold a NUL byte, which no
// process environment can carry. Every user-written name in a message is quoted, control
// characters escaped.
//
// Load then checks the two files together: `volumes_from`, `depends_on`, `links` and
// `dockercfg_service` name other services that exist, with no cycle among them (reported
// as `a -> b -> a`), and every service a step names (`service`, `services`,
// `dockercfg_service`) exists. Run and push steps must have a service, their own or
// one inherited from a group.
//
// # Resources and privileges
//
// These service keys are read with Docker's and Compose's meaning and kept as written
// ([Service.MemLimit] and the fields after it); the steps package checks them against
// what the operator allows and the oci package applies them.
//
//   - `mem_limit`, `memswap_limit` and `shm_size` are sizes: a whole number of bytes, or a
//     string with a unit as `docker run --memory` reads it: b, k, m, g or t, any case, an
//     optional b after the unit, binary multiples (512m, 1.5g, 64MB). Sizes are positive;
//     `memswap_limit` (memory plus swap, not swap alone) may be -1 for unlimited swap,
//     needs `mem_limit` in the same service and is at least `mem_limit`.
//   - `pids_limit` is a whole number: positive, or -1 or 0 for no limit (kept as -1).
//   - `cpus` is a number, or a string of one, of at least 0.01 (Docker's smallest);
//     `cpu_shares` a whole number from 2 to 262144.
//   - `ulimits` maps a resource, as Docker names it (as, core, cpu, data, fsize, locks,
//     memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack), to
//     a whole number (soft and hard limit alike) or to a mapping of exactly `soft` and
//     `hard`; -1 is unlimited, and the soft limit is at most the hard one.
//   - `privileged` is true or false.
//   - `cap_add` and `cap_drop` are lists of Linux capability names, in any case, with or
//     without "CAP_" (kept upper case without it), or "ALL"; a name at most once a list.
//   - `devices` is a list of "HOST[:CONTAINER[:PERMISSIONS]]": absolute paths without
//     "..", the container path defaulting to the host path, permissions a combination of
//     r, w and m defaulting to rwm; as with Docker, "/dev/kvm:rw" gives the permissions.
//   - `security_opt` is a list of "key=value" (or Docker's older "key:value"):
//     `seccomp=unconfined` or `seccomp=<profile file>`, `apparmor=<profile>`,
//     `label=<option>` (more than once), `no-new-privileges` (alone, or =true or =false)
//     and `systempaths=unconfined`. Anything else is an error; so is a key other than
//     label given twice.
//   - `stop_signal` is a signal by name (SIGQUIT, QUIT) or number; `stop_grace_period` a
//     Go duration (10s, 1m30s) or whole seconds, 0 allowed: how long a dependency gets
//     after its stop signal before SIGKILL when its step is over.
//
// # Step names
//
// Names are unique in the whole steps file, on_fail steps included. A step without a
// `name` gets one: `<service>_<n>` for run and push steps, `<type>_<n>` for groups
// (serial_1, parallel_1), where n is the smallest positive number that makes the name
// unique. Names written in the file are reserved first; then the missing ones are given
// out in file order: a step, then the steps inside it, then its on_fail steps. When a
// `services:` group copies a named step for service svc, the copy is named `<name>-<svc>`,
// and so is the serial group made for svc when the `services:` group is named; unnamed
// copies get generated names of their own.
//
// # Errors
//
// Load, [ParseServices] and [ParseSteps] report every problem they find, not just the
// first, as an [errors.Join] of [*Error] values in file order. Each reads
//
//	<file>:<line>: service "<name>": <problem>
//	<file>:<line>: step "<name>": <problem>
//
// where the file is named relative to the build directory when it lies inside it, the
// service or step part appears when the problem belongs to one (steps only when named),
// and the problem is a lower-case message quoting the user's words, for example
//
//	codeship-services.yml:3: service "app": unknown key "imgae"
//	codeship-steps.yml:7: step "test": name already used at line 2
package config
