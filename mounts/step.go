package mounts

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Service is what a step's mounts depend on in one service.
type Service struct {
	Volumes []Volume
	// Hosts holds the resolved host path of each host volume, by index into Volumes (""
	// for anonymous volumes).
	Hosts       []string
	VolumesFrom []From
}

// From is one `volumes_from` entry.
type From struct {
	Service  string
	ReadOnly bool
}

// Anon is an anonymous volume made for a step.
type Anon struct {
	Service string
	Target  string
	// Dir is the host directory that backs it: <volumes>/<service>/<index>.
	Dir    string
	NoCopy bool
}

// Step is the mounts of one step's containers.
type Step struct {
	// Containers lists the services of the step in creation order: volumes_from sources
	// before the services that mount them, the roots in the order given, each after its
	// sources.
	Containers []string
	// Mounts by service.
	Mounts map[string][]specs.Mount
	// Anon lists the anonymous volumes to create before the containers.
	Anon []Anon
}

// ForStep plans the mounts of a step whose containers are the services of order, in that
// order: each after the services it names in volumes_from (config.Graph.VolumeOrder gives
// it; a service of order whose source comes later, or is itself, is an error). Each gets
// its own volumes and those of its volumes_from sources, transitively. Anonymous volumes
// get directories below volumes. A service's own volume wins over one with the same
// target that comes through volumes_from; ":ro" on volumes_from makes every mount it
// brings read-only.
//
// A step that starts more than one service (its service and its dependencies) has them
// all in order: every anonymous volume is made once for the step, so all the containers
// that reach it through volumes_from share it.
func ForStep(services map[string]Service, volumes string, order []string) (*Step, error) {
	s := &Step{Mounts: map[string][]specs.Mount{}}
	planned := map[string]bool{}
	for _, name := range order {
		if planned[name] {
			continue
		}
		svc, ok := services[name]
		if !ok {
			return nil, fmt.Errorf("volumes_from names unknown service %q", name)
		}
		for _, f := range svc.VolumesFrom {
			if !planned[f.Service] {
				return nil, fmt.Errorf("service %q: volumes_from %q is not planned before it", name, f.Service)
			}
		}
		var ms []specs.Mount
		have := map[string]bool{}
		for i, v := range svc.Volumes {
			host := ""
			if i < len(svc.Hosts) {
				host = svc.Hosts[i]
			}
			if v.Anonymous() {
				host = filepath.Join(volumes, name, strconv.Itoa(i))
				s.Anon = append(s.Anon, Anon{Service: name, Target: v.Target, Dir: host, NoCopy: v.NoCopy})
			} else if host == "" {
				return nil, fmt.Errorf("service %q: host path of %q is not resolved", name, v.Source)
			}
			if have[v.Target] {
				return nil, fmt.Errorf("service %q: two volumes at %s", name, v.Target)
			}
			have[v.Target] = true
			ms = append(ms, Bind(host, v.Target, v.ReadOnly))
		}
		for _, f := range svc.VolumesFrom {
			for _, m := range s.Mounts[f.Service] {
				if have[m.Destination] {
					continue
				}
				have[m.Destination] = true
				if f.ReadOnly {
					m = Bind(m.Source, m.Destination, true)
				}
				ms = append(ms, m)
			}
		}
		// Parents before children, so that a volume inside another one is mounted on top.
		sort.SliceStable(ms, func(i, j int) bool { return depth(ms[i].Destination) < depth(ms[j].Destination) })
		s.Mounts[name] = ms
		s.Containers = append(s.Containers, name)
		planned[name] = true
	}
	return s, nil
}

func depth(p string) int {
	n := 0
	for _, c := range p {
		if c == '/' {
			n++
		}
	}
	return n
}
