package steps

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDockerHost(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	t.Setenv("DOCKER_TLS_VERIFY", "")
	os.Unsetenv("DOCKER_TLS_VERIFY")
	t.Setenv("DOCKER_CERT_PATH", "")
	for _, tc := range []struct {
		in, socket, env, err string
	}{
		{in: "unix://" + sock, socket: sock, env: "DOCKER_HOST=unix:///var/run/docker.sock"},
		{in: "tcp://127.0.0.1:2375", env: "DOCKER_HOST=tcp://127.0.0.1:2375"},
		{in: "tcp://docker:2376/", env: "DOCKER_HOST=tcp://docker:2376"},
		{in: "unix://" + file, err: "is not a socket"},
		{in: "unix://" + filepath.Join(dir, "none"), err: "no such file or directory"},
		{in: "unix://relative/docker.sock", err: "want unix:///absolute/path"},
		{in: "tcp://127.0.0.1", err: "want tcp://HOST:PORT"},
		{in: "/var/run/docker.sock", err: "want unix:///path or tcp://HOST:PORT"},
		{in: "ssh://me@host", err: "want unix:///path or tcp://HOST:PORT"},
	} {
		d, err := parseDockerHost(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--docker-host ") {
				t.Errorf("%s: %v, want an error with %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case d.socket != tc.socket || strings.Join(d.env, " ") != tc.env || d.certs != "":
			t.Errorf("%s: %+v, want socket %q and %q", tc.in, *d, tc.socket, tc.env)
		}
	}

	// A TLS daemon: the operator's client settings go in, the certificates mounted.
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	t.Setenv("DOCKER_CERT_PATH", dir)
	d, err := parseDockerHost("tcp://docker.example:2376")
	if err != nil {
		t.Fatal(err)
	}
	if want := "DOCKER_HOST=tcp://docker.example:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=" + dir; strings.Join(d.env, " ") != want || d.certs != dir {
		t.Errorf("%+v, want %q and certificates %s", *d, want, dir)
	}
	t.Setenv("DOCKER_CERT_PATH", file)
	if _, err := parseDockerHost("tcp://docker.example:2376"); err == nil || !strings.Contains(err.Error(), "is not an absolute path of a directory") {
		t.Errorf("DOCKER_CERT_PATH a file: %v", err)
	}
}

func TestAddDockerWithoutADaemonIsRefused(t *testing.T) {
	f := newFake(t)
	_, _, err := run(t, f, load(t, "app:\n  image: busybox\n  add_docker: true\n", "- {service: app, command: docker ps}\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), `codeship-services.yml:1: service "app": add_docker: true: `) {
		t.Fatalf("Run: %v", err)
	}
	if len(f.started) != 0 {
		t.Errorf("started %q", f.started)
	}
}
