package oci

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctroci "github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/hostfs"
)

// Container is what the spec of one service container is made from.
type Container struct {
	// ID is the containerd container id; Namespace its containerd namespace. Both name the
	// container's cgroup.
	ID        string
	Namespace string
	// Hostname inside the container, usually the service name.
	Hostname string
	Image    ocispec.ImageConfig
	// Args is the process, from Args.
	Args []string
	// Env entries added after the image's, in order.
	Env        []string
	WorkingDir string
	User       specs.User
	Mounts     []specs.Mount
	// Labels become annotations, so runc's state names the build.
	Annotations map[string]string
	// NetNS is the path of the network namespace the container joins (its step's); ""
	// means the host's.
	NetNS string
	// HostsFile is the host file mounted read-only at /etc/hosts (its step's, naming the
	// step's services); "" means the host's /etc/hosts.
	HostsFile string
	// Terminal gives the process a terminal (crun-ci run on a terminal).
	Terminal bool
	// ResolvConf is the host file mounted read-only at /etc/resolv.conf; "" means the
	// host's /etc/resolv.conf.
	ResolvConf string
	// ReadOnly mounts the root file system read-only; Sysctls are set in the
	// container's namespaces.
	ReadOnly bool
	Sysctls  map[string]string
	// Security confines the container (the zero value: as Docker does by default);
	// Resources bound it.
	Security  Security
	Resources Resources
}

// Args returns the process arguments from the image config and the overrides: entrypoint
// and command are nil when not set.
func Args(img ocispec.ImageConfig, entrypoint, command []string) ([]string, error) {
	ep, cmd := img.Entrypoint, img.Cmd
	if entrypoint != nil {
		ep, cmd = entrypoint, nil
	}
	if command != nil {
		cmd = command
	}
	args := append(append([]string{}, ep...), cmd...)
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("no command: neither the image nor the service or step gives one")
	}
	return args, nil
}

// Spec returns the runtime spec of c.
func Spec(ctx context.Context, c Container) (*specs.Spec, error) {
	if c.ID == "" || c.Namespace == "" {
		return nil, errors.New("spec: container id and namespace are required")
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = c.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !strings.HasPrefix(cwd, "/") {
		return nil, fmt.Errorf("working directory %q is not absolute", cwd)
	}
	env := c.Image.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	opts := []ctroci.SpecOpts{
		ctroci.WithDefaultSpec(),
		ctroci.WithProcessArgs(c.Args...),
		// One merged list: containerd's WithEnv replaces a key of the spec's environment
		// but appends a key twice when the added entries repeat it.
		ctroci.WithEnv(MergeEnv(env, c.Env)),
		ctroci.WithProcessCwd(cwd),
		withUser(c.User),
		withNetwork(c.NetNS),
		withFile("/etc/resolv.conf", c.ResolvConf, ctroci.WithHostResolvconf),
		withFile("/etc/hosts", c.HostsFile, ctroci.WithHostHostsFile),
		ctroci.WithMounts(c.Mounts),
	}
	if c.Hostname != "" {
		opts = append(opts, ctroci.WithHostname(c.Hostname))
	}
	if c.Terminal {
		opts = append(opts, ctroci.WithTTY)
	}
	if len(c.Annotations) > 0 {
		opts = append(opts, ctroci.WithAnnotations(c.Annotations))
	}
	if c.ReadOnly {
		opts = append(opts, ctroci.WithRootFSReadonly())
	}
	if len(c.Sysctls) > 0 {
		opts = append(opts, withSysctls(c.Sysctls))
	}
	opts = append(opts, c.Resources.opts()...)
	opts = append(opts, c.Security.opts()...) // last: the seccomp profile follows the capabilities
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	return ctroci.GenerateSpec(ctx, nil, &containers.Container{ID: c.ID}, opts...)
}

// MergeEnv returns the entries of the lists in order, a later KEY=VALUE replacing an earlier
// one with the same key in its place, and an entry without "=" unsetting its key, as
// containerd's WithEnv does.
func MergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, list := range lists {
		for _, e := range list {
			k, _, ok := strings.Cut(e, "=")
			i, seen := at[k]
			switch {
			case !ok:
				if seen {
					out[i] = "" // no kept entry is empty: each has "="
					delete(at, k)
				}
			case seen:
				out[i] = e
			default:
				at[k] = len(out)
				out = append(out, e)
			}
		}
	}
	return slices.DeleteFunc(out, func(e string) bool { return e == "" })
}

