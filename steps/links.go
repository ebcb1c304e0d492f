package steps

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// linkEnv is Docker's legacy link variables for a container of svc, as Codeship's
// Docker gave them: for each service svc links to (under its alias) or depends on (under
// its name) that exposes ports (EXPOSE in its image, or its expose key),
//
//	DB_NAME=/app/db
//	DB_PORT=tcp://db:5432                 the lowest port, TCP first
//	DB_PORT_5432_TCP=tcp://db:5432
//	DB_PORT_5432_TCP_ADDR=db
//	DB_PORT_5432_TCP_PORT=5432
//	DB_PORT_5432_TCP_PROTO=tcp
//
// The address is the alias, which the step's hosts files resolve to the container's
// address (Docker wrote the address itself). The service's own environment comes after
// these and wins.
func (b *build) linkEnv(name string) []string {
	cfg := b.o.Project.Services[name]
	type target struct{ alias, service string }
	var targets []target
	linked := map[string]bool{}
	for _, l := range cfg.Links {
		targets = append(targets, target{cmp.Or(l.Alias, l.Service), l.Service})
		linked[l.Service] = true
	}
	for _, d := range cfg.DependsOn {
		if !linked[d.Service] {
			targets = append(targets, target{d.Service, d.Service})
		}
	}
	var env []string
	for _, t := range targets {
		ports := b.exposed(t.service)
		if len(ports) == 0 {
			continue
		}
		prefix := envName(t.alias)
		env = append(env, fmt.Sprintf("%s_NAME=/%s/%s", prefix, name, t.alias))
		for i, p := range ports {
			url := fmt.Sprintf("%s://%s:%d", p.proto, t.alias, p.port)
			if i == 0 {
				env = append(env, prefix+"_PORT="+url)
			}
			key := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.port, strings.ToUpper(p.proto))
			env = append(env, key+"="+url, key+"_ADDR="+t.alias, key+"_PORT="+strconv.Itoa(p.port), key+"_PROTO="+p.proto)
		}
	}
	return env
}

type port struct {
	port  int
	proto string
}

// exposed are the ports a service's containers expose, lowest first, TCP before others
// of the same number.
func (b *build) exposed(name string) []port {
	seen := map[port]bool{}
	add := func(spec string) {
		n, proto, _ := strings.Cut(spec, "/")
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 || v > 65535 {
			return
		}
		seen[port{v, cmp.Or(strings.ToLower(proto), "tcp")}] = true
	}
	if svc := b.svc(name); svc != nil {
		for _, e := range svc.cfg.Expose {
			add(e.Text)
		}
		if svc.image != nil {
			for spec := range svc.image.Config.ExposedPorts {
				add(spec)
			}
		}
	}
	var out []port
	for p := range seen {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b port) int {
		if c := cmp.Compare(a.port, b.port); c != 0 {
			return c
		}
		if (a.proto == "tcp") != (b.proto == "tcp") {
			if a.proto == "tcp" {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.proto, b.proto)
	})
	return out
}

// envName is an alias as the start of a variable's name: upper case, and '_' for what
// is not a letter or digit.
func envName(alias string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, alias)
}
