package config

import (
	"fmt"
	"syscall"
	"time"
)

// Pos is where a value was written: the file as the user named it (relative to the build
// directory when it lies inside it) and the 1-based line and column.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String formats the position as "file:line", the form every error starts with.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Project is a loaded pipeline: the services and the steps of one build directory.
type Project struct {
	// Dir is the build directory, absolute and clean: the directory holding the services
	// file. Host volumes and build contexts are relative to it.
	Dir string
	// ServicesFile and StepsFile are the absolute paths of the files that were read.
	ServicesFile string
	StepsFile    string
	// Services by name. Order is the order of the file.
	Services map[string]*Service
	Order    []string
	// Steps is the top level of the steps file, run serially.
	Steps []*Step
	// Graph is how the services refer to each other.
	Graph *Graph
	// Ignored lists the keys of the services file that Compose knows but crun-ci ignores
	// on purpose (see doc.go), in file order, then those of the steps file (a
	// dockercfg_service beside an encrypted_dockercfg_path), so the caller can say so.
	Ignored []Ignored
}

// Rel is how messages name a file of the project: relative to the build directory when
// it is inside it, else as it is.
func (p *Project) Rel(file string) string { return displayName(p.Dir, file, file) }

// Need says which of the services named is not in the services file, if one is not.
func (p *Project) Need(services ...string) error {
	for _, name := range services {
		if _, ok := p.Services[name]; !ok {
			return fmt.Errorf("no service %q in %s", name, p.Rel(p.ServicesFile))
		}
	}
	return nil
}

// StepCount counts the run and push steps of the steps file (with those of on_fail).
func (p *Project) StepCount() int {
	n := 0
	WalkSteps(p.Steps, func(s *Step) {
		if s.Type == Run || s.Type == Push {
			n++
		}
	})
	return n
}

// Ignored is one key of the services or steps file that was read and deliberately
// ignored. Service is empty for a top-level key (`volumes`, `networks` next to
// `services:`) and in the steps file; Step is the name of a step of the steps file, when
// one is written.
type Ignored struct {
	Pos     Pos
	Service string
	Step    string
	Key     string
}

