package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/crun-ci/crun-ci/network"
	"github.com/google/go-cmp/cmp"

	"os/exec"
	"strings"
	"testing"
)

// A dependency serving TCP is reached by its service name and by a link alias; the step's
// hostname is the service's.
func TestADependencyIsReachedByNameOnTheStepNetwork(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
web:
  image: busybox
  command: sh -c 'mkdir -p /www && echo served by web > /www/index.html && exec httpd -f -p 8080 -h /www'
  healthcheck:
    test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    interval: 100ms
    retries: 50
app:
  image: busybox
  hostname: tester
  links: ["web:frontend"]
`,
		"codeship-steps.yml": `
- name: by-name
  service: app
  command: sh -c 'wget -q -O - http://web:8080/; wget -q -O - http://frontend:8080/; hostname; ip -4 -o addr show eth0'
`,
	})
	r := runSteps(t, dir, "--stop-timeout", "1s")
	wantCode(t, r, 0)
	// The address is one of the suite's subnet, stored in its state directory.
	var stored struct{ Subnet string }
	data, err := os.ReadFile(filepath.Join(stateDir, "network.json"))
	if err == nil {
		err = json.Unmarshal(data, &stored)
	}
	_, subnet, perr := net.ParseCIDR(stored.Subnet)
	if err != nil || perr != nil {
		t.Fatalf("the stored subnet %q: %v %v", stored.Subnet, err, perr)
	}
	m := regexp.MustCompile(`by-name/app \| .*inet ([0-9.]+)/`).FindStringSubmatch(r.stdout)
	if m == nil || !subnet.Contains(net.ParseIP(m[1])) {
		t.Errorf("app's address %v is not in the step networks' subnet %s", m, subnet)
	}
	wantContains(t, "stdout", r.stdout, "by-name/app | served by web\nby-name/app | served by web\n", "by-name/app | tester\n")
}

func TestParallelStepsCanBindTheSamePort(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - {name: a, service: app, command: "sh -c 'nc -l -p 9000 & sleep 0.3; echo x | nc -w 1 127.0.0.1 9000 && echo a bound 9000'"}
  - {name: b, service: app, command: "sh -c 'nc -l -p 9000 & sleep 0.3; echo x | nc -w 1 127.0.0.1 9000 && echo b bound 9000'"}
`,
	})
	r := runSteps(t, dir, "--stop-timeout", "1s")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "a/app | a bound 9000\n", "b/app | b bound 9000\n")
}

