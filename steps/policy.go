package steps

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"

	"github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/config"
	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/oci"
)

// DefaultPidsLimit is the pids limit of every container unless the operator sets another
// (Podman's default): enough for any build, too few for a fork bomb to matter.
const DefaultPidsLimit = 2048

// Policy is what the operator lets pipelines reach and ask for, beyond Docker's defaults.
// The zero Policy grants nothing; its bounds then take their defaults.
type Policy struct {
	// Allow holds the absolute host path prefixes that volumes may mount besides the
	// build directory.
	Allow []string
	// MaxFile bounds each file of the build directory crun-ci reads (Dockerfiles,
	// .dockerignore, env and encrypted files, seccomp profiles); 0 means hostfs.MaxFile.
	MaxFile int64
	// Privileged lets services widen their containers beyond Docker's defaults:
	// `privileged`, `cap_add` beyond Docker's default capabilities, `devices`,
	// `security_opt: [systempaths=unconfined]` (--allow-privileged).
	Privileged bool
	// Unconfined lets services replace or turn off the seccomp profile:
	// `security_opt: [seccomp=unconfined]` or a profile file (--allow-unconfined).
	Unconfined bool
	// PidsLimit is every container's pids limit and the most a service may ask for: 0
	// means DefaultPidsLimit, -1 no limit (--pids-limit).
	PidsLimit int64
	// MemoryLimit, in bytes, is the memory limit of every container whose service sets
	// none, and the most a service may ask for; 0 means none (--memory-limit).
	MemoryLimit int64
}

func (p Policy) pids() int64 {
	switch {
	case p.PidsLimit == 0:
		return DefaultPidsLimit
	case p.PidsLimit < 0:
		return 0
	}
	return p.PidsLimit
}

func (p Policy) maxFile() int64 {
	if p.MaxFile > 0 {
		return p.MaxFile
	}
	return hostfs.MaxFile
}

// Defaults are the bounds of the containers no service describes: the RUN containers of
// image builds.
func (p Policy) Defaults() oci.Resources {
	return oci.Resources{Pids: p.pids(), Memory: p.MemoryLimit}
}

// byOperator is what a refusal says the operator can do.
const (
	needPrivileged = "refused unless the operator runs crun-ci with --allow-privileged"
	needUnconfined = "refused unless the operator runs crun-ci with --allow-unconfined"
)