// Service is one entry of the services file, with the keys crun-ci implements.
type Service struct {
	Name string
	Pos  Pos
	// Image is the image reference as written (not normalised).
	Image string
	// Command and Entrypoint override the image's CMD and ENTRYPOINT. nil means not set;
	// a string in the file is split with shell-style quoting (never run through a shell).
	Command    []string
	Entrypoint []string
	// Environment in file order; a later entry with the same key wins.
	Environment []EnvVar
	Volumes     []Volume
	VolumesFrom []VolumeFrom
	WorkingDir  string
	User        string
	// Hostname inside the service's containers; the service name when empty.
	Hostname string
	// Healthcheck is the Compose `healthcheck:` key; nil when absent (the image's
	// HEALTHCHECK, if any, applies).
	Healthcheck *Healthcheck
	// EnvFiles and EncryptedEnvFiles are KEY=value files, relative to the build directory;
	// EncryptedEnvironment holds encrypted KEY=value texts. Precedence: Environment, then
	// EnvFiles, then EncryptedEnvFiles and EncryptedEnvironment; later wins.
	// EncryptedDockercfgPath is an encrypted Docker config file (relative to the build
	// directory) with the credentials to pull the service's image; Text is "" when unset.
	EncryptedDockercfgPath Value
	EnvFiles               []Value
	EncryptedEnvFiles      []Value
	EncryptedEnvironment   []Value
	// DependsOn and Links name other services; they are checked to exist and to have no
	// cycles. Starting them is a later feature.
	DependsOn []Ref
	Links     []Link
	// Build says how to build the service's image; nil when the service has an `image`.
	Build *Build
	// Cached and DefaultCacheBranch are Codeship's `cached` and `default_cache_branch`:
	// keep the built image between builds, and the branch whose image to start from
	// ("" when unset).
	Cached             bool
	DefaultCacheBranch string
	// DockercfgService names another service whose container writes a Docker config with
	// the credentials to pull this service's image; Text is "" when unset. It is checked
	// to exist and to be another service.
	DockercfgService Value
	// Resource and privilege keys as written (nil or empty when unset). The steps package
	// checks them against what the operator allows; oci applies them.
	MemLimit     *Bytes // mem_limit
	MemswapLimit *Bytes // memswap_limit: memory plus swap; N == -1 is unlimited swap
	ShmSize      *Bytes // shm_size: the size of /dev/shm
	PidsLimit    *Int   // pids_limit; N == -1 is unlimited (0 in the file means that too)
	CPUs         *Float // cpus
	CPUShares    *Int   // cpu_shares
	Ulimits      []Ulimit
	Privileged   *Bool
	CapAdd       []Value // capability names, upper case, without "CAP_"; "ALL" possible
	// Init runs a tiny init (crun-ci's own) as PID 1 of its containers, which passes
	// signals on to the command and reaps orphans (init: true).
	Init bool
	// ReadOnly mounts its containers' root file system read-only (read_only).
	ReadOnly bool
	// AddDocker passes the Docker daemon the operator names (--docker-host) into its
	// containers (add_docker: true).
	AddDocker bool
	// Tmpfs are tmpfs mounts of its containers.
	Tmpfs []Tmpfs
	// Sysctls are set in its containers' namespaces.
	Sysctls map[string]string
	// ExtraHosts are added to the hosts file of its steps (extra_hosts).
	ExtraHosts []Host
	// DNS and DNSSearch replace the nameservers and search domains of its containers'
	// resolv.conf.
	DNS, DNSSearch []string
	// Labels go on its containers (containerd's container labels).
	Labels map[string]string
	// Expose lists the ports its containers listen on, "PORT/PROTO" (expose), for the
	// link variables of the services that link to or depend on it.
	Expose      []Value
	CapDrop     []Value
	Devices     []Device
	SecurityOpt []SecurityOpt
	// StopSignal stops the service's containers (0: the image's STOPSIGNAL, else
	// SIGTERM); StopGracePeriod is how long a dependency gets after it before SIGKILL
	// when its step is over (0 when unset).
	StopSignal      syscall.Signal
	StopGracePeriod time.Duration
}

// Bytes is a size in bytes (mem_limit, memswap_limit, shm_size), written as a number or
// with one of Docker's units (512m, 1g); Pos is where the value is written.
type Bytes struct {
	N   int64
	Pos Pos
}

// Int is a whole number of a key (pids_limit, cpu_shares); Pos is where it is written.
type Int struct {
	N   int64
	Pos Pos
}

// Float is a number of a key (cpus); Pos is where it is written.
type Float struct {
	F   float64
	Pos Pos
}

// Bool is a true or false of a key (privileged); Pos is where it is written.
type Bool struct {
	V   bool
	Pos Pos
}

// Ulimit is one entry of `ulimits`: a resource name as Docker names it (nofile, nproc, …)
// and its limits; -1 is unlimited. Pos is where the entry is written.
type Ulimit struct {
	Name       string
	Soft, Hard int64
	Pos        Pos
}

// Device is one entry of `devices`: "HOST[:CONTAINER[:PERMISSIONS]]". Container defaults
// to Host, Permissions to "rwm". Pos is where the entry is written.
type Device struct {
	Host, Container, Permissions string
	Pos                          Pos
}

// SecurityOpt is one entry of `security_opt`: "seccomp=unconfined" is {Key: "seccomp",
// Value: "unconfined"}; Docker's older "key:value" form is read the same way;
// "no-new-privileges" alone is {Key: "no-new-privileges", Value: "true"}. Pos is where
// the entry is written.
type SecurityOpt struct {
	Key, Value string
	Pos        Pos
}