// Two services of one step listen on the same port: each container has an address of
// its own on the step's network, and its name leads there.
func TestServicesOfAStepListenOnTheSamePort(t *testing.T) {
	requireRoot(t)
	web := func(name string) string {
		return fmt.Sprintf(`%s:
  image: busybox
  command: sh -c 'mkdir -p /www && echo served by %s > /www/index.html && exec httpd -f -p 8080 -h /www'
  healthcheck:
    test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    interval: 100ms
    retries: 50
`, name, name)
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": web("one") + web("two") + "app:\n  image: busybox\n  depends_on: [one, two]\n",
		"codeship-steps.yml": `
- name: both
  service: app
  command: sh -c 'wget -q -O - http://one:8080/; wget -q -O - http://two:8080/; for h in one two app; do grep -w $h /etc/hosts | cut -f1; done | sort -u | wc -l'
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "both/app | served by one\nboth/app | served by two\n", "both/app | 3\n")
}

// Steps are isolated from each other: a parallel step reaches neither the address of
// another step's server nor, with raw sockets (cap_add NET_RAW), its link layer; without
// cap_add a step has no raw sockets at all.
func TestParallelStepsAreIsolated(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
server:
  image: busybox
  volumes: ["./shared:/shared"]
attacker:
  image: busybox
  cap_add: [NET_RAW]
  volumes: ["./shared:/shared"]
plain:
  image: busybox
`,
		"shared/.gitkeep": "",
		"codeship-steps.yml": `
- type: parallel
  steps:
  - name: serve
    service: server
    command: sh -c 'echo hello > /tmp/index.html; httpd -p 8080 -h /tmp; ip -4 -o addr show eth0 | sed "s/.*inet \([0-9.]*\).*/\1/" > /shared/ip; while [ ! -e /shared/done ]; do sleep 0.1; done; echo served'
  - name: attack
    service: attacker
    command: sh -c 'while [ ! -s /shared/ip ]; do sleep 0.1; done; ip=$(cat /shared/ip); if wget -q -O - http://$ip:8080/; then echo reached by address; else echo not reached by address; fi; if arping -c 2 -w 2 -I eth0 $ip; then echo reached by arp; else echo not reached by arp; fi; touch /shared/done'
- name: no-raw
  service: plain
  command: sh -c 'arping -c 1 -w 1 -I eth0 127.0.0.1 2>&1; grep CapEff /proc/self/status'
`,
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "attack/attacker | not reached by address\n", "attack/attacker | not reached by arp\n", "serve/server | served\n",
		"no-raw/plain | arping: socket: Operation not permitted\n")
	wantNotContains(t, "stdout", r.stdout, "attack/attacker | reached", "attack/attacker | hello")
	// CapEff without bit 13, CAP_NET_RAW.
	m := regexp.MustCompile(`no-raw/plain \| CapEff:\s+([0-9a-f]+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatal("no CapEff line")
	}
	if caps, _ := strconv.ParseUint(m[1], 16, 64); caps&(1<<13) != 0 {
		t.Errorf("CapEff %s has CAP_NET_RAW", m[1])
	}
}

// --subnet moves the step networks; the choice is stored with the state directory, so
// a later run without the flag keeps it, and it is refused when it overlaps a route.
func TestSubnetIsChosenAndStored(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: addr, service: app, command: \"sh -c 'ip -4 -o addr show eth0'\"}\n",
	})
	wantCode(t, runSteps(t, dir), 0) // stores the subnet, if no test did yet
	var stored struct{ Subnet string }
	data, err := os.ReadFile(filepath.Join(stateDir, "network.json"))
	if err == nil {
		err = json.Unmarshal(data, &stored)
	}
	if err != nil || stored.Subnet == "" {
		t.Fatalf("the suite's state directory stores no subnet (%v): %s", err, data)
	}
	t.Cleanup(func() { crunci(t, "steps", "--dir", dir, "--subnet", stored.Subnet) })
	r := runSteps(t, dir, "--subnet", "10.123.0.0/16")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "inet 10.123.")
	r = runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "inet 10.123.")
	r = runSteps(t, dir, "--subnet", hostAddress(t)+"/24")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "overlaps the route to", "choose another subnet with --subnet")
}

// Two hundred steps of three containers on the step networks leave no bridge, veth,
// slice or iptables rule behind: iptables-save is the same before and after.
func TestTwoHundredStepsLeakNoNetworkState(t *testing.T) {
	requireRoot(t)
	services := "app:\n  image: busybox\n  depends_on: [db, cache]\ndb:\n  image: busybox\n  command: sleep 600\ncache:\n  image: busybox\n  command: sleep 600\n"
	// The first run makes what stays: the rules of the subnet.
	first := project(t, map[string]string{"codeship-services.yml": services, "codeship-steps.yml": "- {service: app, command: 'true'}\n"})
	wantCode(t, runSteps(t, first), 0)
	var steps strings.Builder
	steps.WriteString("- type: parallel\n  steps:\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&steps, "  - {service: app, command: 'true'}\n")
	}
	dir := project(t, map[string]string{"codeship-services.yml": services, "codeship-steps.yml": steps.String()})
	vethsBefore, rulesBefore := veths(t), iptablesRules(t)
	r := runSteps(t, dir, "--max-parallel", "4")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "200 passed")
	// More would be a leak; fewer can be another test's step ending meanwhile.
	if got := veths(t); got > vethsBefore {
		t.Errorf("%d veth interfaces after 200 steps, %d before", got, vethsBefore)
	}
	if diff := cmp.Diff(rulesBefore, iptablesRules(t)); diff != "" {
		t.Errorf("iptables-save after 200 steps of three containers (-before +after):\n%s", diff)
	}
	// assertClean (in runSteps) checked that no slice, bridge or veth of the suite stays.
}

func veths(t testing.TB) int {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	return strings.Count(string(out), "\n")
}

// iptablesRules are the rules of iptables-save, without its comments and counters, and
// without the rules of other crun-ci state directories on the host (which come and go
// with their builds, and are not the suite's to count).
func iptablesRules(t testing.TB) []string {
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	ours := `"crun-ci ` + network.DefaultBridge(stateDir) + ` `
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, `--comment "crun-ci `) && !strings.Contains(l, ours) {
			continue
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, regexp.MustCompile(`^(:\S+ \S+) \[\d+:\d+\]$`).ReplaceAllString(l, "$1"))
		}
	}
	return rules
}

