package mounts

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Volume is a parsed volume spec.
type Volume struct {
	// Source is the host path as written; "" for an anonymous volume.
	Source string
	// Target is the clean absolute path inside the container.
	Target   string
	ReadOnly bool
	// NoCopy keeps a new anonymous volume empty.
	NoCopy bool
}

// Anonymous reports whether v is an anonymous volume.
func (v Volume) Anonymous() bool { return v.Source == "" }

// Parse parses one volume spec: "TARGET", "SOURCE:TARGET" or "SOURCE:TARGET:OPTIONS" with
// comma-separated options. The container path must be absolute, without "..", and not
// the root or at or under /proc, /sys or /dev.
func Parse(spec string) (Volume, error) {
	if strings.TrimSpace(spec) == "" {
		return Volume{}, errors.New("empty volume")
	}
	parts := strings.Split(spec, ":")
	var v Volume
	var opts string
	// hasSource and hasOpts say which parts the spec has, so that an empty one is an
	// error rather than a missing one (":/x:ro" is not the anonymous volume "/x:ro").
	var hasSource, hasOpts bool
	switch len(parts) {
	case 1:
		v.Target = parts[0]
	case 2:
		if strings.HasPrefix(parts[0], "/") && !isPath(parts[1]) {
			// "/path:ro" is an anonymous volume with options; "./tmp:x" is a host volume
			// with a relative target, not the anonymous volume "./tmp".
			v.Target, opts, hasOpts = parts[0], parts[1], true
		} else {
			v.Source, v.Target, hasSource = parts[0], parts[1], true
		}
	case 3:
		v.Source, v.Target, opts = parts[0], parts[1], parts[2]
		hasSource, hasOpts = true, true
	default:
		return Volume{}, errors.New("too many colons")
	}
	if hasSource && v.Source == "" {
		return Volume{}, errors.New("empty host path")
	}
	if hasOpts && opts == "" {
		return Volume{}, errors.New("empty options after the last colon")
	}
	if v.Source != "" {
		switch {
		case strings.HasPrefix(v.Source, "~"):
			return Volume{}, fmt.Errorf("host path %q: home directories are not supported; use a path relative to the build directory", v.Source)
		case !isPath(v.Source):
			return Volume{}, fmt.Errorf("named volume %q is not supported; use a host path relative to the build directory, like ./%s", v.Source, v.Source)
		}
	}
	if !strings.HasPrefix(v.Target, "/") {
		return Volume{}, fmt.Errorf("container path %q is not absolute", v.Target)
	}
	for _, elem := range strings.Split(v.Target, "/") {
		if elem == ".." {
			return Volume{}, fmt.Errorf("container path %q contains \"..\"", v.Target)
		}
	}
	v.Target = path.Clean(v.Target)
	if v.Target == "/" {
		return Volume{}, errors.New("container path \"/\" cannot be a volume")
	}
	// The runtime mounts procfs, sysfs and the device nodes itself: a volume there could
	// hide or replace what keeps the container in its box.
	for _, tree := range []string{"/proc", "/sys", "/dev"} {
		switch {
		case v.Target == tree:
			return Volume{}, fmt.Errorf("container path %q is %s, which the runtime owns", v.Target, tree)
		case strings.HasPrefix(v.Target, tree+"/"):
			return Volume{}, fmt.Errorf("container path %q is under %s, which the runtime owns", v.Target, tree)
		}
	}
	if hasOpts {
		mode := ""
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "ro", "rw":
				if mode != "" {
					return Volume{}, fmt.Errorf("options %q: both %q and %q", opts, mode, o)
				}
				mode = o
				v.ReadOnly = o == "ro"
			case "nocopy":
				if !v.Anonymous() {
					return Volume{}, errors.New("option \"nocopy\" applies to anonymous volumes only")
				}
				v.NoCopy = true
			case "z", "Z", "cached", "delegated", "consistent":
			default:
				return Volume{}, fmt.Errorf("unknown option %q", o)
			}
		}
	}
	return v, nil
}

// isPath reports whether s is written as a path: absolute, or starting with "." (".",
// "./x", "../x"). Anything else names a Docker volume or is an option list.
func isPath(s string) bool {
	return strings.HasPrefix(s, "/") || s == "." || s == ".." || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../")
}

// Guard resolves host paths and refuses those outside the build directory and the grants.
type Guard struct {
	// BuildDir is the absolute build directory.
	BuildDir string
	// Allow holds the granted absolute prefixes.
	Allow []string
}

// HostPath resolves a host volume's source: relative to the build directory, with symlinks
// and ".." resolved. The result must exist and lie inside the build directory or a grant.
func (g Guard) HostPath(source string) (string, error) {
	p := source
	if !filepath.IsAbs(p) {
		p = filepath.Join(g.BuildDir, p)
	}
	p = filepath.Clean(p)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("host path %s does not exist (create it, e.g. with a .gitkeep in the repository)", p)
		}
		return "", fmt.Errorf("host path %s: %w", p, err)
	}
	roots, err := g.roots()
	if err != nil {
		return "", err
	}
	for _, root := range roots {
		if within(real, root) {
			return real, nil
		}
	}
	if filepath.IsAbs(source) {
		return "", fmt.Errorf("host path %s is absolute and no --allow-host-path grants it", real)
	}
	return "", fmt.Errorf("host path %s resolves to %s, outside the build directory %s", p, real, g.BuildDir)
}

// roots are the build directory and the grants, with their own symlinks resolved so that a
// grant of /tmp covers /tmp even when /tmp is a link.
func (g Guard) roots() ([]string, error) {
	var roots []string
	for _, r := range append([]string{g.BuildDir}, g.Allow...) {
		real, err := filepath.EvalSymlinks(r)
		if err != nil {
			if r == g.BuildDir {
				return nil, fmt.Errorf("build directory %s: %w", r, err)
			}
			continue // a grant that does not exist grants nothing
		}
		roots = append(roots, real)
	}
	return roots, nil
}

// within reports whether p is root or lies below it. Both are clean absolute paths.
func within(p, root string) bool {
	if root == "/" {
		return true
	}
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// Bind returns the OCI mount of a host directory (or file) at target. It is nosuid and
// nodev: a setuid program or a device node that a step leaves in a volume grants nothing
// through it, in this container or the next.
func Bind(source, target string, readOnly bool) specs.Mount {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	return specs.Mount{Type: "bind", Source: source, Destination: target, Options: []string{"rbind", "rprivate", "nosuid", "nodev", mode}}
}
