package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// DefaultAddress is where a system containerd listens.
const DefaultAddress = "/run/containerd/containerd.sock"

// Daemon is a connection to containerd, and the embedded containerd if crun-ci started or
// joined one.
type Daemon struct {
	Client *client.Client
	// Address is the socket the client is connected to.
	Address string
	// Embedded is true when the connection is to crun-ci's own containerd.
	Embedded bool
	// Namespace is the client's default containerd namespace.
	Namespace string

	dir   string   // <state>/containerd, when embedded
	users *os.File // shared lock held while this process uses the embedded containerd
}

// startTimeout bounds how long an embedded containerd may take to answer.
const startTimeout = 10 * time.Second

// Connect returns a client for the containerd at address. If nothing answers there, it
// connects to the embedded containerd under stateDir, starting it when it is not running.
// The namespace is the client's default.
func Connect(ctx context.Context, address, stateDir, namespace string) (*Daemon, error) {
	if c, err := dial(ctx, address, namespace); err == nil {
		return &Daemon{Client: c, Address: address, Namespace: namespace}, nil
	} else {
		log.G(ctx).WithError(err).Debugf("no containerd answers at %s; using the embedded one", address)
	}
	return embedded(ctx, stateDir, namespace)
}

// dial connects and proves the connection with a real RPC.
func dial(ctx context.Context, address, namespace string) (*client.Client, error) {
	if _, err := os.Stat(address); err != nil {
		return nil, err
	}
	c, err := client.New(address, client.WithDefaultNamespace(namespace), client.WithTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Version(pctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func embedded(ctx context.Context, stateDir, namespace string) (_ *Daemon, retErr error) {
	dir := filepath.Join(stateDir, "containerd")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	start, err := lock(filepath.Join(dir, "start.lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	defer start.Close()
	users, err := lock(filepath.Join(dir, "users.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	defer func() {
		if retErr != nil {
			users.Close()
		}
	}()
	address := filepath.Join(dir, "containerd.sock")
	if c, err := dial(ctx, address, namespace); err == nil {
		return &Daemon{Client: c, Address: address, Embedded: true, Namespace: namespace, dir: dir, users: users}, nil
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, errors.New("start embedded containerd: no containerd answers and none is installed (apt-get install containerd runc)")
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(configTOML(dir)), 0o600); err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: a terminal's Ctrl-C must reach crun-ci, which then cleans up through
	// this containerd, and not containerd itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, "containerd.pid"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("start embedded containerd: %w", err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if c, err := dial(ctx, address, namespace); err == nil {
			log.G(ctx).Debugf("embedded containerd (pid %d) answers at %s", pid, address)
			return &Daemon{Client: c, Address: address, Embedded: true, Namespace: namespace, dir: dir, users: users}, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("start embedded containerd: it exited (%v); see %s", err, filepath.Join(dir, "containerd.log"))
		case <-ctx.Done():
			stopPID(pid)
			return nil, fmt.Errorf("start embedded containerd: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stopPID(pid)
			return nil, fmt.Errorf("start embedded containerd: no answer at %s after %s; see %s", address, startTimeout, filepath.Join(dir, "containerd.log"))
		}
	}
}

// configTOML is the embedded containerd's configuration: everything under dir, and only
// the plugins crun-ci uses (no CRI, which would slow start-up and set up networking).
func configTOML(dir string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"), filepath.Join(dir, "containerd.sock.ttrpc"))
}

// Close closes the client. If this process was the last user of the embedded containerd,
// it stops it.
func (d *Daemon) Close() error {
	err := d.Client.Close()
	if !d.Embedded {
		return err
	}
	start, lerr := lock(filepath.Join(d.dir, "start.lock"), unix.LOCK_EX)
	if lerr != nil {
		d.users.Close()
		return errors.Join(err, lerr)
	}
	defer start.Close()
	// Upgrading our shared lock succeeds only when no other process holds one.
	if unix.Flock(int(d.users.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		if b, rerr := os.ReadFile(filepath.Join(d.dir, "containerd.pid")); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				stopPID(pid)
			}
			os.Remove(filepath.Join(d.dir, "containerd.pid"))
		}
	}
	d.users.Close()
	return err
}

// stopPID sends SIGTERM and waits up to 10 s for the process to go, then SIGKILLs it.
func stopPID(pid int) {
	if pid <= 1 || !isContainerd(pid) {
		return
	}
	_ = unix.Kill(pid, unix.SIGTERM)
	for i := 0; i < 1000; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = unix.Kill(pid, unix.SIGKILL)
}

// isContainerd guards against a stale pid file naming a recycled pid.
func isContainerd(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "containerd"
}

// alive reports whether pid still runs (a zombie child counts as gone).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the ")" that ends the command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func lock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
