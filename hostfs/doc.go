// Package hostfs reads the host's files that a pipeline may have written — the build
// directory's services and steps files, Dockerfiles, .dockerignore, build contexts, env
// and encrypted files, the key file, what a credential service wrote, the filesystems of
// images built from a pipeline — as the untrusted input they are.
//
// Words:
//   - A Dir is a directory pinned by an open handle (O_PATH). Renaming or replacing the
//     directory's name afterwards does not change what the Dir reads.
//   - Every path is resolved below a Dir with openat2(2), never by a path string: in a
//     Dir opened with Beneath, a symlink that leads out of it (absolute, or with ".."
//     past its top) is an error; in a Dir opened with InRoot, symlinks resolve as if the
//     Dir were "/" (a build context, an image's filesystem), so no path leaves it.
//     Magic links (/proc/self/fd/…) are never followed.
//   - A file is read only if it is a regular file: the type is checked on an O_PATH
//     handle before the file is opened, so a FIFO, a device node or a socket is never
//     opened at all (nothing blocks, no driver runs), and the file is then opened
//     non-blocking through that very handle. ReadFile bounds what it reads.
//
// Errors are *Error values that name the file as the caller did and say why in a
// pipeline author's words: "Dockerfile.evil is a symlink leaving the build directory",
// ".dockerignore is a named pipe, not a regular file". This needs Linux 5.6 or newer
// (openat2) and /proc.
package hostfs
