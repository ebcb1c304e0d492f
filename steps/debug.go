package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/builds"
	"github.com/crun-ci/crun-ci/mounts"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/pod"
	"github.com/crun-ci/crun-ci/secrets"
	"github.com/crun-ci/crun-ci/snapshot"
	"github.com/crun-ci/crun-ci/task"
)

// DebugOptions describe a debug container: a new container of a kept step's service,
// on the filesystem its container left, with its volumes and environment.
type DebugOptions struct {
	StateDir string
	Kept     *builds.Kept
	Step     *builds.KeptStep
	// Command runs in the container; nil runs /bin/sh.
	Command []string
	// Env entries (KEY=VAL) are added to the kept container's environment. Its secret
	// variables are not there: they were never written down.
	Env []string
	// Network gives the container a network of its own, as a step's container gets;
	// nil (or Host mode) runs it in the host's.
	Network *network.Manager
	// Attach connects it (a terminal with TTY).
	Attach Attach
}

// DefaultDebugCommand is what a debug container runs when no command is given.
var DefaultDebugCommand = []string{"/bin/sh"}

// Debug runs a debug container on a kept step and returns its command's exit code. The
// kept build is locked meanwhile (no clean-up removes it, no second debug works in it).
// The container starts from the kept container's runtime spec, with the command, the
// terminal, a network and hosts file of its own, and no secret hand-off; the host paths
// it mounts are checked again, as a step's are (a step may have swapped a directory of
// the build directory for a symlink since). It is removed when the command ends; the
// kept snapshot and volumes stay, with what the command changed in them.
func Debug(ctx context.Context, c *task.Client, o DebugOptions) (_ uint32, retErr error) {
	k, s := o.Kept, o.Step
	lock, err := builds.Claim(o.StateDir, k.Build)
	if err != nil {
		return 0, err
	}
	defer func() { retErr = errors.Join(retErr, lock.Close()) }()
	cc := c.Containerd()
	ctr, err := cc.LoadContainer(ctx, s.Container)
	if errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("step %q of build %s: its container %s is gone", s.Name, k.Build, s.Container)
	}
	if err != nil {
		return 0, fmt.Errorf("step %q of build %s: %w", s.Name, k.Build, err)
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("step %q of build %s: %w", s.Name, k.Build, err)
	}
	kept, err := ctr.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("step %q of build %s: the spec of %s: %w", s.Name, k.Build, s.Container, err)
	}
	// A task left by --no-remove has exited; it goes, so that one container at a time
	// mounts the snapshot.
	if t, err := ctr.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("step %q of build %s: its container %s still runs: %w", s.Name, k.Build, s.Container, err)
		}
	}

	buildDir := builds.Dir(o.StateDir, k.Build)
	suffix := make([]byte, 3)
	rand.Read(suffix)
	id := s.Container + "-debug-" + hex.EncodeToString(suffix)
	spec, err := debugSpec(kept, s.Container, id, o)
	if err != nil {
		return 0, err
	}
	// Its own network, with the service's names for its address: a pod of its own, of
	// which it is not a member (its spec is the kept one, not a pod's Member).
	var sb *network.Sandbox
	if ns := netNamespace(spec); ns != nil && ns.Path != "" {
		if o.Network == nil || o.Network.Mode() == network.Host {
			return 0, fmt.Errorf("step %q of build %s ran with a network of its own: give its mode (--network %s)", s.Name, k.Build, k.Network)
		}
		netnsDir := filepath.Join(buildDir, "netns")
		p, err := pod.New(ctx, pod.Containerd(c), pod.Options{
			ID: id, Dir: filepath.Join(buildDir, "debug", id), NetNSDir: netnsDir, Network: o.Network,
			Hosts: map[string][]string{s.Service: {s.Service, spec.Hostname}},
		})
		if err != nil {
			return 0, err
		}
		defer func() {
			retErr = errors.Join(retErr, p.Close(ctx), o.Network.Release(netnsDir))
		}()
		var hosts, resolv string
		if sb, hosts, resolv, err = p.Join(ctx, id, s.Service); err != nil {
			return 0, err
		}
		ns.Path = sb.Path
		for i, m := range spec.Mounts {
			switch m.Destination {
			case "/etc/hosts":
				spec.Mounts[i].Source = hosts
			case "/etc/resolv.conf":
				spec.Mounts[i].Source = resolv
			}
		}
	}
	// The host paths it mounts, opened again refusing symlinks, and compared with what
	// the container sees before its process starts.
	guard := mounts.Guard{BuildDir: k.Project, Allow: append(append([]string(nil), k.Allow...), buildDir)}
	pinned := map[string]*os.File{}
	defer func() {
		for _, f := range pinned {
			f.Close()
		}
	}()
	for _, m := range spec.Mounts {
		if m.Type != "bind" || !guard.Covers(m.Source) {
			continue // crun-ci's own, or an operator's (--docker-host)
		}
		if _, ok := pinned[m.Source]; ok {
			continue
		}
		f, err := guard.Open(m.Source)
		if err != nil {
			return 0, fmt.Errorf("step %q of build %s: %w", s.Name, k.Build, err)
		}
		pinned[m.Source] = f
	}

	labels := map[string]string{}
	for key, v := range info.Labels {
		labels[key] = v
	}
	dc, err := c.Create(ctx, task.Options{
		ID: id, Existing: true, Snapshot: info.SnapshotKey, Spec: spec, Labels: labels,
		FIFODir: filepath.Join(buildDir, "fifo"), Stdin: o.Attach.Stdin, Terminal: o.Attach.TTY,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		cctx, cancel := snapshot.CleanupContext(ctx)
		defer cancel()
		retErr = errors.Join(retErr, dc.Delete(cctx))
	}()
	before := func(pid uint32) error {
		if err := sb.Wait(ctx); err != nil {
			return err
		}
		return verifyMounts(pid, spec.Mounts, pinned)
	}
	stderr := o.Attach.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	log.G(ctx).Debugf("debug container %s on the snapshot %s", id, info.SnapshotKey)
	if err := dc.Start(ctx, o.Attach.Stdout, stderr, before); err != nil {
		return 0, pod.CommandError(err, s.Image, spec.Process.Env)
	}
	if o.Attach.TTY && o.Attach.Resize != nil {
		o.Attach.Resize(func(w, h uint32) error { return dc.Resize(ctx, w, h) })
	}
	code, err := dc.Wait(ctx)
	if err != nil && ctx.Err() != nil {
		kctx := context.WithoutCancel(ctx)
		dc.Kill(kctx, syscall.SIGKILL)
		dc.Wait(kctx)
		return 0, ctx.Err()
	}
	return code, err
}

