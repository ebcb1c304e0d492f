package config

import "slices"

// Graph is how the services of a project refer to each other (volumes_from, depends_on,
// links, dockercfg_service), computed once by Load, which also refuses references to
// missing services and cycles: the other packages ask it, and none walks the services
// itself.
type Graph struct {
	refs map[string][]edge // by service, in the order written
	svc  map[string]*Service
}

// newGraph is the graph of services whose references checkServices found valid.
func newGraph(services map[string]*Service) *Graph {
	g := &Graph{refs: map[string][]edge{}, svc: services}
	for name, s := range services {
		for _, e := range edges(s) {
			if services[e.target] != nil && e.target != name {
				g.refs[name] = append(g.refs[name], e)
			}
		}
	}
	return g
}

// Closure returns the roots and every service they reach through volumes_from,
// depends_on, links and, with credentials, dockercfg_service, each once: a service before
// the services it refers to, in the order written.
func (g *Graph) Closure(credentials bool, roots ...string) []string {
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		out = append(out, name)
		for _, e := range g.refs[name] {
			if credentials || e.key != "dockercfg_service" {
				visit(e.target)
			}
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// Dependencies returns the services that name needs started (depends_on and links),
// transitively, each after the services it needs itself; name is not among them.
func (g *Graph) Dependencies(name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	var visit func(string)
	visit = func(n string) {
		for _, e := range g.refs[n] {
			if (e.key == "depends_on" || e.key == "links") && !seen[e.target] {
				seen[e.target] = true
				visit(e.target)
				out = append(out, e.target)
			}
		}
	}
	visit(name)
	return out
}

// Need is a service that another must wait for, and the depends_on condition it waits
// for ("" for the short forms and links).
type Need struct {
	Service   string
	Condition string
}

// Needs returns the services name waits for before it starts, once each: its depends_on
// entries, then its links.
func (g *Graph) Needs(name string) []Need {
	var out []Need
	seen := map[string]bool{}
	add := func(svc, cond string) {
		if !seen[svc] {
			seen[svc] = true
			out = append(out, Need{svc, cond})
		}
	}
	s := g.svc[name]
	if s == nil {
		return nil
	}
	for _, r := range s.DependsOn {
		add(r.Service, r.Condition)
	}
	for _, l := range s.Links {
		add(l.Service, "")
	}
	return out
}

// VolumeOrder returns the services whose containers a step with the roots makes for
// their volumes: each root and, transitively, the services it names in volumes_from, each
// after its sources, the roots in the order given.
func (g *Graph) VolumeOrder(roots ...string) []string {
	var out []string
	visiting := map[string]bool{} // Load refuses cycles; a graph made otherwise still ends
	var visit func(string)
	visit = func(name string) {
		if slices.Contains(out, name) || visiting[name] {
			return
		}
		visiting[name] = true
		if s := g.svc[name]; s != nil {
			for _, f := range s.VolumesFrom {
				visit(f.Service)
			}
		}
		out = append(out, name)
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}
