package steps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/oci"
)

func TestPolicyConfinesWhatAServiceAsksFor(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "profile.json"), []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644)
	for _, tt := range []struct {
		name    string
		service string // the service's keys, below "app:\n  image: busybox\n"
		policy  Policy
		wantSec oci.Security
		wantRes oci.Resources
		wantErr string
	}{
		{
			name:    "no keys: Docker's defaults and the default pids limit",
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
		{
			name:    "the operator's bounds are the defaults",
			policy:  Policy{PidsLimit: 100, MemoryLimit: 1 << 30},
			wantRes: oci.Resources{Pids: 100, Memory: 1 << 30},
		},
		{
			name:    "a service lowers the bounds and sets the others",
			service: "  mem_limit: 64m\n  memswap_limit: 128m\n  pids_limit: 50\n  cpu_shares: 512\n  shm_size: 1g\n  ulimits:\n    nofile: {soft: 10, hard: 20}\n    core: -1\n",
			policy:  Policy{PidsLimit: 100, MemoryLimit: 1 << 30},
			wantRes: oci.Resources{Pids: 50, Memory: 64 << 20, MemorySwap: 128 << 20, CPUShares: 512, ShmSize: 1 << 30, Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}, {Type: "RLIMIT_CORE", Soft: oci.Unlimited, Hard: oci.Unlimited}}},
		},
		{
			name:    "no pids limit when the operator sets none",
			service: "  pids_limit: -1\n",
			policy:  Policy{PidsLimit: -1},
		},
		{
			name:    "no pids limit is above the operator's bound",
			service: "  pids_limit: -1\n",
			wantErr: `codeship-services.yml:3: service "app": key "pids_limit": -1 (no limit) is above the operator's bound of 2048 (--pids-limit)`,
		},
		{
			name:    "a memory limit above the operator's bound is refused",
			service: "  mem_limit: 2g\n",
			policy:  Policy{MemoryLimit: 1 << 30},
			wantErr: `codeship-services.yml:3: service "app": key "mem_limit": 2GiB is above the operator's bound of 1GiB (--memory-limit)`,
		},
		{
			name:    "more CPUs than the host has are refused",
			service: fmt.Sprintf("  cpus: %d\n", runtime.NumCPU()+1),
			wantErr: fmt.Sprintf(`codeship-services.yml:3: service "app": key "cpus": %d is more than the %d CPUs of this host`, runtime.NumCPU()+1, runtime.NumCPU()),
		},
		{
			name:    "capabilities of Docker's default set may be added and any dropped",
			service: "  cap_add: [CHOWN]\n  cap_drop: [ALL]\n",
			wantSec: oci.Security{CapAdd: []string{"CHOWN"}, CapDrop: []string{"ALL"}},
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
		{
			name:    "a capability beyond them needs the operator",
			service: "  cap_add: [NET_ADMIN]\n",
			wantErr: `codeship-services.yml:3: service "app": key "cap_add": NET_ADMIN is beyond Docker's default capabilities; refused unless the operator runs crun-ci with --allow-privileged`,
		},
		{
			name:    "privileged needs the operator",
			service: "  privileged: true\n",
			wantErr: `codeship-services.yml:3: service "app": key "privileged": a privileged container can reach the host; refused unless the operator runs crun-ci with --allow-privileged`,
		},
		{
			name:    "the operator allows privileged, devices and capabilities",
			service: "  privileged: true\n  cap_add: [SYS_ADMIN]\n  devices: [\"/dev/fuse\"]\n  security_opt: [systempaths=unconfined]\n",
			policy:  Policy{Privileged: true},
			wantSec: oci.Security{Privileged: true, CapAdd: []string{"SYS_ADMIN"}, Devices: []oci.Device{{Host: "/dev/fuse", Container: "/dev/fuse", Permissions: "rwm"}}, SystemPaths: true},
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
		{
			name:    "seccomp=unconfined needs the operator",
			service: "  security_opt: [seccomp=unconfined]\n",
			policy:  Policy{Privileged: true},
			wantErr: `codeship-services.yml:3: service "app": key "security_opt": "seccomp=unconfined" is refused unless the operator runs crun-ci with --allow-unconfined`,
		},
		{
			name:    "the operator allows seccomp=unconfined",
			service: "  security_opt: [seccomp=unconfined, no-new-privileges=false]\n",
			policy:  Policy{Unconfined: true},
			wantSec: oci.Security{SeccompUnconfined: true, NewPrivileges: true},
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
		{
			name:    "a profile file is read below the build directory",
			service: "  security_opt: [seccomp=profile.json]\n",
			policy:  Policy{Unconfined: true},
			wantSec: oci.Security{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}},
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
		{
			name:    "a profile file that leaves the build directory is refused",
			service: "  security_opt: [seccomp=evil.json]\n",
			policy:  Policy{Unconfined: true},
			wantErr: `codeship-services.yml:3: service "app": key "security_opt": "seccomp=evil.json": evil.json is a symlink leaving the build directory`,
		},
		{
			name:    "AppArmor and SELinux options change nothing here",
			service: "  security_opt: [apparmor=unconfined, \"label=type:x\"]\n",
			wantRes: oci.Resources{Pids: DefaultPidsLimit},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := load(t, "app:\n  image: busybox\n"+tt.service, "- {service: app, command: true}\n")
			os.WriteFile(filepath.Join(p.Dir, "profile.json"), []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`), 0o644)
			os.Symlink(filepath.Join(outside, "profile.json"), filepath.Join(p.Dir, "evil.json"))
			root, err := hostfs.Open(p.Dir, hostfs.Beneath, "the build directory")
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			sec, res, errs := tt.policy.confine(root, p.Services["app"])
			if tt.wantErr != "" {
				if err := errors.Join(errs...); err == nil || err.Error() != tt.wantErr {
					t.Fatalf("errors %v, want %s", err, tt.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
			if diff := cmp.Diff(tt.wantSec, sec); diff != "" {
				t.Errorf("security (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRes, res); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWarningsNameWhatIsIgnored(t *testing.T) {
	p := load(t, "app:\n  image: busybox\n  container_name: x\n  security_opt: [apparmor=unconfined]\n  ports: [\"80:80\"]\n  external_links: [redis]\n  stdin_open: true\n  restart: always\n  oom_scope_adj: 5\n  add_docker: false\n  labels: [team=ci]\n  encrypted_dockercfg_path: d.encrypted\n  dockercfg_service: creds\ncreds:\n  image: busybox\n", "- {service: app, command: true}\n")
	var got []string
	for _, w := range Warnings(p) {
		got = append(got, w.Error())
	}
	want := []string{
		`codeship-services.yml:3: service "app": key "container_name" ignored`,
		`codeship-services.yml:5: service "app": key "ports" ignored: no ports are published on the host`,
		`codeship-services.yml:6: service "app": key "external_links" ignored: there are no containers outside the build to link to`,
		`codeship-services.yml:7: service "app": key "stdin_open" ignored: a step's containers get no standard input`,
		`codeship-services.yml:8: service "app": key "restart" ignored: a step's containers are never restarted`,
		`codeship-services.yml:9: service "app": key "oom_scope_adj" ignored`,
		`codeship-services.yml:13: service "app": key "dockercfg_service" ignored: encrypted_dockercfg_path is given too, and wins, as Codeship's image-registries page says`,
		`codeship-services.yml:4: service "app": key "security_opt": "apparmor=unconfined" ignored: crun-ci applies no AppArmor profile`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}