func withNetwork(path string) ctroci.SpecOpts {
	if path == "" {
		return ctroci.WithHostNamespace(specs.NetworkNamespace)
	}
	return ctroci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

// withFile mounts the host file path read-only at dest, or applies host (the host's own
// file) when path is "".
func withFile(dest, path string, host ctroci.SpecOpts) ctroci.SpecOpts {
	if path == "" {
		return host
	}
	return ctroci.WithMounts([]specs.Mount{{Type: "bind", Source: path, Destination: dest, Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}})
}

func withUser(u specs.User) ctroci.SpecOpts {
	return func(_ context.Context, _ ctroci.Client, _ *containers.Container, s *ctroci.Spec) error {
		s.Process.User = u
		return nil
	}
}

// NeedsLookup reports whether resolving user needs the image's /etc/passwd and /etc/group:
// it names a user or group by name, or it is a bare uid, whose primary group passwd gives.
func NeedsLookup(user string) bool {
	if user == "" {
		return false
	}
	u, g, _ := strings.Cut(user, ":")
	_, uerr := strconv.ParseUint(u, 10, 32)
	if uerr != nil {
		return true
	}
	if g != "" {
		_, gerr := strconv.ParseUint(g, 10, 32)
		return gerr != nil
	}
	// A numeric uid alone: its primary group comes from passwd when the image has an
	// entry for it; root's group is assumed otherwise.
	return true
}

// Accounts reads the /etc/passwd and /etc/group of the image filesystem mounted at root,
// which User resolves names with: nil for one that is not there, or is not a regular
// file of at most hostfs.MaxFile. Symlinks resolve inside root.
func Accounts(root string) (passwd, group []byte) {
	d, err := hostfs.Open(root, hostfs.InRoot, "the image")
	if err != nil {
		return nil, nil
	}
	defer d.Close()
	passwd, _ = d.ReadFile("/etc/passwd", hostfs.MaxFile)
	group, _ = d.ReadFile("/etc/group", hostfs.MaxFile)
	return passwd, group
}

// User resolves "user", "user:group", "uid" or "uid:gid" against the contents of an image's
// /etc/passwd and /etc/group (either may be nil). An empty user is root.
func User(user string, passwd, group []byte) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	name, grp, hasGroup := strings.Cut(user, ":")
	if name == "" || (hasGroup && grp == "") {
		return specs.User{}, fmt.Errorf("user %q: empty user or group", user)
	}
	var out specs.User
	pwent, err := lookup(passwd, name, 2, 3)
	if err != nil {
		return specs.User{}, fmt.Errorf("user %q: %w", user, err)
	}
	switch {
	case pwent != nil:
		uid, _ := strconv.ParseUint(pwent[2], 10, 32)
		gid, _ := strconv.ParseUint(pwent[3], 10, 32)
		out.UID, out.GID = uint32(uid), uint32(gid)
	default:
		uid, perr := strconv.ParseUint(name, 10, 32)
		if perr != nil {
			return specs.User{}, fmt.Errorf("user %q: no such user in the image's /etc/passwd", user)
		}
		// A uid that passwd does not list gets the root group, as in Docker and
		// containerd's WithUserID.
		out.UID, out.GID = uint32(uid), 0
	}
	if hasGroup {
		grent, err := lookup(group, grp, 2)
		if err != nil {
			return specs.User{}, fmt.Errorf("user %q: %w", user, err)
		}
		if grent != nil {
			gid, _ := strconv.ParseUint(grent[2], 10, 32)
			out.GID = uint32(gid)
		} else {
			gid, perr := strconv.ParseUint(grp, 10, 32)
			if perr != nil {
				return specs.User{}, fmt.Errorf("user %q: no such group in the image's /etc/group", user)
			}
			out.GID = uint32(gid)
		}
	}
	return out, nil
}

// lookup finds the entry of a passwd (numeric fields 2 and 3) or group (numeric field 2)
// file whose name is key, or else whose id (field 2) is key. It returns nil when none
// matches; malformed lines are skipped.
//
// It is not github.com/moby/sys/user: ParsePasswdFilter and ParseGroupFilter read an id
// that is not a number, or missing, as 0, so "app:x:1OOO:1OOO:..." would make app root
// where here it is no user at all, and they keep passwd lines that start with "#".
// GetExecUser refuses ids above 2^31-1, and reads a numeric name only as an id.
func lookup(file []byte, key string, numeric ...int) ([]string, error) {
	sc := bufio.NewScanner(bytes.NewReader(file))
	var byID []string
lines:
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		for _, i := range numeric {
			if i >= len(f) {
				continue lines
			}
			if _, err := strconv.ParseUint(f[i], 10, 32); err != nil {
				continue lines
			}
		}
		if f[0] == key {
			return f, nil
		}
		if f[2] == key && byID == nil {
			byID = f
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return byID, nil
}

func withSysctls(sysctls map[string]string) ctroci.SpecOpts {
	return func(_ context.Context, _ ctroci.Client, _ *containers.Container, s *ctroci.Spec) error {
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		maps.Copy(s.Linux.Sysctl, sysctls)
		return nil
	}
}
