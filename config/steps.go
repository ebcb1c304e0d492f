package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseSteps parses a steps file into its step tree: services are inherited, groups with
// `services:` are expanded and every step is named (see the package documentation).
// Whether the services exist is not checked here (Load does that). file names the file
// in error messages. Every problem found is returned, as an errors.Join of *Error; the
// steps are then nil.
func ParseSteps(file string, data []byte) ([]*Step, error) {
	r := parseSteps(file, data)
	if err := join(sortErrors(r.errs)); err != nil {
		return nil, err
	}
	return r.steps, nil
}

// stepsFile is the outcome of parsing a steps file.
type stepsFile struct {
	steps []*Step
	// refs are the service names written in the file, each once, for Load to check.
	refs    []stepRef
	errs    []*Error
	ignored []Ignored
}

// stepRef is one service name written in a steps file (`service:` or an entry of
// `services:`).
type stepRef struct {
	service string
	pos     Pos
	step    string // the name as written, if any
	key     string // the key other than `service` and `services` that names it, if any
}

// rawStep is a step as written, before inheritance, expansion and naming.
type rawStep struct {
	step     Step // Service is only the one written on the step
	services []string
	steps    []*rawStep
	onFail   []*rawStep
}

func parseSteps(name string, data []byte) *stepsFile {
	f := &file{name: name}
	r := &stepsFile{}
	defer func() { r.errs, r.ignored = f.errs, f.ignored }()
	root := f.decode(data)
	if root == nil {
		return r
	}
	root = resolve(root)
	if root.Kind != yaml.SequenceNode {
		f.errorf(root, where{}, "want a list of steps, got %s", kind(root))
		return r
	}
	if len(root.Content) == 0 {
		f.errorf(root, where{}, "no steps")
		return r
	}
	raws := f.steps(root.Content, false, &r.refs)
	if countSteps(raws) > maxSteps {
		f.add(Pos{File: f.name}, where{}, fmt.Errorf("more than %d steps once aliases and \"services\" groups are expanded", maxSteps))
		return r
	}
	for _, raw := range raws {
		r.steps = append(r.steps, build(raw, "", ""))
	}
	f.nameSteps(r.steps)
	return r
}

