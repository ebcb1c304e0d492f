package oci

import (
	"context"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cap"
	ctroci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DockerCaps are Docker's default capabilities (containerd's too): what a service may
// add back without widening its container beyond Docker's defaults.
var DockerCaps = append(slices.Clone(DefaultCaps), "NET_RAW")

// DefaultCaps are the capabilities a container has unless its service changes them:
// Docker's default set without NET_RAW, which would let a step forge packets on its
// step network (ping works without it: the containers may open ICMP sockets). A service
// that needs it adds it with cap_add.
var DefaultCaps = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}

// Security is how far a container is confined. Its zero value is Docker's default
// confinement: Docker's default capabilities, masked and read-only paths of /proc and
// /sys, no device but the standard ones, the default seccomp profile (containerd's,
// which is Docker's), and no new privileges through setuid programs (containerd's
// default; Docker's is to allow them).
type Security struct {
	// Privileged gives every capability and host device, no seccomp filter and no
	// masked paths, as `docker run --privileged` does.
	Privileged bool
	// CapAdd and CapDrop change the capabilities as Docker's cap_add and cap_drop do:
	// names without "CAP_", or "ALL".
	CapAdd, CapDrop []string
	// Devices are host devices made in the container and allowed in its cgroup.
	Devices []Device
	// Seccomp, when not nil, replaces the default profile; SeccompUnconfined runs
	// without one.
	Seccomp           *specs.LinuxSeccomp
	SeccompUnconfined bool
	// NewPrivileges lets setuid programs gain privileges (no-new-privileges:false).
	NewPrivileges bool
	// SystemPaths neither masks nor makes read-only the paths of /proc and /sys that
	// the default spec does (systempaths=unconfined, as Docker's).
	SystemPaths bool
}

// Device is a host device given to a container.
type Device struct {
	// Host is the device's path on the host, Container in the container; Permissions
	// a combination of r, w and m.
	Host, Container, Permissions string
}

// Resources bound a container; a zero field sets no bound.
type Resources struct {
	// Memory is the memory limit in bytes. MemorySwap bounds memory and swap together:
	// 0 is twice Memory (Docker's default), -1 is no bound on swap.
	Memory, MemorySwap int64
	// Pids bounds the number of processes and threads.
	Pids int64
	// CPUs is how many CPUs' worth of time the container gets (a CFS quota);
	// CPUShares its weight against other containers.
	CPUs      float64
	CPUShares uint64
	// ShmSize is the size of /dev/shm in bytes (containerd's default: 64 MiB).
	ShmSize int64
	// Rlimits are set on the process, replacing the defaults of the same type.
	Rlimits []specs.POSIXRlimit
}

// cfsPeriod is the CFS period the CPUs quota is a share of, as Docker's --cpus.
const cfsPeriod = 100000

// Caps returns the capabilities that CapAdd and CapDrop give, in Docker's way: with
// "ALL" added, every capability but those dropped; with "ALL" dropped, only those
// added; otherwise the default set without those dropped, with those added. Names are
// without "CAP_".
func (s Security) Caps() []string {
	var out []string
	switch {
	case slices.Contains(s.CapAdd, "ALL"):
		for _, c := range cap.Known() {
			if c := strings.TrimPrefix(c, "CAP_"); !slices.Contains(s.CapDrop, c) {
				out = append(out, c)
			}
		}
	case slices.Contains(s.CapDrop, "ALL"):
		for _, c := range s.CapAdd {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	default:
		for _, c := range DefaultCaps {
			if !slices.Contains(s.CapDrop, c) {
				out = append(out, c)
			}
		}
		for _, c := range s.CapAdd {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// opts are the spec options of the confinement. The seccomp profile comes last: the
// default one allows the system calls that the capabilities given need.
func (s Security) opts() []ctroci.SpecOpts {
	if s.Privileged {
		return []ctroci.SpecOpts{ctroci.WithPrivileged, ctroci.WithAllDevicesAllowed, ctroci.WithHostDevices, ctroci.WithNewPrivileges}
	}
	var caps []string
	for _, c := range s.Caps() {
		caps = append(caps, "CAP_"+c)
	}
	opts := []ctroci.SpecOpts{ctroci.WithCapabilities(caps)}
	for _, d := range s.Devices {
		opts = append(opts, ctroci.WithDevices(d.Host, d.Container, d.Permissions))
	}
	if s.NewPrivileges {
		opts = append(opts, ctroci.WithNewPrivileges)
	}
	if s.SystemPaths {
		opts = append(opts, ctroci.WithMaskedPaths(nil), ctroci.WithReadonlyPaths(nil))
	}
	switch {
	case s.SeccompUnconfined:
		opts = append(opts, ctroci.WithSeccompUnconfined)
	case s.Seccomp != nil:
		opts = append(opts, withSeccomp(s.Seccomp))
	default:
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts
}

func withSeccomp(p *specs.LinuxSeccomp) ctroci.SpecOpts {
	return func(_ context.Context, _ ctroci.Client, _ *containers.Container, s *ctroci.Spec) error {
		cp := *p
		s.Linux.Seccomp = &cp
		return nil
	}
}

// opts are the spec options of the bounds.
func (r Resources) opts() []ctroci.SpecOpts {
	var opts []ctroci.SpecOpts
	if r.Memory > 0 {
		opts = append(opts, ctroci.WithMemoryLimit(uint64(r.Memory)))
		swap := r.MemorySwap
		if swap == 0 {
			swap = 2 * r.Memory
		}
		opts = append(opts, ctroci.WithMemorySwap(swap))
	}
	if r.Pids > 0 {
		opts = append(opts, ctroci.WithPidsLimit(r.Pids))
	}
	if r.CPUs > 0 {
		opts = append(opts, ctroci.WithCPUCFS(int64(r.CPUs*cfsPeriod), cfsPeriod))
	}
	if r.CPUShares > 0 {
		opts = append(opts, ctroci.WithCPUShares(r.CPUShares))
	}
	if r.ShmSize > 0 {
		kb := (r.ShmSize + 1023) / 1024
		opts = append(opts, ctroci.WithDevShmSize(kb))
	}
	for _, l := range r.Rlimits {
		opts = append(opts, ctroci.WithRlimit(&l))
	}
	return opts
}

// RlimitType is the runtime spec's name of a ulimit as Docker names it: "nofile" is
// RLIMIT_NOFILE.
func RlimitType(name string) string { return "RLIMIT_" + strings.ToUpper(name) }

// Unlimited is what a limit of -1 (Docker's "unlimited") is in an rlimit.
const Unlimited = ^uint64(0)
