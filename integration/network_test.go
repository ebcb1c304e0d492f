package integration

import (
	"fmt"
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
  command: sh -c 'wget -q -O - http://web:8080/; wget -q -O - http://frontend:8080/; hostname; ip -4 addr show eth0 | grep -c "inet 10.89."'
`,
	})
	r := runSteps(t, dir, "--stop-timeout", "1s")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "by-name/app | served by web\nby-name/app | served by web\n", "by-name/app | tester\n", "by-name/app | 1\n")
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

// Fifty steps on the bridge leave no address, veth or iptables rule behind.
func TestFiftyStepsLeakNoNetworkState(t *testing.T) {
	requireRoot(t)
	var steps strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&steps, "- {service: app, command: 'true'}\n")
	}
	dir := project(t, map[string]string{
		"codeship-services.yml": "app:\n  image: busybox\n",
		"codeship-steps.yml":    steps.String(),
	})
	vethsBefore, rulesBefore := veths(t), iptablesLines(t)
	r := runSteps(t, dir)
	wantCode(t, r, 0)
	// More would be a leak; fewer can be another test's step ending meanwhile.
	if got := veths(t); got > vethsBefore {
		t.Errorf("%d veth interfaces after 50 steps, %d before", got, vethsBefore)
	}
	if got := iptablesLines(t); got > rulesBefore+1 { // +1: the masquerade rule of the subnet, made once
		t.Errorf("iptables-save has %d lines after 50 steps, %d before", got, rulesBefore)
	}
	// assertClean (in runSteps) checked that no address stays allocated.
}

func veths(t *testing.T) int {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	return strings.Count(string(out), "\n")
}

func iptablesLines(t *testing.T) int {
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ":") {
			n++
		}
	}
	return n
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