// steps parses a list of steps. inherited says whether a group around them names a
// service.
func (f *file) steps(items []*yaml.Node, inherited bool, refs *[]stepRef) []*rawStep {
	var out []*rawStep
	for _, item := range items {
		if r := f.step(item, inherited, refs); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// step parses one entry of a steps list, and its children.
func (f *file) step(n *yaml.Node, inherited bool, refs *[]stepRef) *rawStep {
	m := resolve(n)
	if m.Kind != yaml.MappingNode {
		f.errorf(m, where{}, "want a step (a mapping), got %s", kind(m))
		return nil
	}
	r := &rawStep{}
	s := &r.step
	s.Pos = f.pos(m)
	ps := f.pairs(m, where{})
	for _, p := range ps {
		if p.key.Value != "name" {
			continue
		}
		v := resolve(p.val)
		name, err := scalar(v)
		c, hasControl := controlChar(name)
		switch {
		case err != nil:
			f.errorf(v, where{}, "key \"name\": %v", err)
		case name == "":
			f.errorf(v, where{}, "key \"name\": empty")
		case hasControl:
			f.errorf(v, where{}, "key \"name\": contains a control character (%U)", c)
		default:
			s.Name, s.NameGiven = name, true
		}
	}
	w := where{step: s.Name}

	var typeVal, stepsKey, stepsVal, commandKey, serviceKey, servicesKey, onFailVal *yaml.Node
	var pushKeys []*yaml.Node
	for _, p := range ps {
		k, v := p.key.Value, resolve(p.val)
		switch k {
		case "name":
		case "type":
			typeVal = v
		case "service":
			serviceKey = p.key
			s.Service = f.text(k, v, w)
			if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" && s.Service == "" {
				f.errorf(v, w, "key \"service\": empty")
			}
			if s.Service != "" {
				*refs = append(*refs, stepRef{service: s.Service, pos: f.pos(v), step: s.Name})
			}
		case "services":
			servicesKey = p.key
			r.services = f.serviceList(v, w, refs)
		case "command":
			commandKey = p.key
			s.CommandText = f.text(k, v, w)
			words, err := splitCommand(s.CommandText)
			if err != nil {
				f.errorf(v, w, "key \"command\": %v", err)
			}
			s.Command = words
		case "steps":
			stepsKey, stepsVal = p.key, v
		case "on_fail":
			onFailVal = v
		case "tag":
			s.Tag = f.pattern(k, v, w)
		case "exclude":
			s.Exclude = f.pattern(k, v, w)
		case "timeout":
			s.Timeout = f.duration(k, v, w, false)
		case "image_name":
			pushKeys = append(pushKeys, p.key)
			s.ImageName = f.text(k, v, w)
		case "image_tag":
			pushKeys = append(pushKeys, p.key)
			s.ImageTag = f.text(k, v, w)
		case "registry":
			pushKeys = append(pushKeys, p.key)
			s.Registry = f.text(k, v, w)
		case "encrypted_dockercfg_path":
			pushKeys = append(pushKeys, p.key)
			s.EncryptedDockercfgPath = f.value(k, v, w)
		case "dockercfg_service":
			pushKeys = append(pushKeys, p.key)
			s.DockercfgService = f.value(k, v, w)
			if s.DockercfgService.Text != "" {
				*refs = append(*refs, stepRef{service: s.DockercfgService.Text, pos: s.DockercfgService.Pos, step: s.Name, key: k})
			}
		default:
			f.errorf(p.key, w, "unknown key %q%s", k, Suggest(k, stepKeys))
		}
	}

	s.Type = Run
	if stepsVal != nil {
		s.Type = Serial // also the guess that lets children be checked after an error
	}
	switch {
	case typeVal != nil:
		t, err := scalar(typeVal)
		switch {
		case err != nil:
			f.errorf(typeVal, w, "key \"type\": %v", err)
		case t == "serial":
			s.Type = Serial
		case t == "parallel":
			s.Type = Parallel
		case t == "push":
			s.Type = Push
		case t == "matrix":
			// The steps once per service of `services`, the copies in parallel: a
			// parallel group of services, as Codeship's examples use it.
			s.Type = Parallel
			if servicesKey == nil {
				f.errorf(typeVal, w, "type \"matrix\" needs \"services\", the services its steps run in")
			}
		case t == "manual":
			f.errorf(typeVal, w, "type %q is not supported: it waits for an approval in Codeship's web interface", t)
		default:
			f.errorf(typeVal, w, "unknown type %q (want serial, parallel, matrix or push)", t)
		}
	case stepsVal != nil:
		f.errorf(stepsKey, w, "key \"steps\" needs \"type: serial\" or \"type: parallel\"")
	}
	if serviceKey != nil && servicesKey != nil {
		f.errorf(servicesKey, w, "keys \"service\" and \"services\" cannot be used together")
	}

	what := "a " + s.Type.String() + " step"
	if s.Type == Serial || s.Type == Parallel {
		what = "a " + s.Type.String() + " group"
		if commandKey != nil {
			f.errorf(commandKey, w, "key \"command\" is not allowed in %s", what)
		}
		for _, k := range pushKeys {
			if !credentialKey(k.Value) { // for the images its steps pull
				f.errorf(k, w, "key %q is not allowed in %s", k.Value, what)
			}
		}
		f.encryptedWins(s)
		var items []*yaml.Node
		if stepsVal != nil {
			items = f.list("steps", stepsVal, w)
		}
		if len(items) == 0 && (stepsVal == nil || stepsVal.Kind == yaml.SequenceNode) {
			f.errorf(m, w, "%s needs steps", what)
		}
		r.steps = f.steps(items, inherited || s.Service != "" || len(r.services) > 0, refs)
	} else {
		if stepsKey != nil && typeVal != nil {
			f.errorf(stepsKey, w, "key \"steps\" is not allowed in %s", what)
		}
		if servicesKey != nil {
			f.errorf(servicesKey, w, "key \"services\" is not allowed in %s (only in groups)", what)
		}
		if s.Type == Run {
			for _, k := range pushKeys {
				if !credentialKey(k.Value) { // for the images it pulls
					f.errorf(k, w, "key %q is not allowed in %s", k.Value, what)
				}
			}
			f.encryptedWins(s)
		}
		if s.Type == Push {
			if commandKey != nil {
				f.errorf(commandKey, w, "key \"command\" is not allowed in %s", what)
			}
			if !slices.ContainsFunc(pushKeys, func(k *yaml.Node) bool { return k.Value == "image_name" }) {
				f.errorf(m, w, "%s needs \"image_name\"", what)
			}
			if s.DockercfgService.Text != "" && s.EncryptedDockercfgPath.Text != "" {
				f.add(later(s.DockercfgService.Pos, s.EncryptedDockercfgPath.Pos), w,
					errors.New("keys \"dockercfg_service\" and \"encrypted_dockercfg_path\" cannot be used together"))
			}
		}
		if serviceKey == nil && !inherited {
			f.errorf(m, w, "%s needs a service: set \"service\" on it or on a group around it", what)
		}
	}
	if onFailVal != nil {
		items := f.list("on_fail", onFailVal, w)
		isGroup := s.Type == Serial || s.Type == Parallel
		r.onFail = f.steps(items, inherited || s.Service != "" || !isGroup, refs)
	}
	return r
}

// credentialKey says whether a key of the push keys is one that run steps and groups
// take too: credentials for the images their steps pull.
func credentialKey(k string) bool {
	return k == "encrypted_dockercfg_path" || k == "dockercfg_service"
}

// encryptedWins drops the dockercfg_service of a run step or group that has an
// encrypted_dockercfg_path too, which wins (Codeship's image-registries page), and
// records it as ignored.
func (f *file) encryptedWins(s *Step) {
	if s.DockercfgService.Text == "" || s.EncryptedDockercfgPath.Text == "" {
		return
	}
	ig := Ignored{Pos: s.DockercfgService.Pos, Key: "dockercfg_service"}
	if s.NameGiven {
		ig.Step = s.Name
	}
	f.ignored = append(f.ignored, ig)
	s.DockercfgService = Value{}
}

// duration reads a duration: a Go duration ("90s", "10m", "1h30m") or whole seconds. It
// must be positive, or, with zero, may be 0 (a grace period).
func (f *file) duration(k string, v *yaml.Node, w where, zero bool) time.Duration {
	text, err := scalar(v)
	if err != nil {
		f.errorf(v, w, "key %q: %v", k, err)
		return 0
	}
	d, err := time.ParseDuration(text)
	if n, nerr := strconv.ParseUint(text, 10, 32); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	switch {
	case err != nil && zero:
		f.errorf(v, w, "key %q: %q is not a duration (write e.g. 10s, 1m30s or 0)", k, text)
	case err != nil:
		f.errorf(v, w, "key %q: %q is not a duration (write e.g. 90s, 10m or 600)", k, text)
	case zero && d < 0:
		f.errorf(v, w, "key %q: %q is negative", k, text)
	case !zero && d <= 0:
		f.errorf(v, w, "key %q: %q is not positive", k, text)
	}
	return d
}

// serviceList reads the `services` list of a group.
func (f *file) serviceList(v *yaml.Node, w where, refs *[]stepRef) []string {
	if v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
		f.errorf(v, w, "key \"services\": empty list")
	}
	var out []string
	for _, it := range f.stringList("services", v, w) {
		item, s := it.n, it.s
		switch {
		case s == "":
			f.errorf(item, w, "key \"services\": empty service name")
		case slices.Contains(out, s):
			f.errorf(item, w, "key \"services\": %q is listed twice", s)
		default:
			out = append(out, s)
			*refs = append(*refs, stepRef{service: s, pos: f.pos(item), step: w.step})
		}
	}
	return out
}

