package builds

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Shim is a runc shim process (containerd-shim-runc-v2) of one of a build's containers.
// A shim outlives a crun-ci that was killed while it created a task, and containerd may
// then no longer know the task: clean-up finds shims by their command line.
type Shim struct {
	PID       int
	ID        string // the container id
	Namespace string
}

// runcRoot is where the runc shim keeps runc's state, per namespace.
const runcRoot = "/run/containerd/runc"

// ListShims lists the runc shims that serve the containerd at address in namespace, by the
// build id in their container id (crunci-<build>-…).
func ListShims(namespace, address string) (map[string][]Shim, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[string][]Shim{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		flags := map[string]string{}
		for i := 1; i+1 < len(args); i++ {
			if strings.HasPrefix(args[i], "-") {
				flags[strings.TrimLeft(args[i], "-")] = args[i+1]
			}
		}
		if flags["namespace"] != namespace || flags["address"] != address {
			continue
		}
		id := flags["id"]
		parsed, ok := ParseID(id)
		if !ok {
			continue
		}
		out[parsed.Build] = append(out[parsed.Build], Shim{PID: pid, ID: id, Namespace: namespace})
	}
	return out, nil
}

// stop ends a shim that containerd no longer speaks for: runc removes the container (its
// processes, cgroup and state), then the shim and anything it still has are killed.
func (s Shim) stop(ctx context.Context) error {
	if !s.alive() {
		return nil
	}
	cmd := exec.CommandContext(ctx, "runc", "--root", filepath.Join(runcRoot, s.Namespace), "delete", "--force", s.ID)
	cmd.Run() // a container runc does not know is fine: the shim may have had none yet
	for _, child := range children(s.PID) {
		syscall.Kill(child, syscall.SIGKILL)
	}
	if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for i := 0; i < 200 && s.alive(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// alive reports whether the process is still this shim (not gone, not a zombie, not a
// recycled pid).
func (s Shim) alive() bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.PID), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(s.ID)) {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.PID), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}