// Build is a service's `build:` key: how to build its image from a Dockerfile.
type Build struct {
	// Pos is where the value of `build:` starts.
	Pos Pos
	// Context is the build context as written, relative to the build directory ("." when absent).
	Context string
	// Dockerfile is the Dockerfile's path as written, relative to the context ("Dockerfile" when absent).
	Dockerfile string
	// Image is the name of the built image as written; "" means crun-ci makes one up.
	Image string
	// Args are the build arguments in file order (map or "KEY=value" list form); values may be Go templates of the build values. Value nil means `KEY` without value (taken from crun-ci's environment, like Compose).
	Args []EnvVar
	// EncryptedArgsFile: KEY=value files encrypted with codeship.aes; EncryptedArgs: encrypted KEY=value texts.
	EncryptedArgsFile []Value
	EncryptedArgs     []Value
}

// EnvVar is one environment entry. Value is nil for `KEY` (list form) or `KEY:` / `KEY: null`
// (map form): Compose then takes the value from the runner's own environment.
type EnvVar struct {
	Key   string
	Value *string
	Pos   Pos
}

// Volume is one entry of a service's `volumes` list, kept as written; the mounts package
// parses and resolves it.
type Volume struct {
	Spec string
	Pos  Pos
}

// Value is one string of a key that takes a string or a list, with where it was written.
type Value struct {
	Text string
	Pos  Pos
}

// VolumeFrom is one `volumes_from` entry: `service` or `service:ro` / `service:rw`.
type VolumeFrom struct {
	Service  string
	ReadOnly bool
	Pos      Pos
}

// Ref names another service from a list entry. Condition is the depends_on long form's
// condition: "service_started", "service_healthy", "service_completed_successfully", or ""
// for the short form (healthy if the service has a health check, else started).
type Ref struct {
	Service   string
	Condition string
	Pos       Pos
}

// Healthcheck is a service's health check, as Compose writes it.
type Healthcheck struct {
	// Test is the command: ["CMD", args…], ["CMD-SHELL", "command"], or ["NONE"]; a
	// string in the file is ["CMD-SHELL", string].
	Test []string
	// Zero durations and retries mean the default.
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
	// Disable turns off the image's HEALTHCHECK too.
	Disable bool
	Pos     Pos
}

// Link is one `links` entry: `service` or `service:alias`.
type Link struct {
	Service string
	Alias   string
	Pos     Pos
}

// StepType says what a step is.
type StepType int

const (
	// Run runs a command in a service: a leaf of the step tree.
	Run StepType = iota
	// Serial runs its children in order and stops at the first failure.
	Serial
	// Parallel runs all its children and fails if any failed.
	Parallel
	// Push pushes a service's image. Skipped with a notice until pushing exists.
	Push
)

func (t StepType) String() string {
	switch t {
	case Run:
		return "run"
	case Serial:
		return "serial"
	case Parallel:
		return "parallel"
	case Push:
		return "push"
	}
	return fmt.Sprintf("StepType(%d)", int(t))
}

// Step is a node of the step tree.
type Step struct {
	// Name is unique in the whole steps file (on_fail steps included). Generated when
	// absent (see doc.go for the rule); NameGiven says whether the user wrote it.
	Name      string
	NameGiven bool
	Pos       Pos
	Type      StepType
	// Service is the service of a run or push step, inherited from the nearest group
	// with `service:` when the step has none. A group holds its own or inherited `service:`
	// in the same way ("" when none): the default of its steps (unless it has `services:`)
	// and of its on_fail steps.
	Service string
	// Command of a run step, split with shell-style quoting; nil means the service's own
	// command. CommandText is the text as written.
	Command     []string
	CommandText string
	// Tag and Exclude as written ("" when absent). Patterns are matched by the steps
	// package; the loader only checks that regex forms compile.
	Tag     string
	Exclude string
	// Steps are the children of a serial or parallel group.
	Steps []*Step
	// OnFail steps run when this step fails; they inherit this step's service.
	OnFail []*Step
	// Timeout bounds how long the step (a group: all of it) may run; 0 means no bound.
	Timeout time.Duration
	// Push step fields. DockercfgService names the service whose container writes the
	// registry credentials; EncryptedDockercfgPath is an encrypted Docker config file
	// (relative to the build directory). Text is "" when unset.
	ImageName              string
	ImageTag               string
	Registry               string
	DockercfgService       Value
	EncryptedDockercfgPath Value
}
