package builds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/crun-ci/crun-ci/snapshot"
)

// Labels on every containerd object of a build.
const (
	LabelBuild   = "crun-ci.build"
	LabelState   = "crun-ci.state"
	LabelStep    = "crun-ci.step"
	LabelService = "crun-ci.service"
)

// Dir returns the working directory of build id.
func Dir(stateDir, id string) string { return filepath.Join(stateDir, "builds", id) }

func lockPath(stateDir, id string) string { return filepath.Join(stateDir, "locks", id) }

// Lock is the owner's hold on a build.
type Lock struct {
	f    *os.File
	path string
}

// Acquire takes the lock of a new build. It fails if the build id is taken.
func Acquire(stateDir, id string) (*Lock, error) {
	p := lockPath(stateDir, id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	// The file is locked before it gets its name, so no clean-up can ever see it unlocked
	// while this build lives.
	f, err := os.CreateTemp(filepath.Dir(p), ".new-")
	if err != nil {
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	defer os.Remove(f.Name())
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid()) // for people; never trusted
	if err := os.Link(f.Name(), p); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	return &Lock{f: f, path: p}, nil
}

// Release deletes the lock file and drops the lock. Call it after everything of the
// build is removed; a build whose clean-up failed should keep its lock file, and just
// Close, so that a later clean-up finds it.
func (l *Lock) Release() error {
	err := os.Remove(l.path)
	return errors.Join(err, l.f.Close())
}

// Close drops the lock and keeps the lock file.
func (l *Lock) Close() error { return l.f.Close() }

// owned reports whether a live process holds the lock of build id.
func owned(stateDir, id string) (bool, error) {
	f, err := os.OpenFile(lockPath(stateDir, id), os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

// Orphan is what a build whose owner is gone left behind.
type Orphan struct {
	ID         string
	Containers []string
	Tasks      []string
	Snapshots  []string
	Leases     []string
	// Dir is the build's working directory, "" when gone.
	Dir string
	// Lock is the lock file, "" when gone.
	Lock string
	// Shims are runc shims of its containers that still run.
	Shims []Shim
	// Kept is the record of a build kept on purpose (for crun-ci debug), nil for one
	// that was not.
	Kept *Kept
}

// Empty reports whether nothing of the build is left.
func (o Orphan) Empty() bool {
	return o.Count() == 0
}

// Count is the number of containerd objects and files left.
func (o Orphan) Count() int {
	n := len(o.Containers) + len(o.Tasks) + len(o.Snapshots) + len(o.Leases) + len(o.Shims)
	if o.Dir != "" {
		n++
	}
	if o.Lock != "" {
		n++
	}
	return n
}

func (o Orphan) String() string {
	var parts []string
	add := func(what string, items []string) {
		if len(items) > 0 {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", len(items), what, strings.Join(items, ", ")))
		}
	}
	add("containers", o.Containers)
	add("tasks", o.Tasks)
	add("snapshots", o.Snapshots)
	add("leases", o.Leases)
	var shimIDs []string
	for _, sh := range o.Shims {
		shimIDs = append(shimIDs, sh.ID)
	}
	add("shims", shimIDs)
	if o.Dir != "" {
		parts = append(parts, "directory "+o.Dir)
	}
	if o.Lock != "" {
		parts = append(parts, "lock "+o.Lock)
	}
	return fmt.Sprintf("build %s: %s", o.ID, strings.Join(parts, ", "))
}

// Find lists the builds of stateDir whose owner is gone and of which something remains,
// in containerd (the client's default namespace) or on disk.
//
// address and namespace name the containerd the client speaks to, whose runc shims are
// looked for too. quick (the clean-up each command does first) lists containerd's
// objects only when a lock file or directory of a dead build is there.
func Find(ctx context.Context, c *client.Client, stateDir, address, namespace string, quick bool) ([]Orphan, error) {
	found := map[string]*Orphan{}
	get := func(id string) *Orphan {
		if found[id] == nil {
			found[id] = &Orphan{ID: id}
		}
		return found[id]
	}
	for _, sub := range []string{"builds", "locks"} {
		entries, err := os.ReadDir(filepath.Join(stateDir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			o := get(e.Name())
			if sub == "builds" {
				o.Dir = filepath.Join(stateDir, sub, e.Name())
				k, err := ReadKept(o.Dir)
				if err != nil {
					// Not kept, then: a record that cannot be read keeps nothing.
					log.G(ctx).WithError(err).Warnf("build %s counts as not kept", o.ID)
				}
				o.Kept = k
			} else {
				o.Lock = filepath.Join(stateDir, sub, e.Name())
			}
		}
	}
	// Every build holds its lock file from before it makes anything in containerd until
	// after it has removed everything (and a clean-up keeps it while anything is left):
	// when every build of the state directory is alive, none left anything, and a quick
	// look need not ask containerd.
	dead := !quick
	for id := range found {
		live, err := owned(stateDir, id)
		if err != nil {
			return nil, fmt.Errorf("check owner of build %s: %w", id, err)
		}
		if !live {
			dead = true
			break
		}
	}
	if dead {
		if err := findObjects(ctx, c, stateDir, get); err != nil {
			return nil, err
		}
	}
	running, err := ListShims(namespace, address)
	if err != nil {
		return nil, fmt.Errorf("list shims: %w", err)
	}
	for id, list := range running {
		// A shim's build is crun-ci's when its state directory knows it (directory or
		// lock file) or its containerd objects carry this state directory's label.
		if o := found[id]; o != nil {
			o.Shims = list
		} else if _, err := os.Stat(lockPath(stateDir, id)); err == nil {
			get(id).Shims = list
		} else if address != "" && strings.HasPrefix(address, stateDir+string(filepath.Separator)) {
			// The embedded containerd of this state directory serves only its builds.
			get(id).Shims = list
		}
	}
	var out []Orphan
	for id, o := range found {
		if id == "" {
			continue
		}
		live, err := owned(stateDir, id)
		if err != nil {
			return nil, fmt.Errorf("check owner of build %s: %w", id, err)
		}
		if !live {
			out = append(out, *o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// findObjects adds to the builds of get the containerd objects labelled with stateDir:
// containers (and their tasks), snapshots and leases.
func findObjects(ctx context.Context, c *client.Client, stateDir string, get func(id string) *Orphan) error {
	filter := fmt.Sprintf("labels.%q==%q", LabelState, stateDir)
	ctrs, err := c.Containers(ctx, filter)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return err
		}
		o := get(labels[LabelBuild])
		o.Containers = append(o.Containers, ctr.ID())
		if _, err := ctr.Task(ctx, nil); err == nil {
			o.Tasks = append(o.Tasks, ctr.ID())
		}
	}
	err = snapshot.Walk(ctx, c, func(info snapshots.Info) error {
		o := get(info.Labels[LabelBuild])
		o.Snapshots = append(o.Snapshots, info.Name)
		return nil
	}, filter)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	ls, err := c.LeasesService().List(ctx, filter)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range ls {
		o := get(l.Labels[LabelBuild])
		o.Leases = append(o.Leases, l.ID)
	}
	return nil
}

// Remove removes everything of an orphan: it kills and deletes its tasks, deletes its
// containers, snapshots and leases, removes its working directory (unless something is
// still mounted below it) and finally its lock file. It takes the build's lock first, so
// that two clean-ups never work on one build and a build that came back to life is left
// alone.
//
// removeNetworks, when not nil, undoes the step networks left in the build's directory
// (network.Manager.RemoveOrphans) after the containers are gone and before the directory
// is removed; when it fails, the directory stays for a later clean-up.
func Remove(ctx context.Context, c *client.Client, stateDir string, o Orphan, removeNetworks func(ctx context.Context, dir string) error) error {
	lock, err := takeOver(stateDir, o.ID)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range o.Containers {
		errs = append(errs, deleteContainer(ctx, c, id))
	}
	for _, key := range o.Snapshots {
		errs = append(errs, snapshot.Remove(ctx, c, key))
	}
	for _, id := range o.Leases {
		if err := c.LeasesService().Delete(ctx, leases.Lease{ID: id}, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", id, err))
		}
	}
	// Shims that containerd no longer speaks for (their task was never registered, or is
	// gone) are stopped by hand.
	for _, sh := range o.Shims {
		if err := sh.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop shim of %s: %w", sh.ID, err))
		}
	}
	dir := Dir(stateDir, o.ID)
	if removeNetworks != nil && errors.Join(errs...) == nil {
		if err := removeNetworks(ctx, dir); err != nil {
			lock.Close()
			return fmt.Errorf("clean up build %s: %w", o.ID, err)
		}
	}
	// The owner is gone: what it left mounted below its directory (an image view it was
	// reading) has no user any more.
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unmount below %s: %w", dir, err))
	}
	if err := RemoveDir(dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		lock.Close()
		return fmt.Errorf("clean up build %s: %w", o.ID, err)
	}
	return lock.Release()
}

// Claim takes the lock of a build whose owner is gone (a kept build, which crun-ci debug
// works in): no clean-up touches it while the lock is held. Close the lock to drop it and
// keep the lock file.
func Claim(stateDir, id string) (*Lock, error) { return takeOver(stateDir, id) }

// takeOver takes the lock of a build whose owner is gone, making the lock file if it was
// already removed.
func takeOver(stateDir, id string) (*Lock, error) {
	p := lockPath(stateDir, id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("build %s is in use by another process", id)
		}
		return nil, fmt.Errorf("lock build %s: %w", id, err)
	}
	return &Lock{f: f, path: p}, nil
}

// deleteContainer kills the container's task if it has one, deletes it, and deletes the
// container with its snapshot.
func deleteContainer(ctx context.Context, c *client.Client, id string) error {
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("load container %s: %w", id, err)
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		if err := t.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("kill task %s: %w", id, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if exit, err := t.Wait(wctx); err == nil {
			select {
			case <-exit:
			case <-wctx.Done():
			}
		}
		cancel()
		if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("load task %s: %w", id, err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// RemoveDir removes a build's working directory, unless something is still mounted at or
// below it: removing through a mount would delete what it shows.
func RemoveDir(dir string) error {
	m, err := MountedBelow(dir)
	if err != nil {
		return err
	}
	if m != "" {
		return fmt.Errorf("keep %s: %s is still mounted", dir, m)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// MountedBelow returns a mount point at or below dir, or "" when there is none.
func MountedBelow(dir string) (string, error) {
	below := mountinfo.PrefixFilter(dir)
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		skip, _ = below(m)
		return skip, !skip // the first one is enough
	})
	if err != nil {
		return "", err
	}
	if len(infos) == 0 {
		return "", nil
	}
	return infos[0].Mountpoint, nil
}