// pattern reads `tag` or `exclude`; a value with `^` or `$` is a regular expression and
// must compile.
func (f *file) pattern(k string, v *yaml.Node, w where) string {
	s := f.text(k, v, w)
	if r, ok := controlChar(s); ok {
		f.errorf(v, w, "key %q: contains a control character (%U)", k, r)
		return s
	}
	if strings.ContainsAny(s, "^$") {
		if _, err := regexp.Compile(s); err != nil {
			f.errorf(v, w, "key %q: %v", k, err)
		}
	}
	return s
}

// countSteps is the number of steps that build makes of rs, capped just above maxSteps.
func countSteps(rs []*rawStep) int {
	n := 0
	for _, r := range rs {
		kids := countSteps(r.steps)
		if k := len(r.services); k > 0 {
			kids = k * (1 + kids)
		}
		n += 1 + kids + countSteps(r.onFail)
		if n > maxSteps {
			return maxSteps + 1
		}
	}
	return n
}

// build makes the step tree of r: def is the service inherited from the groups around
// it, suffix is appended to the names written in the file ("-svc" per enclosing
// `services:` expansion). Every call makes new steps, so copies share nothing.
func build(r *rawStep, def, suffix string) *Step {
	s := r.step
	s.Command = slices.Clone(r.step.Command)
	if s.NameGiven {
		s.Name += suffix
	}
	if s.Service == "" {
		s.Service = def
	}
	if len(r.services) > 0 {
		for _, svc := range r.services {
			chain := &Step{Type: Serial, Pos: s.Pos, Service: svc}
			if s.NameGiven {
				chain.Name, chain.NameGiven = s.Name+"-"+svc, true
			}
			for _, c := range r.steps {
				chain.Steps = append(chain.Steps, build(c, svc, suffix+"-"+svc))
			}
			s.Steps = append(s.Steps, chain)
		}
	} else {
		for _, c := range r.steps {
			s.Steps = append(s.Steps, build(c, s.Service, suffix))
		}
	}
	for _, c := range r.onFail {
		s.OnFail = append(s.OnFail, build(c, s.Service, suffix))
	}
	return &s
}

// nameSteps checks that the names written are unique and generates the missing ones.
func (f *file) nameSteps(steps []*Step) {
	used := map[string]*Step{}
	WalkSteps(steps, func(s *Step) {
		if !s.NameGiven {
			return
		}
		if first, ok := used[s.Name]; ok {
			f.add(s.Pos, where{step: s.Name}, fmt.Errorf("name already used at line %d", first.Pos.Line))
			return
		}
		used[s.Name] = s
	})
	last := map[string]int{} // per base, the last number given out
	WalkSteps(steps, func(s *Step) {
		if s.NameGiven {
			return
		}
		base := s.Service
		if s.Type == Serial || s.Type == Parallel || base == "" {
			base = s.Type.String()
		}
		n := last[base]
		for {
			n++
			s.Name = base + "_" + strconv.Itoa(n)
			if used[s.Name] == nil {
				break
			}
		}
		last[base] = n
		used[s.Name] = s
	})
}

// WalkSteps calls fn for every step in file order: a step, then its steps, then its
// on_fail steps.
func WalkSteps(steps []*Step, fn func(*Step)) {
	for _, s := range steps {
		fn(s)
		WalkSteps(s.Steps, fn)
		WalkSteps(s.OnFail, fn)
	}
}
