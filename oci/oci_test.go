package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite golden files")

// hostMasked matches the masked paths containerd's default spec adds only when the host
// has them (/sys/devices/system/cpu/cpuN/thermal_throttle, one per possible CPU, on
// machines with Intel thermal throttling). They are the one host-dependent part of the
// spec, so normalise drops them before a comparison with a golden file.
var hostMasked = regexp.MustCompile(`^/sys/devices/system/cpu/cpu[0-9]+/thermal_throttle$`)

// defaultProfile stands for containerd's default seccomp profile in golden files: its
// hundreds of lines are containerd's, and TestSpecProperties checks that it is there.
const defaultProfile = "containerd's default profile for these capabilities (see TestSpecProperties)"

func normalise(s *specs.Spec) {
	if s.Linux == nil {
		return
	}
	s.Linux.MaskedPaths = slices.DeleteFunc(s.Linux.MaskedPaths, hostMasked.MatchString)
	if s.Linux.Seccomp != nil && reflect.DeepEqual(s.Linux.Seccomp, seccomp.DefaultProfile(s)) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: defaultProfile}
	}
}

func TestSpec(t *testing.T) {
	img := ocispec.ImageConfig{
		User:       "nobody",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C", "HOME=/root"},
		Entrypoint: []string{"/docker-entrypoint.sh"},
		Cmd:        []string{"serve"},
		WorkingDir: "/srv",
	}
	overrideArgs, err := Args(img, []string{"/bin/sh", "-c"}, []string{"make test"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Container
	}{
		{
			// The defaults: root in /, the fallback PATH, no hostname, no mounts of ours.
			name: "minimal",
			c: Container{
				ID:        "b1-step-app",
				Namespace: "crun-ci",
				Args:      []string{"sh"},
			},
		},
		{
			// The image's environment and working directory, nothing on top. The image's
			// user is not resolved here: the caller passes User's result (root here).
			name: "image-defaults",
			c: Container{
				ID:        "b1-step-app",
				Namespace: "crun-ci",
				Image:     img,
				Args:      []string{"/docker-entrypoint.sh", "serve"},
			},
		},
		{
			// Every override: args from a service entrypoint and a step command, added
			// environment where later keys replace earlier ones in place (LANG from the
			// image, A twice), the service's working directory and user, a read-only and
			// a writable bind after the default mounts, a hostname and annotations.
			name: "overrides",
			c: Container{
				ID:         "b1-test-app",
				Namespace:  "crun-ci",
				Hostname:   "app",
				Image:      img,
				Args:       overrideArgs,
				Env:        []string{"CI=true", "A=1", "LANG=C.UTF-8", "B=2", "A=3", "CI_BRANCH=main"},
				WorkingDir: "/src",
				User:       specs.User{UID: 1000, GID: 1000},
				Mounts: []specs.Mount{
					{Type: "bind", Source: "/work/build", Destination: "/src", Options: []string{"rbind", "rprivate", "ro"}},
					{Type: "bind", Source: "/var/lib/crun-ci/b1/volumes/app/1", Destination: "/artifacts", Options: []string{"rbind", "rprivate", "rw"}},
				},
				Annotations: map[string]string{"crun-ci.build": "b1", "crun-ci.step": "test", "crun-ci.service": "app"},
			},
		},
		{
			// A service's bounds and capabilities: memory with Docker's default swap
			// (twice the memory), pids, a CPU quota and weight, /dev/shm's size, a
			// ulimit, one default capability dropped and one added, which the seccomp
			// profile follows.
			name: "bounded",
			c: Container{
				ID:        "b1-test-app",
				Namespace: "crun-ci",
				Args:      []string{"sh"},
				Resources: Resources{
					Memory: 64 << 20, Pids: 100, CPUs: 1.5, CPUShares: 512, ShmSize: 128 << 20,
					Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 8192}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}},
				},
				Security: Security{CapDrop: []string{"NET_RAW"}, CapAdd: []string{"SYS_PTRACE"}},
			},
		},
		{
			// What only the operator allows: no seccomp filter, setuid programs gain
			// privileges, no masked or read-only paths.
			name: "unconfined",
			c: Container{
				ID:        "b1-test-app",
				Namespace: "crun-ci",
				Args:      []string{"sh"},
				Security:  Security{SeccompUnconfined: true, NewPrivileges: true, SystemPaths: true},
			},
		},
		{
			// A container of a step network: it joins the step's network namespace and
			// mounts the step's hosts file read-only at /etc/hosts.
			name: "step-network",
			c: Container{
				ID:         "b1-test-db",
				Namespace:  "crun-ci",
				Hostname:   "db",
				Args:       []string{"sh"},
				NetNS:      "/var/lib/crun-ci/builds/b1/netns/1",
				HostsFile:  "/var/lib/crun-ci/builds/b1/volumes/1/.etc/hosts",
				ResolvConf: "/var/lib/crun-ci/builds/b1/volumes/1/.etc/resolv.conf",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := specJSON(t, tt.c)
			if again := specJSON(t, tt.c); !bytes.Equal(got, again) {
				t.Fatalf("Spec is not deterministic (-first +second):\n%s", cmp.Diff(string(got), string(again)))
			}
			golden := filepath.Join("testdata", tt.name, "config.json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./oci -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// specJSON is the normalised spec of c as a golden file holds it: 2-space indent and a
// trailing newline.
func specJSON(t *testing.T, c Container) []byte {
	t.Helper()
	s, err := Spec(context.Background(), c)
	if err != nil {
		t.Fatalf("Spec: %v", err)
	}
	normalise(s)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestSpecProperties checks what the golden files must show, so that an -update that
// breaks one of them fails even when nobody reads the diff.
func TestSpecProperties(t *testing.T) {
	host := specs.Mount{Type: "bind", Source: "/h", Destination: "/data", Options: []string{"rbind", "rprivate", "ro"}}
	s, err := Spec(context.Background(), Container{
		ID:        "id",
		Namespace: "ns",
		Hostname:  "db",
		Image:     ocispec.ImageConfig{Env: []string{"PATH=/bin", "X=image"}},
		Args:      []string{"true"},
		Env:       []string{"Y=1", "X=service", "Y=2"},
		Mounts:    []specs.Mount{host},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a later key replaces an earlier one in place", func(t *testing.T) {
		if diff := cmp.Diff([]string{"PATH=/bin", "X=service", "Y=2"}, s.Process.Env); diff != "" {
			t.Errorf("Env (-want +got):\n%s", diff)
		}
	})
	t.Run("the host network namespace is shared", func(t *testing.T) {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				t.Errorf("namespaces %v include the network namespace", s.Linux.Namespaces)
			}
		}
	})
	t.Run("resolv.conf and hosts come from the host, then our mounts", func(t *testing.T) {
		n := len(s.Mounts)
		if n < 3 {
			t.Fatalf("mounts %v: want at least 3", s.Mounts)
		}
		want := []specs.Mount{
			{Type: "bind", Source: "/etc/resolv.conf", Destination: "/etc/resolv.conf", Options: []string{"rbind", "ro"}},
			{Type: "bind", Source: "/etc/hosts", Destination: "/etc/hosts", Options: []string{"rbind", "ro"}},
			host,
		}
		if diff := cmp.Diff(want, s.Mounts[n-3:]); diff != "" {
			t.Errorf("last mounts (-want +got):\n%s", diff)
		}
	})
	t.Run("the cgroup is named by namespace and id", func(t *testing.T) {
		if got := s.Linux.CgroupsPath; got != "/ns/id" {
			t.Errorf("CgroupsPath = %q, want /ns/id", got)
		}
	})
	t.Run("the hostname is set", func(t *testing.T) {
		if s.Hostname != "db" {
			t.Errorf("Hostname = %q, want db", s.Hostname)
		}
	})
	t.Run("the default seccomp profile filters system calls", func(t *testing.T) {
		p := s.Linux.Seccomp
		if p == nil || p.DefaultAction != specs.ActErrno || !reflect.DeepEqual(p, seccomp.DefaultProfile(s)) {
			t.Fatalf("Seccomp = %+v, want containerd's default profile", p)
		}
		allowed := map[string]bool{}
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
				for _, n := range sc.Names {
					allowed[n] = true
				}
			}
		}
		for _, n := range []string{"keyctl", "add_key", "request_key", "unshare", "mount", "perf_event_open", "io_uring_setup", "bpf", "kexec_load"} {
			if allowed[n] {
				t.Errorf("%s is allowed", n)
			}
		}
		for _, n := range []string{"read", "write", "execve", "openat"} {
			if !allowed[n] {
				t.Errorf("%s is not allowed", n)
			}
		}
	})
	t.Run("Docker's default capabilities, no new privileges", func(t *testing.T) {
		var want []string
		for _, c := range DefaultCaps {
			want = append(want, "CAP_"+c)
		}
		got := slices.Sorted(slices.Values(s.Process.Capabilities.Bounding))
		if diff := cmp.Diff(slices.Sorted(slices.Values(want)), got); diff != "" {
			t.Errorf("bounding capabilities (-want +got):\n%s", diff)
		}
		if !s.Process.NoNewPrivileges {
			t.Error("NoNewPrivileges is false")
		}
	})
	t.Run("no bound unless one is given", func(t *testing.T) {
		if r := s.Linux.Resources; r.Pids != nil || r.Memory != nil || r.CPU != nil {
			t.Errorf("resources %+v: want none", r)
		}
	})
}