// debugSpec is the spec of debug container id, made from the kept container's: its
// command and terminal, the added variables, its own cgroup, and neither the secrets'
// hand-off nor crun-ci's init, whose files are gone.
func debugSpec(kept *specs.Spec, keptID, id string, o DebugOptions) (*specs.Spec, error) {
	var spec specs.Spec
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("container %s: its spec has no process", keptID)
	}
	spec.Process.Args = o.Command
	if len(spec.Process.Args) == 0 {
		spec.Process.Args = DefaultDebugCommand
	}
	spec.Process.Terminal = o.Attach.TTY
	spec.Process.Env = oci.MergeEnv(spec.Process.Env, o.Env)
	ms := spec.Mounts[:0:0]
	for _, m := range spec.Mounts {
		if strings.HasPrefix(m.Destination, filepath.Dir(secrets.HandoffExe)+"/") {
			continue
		}
		ms = append(ms, m)
	}
	spec.Mounts = ms
	if spec.Linux != nil {
		if p, ok := strings.CutSuffix(spec.Linux.CgroupsPath, keptID); ok {
			spec.Linux.CgroupsPath = p + id
		}
	}
	return &spec, nil
}

// netNamespace is the spec's network namespace entry, nil when it has none.
func netNamespace(spec *specs.Spec) *specs.LinuxNamespace {
	if spec.Linux == nil {
		return nil
	}
	for i := range spec.Linux.Namespaces {
		if spec.Linux.Namespaces[i].Type == specs.NetworkNamespace {
			return &spec.Linux.Namespaces[i]
		}
	}
	return nil
}