func TestNetworkModesHostAndNone(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    "- {name: ifaces, service: app, command: \"sh -c 'ip -o link | wc -l'\"}\n",
	})
	r := runSteps(t, dir, "--network", "none")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "ifaces/app | 1\n") // loopback only
	r = runSteps(t, dir, "--network", "host")
	wantCode(t, r, 0)
	wantNotContains(t, "stdout", r.stdout, "ifaces/app | 1\n")
	r = runSteps(t, dir, "--network", "bridged")
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "--network")
}

// hostAddress is an IPv4 address of the host outside the step networks: that of an
// interface that is up and no loopback, veth or bridge of crun-ci's.
func hostAddress(t *testing.T) string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 || strings.HasPrefix(i.Name, "cr") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	t.Fatal("no IPv4 address on the host besides loopback")
	return ""
}

// A step's container gets Docker's link variables of the services it links to or
// depends on that expose ports.
func TestLinkVariables(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
db:
  image: busybox
  command: sleep 600
  expose: ["5432"]
cache:
  image: busybox
  command: sleep 600
app:
  image: busybox
  links: ["db:database"]
  depends_on: [cache]
`,
		"codeship-steps.yml": "- {name: env, service: app, command: \"sh -c 'env | grep -E \\\"^(DATABASE|CACHE)_\\\" | sort'\"}\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "env/app | DATABASE_NAME=/app/database\n", "env/app | DATABASE_PORT=tcp://database:5432\n",
		"env/app | DATABASE_PORT_5432_TCP=tcp://database:5432\n", "env/app | DATABASE_PORT_5432_TCP_ADDR=database\n",
		"env/app | DATABASE_PORT_5432_TCP_PORT=5432\n", "env/app | DATABASE_PORT_5432_TCP_PROTO=tcp\n")
	wantNotContains(t, "stdout", r.stdout, "CACHE_") // exposes nothing
}

// The Compose keys that change a container's file systems, kernel settings and names
// do what Compose does: read_only, tmpfs, sysctls, extra_hosts, dns and dns_search.
func TestComposeKeysOfFilesKernelAndNames(t *testing.T) {
	requireRoot(t)
	dir := project(t, map[string]string{
		"codeship-services.yml": `
app:
  image: busybox
  read_only: true
  tmpfs: ["/scratch:size=1m,mode=1777"]
  sysctls: {net.core.somaxconn: "1234", kernel.shmmax: "65536"}
  extra_hosts: ["db.example:10.1.2.3"]
  dns: [192.0.2.53]
  dns_search: example.com
`,
		"codeship-steps.yml": `- {name: keys, service: app, command: "sh -c 'touch /root-file 2>/dev/null && echo root writable || echo root read-only; echo x > /scratch/f && echo scratch writable; grep \" /scratch \" /proc/mounts | cut -d\" \" -f3,4; cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax; grep db.example /etc/hosts; grep -E \"^(nameserver|search)\" /etc/resolv.conf'"}` + "\n",
	})
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "keys/app | root read-only\n", "keys/app | scratch writable\n",
		"keys/app | tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k", "keys/app | 1234\n", "keys/app | 65536\n",
		"keys/app | 10.1.2.3\tdb.example\n", "keys/app | nameserver 192.0.2.53\n", "keys/app | search example.com\n")
	// A net.* sysctl in the host's network would change the host's.
	r = runSteps(t, dir, "--network", "host")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, `sysctl net.core.somaxconn would change the host's network with --network host`)
	// Without it, what does not apply to the host's files is said, not dropped silently.
	data, err := os.ReadFile(filepath.Join(dir, "codeship-services.yml"))
	if err != nil {
		t.Fatal(err)
	}
	services := strings.Replace(string(data), `  sysctls: {net.core.somaxconn: "1234", kernel.shmmax: "65536"}`+"\n", "", 1)
	if err := os.WriteFile(filepath.Join(dir, "codeship-services.yml"), []byte(services), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runSteps(t, dir, "--network", "host")
	wantCode(t, r, 0)
	wantContains(t, "stderr", r.stderr, `service \"app\": extra_hosts, dns and dns_search ignored with --network host`)
}
