package config

import (
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

func TestParseResources(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string // the keys of service app, after its image
		want *Service
	}{
		{
			name: "sizes are whole numbers of bytes or take Docker's binary units in any case",
			in:   "mem_limit: 536870912\nmemswap_limit: 1g\nshm_size: 64M\n",
			want: &Service{MemLimit: &Bytes{N: 512 << 20}, MemswapLimit: &Bytes{N: 1 << 30}, ShmSize: &Bytes{N: 64 << 20}},
		},
		{
			name: "sizes take an optional b after the unit, a fraction and a quoted number",
			in:   "mem_limit: 1.5gb\nshm_size: \"2048\"\n",
			want: &Service{MemLimit: &Bytes{N: 3 << 29}, ShmSize: &Bytes{N: 2048}},
		},
		{
			name: "sizes take k, t and a bare b",
			in:   "mem_limit: 1t\nmemswap_limit: 2T\nshm_size: 100kB\n",
			want: &Service{MemLimit: &Bytes{N: 1 << 40}, MemswapLimit: &Bytes{N: 2 << 40}, ShmSize: &Bytes{N: 100 << 10}},
		},
		{
			name: "memswap_limit of -1 is unlimited swap",
			in:   "mem_limit: 512m\nmemswap_limit: -1\n",
			want: &Service{MemLimit: &Bytes{N: 512 << 20}, MemswapLimit: &Bytes{N: -1}},
		},
		{
			name: "memswap_limit equal to mem_limit means no swap",
			in:   "memswap_limit: 512m\nmem_limit: 536870912\n",
			want: &Service{MemLimit: &Bytes{N: 512 << 20}, MemswapLimit: &Bytes{N: 512 << 20}},
		},
		{
			name: "pids_limit is kept, and 0 and -1 are both unlimited",
			in:   "pids_limit: 100\n",
			want: &Service{PidsLimit: &Int{N: 100}},
		},
		{
			name: "pids_limit of 0 is stored as -1",
			in:   "pids_limit: 0\n",
			want: &Service{PidsLimit: &Int{N: -1}},
		},
		{
			name: "pids_limit of -1 is unlimited",
			in:   "pids_limit: -1\n",
			want: &Service{PidsLimit: &Int{N: -1}},
		},
		{
			name: "cpus is a number or a numeric string",
			in:   "cpus: 0.5\ncpu_shares: 512\n",
			want: &Service{CPUs: &Float{F: 0.5}, CPUShares: &Int{N: 512}},
		},
		{
			name: "cpus as a quoted string and cpu_shares at the ends of its range",
			in:   "cpus: \"1.5\"\ncpu_shares: 2\n",
			want: &Service{CPUs: &Float{F: 1.5}, CPUShares: &Int{N: 2}},
		},
		{
			name: "cpus of a hundredth and cpu_shares at the top of the range",
			in:   "cpus: 0.01\ncpu_shares: 262144\n",
			want: &Service{CPUs: &Float{F: 0.01}, CPUShares: &Int{N: 262144}},
		},
		{
			name: "ulimits take a number for both limits or soft and hard, in file order",
			in:   "ulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000\n  core: -1\n  memlock: {soft: 1024, hard: -1}\n",
			want: &Service{Ulimits: []Ulimit{
				{Name: "nproc", Soft: 65535, Hard: 65535},
				{Name: "nofile", Soft: 20000, Hard: 40000},
				{Name: "core", Soft: -1, Hard: -1},
				{Name: "memlock", Soft: 1024, Hard: -1},
			}},
		},
		{
			name: "expose takes ports, numbers or strings, with a protocol or not, and ranges",
			in:   "expose: [5432, \"53/udp\", \"8000-8002\", 9000/TCP]\n",
			want: &Service{Expose: []Value{{Text: "5432/tcp"}, {Text: "53/udp"}, {Text: "8000/tcp"}, {Text: "8001/tcp"}, {Text: "8002/tcp"}, {Text: "9000/tcp"}}},
		},
		{
			name: "the Compose keys of file systems, kernel settings and names",
			in:   "read_only: true\ntmpfs: [/run, \"/cache:size=64m,mode=1777\"]\nsysctls: {net.core.somaxconn: 1024, kernel.shmmax: 65536}\nextra_hosts: [\"db.example:10.1.2.3\", \"v6:::1\"]\ndns: 1.1.1.1\ndns_search: [example.com]\nplatform: linux/amd64\n",
			want: &Service{
				ReadOnly:   true,
				Tmpfs:      []Tmpfs{{Path: "/run"}, {Path: "/cache", Options: []string{"size=64m", "mode=1777"}}},
				Sysctls:    map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "65536"},
				ExtraHosts: []Host{{Name: "db.example", IP: "10.1.2.3"}, {Name: "v6", IP: "::1"}},
				DNS:        []string{"1.1.1.1"},
				DNSSearch:  []string{"example.com"},
			},
		},
		{
			name: "init and labels",
			in:   "init: true\nlabels: [team=ci, solo]\n",
			want: &Service{Init: true, Labels: map[string]string{"team": "ci", "solo": ""}},
		},
		{
			name: "privileged is a boolean",
			in:   "privileged: true\n",
			want: &Service{Privileged: &Bool{V: true}},
		},
		{
			name: "privileged false is kept as written",
			in:   "privileged: false\n",
			want: &Service{Privileged: &Bool{V: false}},
		},
		{
			name: "capabilities are upper-cased and lose their CAP_ prefix",
			in:   "cap_add: [net_admin, CAP_SYS_PTRACE, Cap_Checkpoint_Restore]\ncap_drop: [ALL]\n",
			want: &Service{
				CapAdd:  []Value{{Text: "NET_ADMIN"}, {Text: "SYS_PTRACE"}, {Text: "CHECKPOINT_RESTORE"}},
				CapDrop: []Value{{Text: "ALL"}},
			},
		},
		{
			name: "all in lower case is ALL, and one capability may be added and dropped",
			in:   "cap_add: [all]\ncap_drop: [MKNOD, NET_RAW]\n",
			want: &Service{CapAdd: []Value{{Text: "ALL"}}, CapDrop: []Value{{Text: "MKNOD"}, {Text: "NET_RAW"}}},
		},
		{
			name: "devices default the container path to the host path and the permissions to rwm",
			in:   "devices:\n  - /dev/fuse\n  - /dev/sda:/dev/xvda\n  - /dev/snd:/dev/snd:r\n  - /dev/kvm:rw\n  - /dev//net/tun/:/dev/net/tun:mwr\n",
			want: &Service{Devices: []Device{
				{Host: "/dev/fuse", Container: "/dev/fuse", Permissions: "rwm"},
				{Host: "/dev/sda", Container: "/dev/xvda", Permissions: "rwm"},
				{Host: "/dev/snd", Container: "/dev/snd", Permissions: "r"},
				{Host: "/dev/kvm", Container: "/dev/kvm", Permissions: "rw"},
				{Host: "/dev/net/tun", Container: "/dev/net/tun", Permissions: "mwr"},
			}},
		},
		{
			name: "security options in the key=value and the older key:value form",
			in: "security_opt:\n  - seccomp=unconfined\n  - apparmor:docker-default\n  - label=type:svirt_apache_t\n" +
				"  - label:level:s0:c100,c200\n  - no-new-privileges\n  - systempaths=unconfined\n",
			want: &Service{SecurityOpt: []SecurityOpt{
				{Key: "seccomp", Value: "unconfined"},
				{Key: "apparmor", Value: "docker-default"},
				{Key: "label", Value: "type:svirt_apache_t"},
				{Key: "label", Value: "level:s0:c100,c200"},
				{Key: "no-new-privileges", Value: "true"},
				{Key: "systempaths", Value: "unconfined"},
			}},
		},
		{
			name: "a seccomp profile file and no-new-privileges written out",
			in:   "security_opt: [\"seccomp=ci/seccomp.json\", \"no-new-privileges=false\"]\n",
			want: &Service{SecurityOpt: []SecurityOpt{
				{Key: "seccomp", Value: "ci/seccomp.json"},
				{Key: "no-new-privileges", Value: "false"},
			}},
		},
		{
			name: "resource keys merged from an anchor are read like written ones",
			in:   "<<: {mem_limit: 1g, cap_add: [NET_ADMIN]}\nmemswap_limit: 2g\n",
			want: &Service{MemLimit: &Bytes{N: 1 << 30}, MemswapLimit: &Bytes{N: 2 << 30}, CapAdd: []Value{{Text: "NET_ADMIN"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "app:\n  image: alpine\n  " + strings.ReplaceAll(strings.TrimSuffix(tc.in, "\n"), "\n", "\n  ") + "\n"
			got, _, err := ParseServices("codeship-services.yml", []byte(in))
			if err != nil {
				t.Fatalf("ParseServices:\n%s\n%v", in, err)
			}
			tc.want.Name, tc.want.Image = "app", "alpine"
			if diff := cmp.Diff(tc.want, got["app"], ignorePos); diff != "" {
				t.Errorf("service (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourcePositions(t *testing.T) {
	in := `app:
  image: alpine
  mem_limit: 1g
  memswap_limit: -1
  shm_size: 64m
  pids_limit: 0
  cpus: 2
  cpu_shares: 1024
  ulimits:
    nofile: {soft: 1, hard: 2}
  privileged: true
  cap_add: [NET_ADMIN]
  cap_drop:
    - mknod
  devices: [/dev/fuse]
  security_opt: [no-new-privileges]
`
	got, _, err := ParseServices("s.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Service{
		Name:         "app",
		Pos:          Pos{"s.yml", 1, 1},
		Image:        "alpine",
		MemLimit:     &Bytes{N: 1 << 30, Pos: Pos{"s.yml", 3, 14}},
		MemswapLimit: &Bytes{N: -1, Pos: Pos{"s.yml", 4, 18}},
		ShmSize:      &Bytes{N: 64 << 20, Pos: Pos{"s.yml", 5, 13}},
		PidsLimit:    &Int{N: -1, Pos: Pos{"s.yml", 6, 15}},
		CPUs:         &Float{F: 2, Pos: Pos{"s.yml", 7, 9}},
		CPUShares:    &Int{N: 1024, Pos: Pos{"s.yml", 8, 15}},
		Ulimits:      []Ulimit{{Name: "nofile", Soft: 1, Hard: 2, Pos: Pos{"s.yml", 10, 5}}},
		Privileged:   &Bool{V: true, Pos: Pos{"s.yml", 11, 15}},
		CapAdd:       []Value{{Text: "NET_ADMIN", Pos: Pos{"s.yml", 12, 13}}},
		CapDrop:      []Value{{Text: "MKNOD", Pos: Pos{"s.yml", 14, 7}}},
		Devices:      []Device{{Host: "/dev/fuse", Container: "/dev/fuse", Permissions: "rwm", Pos: Pos{"s.yml", 15, 13}}},
		SecurityOpt:  []SecurityOpt{{Key: "no-new-privileges", Value: "true", Pos: Pos{"s.yml", 16, 18}}},
	}
	if diff := cmp.Diff(want, got["app"]); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}
}

func TestResourceErrors(t *testing.T) {
	const pre = `codeship-services.yml:3: service "app": `
	for _, tc := range []struct {
		name string
		in   string // the keys of service app, after its image: the first is on line 3
		want string // the errors, each after pre unless it starts with "codeship-services.yml"
	}{
		// Sizes.
		{
			name: "a size with an unknown unit",
			in:   "mem_limit: 12x\n",
			want: `key "mem_limit": "12x": want a number of bytes, optionally with a unit (b, k, m, g)`,
		},
		{
			name: "a size with two units",
			in:   "shm_size: 1mg\n",
			want: `key "shm_size": "1mg": want a number of bytes, optionally with a unit (b, k, m, g)`,
		},
		{
			name: "a size without a number",
			in:   "shm_size: g\n",
			want: `key "shm_size": "g": want a number of bytes, optionally with a unit (b, k, m, g)`,
		},
		{
			name: "a size that is a boolean",
			in:   "mem_limit: true\n",
			want: `key "mem_limit": "true": want a number of bytes, optionally with a unit (b, k, m, g)`,
		},
		{
			name: "a size that is a list",
			in:   "mem_limit: [1g]\n",
			want: `key "mem_limit": want a number of bytes, optionally with a unit (b, k, m, g), got a list`,
		},
		{
			name: "a size that is null",
			in:   "shm_size:\n",
			want: `key "shm_size": want a number of bytes, optionally with a unit (b, k, m, g), got null`,
		},
		{
			name: "a size of zero",
			in:   "mem_limit: 0\n",
			want: `key "mem_limit": "0": want a positive size`,
		},
		{
			name: "a size below one byte",
			in:   "shm_size: 0.5\n",
			want: `key "shm_size": "0.5": want a positive size`,
		},
		{
			name: "a negative size",
			in:   "mem_limit: -1\n",
			want: `key "mem_limit": "-1": want a positive size`,
		},
		{
			name: "a negative swap other than -1",
			in:   "mem_limit: 1g\nmemswap_limit: -2g\n",
			want: `codeship-services.yml:4: service "app": key "memswap_limit": "-2g": want a positive size, or -1 for unlimited swap`,
		},
		{
			name: "a swap of zero",
			in:   "mem_limit: 1g\nmemswap_limit: 0\n",
			want: `codeship-services.yml:4: service "app": key "memswap_limit": "0": want a positive size, or -1 for unlimited swap`,
		},
		{
			name: "a size too large for 64 bits",
			in:   "mem_limit: 9000000000000000000000g\n",
			want: `key "mem_limit": "9000000000000000000000g": too large`,
		},
		{
			name: "memswap_limit without mem_limit",
			in:   "memswap_limit: 1g\n",
			want: `key "memswap_limit" needs "mem_limit" (memswap_limit is memory plus swap)`,
		},
		{
			name: "memswap_limit of -1 without mem_limit",
			in:   "memswap_limit: -1\n",
			want: `key "memswap_limit" needs "mem_limit" (memswap_limit is memory plus swap)`,
		},
		{
			name: "memswap_limit below mem_limit",
			in:   "mem_limit: 1g\nmemswap_limit: 512m\n",
			want: `codeship-services.yml:4: service "app": key "memswap_limit": "512m" is less than "mem_limit" ("1g"): memswap_limit is memory plus swap`,
		},
		{
			name: "a bad mem_limit is reported once, not again by memswap_limit",
			in:   "mem_limit: lots\nmemswap_limit: 1g\n",
			want: `key "mem_limit": "lots": want a number of bytes, optionally with a unit (b, k, m, g)`,
		},
		// Counts.
		{
			name: "pids_limit that is not a whole number",
			in:   "pids_limit: 1.5\n",
			want: `key "pids_limit": "1.5": want a whole number`,
		},
		{
			name: "pids_limit below -1",
			in:   "pids_limit: -2\n",
			want: `key "pids_limit": "-2": want a positive number, or -1 or 0 for no limit`,
		},
		{
			name: "pids_limit that is a mapping",
			in:   "pids_limit: {max: 1}\n",
			want: `key "pids_limit": want a whole number, got a mapping`,
		},
		{
			name: "cpus that is not a number",
			in:   "cpus: two\n",
			want: `key "cpus": "two": want a number of CPUs, such as 0.5 or 2`,
		},
		{
			name: "cpus of zero",
			in:   "cpus: 0\n",
			want: `key "cpus": "0": want at least 0.01`,
		},
		{
			name: "negative cpus",
			in:   "cpus: \"-1\"\n",
			want: `key "cpus": "-1": want at least 0.01`,
		},
		{
			name: "cpus below a hundredth",
			in:   "cpus: 0.001\n",
			want: `key "cpus": "0.001": want at least 0.01`,
		},
		{
			name: "cpus that is infinite or not a number",
			in:   "cpus: Inf\ncpu_shares: 2\nx:\n",
			want: `key "cpus": "Inf": want a number of CPUs, such as 0.5 or 2` + "\n" +
				`codeship-services.yml:5: service "app": unknown key "x"`,
		},
		{
			name: "cpus that is NaN",
			in:   "cpus: NaN\n",
			want: `key "cpus": "NaN": want a number of CPUs, such as 0.5 or 2`,
		},
		{
			name: "cpus that is a list",
			in:   "cpus: [1]\n",
			want: `key "cpus": want a number of CPUs, such as 0.5 or 2, got a list`,
		},
		{
			name: "cpu_shares below 2",
			in:   "cpu_shares: 1\n",
			want: `key "cpu_shares": "1": want a whole number from 2 to 262144`,
		},
		{
			name: "cpu_shares above 262144",
			in:   "cpu_shares: 262145\n",
			want: `key "cpu_shares": "262145": want a whole number from 2 to 262144`,
		},
		{
			name: "cpu_shares that is not a whole number",
			in:   "cpu_shares: half\n",
			want: `key "cpu_shares": "half": want a whole number`,
		},
		// Ulimits.
		{
			name: "ulimits that are a list",
			in:   "ulimits: [nofile=1024]\n",
			want: `key "ulimits": want a mapping, got a list`,
		},
		{
			name: "an unknown ulimit",
			in:   "ulimits:\n  nofiles: 1024\n",
			want: `codeship-services.yml:4: service "app": key "ulimits": unknown limit "nofiles" (want as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)`,
		},
		{
			name: "a ulimit that is not a whole number",
			in:   "ulimits:\n  nofile: lots\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.nofile": "lots": want a whole number, -1 for unlimited`,
		},
		{
			name: "a ulimit below -1",
			in:   "ulimits:\n  nproc: -2\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.nproc": "-2": want a whole number, -1 for unlimited`,
		},
		{
			name: "a ulimit that is a list",
			in:   "ulimits:\n  nproc: [1, 2]\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.nproc": want a whole number or a mapping of "soft" and "hard", got a list`,
		},
		{
			name: "a ulimit with an unknown key and without hard",
			in:   "ulimits:\n  nofile:\n    soft: 1024\n    max: 2048\n",
			want: `codeship-services.yml:5: service "app": key "ulimits.nofile": want both "soft" and "hard"` + "\n" +
				`codeship-services.yml:6: service "app": unknown key "ulimits.nofile.max"`,
		},
		{
			name: "a ulimit without soft",
			in:   "ulimits:\n  nofile: {hard: 1}\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.nofile": want both "soft" and "hard"`,
		},
		{
			name: "a ulimit whose soft limit is not a number",
			in:   "ulimits:\n  nofile: {soft: x, hard: [2]}\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.nofile.soft": "x": want a whole number, -1 for unlimited` + "\n" +
				`codeship-services.yml:4: service "app": key "ulimits.nofile.hard": want a whole number, got a list`,
		},
		{
			name: "a soft limit above the hard limit",
			in:   "ulimits:\n  nofile:\n    soft: 2048\n    hard: 1024\n",
			want: `codeship-services.yml:5: service "app": key "ulimits.nofile": soft limit 2048 is above hard limit 1024`,
		},
		{
			name: "an unlimited soft limit below a hard limit",
			in:   "ulimits:\n  stack: {soft: -1, hard: 8192}\n",
			want: `codeship-services.yml:4: service "app": key "ulimits.stack": soft limit -1 (unlimited) is above hard limit 8192`,
		},
		{
			name: "a ulimit given twice",
			in:   "ulimits:\n  nofile: 1\n  nofile: 2\n",
			want: `codeship-services.yml:5: service "app": duplicate key "nofile" (first at line 4)`,
		},
		// Privileges.
		{
			name: "expose of something that is no port",
			in:   "expose: [\"http\"]\n",
			want: `key "expose": "http": want a port, a range of ports (8000-8010), with /tcp, /udp or /sctp or not`,
		},
		{
			name: "expose of a port out of range",
			in:   "expose: [\"70000\", \"10-5\"]\n",
			want: `key "expose": "70000": want ports from 1 to 65535, a range of at most 1000` + "\n" + pre + `key "expose": "10-5": want ports from 1 to 65535, a range of at most 1000`,
		},
		{
			name: "tmpfs at / or relative, or with an option that widens it",
			in:   "tmpfs: [/, run, \"/x:dev\"]\n",
			want: `key "tmpfs": "/": want an absolute path other than /` + "\n" + pre + `key "tmpfs": "run": want an absolute path other than /` + "\n" + pre + `key "tmpfs": "/x:dev": option "dev" is not one of size, mode, uid, gid, nr_inodes, exec, noexec, ro, rw`,
		},
		{
			name: "a sysctl of the host's",
			in:   "sysctls: [vm.swappiness=10]\n",
			want: `key "sysctls": "vm.swappiness" is not a sysctl of the container's own namespaces (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)`,
		},
		{
			name: "extra_hosts, dns and dns_search that are not names and addresses",
			in:   "extra_hosts: [\"db:nowhere\"]\ndns: [one]\ndns_search: [\"a b\"]\n",
			want: `key "extra_hosts": "db:nowhere": want NAME:ADDRESS, a host name and an IP address` + "\n" +
				`codeship-services.yml:4: service "app": key "dns": "one" is not an IP address` + "\n" +
				`codeship-services.yml:5: service "app": key "dns_search": "a b" is not a domain name`,
		},
		{
			name: "another platform",
			in:   "platform: linux/arm64\n",
			want: `key "platform": "linux/arm64" is not this host's platform (linux/amd64): crun-ci runs images natively, without emulation`,
		},
		{
			name: "init that is not a boolean",
			in:   "init: tini\n",
			want: `key "init": "tini" is not true or false`,
		},
		{
			name: "privileged that is not a boolean",
			in:   "privileged: sometimes\n",
			want: `key "privileged": "sometimes" is not true or false`,
		},
		{
			name: "privileged that is a list",
			in:   "privileged: [true]\n",
			want: `key "privileged": want true or false, got a list`,
		},
		{
			name: "cap_add written as a string",
			in:   "cap_add: NET_ADMIN\n",
			want: `key "cap_add": want a list, got a string`,
		},
		{
			name: "an unknown capability",
			in:   "cap_add:\n  - NET_ADMIN\n  - CAP_NET_FOO\n",
			want: `codeship-services.yml:5: service "app": key "cap_add": "CAP_NET_FOO": unknown capability (want a Linux capability such as NET_ADMIN, or ALL)`,
		},
		{
			name: "CAP_ALL is no capability",
			in:   "cap_drop: [CAP_ALL]\n",
			want: `key "cap_drop": "CAP_ALL": unknown capability (want a Linux capability such as NET_ADMIN, or ALL)`,
		},
		{
			name: "a capability listed twice in different spellings",
			in:   "cap_drop:\n  - net_raw\n  - CAP_NET_RAW\n",
			want: `codeship-services.yml:5: service "app": key "cap_drop": "CAP_NET_RAW" is listed twice (first at line 4)`,
		},
		{
			name: "an empty capability and one that is a mapping",
			in:   "cap_add: ['', {a: b}]\n",
			want: `key "cap_add": empty entry` + "\n" + pre + `key "cap_add": want a string, got a mapping`,
		},
		{
			name: "devices written as a string",
			in:   "devices: /dev/fuse\n",
			want: `key "devices": want a list, got a string`,
		},
		{
			name: "a device with a relative host path",
			in:   "devices: [dev/fuse]\n",
			want: `key "devices": "dev/fuse": host path "dev/fuse" is not absolute`,
		},
		{
			name: "a device with a relative container path",
			in:   "devices: [\"/dev/fuse:fuse\"]\n",
			want: `key "devices": "/dev/fuse:fuse": container path "fuse" is not absolute`,
		},
		{
			name: "a device with unknown permissions",
			in:   "devices: [\"/dev/fuse:/dev/fuse:rwx\"]\n",
			want: `key "devices": "/dev/fuse:/dev/fuse:rwx": permissions "rwx": want r, w and m, each at most once`,
		},
		{
			name: "a device with a permission twice",
			in:   "devices: [\"/dev/fuse:/dev/fuse:rr\"]\n",
			want: `key "devices": "/dev/fuse:/dev/fuse:rr": permissions "rr": want r, w and m, each at most once`,
		},
		{
			name: "a device with empty permissions",
			in:   "devices: [\"/dev/fuse:/dev/fuse:\"]\n",
			want: `key "devices": "/dev/fuse:/dev/fuse:": permissions "": want r, w and m, each at most once`,
		},
		{
			name: "a device with an empty container path",
			in:   "devices: [\"/dev/fuse:\", \"/dev/fuse::rw\"]\n",
			want: `key "devices": "/dev/fuse:": empty container path` + "\n" + pre + `key "devices": "/dev/fuse::rw": empty container path`,
		},
		{
			name: "a device with an empty host path",
			in:   "devices: [\":/dev/fuse\"]\n",
			want: `key "devices": ":/dev/fuse": empty host path`,
		},
		{
			name: "a device with too many colons",
			in:   "devices: [\"/a:/b:rw:x\"]\n",
			want: `key "devices": "/a:/b:rw:x": want "HOST[:CONTAINER[:PERMISSIONS]]"`,
		},
		{
			name: "a device path with dot-dot",
			in:   "devices: [\"/dev/../etc/shadow\", \"/dev/fuse:/dev/../x\"]\n",
			want: `key "devices": "/dev/../etc/shadow": host path "/dev/../etc/shadow" contains ".."` + "\n" +
				pre + `key "devices": "/dev/fuse:/dev/../x": container path "/dev/../x" contains ".."`,
		},
		{
			name: "a device at the root directory",
			in:   "devices: [\"/dev/fuse:/\"]\n",
			want: `key "devices": "/dev/fuse:/": container path "/" is the root directory`,
		},
		{
			name: "an empty device",
			in:   "devices: ['']\n",
			want: `key "devices": empty entry`,
		},
		{
			name: "security_opt written as a string",
			in:   "security_opt: seccomp=unconfined\n",
			want: `key "security_opt": want a list, got a string`,
		},
		{
			name: "an unknown security option",
			in:   "security_opt: [\"credentialspec=file://x.json\"]\n",
			want: `key "security_opt": "credentialspec=file://x.json": unknown option "credentialspec" (want seccomp, apparmor, label, no-new-privileges or systempaths)`,
		},
		{
			name: "a security option without a value",
			in:   "security_opt: [unconfined]\n",
			want: `key "security_opt": "unconfined": want "key=value" or "no-new-privileges"`,
		},
		{
			name: "security options with empty values",
			in:   "security_opt: [\"seccomp=\", \"apparmor:\", \"label=\"]\n",
			want: `key "security_opt": "seccomp=": empty value` + "\n" + pre + `key "security_opt": "apparmor:": empty value` + "\n" +
				pre + `key "security_opt": "label=": empty value`,
		},
		{
			name: "no-new-privileges with a value other than true or false",
			in:   "security_opt: [\"no-new-privileges=yes\", \"no-new-privileges=\"]\n",
			want: `key "security_opt": "no-new-privileges=yes": want "no-new-privileges", "no-new-privileges=true" or "no-new-privileges=false"` + "\n" +
				pre + `key "security_opt": "no-new-privileges=": want "no-new-privileges", "no-new-privileges=true" or "no-new-privileges=false"`,
		},
		{
			name: "systempaths other than unconfined",
			in:   "security_opt: [\"systempaths=confined\"]\n",
			want: `key "security_opt": "systempaths=confined": want "systempaths=unconfined"`,
		},
		{
			name: "a security option set twice",
			in:   "security_opt:\n  - seccomp=a.json\n  - seccomp:unconfined\n  - label=user:u\n  - label=role:r\n",
			want: `codeship-services.yml:5: service "app": key "security_opt": "seccomp:unconfined": "seccomp" is set twice (first at line 4)`,
		},
		{
			name: "an empty security option",
			in:   "security_opt: ['']\n",
			want: `key "security_opt": empty entry`,
		},
		// Environment.
		{
			name: "a NUL byte in an environment value of the mapping form",
			in:   "environment:\n  TOKEN: \"abc\\0def\"\n  OK: x\n",
			want: `codeship-services.yml:4: service "app": key "environment": "TOKEN": contains a NUL byte`,
		},
		{
			name: "a NUL byte in an environment value of the list form",
			in:   "environment: [\"OK=x\", \"TOKEN=abc\\0\"]\n",
			want: `key "environment": "TOKEN": contains a NUL byte`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "app:\n  image: alpine\n  " + strings.ReplaceAll(strings.TrimSuffix(tc.in, "\n"), "\n", "\n  ") + "\n"
			_, _, err := ParseServices("codeship-services.yml", []byte(in))
			want := tc.want
			if !strings.HasPrefix(want, "codeship-services.yml") {
				want = pre + want
			}
			if err == nil {
				t.Fatalf("ParseServices succeeded on\n%s\nwant error:\n%s", in, want)
			}
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("ParseServices of\n%s\nerror (-want +got):\n%s", in, diff)
			}
		})
	}
}

func TestSmuggledCharacters(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services string // okServices when empty
		steps    string // okSteps when empty
		want     string
	}{
		{
			name:  "an escape character in a step name",
			steps: "- service: app\n- name: \"\\e[31mred\"\n  service: app\n",
			want:  `codeship-steps.yml:2: key "name": contains a control character (U+001B)`,
		},
		{
			name:  "a newline in a step name",
			steps: "- name: \"a\\nb\"\n  service: app\n",
			want:  `codeship-steps.yml:1: key "name": contains a control character (U+000A)`,
		},
		{
			name:  "a tab, DEL and a C1 control character in step names",
			steps: "- {name: \"a\\tb\", service: app}\n- {name: \"a\\x7f\", service: app}\n- {name: \"a\\x9b\", service: app}\n",
			want: `codeship-steps.yml:1: key "name": contains a control character (U+0009)` + "\n" +
				`codeship-steps.yml:2: key "name": contains a control character (U+007F)` + "\n" +
				`codeship-steps.yml:3: key "name": contains a control character (U+009B)`,
		},
		{
			name:  "a step name with printable unicode is fine next to a bad one",
			steps: "- {name: \"tëst ✓\", service: app}\n- {name: \"\\0\", service: app}\n",
			want:  `codeship-steps.yml:2: key "name": contains a control character (U+0000)`,
		},
		{
			name:  "a newline in a tag",
			steps: "- name: t\n  service: app\n  tag: \"main\\n\"\n",
			want:  `codeship-steps.yml:3: step "t": key "tag": contains a control character (U+000A)`,
		},
		{
			name:  "an escape character in an exclude regular expression",
			steps: "- service: app\n  exclude: \"^\\e(\"\n",
			want:  `codeship-steps.yml:2: key "exclude": contains a control character (U+001B)`,
		},
		{
			name:  "a step service with an escape character is an unknown service, quoted",
			steps: "- name: t\n  service: \"app\\e[2J\"\n",
			want:  `codeship-steps.yml:2: step "t": unknown service "app\x1b[2J"`,
		},
		{
			name:  "a services list with a newline is an unknown service, quoted",
			steps: "- type: serial\n  services: [app, \"db\\nx\"]\n  steps: [{command: x}]\n",
			want:  `codeship-steps.yml:2: unknown service "db\nx"`,
		},
		{
			name:     "a service name with a control character is invalid and quoted",
			services: "\"app\\e[31m\":\n  image: alpine\n\"db\\n\":\n  image: alpine\n",
			steps:    "- service: \"app\\e[31m\"\n",
			want: `codeship-services.yml:1: service "app\x1b[31m": invalid service name: want letters, digits, '_', '.' and '-', starting with a letter or digit` + "\n" +
				`codeship-services.yml:3: service "db\n": invalid service name: want letters, digits, '_', '.' and '-', starting with a letter or digit`,
		},
		{
			name:     "an unknown key with an escape character is quoted",
			services: "app:\n  image: alpine\n  \"\\e]0;x\\a\": 1\n",
			want:     `codeship-services.yml:3: service "app": unknown key "\x1b]0;x\a"`,
		},
		{
			name:     "a build image with a control character and upper case is quoted",
			services: "app:\n  build:\n    image: \"App\\e[31m\"\n",
			want:     `codeship-services.yml:3: service "app": key "build.image": "App\x1b[31m" is not an image name: it contains a control character (U+001B)`,
		},
		{
			name:     "a NUL byte in build args of both forms",
			services: "app:\n  build:\n    args:\n      TOKEN: \"a\\0\"\nb:\n  build:\n    args: [\"TOKEN=\\0\"]\n",
			want: `codeship-services.yml:4: service "app": key "build.args": "TOKEN": contains a NUL byte` + "\n" +
				`codeship-services.yml:7: service "b": key "build.args": "TOKEN": contains a NUL byte`,
		},
		{
			name:     "a NUL byte in the name of a variable is reported as before",
			services: "app:\n  image: alpine\n  environment: [\"A\\0B=1\"]\n",
			want:     `codeship-services.yml:3: service "app": environment "A\x00B=1": variable name "A\x00B" contains '=' or NUL`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			services, steps := tc.services, tc.steps
			if services == "" {
				services = okServices
			}
			if steps == "" {
				steps = okSteps
			}
			dir := writeFiles(t, map[string]string{
				"codeship-services.yml": services,
				"codeship-steps.yml":    steps,
			})
			_, err := Load(dir, "", "")
			if err == nil {
				t.Fatalf("Load succeeded, want error:\n%s", tc.want)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("Load error (-want +got):\n%s", diff)
			}
			for _, r := range err.Error() {
				if r != '\n' && unicode.IsControl(r) {
					t.Errorf("Load error holds the control character %U", r)
				}
			}
		})
	}
}
