package steps

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crun-ci/crun-ci/config"
)

// dockerSocket is where a container with add_docker: true finds the Docker daemon's
// socket, as under jet; DOCKER_HOST says so.
const dockerSocket = "/var/run/docker.sock"

// defaultDockerSocket is where a host's Docker daemon listens, named in the error that
// asks for --docker-host.
const defaultDockerSocket = "/var/run/docker.sock"

// dockerHost is the Docker daemon the operator passes to containers with add_docker:
// true (--docker-host): a unix socket of the host, bind-mounted at dockerSocket, or a
// TCP address, given as DOCKER_HOST only.
type dockerHost struct {
	socket string   // the host's socket, "" for TCP
	env    []string // DOCKER_HOST=…, and with TCP crun-ci's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
	// certs is DOCKER_CERT_PATH, mounted read-only at the same path, as jet did.
	certs string
}

// parseDockerHost reads --docker-host: unix:///path (an existing socket) or
// tcp://host:port.
func parseDockerHost(s string) (*dockerHost, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--docker-host %q: %w", s, err)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if !filepath.IsAbs(p) || u.Host != "" {
			return nil, fmt.Errorf("--docker-host %q: want unix:///absolute/path", s)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--docker-host %q: %w", s, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--docker-host %q: %s is not a socket", s, p)
		}
		return &dockerHost{socket: filepath.Clean(p), env: []string{"DOCKER_HOST=unix://" + dockerSocket}}, nil
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("--docker-host %q: want tcp://HOST:PORT", s)
		}
		d := &dockerHost{env: []string{"DOCKER_HOST=tcp://" + u.Host}}
		// A daemon behind TLS: the operator's client settings, as jet passed the host's.
		if v, ok := os.LookupEnv("DOCKER_TLS_VERIFY"); ok {
			d.env = append(d.env, "DOCKER_TLS_VERIFY="+v)
		}
		if p := os.Getenv("DOCKER_CERT_PATH"); p != "" {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() || !filepath.IsAbs(p) {
				return nil, fmt.Errorf("--docker-host %q: DOCKER_CERT_PATH %q is not an absolute path of a directory", s, p)
			}
			d.certs = filepath.Clean(p)
			d.env = append(d.env, "DOCKER_CERT_PATH="+d.certs)
		}
		return d, nil
	}
	return nil, fmt.Errorf("--docker-host %q: want unix:///path or tcp://HOST:PORT", s)
}

// checkAddDocker says, for each of the services named that has add_docker: true, why
// it cannot have a Docker daemon, when the operator named none. A pipeline never gets
// the host's daemon by asking: with its socket a container is root on the host.
func (b *build) checkAddDocker(names []string) []error {
	if b.docker != nil {
		return nil
	}
	var errs []error
	for _, name := range names {
		cfg := b.o.Project.Services[name]
		if cfg == nil || !cfg.AddDocker {
			continue
		}
		why := "no Docker daemon was named"
		if fi, err := os.Stat(defaultDockerSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			why = fmt.Sprintf("%s is there, but the operator has not passed it in", defaultDockerSocket)
		}
		errs = append(errs, &config.Error{Pos: cfg.Pos, Service: name, Err: fmt.Errorf(
			"add_docker: true: %s; --docker-host unix://%s gives the pipeline that daemon, and with it root on this host", why, defaultDockerSocket)})
	}
	return errs
}

// dockerMounts are the mounts that give a container of cfg the Docker daemon: its
// socket, or the client certificates of a TCP daemon.
func (b *build) dockerMounts(cfg *config.Service) []specs.Mount {
	if !cfg.AddDocker || b.docker == nil {
		return nil
	}
	var out []specs.Mount
	if b.docker.socket != "" {
		out = append(out, specs.Mount{Destination: dockerSocket, Type: "bind", Source: b.docker.socket, Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"}})
	}
	if b.docker.certs != "" {
		out = append(out, specs.Mount{Destination: b.docker.certs, Type: "bind", Source: b.docker.certs, Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
	}
	return out
}
