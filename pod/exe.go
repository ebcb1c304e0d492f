package pod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/secrets"
)

// Exe is crun-ci's own executable as containers run it (the secrets' hand-off, the init):
// mounted read-only at secrets.HandoffExe. A statically linked one (CGO_ENABLED=0, as
// scripts/setup.sh and the package build it) runs as it is. A dynamically linked one
// (what `go install` gives where a C compiler is) would not run in an image without the
// host's C library, so its ELF interpreter and libraries come along, below
// /.crun-ci/lib, and the interpreter runs it: `/.crun-ci/lib/ld.so --library-path
// /.crun-ci/lib /.crun-ci/crun-ci …`.
type Exe struct {
	// Path is the executable on the host.
	Path string
	// Interp is its ELF interpreter on the host, "" for a static one; Libs its
	// libraries by name (libc.so.6), as the interpreter finds them on the host.
	Interp string
	Libs   map[string]string
}

// Where a dynamically linked Exe's files go in a container.
const (
	exeLibDir = "/.crun-ci/lib"
	exeLoader = exeLibDir + "/ld.so"
)

// FindExe returns crun-ci's own executable, with what it needs to run in a container.
//
// When crun-ci runs in a mount namespace other than the host's (the crun-ci image, run
// with the host's PID namespace as deploy/kubernetes does), its files' paths are not
// the host's, and runc, on the host, would not find them: they are given through
// /proc/PID/root, which the host sees as crun-ci's root while crun-ci runs.
func FindExe() (*Exe, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find crun-ci's executable for secret variables and init: %w", err)
	}
	e, err := exeAt(p)
	if err != nil {
		return nil, err
	}
	if root := ownRoot(); root != "" {
		e.Path = root + e.Path
		if e.Interp != "" {
			e.Interp = root + e.Interp
			for name, lib := range e.Libs {
				e.Libs[name] = root + lib
			}
		}
	}
	return e, nil
}

// ContainerizedEnv, set to 1 (as the crun-ci image sets it), says crun-ci runs in a
// container of its own, in the host's PID namespace: its files reach runc through
// /proc/PID/root. Without it, that is so when crun-ci's mount namespace is not PID 1's
// (where /proc/1 can be read).
const ContainerizedEnv = "CRUNCI_CONTAINERIZED"

// ownRoot is /proc/PID/root of crun-ci's process when it runs in a mount namespace of
// its own (see ContainerizedEnv), else "".
func ownRoot() string {
	root := fmt.Sprintf("/proc/%d/root", os.Getpid())
	if os.Getenv(ContainerizedEnv) == "1" {
		return root
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return ""
	}
	init, err := os.Readlink("/proc/1/ns/mnt")
	if err != nil || init == own {
		return ""
	}
	return root
}

// exeAt is FindExe of the executable at p.
func exeAt(p string) (*Exe, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read crun-ci's executable %s: %w", p, err)
	}
	defer f.Close()
	e := &Exe{Path: p}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return nil, fmt.Errorf("read the ELF interpreter of %s: %w", p, err)
		}
		e.Interp = string(bytes.TrimRight(b, "\x00"))
	}
	if e.Interp == "" {
		return e, nil
	}
	// The interpreter lists what it would load, as ldd does.
	out, err := exec.Command(e.Interp, "--list", p).Output()
	if err != nil {
		return nil, fmt.Errorf("secret variables and init run crun-ci inside the container, and %s is dynamically linked: listing its libraries with %s failed (%v); build it statically: CGO_ENABLED=0 go install github.com/crun-ci/crun-ci/cmd/crun-ci@latest", p, e.Interp, err)
	}
	if e.Libs, err = parseLibList(out); err != nil {
		return nil, fmt.Errorf("libraries of %s: %w", p, err)
	}
	return e, nil
}

// parseLibList reads the interpreter's --list output: `libc.so.6 => /lib/…/libc.so.6
// (0x…)` per library; the vDSO and the interpreter's own line have no "=>".
func parseLibList(out []byte) (map[string]string, error) {
	libs := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), " => ")
		if !ok {
			continue
		}
		file, _, _ := strings.Cut(rest, " (")
		if file == "not found" || !path.IsAbs(file) || strings.Contains(name, "/") || name == "" {
			return nil, fmt.Errorf("%s: not found", name)
		}
		libs[name] = file
	}
	return libs, nil
}

// Mounts are the executable's mounts: itself and, when dynamically linked, its
// interpreter and libraries, all read-only.
func (e *Exe) Mounts() []specs.Mount {
	ms := []specs.Mount{mounts.Bind(e.Path, secrets.HandoffExe, true)}
	if e.Interp == "" {
		return ms
	}
	ms = append(ms, mounts.Bind(e.Interp, exeLoader, true))
	names := make([]string, 0, len(e.Libs))
	for name := range e.Libs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ms = append(ms, mounts.Bind(e.Libs[name], exeLibDir+"/"+name, true))
	}
	return ms
}

// Command is the arguments that run crun-ci inside the container with args (a helper
// mode and its arguments).
func (e *Exe) Command(args ...string) []string {
	if e.Interp == "" {
		return append([]string{secrets.HandoffExe}, args...)
	}
	return append([]string{exeLoader, "--library-path", exeLibDir, secrets.HandoffExe}, args...)
}