func TestPrivileged(t *testing.T) {
	s, err := Spec(context.Background(), Container{ID: "id", Namespace: "ns", Args: []string{"true"}, Security: Security{Privileged: true}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil {
		t.Error("a privileged container has a seccomp profile")
	}
	if len(s.Linux.MaskedPaths) > 0 {
		t.Errorf("masked paths %v", s.Linux.MaskedPaths)
	}
	if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Errorf("capabilities %v lack CAP_SYS_ADMIN", s.Process.Capabilities.Bounding)
	}
}

func TestCaps(t *testing.T) {
	for _, tt := range []struct {
		name      string
		add, drop []string
		want      []string
	}{
		{name: "the default set", want: slices.Sorted(slices.Values(DefaultCaps))},
		{name: "one dropped", drop: []string{"NET_RAW", "MKNOD"}, want: []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}},
		{name: "NET_RAW only when added", add: []string{"NET_RAW"}, want: slices.Sorted(slices.Values(DockerCaps))},
		{name: "all dropped, one added back", add: []string{"CHOWN"}, drop: []string{"ALL"}, want: []string{"CHOWN"}},
		{name: "one added", add: []string{"SYS_PTRACE"}, want: slices.Sorted(slices.Values(append(slices.Clone(DefaultCaps), "SYS_PTRACE")))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Sorted(slices.Values(Security{CapAdd: tt.add, CapDrop: tt.drop}.Caps()))
			if diff := cmp.Diff(slices.Sorted(slices.Values(tt.want)), got); diff != "" {
				t.Errorf("Caps (-want +got):\n%s", diff)
			}
		})
	}
	all := Security{CapAdd: []string{"ALL"}, CapDrop: []string{"SYS_ADMIN"}}.Caps()
	if slices.Contains(all, "SYS_ADMIN") || !slices.Contains(all, "SYS_PTRACE") || len(all) < 38 {
		t.Errorf("ALL without SYS_ADMIN: %v", all)
	}
}

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name  string
		lists [][]string
		want  []string
	}{
		{name: "nothing gives nothing", want: nil},
		{name: "lists are concatenated", lists: [][]string{{"A=1"}, {"B=2"}}, want: []string{"A=1", "B=2"}},
		{name: "a later key replaces an earlier one in its place", lists: [][]string{{"A=1", "B=2"}, {"A=3"}}, want: []string{"A=3", "B=2"}},
		{name: "a key repeated in one list is kept once", lists: [][]string{{"PATH=/bin"}, {"A=1", "B=2", "A=3"}}, want: []string{"PATH=/bin", "A=3", "B=2"}},
		{name: "a key repeated in the image is kept once", lists: [][]string{{"A=1", "A=2"}, nil}, want: []string{"A=2"}},
		{name: "an empty value is a value", lists: [][]string{{"A=1"}, {"A="}}, want: []string{"A="}},
		{name: "a value may hold =", lists: [][]string{{"A=x=y"}}, want: []string{"A=x=y"}},
		{name: "a key without = unsets it", lists: [][]string{{"A=1", "B=2"}, {"A"}}, want: []string{"B=2"}},
		{name: "a key set again after an unset goes last", lists: [][]string{{"A=1", "B=2"}, {"A", "A=3"}}, want: []string{"B=2", "A=3"}},
		{name: "unsetting an unknown key does nothing", lists: [][]string{{"A=1"}, {"Z", ""}}, want: []string{"A=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, MergeEnv(tt.lists...)); diff != "" {
				t.Errorf("MergeEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSpecErrors(t *testing.T) {
	tests := []struct {
		name    string
		c       Container
		wantErr string
	}{
		{name: "an id is required", c: Container{Namespace: "ns", Args: []string{"sh"}}, wantErr: "spec: container id and namespace are required"},
		{name: "a namespace is required", c: Container{ID: "id", Args: []string{"sh"}}, wantErr: "spec: container id and namespace are required"},
		{name: "a relative working directory is refused", c: Container{ID: "id", Namespace: "ns", Args: []string{"sh"}, WorkingDir: "src"}, wantErr: `working directory "src" is not absolute`},
		{name: "a relative image working directory is refused", c: Container{ID: "id", Namespace: "ns", Args: []string{"sh"}, Image: ocispec.ImageConfig{WorkingDir: "app"}}, wantErr: `working directory "app" is not absolute`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Spec(context.Background(), tt.c)
			if err == nil {
				t.Fatalf("Spec = %+v, want error %q", s, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Fatalf("Spec error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	both := ocispec.ImageConfig{Entrypoint: []string{"/entry.sh"}, Cmd: []string{"serve", "--port=80"}}
	tests := []struct {
		name       string
		img        ocispec.ImageConfig
		entrypoint []string
		command    []string
		want       []string
		wantErr    string
	}{
		{name: "the image's entrypoint runs its cmd", img: both, want: []string{"/entry.sh", "serve", "--port=80"}},
		{name: "the image's cmd alone runs", img: ocispec.ImageConfig{Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "the image's entrypoint alone runs", img: ocispec.ImageConfig{Entrypoint: []string{"/init"}}, want: []string{"/init"}},
		{name: "a command replaces the image's cmd after its entrypoint", img: both, command: []string{"migrate"}, want: []string{"/entry.sh", "migrate"}},
		{name: "a service entrypoint drops the image's cmd", img: both, entrypoint: []string{"/bin/sh"}, want: []string{"/bin/sh"}},
		{name: "a service entrypoint runs the command", img: both, entrypoint: []string{"/bin/sh", "-c"}, command: []string{"make test"}, want: []string{"/bin/sh", "-c", "make test"}},
		{name: "an empty command clears the image's cmd", img: both, command: []string{}, want: []string{"/entry.sh"}},
		{name: "an empty entrypoint clears the image's and runs the command", img: both, entrypoint: []string{}, command: []string{"ls"}, want: []string{"ls"}},
		{name: "a command runs when the image has nothing", command: []string{"echo", "hi"}, want: []string{"echo", "hi"}},
		{name: "nothing at all is an error", wantErr: "no command: neither the image nor the service or step gives one"},
		{name: "an empty entrypoint without a command is an error", img: both, entrypoint: []string{}, wantErr: "no command: neither the image nor the service or step gives one"},
		{name: "an empty program name is an error", command: []string{"", "x"}, wantErr: "no command: neither the image nor the service or step gives one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := both.Entrypoint[0]
			got, err := Args(tt.img, tt.entrypoint, tt.command)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Args = %q, want error %q", got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("Args error = %q, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Args (-want +got):\n%s", diff)
			}
			got[0] = "changed"
			if both.Entrypoint[0] != before || (len(tt.img.Cmd) > 0 && tt.img.Cmd[0] == "changed") {
				t.Errorf("Args returned a slice sharing the image config's array")
			}
		})
	}
}

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

# a comment, a blank line above, and malformed lines below
just a line
badid:x:notanumber:1::/:/bin/false
badgid:x:7:notanumber::/:/bin/false
short:x:8
app:x:1000:1001:app:/home/app:/bin/sh
  spaced:x:1002:1002::/:/bin/sh  
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const group = `root:x:0:
daemon:x:1:
# comment
broken
badgrp:x:nope:
staff:x:50:app
app:x:1001:
nogroup:x:65534:
`

func TestUser(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		passwd  string
		group   string
		want    specs.User
		wantErr string
	}{
		{name: "no user is root", user: "", passwd: passwd, group: group, want: specs.User{}},
		{name: "no user is root without passwd", user: "", want: specs.User{}},
		{name: "a name takes its uid and primary group from passwd", user: "app", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 1001}},
		{name: "root by name", user: "root", passwd: passwd, want: specs.User{}},
		{name: "a name with a group name takes the group's gid", user: "app:staff", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 50}},
		{name: "a name with a numeric gid takes that gid", user: "app:4242", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 4242}},
		{name: "a uid in passwd takes its primary group", user: "1000", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 1001}},
		{name: "a uid not in passwd gets the root group, as in Docker", user: "4242", passwd: passwd, group: group, want: specs.User{UID: 4242, GID: 0}},
		{name: "a uid without passwd gets the root group, as in Docker", user: "1000", want: specs.User{UID: 1000, GID: 0}},
		{name: "uid 0 is root", user: "0", want: specs.User{}},
		{name: "uid:gid is taken as is", user: "4242:4343", want: specs.User{UID: 4242, GID: 4343}},
		{name: "uid:gid overrides passwd's group", user: "1000:50", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 50}},
		{name: "a uid with a group name", user: "1000:staff", passwd: passwd, group: group, want: specs.User{UID: 1000, GID: 50}},
		{name: "surrounding spaces on a passwd line are ignored", user: "spaced", passwd: passwd, want: specs.User{UID: 1002, GID: 1002}},
		{name: "the largest uid", user: "4294967295", want: specs.User{UID: 4294967295}},

		{name: "an unknown name is an error", user: "ghost", passwd: passwd, group: group, wantErr: `user "ghost": no such user in the image's /etc/passwd`},
		{name: "a name without passwd is an error", user: "app", wantErr: `user "app": no such user in the image's /etc/passwd`},
		{name: "a line with a non-numeric uid is skipped", user: "badid", passwd: passwd, wantErr: `user "badid": no such user in the image's /etc/passwd`},
		{name: "a line with a non-numeric gid is skipped", user: "badgid", passwd: passwd, wantErr: `user "badgid": no such user in the image's /etc/passwd`},
		{name: "a line with too few fields is skipped", user: "short", passwd: passwd, wantErr: `user "short": no such user in the image's /etc/passwd`},
		{name: "a comment is not a user", user: "# a comment", passwd: passwd, wantErr: `user "# a comment": no such user in the image's /etc/passwd`},
		{name: "an unknown group is an error", user: "app:ghosts", passwd: passwd, group: group, wantErr: `user "app:ghosts": no such group in the image's /etc/group`},
		{name: "a malformed group line is skipped", user: "app:badgrp", passwd: passwd, group: group, wantErr: `user "app:badgrp": no such group in the image's /etc/group`},
		{name: "a uid beyond 32 bits is not a uid", user: "4294967296", wantErr: `user "4294967296": no such user in the image's /etc/passwd`},
		{name: "an empty user before a group is an error", user: ":staff", passwd: passwd, group: group, wantErr: `user ":staff": empty user or group`},
		{name: "an empty group is an error", user: "app:", passwd: passwd, group: group, wantErr: `user "app:": empty user or group`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pw, gr []byte
			if tt.passwd != "" {
				pw = []byte(tt.passwd)
			}
			if tt.group != "" {
				gr = []byte(tt.group)
			}
			got, err := User(tt.user, pw, gr)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("User(%q) = %+v, want error %q", tt.user, got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("User(%q) error = %q, want %q", tt.user, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("User(%q): %v", tt.user, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("User(%q) (-want +got):\n%s", tt.user, diff)
			}
		})
	}
}

func TestNeedsLookup(t *testing.T) {
	tests := []struct {
		name string
		user string
		want bool
	}{
		{name: "no user is root without a lookup", user: "", want: false},
		{name: "a name needs passwd", user: "app", want: true},
		{name: "a name with a numeric group needs passwd", user: "app:50", want: true},
		{name: "a bare uid needs passwd for its primary group", user: "1000", want: true},
		{name: "uid 0 needs passwd for its primary group too", user: "0", want: true},
		{name: "a uid with a group name needs group", user: "1000:staff", want: true},
		{name: "uid:gid needs nothing", user: "1000:1000", want: false},
		{name: "a uid beyond 32 bits is a name", user: "4294967296", want: true},
		{name: "a negative uid is a name", user: "-1", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsLookup(tt.user); got != tt.want {
				t.Errorf("NeedsLookup(%q) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

// An image's account files are read inside its root: an absolute link resolves there, and
// what is not a regular file (a FIFO that would block) is read as absent.
func TestAccountsAreReadInsideTheImage(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "real-passwd"), []byte("app:x:1000:1000::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/real-passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc", "group"), 0o644); err != nil {
		t.Fatal(err)
	}
	passwd, group := Accounts(root)
	if string(passwd) != "app:x:1000:1000::/:/bin/sh\n" {
		t.Errorf("passwd = %q, want the image's (through its absolute link)", passwd)
	}
	if group != nil {
		t.Errorf("group = %q, want nil for a FIFO", group)
	}
	if p, g := Accounts(filepath.Join(root, "missing")); p != nil || g != nil {
		t.Errorf("Accounts of a missing root = %q, %q; want nil, nil", p, g)
	}
}