// confine returns the confinement and bounds of svc's containers: what its keys ask for,
// within the policy. A profile file of `security_opt: [seccomp=FILE]` is read below the
// build directory root. Errors name the key. What it ignores, Warnings says.
func (p Policy) confine(root *hostfs.Dir, svc *config.Service) (sec oci.Security, res oci.Resources, errs []error) {
	fail := func(pos config.Pos, format string, args ...any) {
		errs = append(errs, &config.Error{Pos: pos, Service: svc.Name, Err: fmt.Errorf(format, args...)})
	}

	res.Pids = p.pids()
	if l := svc.PidsLimit; l != nil {
		switch {
		case l.N < 0 && res.Pids > 0:
			fail(l.Pos, "key \"pids_limit\": -1 (no limit) is above the operator's bound of %d (--pids-limit)", res.Pids)
		case res.Pids > 0 && l.N > res.Pids:
			fail(l.Pos, "key \"pids_limit\": %d is above the operator's bound of %d (--pids-limit)", l.N, res.Pids)
		case l.N < 0:
			res.Pids = 0
		default:
			res.Pids = l.N
		}
	}
	res.Memory = p.MemoryLimit
	if m := svc.MemLimit; m != nil {
		if p.MemoryLimit > 0 && m.N > p.MemoryLimit {
			fail(m.Pos, "key \"mem_limit\": %s is above the operator's bound of %s (--memory-limit)", units.BytesSize(float64(m.N)), units.BytesSize(float64(p.MemoryLimit)))
		}
		res.Memory = m.N
	}
	if m := svc.MemswapLimit; m != nil {
		res.MemorySwap = m.N
	}
	if c := svc.CPUs; c != nil {
		if n := runtime.NumCPU(); c.F > float64(n) {
			fail(c.Pos, "key \"cpus\": %s is more than the %d CPUs of this host", strconv.FormatFloat(c.F, 'f', -1, 64), n)
		}
		res.CPUs = c.F
	}
	if c := svc.CPUShares; c != nil {
		res.CPUShares = uint64(c.N)
	}
	if s := svc.ShmSize; s != nil {
		res.ShmSize = s.N
	}
	for _, u := range svc.Ulimits {
		res.Rlimits = append(res.Rlimits, specs.POSIXRlimit{Type: oci.RlimitType(u.Name), Soft: rlimit(u.Soft), Hard: rlimit(u.Hard)})
	}

	if v := svc.Privileged; v != nil && v.V {
		if !p.Privileged {
			fail(v.Pos, "key \"privileged\": a privileged container can reach the host; %s", needPrivileged)
		}
		sec.Privileged = true
	}
	for _, c := range svc.CapDrop {
		sec.CapDrop = append(sec.CapDrop, c.Text)
	}
	for _, c := range svc.CapAdd {
		if !p.Privileged && !slices.Contains(oci.DockerCaps, c.Text) {
			fail(c.Pos, "key \"cap_add\": %s is beyond Docker's default capabilities; %s", c.Text, needPrivileged)
		}
		sec.CapAdd = append(sec.CapAdd, c.Text)
	}
	for _, d := range svc.Devices {
		if !p.Privileged {
			fail(d.Pos, "key \"devices\": %s: a host device is %s", d.Host, needPrivileged)
		}
		sec.Devices = append(sec.Devices, oci.Device{Host: d.Host, Container: d.Container, Permissions: d.Permissions})
	}
	for _, o := range svc.SecurityOpt {
		entry := o.Key + "=" + o.Value
		switch o.Key {
		case "seccomp":
			if !p.Unconfined {
				fail(o.Pos, "key \"security_opt\": %q is %s", entry, needUnconfined)
				continue
			}
			if o.Value == "unconfined" {
				sec.SeccompUnconfined = true
				continue
			}
			profile, err := seccompProfile(root, o.Value, p.maxFile())
			if err != nil {
				fail(o.Pos, "key \"security_opt\": %q: %w", entry, err)
				continue
			}
			sec.Seccomp = profile
		case "no-new-privileges":
			sec.NewPrivileges = o.Value == "false"
		case "systempaths":
			if !p.Privileged {
				fail(o.Pos, "key \"security_opt\": %q unmasks /proc and /sys; %s", entry, needPrivileged)
			}
			sec.SystemPaths = true
		case "apparmor", "label": // see Warnings
		default:
			fail(o.Pos, "key \"security_opt\": %q is not supported", entry) // config refuses it first
		}
	}
	return sec, res, errs
}

// rlimit is a ulimit value as the runtime spec holds it: -1 is unlimited.
func rlimit(n int64) uint64 {
	if n < 0 {
		return oci.Unlimited
	}
	return uint64(n)
}

// seccompProfile reads a seccomp profile (the runtime spec's JSON) below the build
// directory.
func seccompProfile(root *hostfs.Dir, name string, max int64) (*specs.LinuxSeccomp, error) {
	data, err := root.ReadFile(root.Rel(name), max)
	if err != nil {
		return nil, err
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: not a seccomp profile: %w", name, err)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("%s: not a seccomp profile: no defaultAction", name)
	}
	return &p, nil
}

// Warnings lists what crun-ci reads in the pipeline but does not act on, each naming
// file, line and service: the Compose keys it ignores by design (config.Project.Ignored)
// and security_opt entries with no meaning here. Nothing a pipeline asks for is ignored
// without a word.
func Warnings(p *config.Project) []error {
	var out []error
	for _, ig := range p.Ignored {
		why := config.IgnoredReason(ig.Key)
		var err error
		switch {
		case why != "":
			err = fmt.Errorf("key %q ignored: %s", ig.Key, why)
		case ig.Service == "":
			err = fmt.Errorf("top-level key %q ignored", ig.Key)
		default:
			err = fmt.Errorf("key %q ignored", ig.Key)
		}
		out = append(out, &config.Error{Pos: ig.Pos, Service: ig.Service, Step: ig.Step, Err: err})
	}
	for _, name := range p.Order {
		for _, o := range p.Services[name].SecurityOpt {
			why := map[string]string{"apparmor": "crun-ci applies no AppArmor profile", "label": "crun-ci applies no SELinux label"}[o.Key]
			if why != "" {
				out = append(out, &config.Error{Pos: o.Pos, Service: name, Err: fmt.Errorf("key \"security_opt\": %q ignored: %s", o.Key+"="+o.Value, why)})
			}
		}
	}
	return out
}
