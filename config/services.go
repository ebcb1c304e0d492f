package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// serviceName is what a service may be called: it becomes a host name and part of
// container ids.
var serviceName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Service keys crun-ci knows but does not act on, by design; a reason, when the key
// alone does not say it, goes with the notice.
var ignoredKeys = map[string]string{
	"cgroup_parent": "", "container_name": "", "cpu_quota": "", "extends": "", "group_add": "",
	"ipc": "", "isolation": "", "logging": "", "log_driver": "", "log_opt": "",
	"mac_address": "", "mem_swappiness": "", "networks": "", "network_mode": "",
	"oom_score_adj": "", "pid": "", "tty": "", "volume_driver": "",
	// Codeship's documentation spells it so.
	"oom_scope_adj": "",
	// jet ignored these too: there are no links to the host.
	"ports":          "no ports are published on the host",
	"external_links": "there are no containers outside the build to link to",
	"stdin_open":     "a step's containers get no standard input",
	"restart":        "a step's containers are never restarted",
}

// IgnoredReason says why crun-ci ignores a service key, "" when the key says it.
func IgnoredReason(key string) string {
	switch key {
	case "dockercfg_service":
		return "encrypted_dockercfg_path is given too, and wins, as Codeship's image-registries page says"
	case "dockerfile", "dockerfile_path":
		return "without \"build\" nothing is built; the service's image is used, as under jet"
	}
	return ignoredKeys[key]
}

// hostnameRE is what `hostname:` may be: an RFC 1123 host name.
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// depends_on conditions of the Compose long form.
var conditions = set("service_started", "service_healthy", "service_completed_successfully")

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// ParseServices parses a services file: its services by name and their names in file
// order. file names the file in error messages. Every problem found is returned, as an
// errors.Join of *Error; the other results are then nil. References between services are
// not checked here (Load does that).
func ParseServices(file string, data []byte) (map[string]*Service, []string, error) {
	r := parseServices(file, data)
	if err := join(sortErrors(r.errs)); err != nil {
		return nil, nil, err
	}
	return r.services, r.order, nil
}

// servicesFile is the outcome of parsing a services file, kept even when it has errors
// so that Load can still check the steps against the services it names.
type servicesFile struct {
	services map[string]*Service
	order    []string
	ignored  []Ignored
	errs     []*Error
	// named is true when the file was read far enough for its service names to be known.
	named bool
}

func parseServices(name string, data []byte) *servicesFile {
	f := &file{name: name}
	r := &servicesFile{services: map[string]*Service{}}
	defer func() { r.errs = f.errs }()
	root := f.decode(data)
	if root == nil {
		return r
	}
	root = resolve(root)
	if root.Kind != yaml.MappingNode {
		f.errorf(root, where{}, "want a mapping of services, got %s", kind(root))
		return r
	}
	top := f.pairs(root, where{})
	nested := false
	for _, p := range top {
		if p.key.Value == "services" {
			nested = true
		}
	}
	var entries []pair
	badServices := false // `services:` is not a mapping: its services can't be known
	for _, p := range top {
		switch k := p.key.Value; {
		case k == "version":
		case !nested:
			entries = append(entries, p)
		case k == "services":
			v := resolve(p.val)
			switch {
			case v.Kind == yaml.MappingNode:
				entries = f.pairs(v, where{})
			case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null":
			default:
				f.errorf(v, where{}, "key \"services\": want a mapping of services, got %s", kind(v))
				badServices = true
			}
		case k == "volumes" || k == "networks":
			r.ignored = append(r.ignored, Ignored{Pos: f.pos(p.key), Key: k})
		default:
			f.errorf(p.key, where{}, "unknown top-level key %q (services go under \"services\")", k)
		}
	}
	if badServices {
		return r
	}
	r.named = true
	if len(entries) == 0 {
		f.errorf(root, where{}, "no services")
	}
	for _, p := range entries {
		s := f.service(p.key, p.val, &r.ignored)
		r.services[s.Name] = s
		r.order = append(r.order, s.Name)
	}
	slices.SortStableFunc(r.ignored, func(a, b Ignored) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	return r
}

// service parses the definition of one service.
func (f *file) service(key, val *yaml.Node, ignored *[]Ignored) *Service {
	s := &Service{Name: key.Value, Pos: f.pos(key)}
	w := where{service: s.Name}
	if !serviceName.MatchString(s.Name) {
		f.errorf(key, w, "invalid service name: want letters, digits, '_', '.' and '-', starting with a letter or digit")
	}
	m := resolve(val)
	if m.Kind != yaml.MappingNode {
		f.errorf(m, w, "want a mapping of service keys, got %s", kind(m))
		return s
	}
	var imageKey, buildKey *yaml.Node
	var buildDockerfile string // "dockerfile" or "dockerfile_path" when written in build
	var dockerfileKeys []pair  // service-level dockerfile and dockerfile_path
	var memKey, swapKey *yaml.Node
	var memText, swapText string // mem_limit and memswap_limit as written
	for _, p := range f.pairs(m, w) {
		k, v := p.key.Value, resolve(p.val)
		switch {
		case k == "image":
			imageKey = p.key
			s.Image = f.text(k, v, w)
			if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" && s.Image == "" {
				f.errorf(v, w, "key \"image\": empty")
			}
		case k == "build":
			buildKey = p.key
			s.Build, buildDockerfile = f.build(v, w)
		case k == "dockerfile" || k == "dockerfile_path":
			dockerfileKeys = append(dockerfileKeys, p)
		case k == "cached":
			s.Cached = f.bool(k, v, w)
		case k == "default_cache_branch":
			s.DefaultCacheBranch = f.value(k, v, w).Text
		case k == "dockercfg_service":
			s.DockercfgService = f.value(k, v, w)
		case k == "command":
			s.Command = f.command(k, v, w)
		case k == "entrypoint":
			s.Entrypoint = f.command(k, v, w)
		case k == "environment":
			s.Environment = f.environment(k, v, w)
		case k == "volumes":
			s.Volumes = f.volumes(v, w)
		case k == "volumes_from":
			s.VolumesFrom = f.volumesFrom(v, w)
		case k == "working_dir":
			s.WorkingDir = f.text(k, v, w)
		case k == "user":
			s.User = f.text(k, v, w)
		case k == "depends_on":
			s.DependsOn = f.dependsOn(v, w)
		case k == "links":
			s.Links = f.links(v, w)
		case k == "expose":
			s.Expose = f.expose(v, w)
		case k == "hostname":
			s.Hostname = f.text(k, v, w)
			if !hostnameRE.MatchString(s.Hostname) {
				f.errorf(v, w, "key \"hostname\": %q is not a host name", s.Hostname)
			}
		case k == "healthcheck":
			s.Healthcheck = f.healthcheck(v, w)
		case k == "encrypted_dockercfg_path":
			s.EncryptedDockercfgPath = f.value(k, v, w)
		case k == "env_file":
			s.EnvFiles = f.values(k, v, w)
		case k == "encrypted_env_file":
			s.EncryptedEnvFiles = f.values(k, v, w)
		case k == "encrypted_environment":
			s.EncryptedEnvironment = f.encryptedValues(k, v, w)
		case k == "mem_limit":
			memKey = p.key
			s.MemLimit, memText = f.size(k, v, w, false)
		case k == "memswap_limit":
			swapKey = p.key
			s.MemswapLimit, swapText = f.size(k, v, w, true)
		case k == "shm_size":
			s.ShmSize, _ = f.size(k, v, w, false)
		case k == "pids_limit":
			s.PidsLimit = f.pidsLimit(v, w)
		case k == "cpus":
			s.CPUs = f.cpus(v, w)
		case k == "cpu_shares":
			s.CPUShares = f.cpuShares(v, w)
		case k == "ulimits":
			s.Ulimits = f.ulimits(v, w)
		case k == "privileged":
			s.Privileged = f.privileged(v, w)
		case k == "cap_add":
			s.CapAdd = f.capabilities(k, v, w)
		case k == "cap_drop":
			s.CapDrop = f.capabilities(k, v, w)
		case k == "devices":
			s.Devices = f.devices(v, w)
		case k == "security_opt":
			s.SecurityOpt = f.securityOpts(v, w)
		case k == "stop_signal":
			s.StopSignal = f.signal(k, v, w)
		case k == "stop_grace_period":
			s.StopGracePeriod = f.duration(k, v, w, true)
		case k == "add_docker":
			s.AddDocker = f.bool(k, v, w)
		case k == "labels":
			s.Labels = f.labels(v, w)
		case k == "init":
			s.Init = f.bool("init", v, w)
		case k == "read_only":
			s.ReadOnly = f.bool("read_only", v, w)
		case k == "tmpfs":
			s.Tmpfs = f.tmpfs(v, w)
		case k == "sysctls":
			s.Sysctls = f.sysctls(v, w)
		case k == "extra_hosts":
			s.ExtraHosts = f.extraHosts(v, w)
		case k == "dns":
			s.DNS = f.dns(v, w)
		case k == "dns_search":
			s.DNSSearch = f.dnsSearch(v, w)
		case k == "platform":
			f.platform(v, w)
		case isIgnored(k):
			*ignored = append(*ignored, Ignored{Pos: f.pos(p.key), Service: s.Name, Key: k})
		default:
			f.errorf(p.key, w, "unknown key %q%s", k, Suggest(k, serviceKeys))
		}
	}
	f.checkSwap(memKey, swapKey, s, memText, swapText, w)
	switch {
	case imageKey != nil && buildKey != nil:
		first, second := imageKey, buildKey
		if later(f.pos(first), f.pos(second)) == f.pos(first) {
			first, second = second, first
		}
		f.errorf(second, w, "keys %q and %q cannot be used together (\"build.image\" names the built image)", first.Value, second.Value)
		s.Build = nil
	case imageKey == nil && buildKey == nil:
		f.errorf(key, w, "no image")
	}
	for i, p := range dockerfileKeys {
		d := f.value(p.key.Value, resolve(p.val), w)
		switch {
		case i > 0:
			f.errorf(p.key, w, "keys %q and %q cannot be used together", dockerfileKeys[0].key.Value, p.key.Value)
		case buildKey == nil && imageKey != nil:
			// jet used the image and built nothing (Codeship's deployment-container
			// example names a Dockerfile that is not there).
			*ignored = append(*ignored, Ignored{Pos: f.pos(p.key), Service: s.Name, Key: p.key.Value})
		case buildKey == nil:
			f.errorf(p.key, w, "key %q needs \"build\"", p.key.Value)
		case buildDockerfile != "":
			f.errorf(p.key, w, "keys %q and %q cannot be used together", p.key.Value, "build."+buildDockerfile)
		case s.Build != nil:
			s.Build.Dockerfile = d.Text
		}
	}
	if s.Build != nil {
		s.Build.Context = cmp.Or(s.Build.Context, ".")
		s.Build.Dockerfile = cmp.Or(s.Build.Dockerfile, "Dockerfile")
	}
	if s.DockercfgService.Text != "" && s.EncryptedDockercfgPath.Text != "" {
		// Codeship's image-registries page: the encrypted file wins.
		*ignored = append(*ignored, Ignored{Pos: s.DockercfgService.Pos, Service: s.Name, Key: "dockercfg_service"})
		s.DockercfgService = Value{}
	}
	return s
}

// later returns the later of two positions of one file.
func later(a, b Pos) Pos {
	if cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column)) < 0 {
		return b
	}
	return a
}

// build reads a service's `build:` key: the context as a string, or a mapping. It also
// returns which of "dockerfile" and "dockerfile_path" the mapping sets ("" for neither).
// Defaults are left to the caller.
func (f *file) build(v *yaml.Node, w where) (*Build, string) {
	b := &Build{Pos: f.pos(v)}
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null":
		b.Context = f.value("build", v, w).Text
		return b, ""
	case v.Kind != yaml.MappingNode:
		f.errorf(v, w, "key \"build\": want a string or a mapping, got %s", kind(v))
		return b, ""
	}
	var contextKey, dockerfileKey, imageKey string
	for _, p := range f.pairs(v, w) {
		k, val := p.key.Value, resolve(p.val)
		key := "build." + k
		switch k {
		case "image", "name":
			// name: the services-and-databases page's spelling of image.
			if imageKey != "" {
				f.errorf(p.key, w, "keys %q and %q cannot be used together", "build."+imageKey, key)
			}
			imageKey = k
			b.Image = f.value(key, val, w).Text
			if err := checkImageName(b.Image); b.Image != "" && err != nil {
				f.errorf(val, w, "key %q: %v", key, err)
			}
		case "context", "path":
			if contextKey != "" {
				f.errorf(p.key, w, "keys %q and %q cannot be used together", "build."+contextKey, key)
			}
			contextKey = k
			b.Context = f.value(key, val, w).Text
		case "dockerfile", "dockerfile_path":
			if dockerfileKey != "" {
				f.errorf(p.key, w, "keys %q and %q cannot be used together", "build."+dockerfileKey, key)
			}
			dockerfileKey = k
			b.Dockerfile = f.value(key, val, w).Text
		case "args":
			b.Args = f.environment(key, val, w)
		case "encrypted_args_file":
			b.EncryptedArgsFile = f.values(key, val, w)
		case "encrypted_args":
			b.EncryptedArgs = f.encryptedValues(key, val, w)
		default:
			f.errorf(p.key, w, "unknown key %q", key)
		}
	}
	return b, dockerfileKey
}

// checkImageName checks the name of an image to build: a reference such as
// registry.example.com/team/app:tag, without a digest, which only a registry gives out.
func checkImageName(s string) error {
	// The reference package prints part of the name unquoted when it has upper case.
	if r, ok := controlChar(s); ok {
		return fmt.Errorf("%q is not an image name: it contains a control character (%U)", s, r)
	}
	ref, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return fmt.Errorf("%q is not an image name: %w", s, err)
	}
	if _, ok := ref.(reference.Digested); ok {
		return fmt.Errorf("%q has a digest: name the built image by name and tag", s)
	}
	return nil
}

// value reads a key whose value is one string that must not be empty.
func (f *file) value(k string, v *yaml.Node, w where) Value {
	s, err := scalar(v)
	switch {
	case err != nil:
		f.errorf(v, w, "key %q: %v", k, err)
	case s == "":
		f.errorf(v, w, "key %q: empty", k)
	}
	return Value{Text: s, Pos: f.pos(v)}
}

// bool reads a key whose value is true or false.
func (f *file) bool(k string, v *yaml.Node, w where) bool {
	s, err := scalar(v)
	if err != nil {
		f.errorf(v, w, "key %q: want true or false, got %s", k, kind(v))
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		f.errorf(v, w, "key %q: %q is not true or false", k, s)
	}
	return b
}

// text returns the source text of the scalar value of key k.
func (f *file) text(k string, v *yaml.Node, w where) string {
	s, err := scalar(v)
	if err != nil {
		f.errorf(v, w, "key %q: %v", k, err)
	}
	return s
}

// list returns the items of the list value of key k, or records why it is not a list.
func (f *file) list(k string, v *yaml.Node, w where) []*yaml.Node {
	if v.Kind != yaml.SequenceNode {
		f.errorf(v, w, "key %q: want a list, got %s", k, kind(v))
		return nil
	}
	items := make([]*yaml.Node, len(v.Content))
	for i, item := range v.Content {
		items[i] = resolve(item)
	}
	return items
}

// listString is a string in a list, with its node for positions.
type listString struct {
	n *yaml.Node
	s string
}

// stringList returns the strings of the list value of key k, recording the items that
// are not strings and a value that is not a list.
func (f *file) stringList(k string, v *yaml.Node, w where) []listString {
	var out []listString
	for _, n := range f.list(k, v, w) {
		s, err := scalar(n)
		if err != nil {
			f.errorf(n, w, "key %q: %v", k, err)
			continue
		}
		out = append(out, listString{n, s})
	}
	return out
}

// command reads `command` or `entrypoint`: a string split with shell-style quoting, or a
// list of words kept as they are.
func (f *file) command(k string, v *yaml.Node, w where) []string {
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null":
		words, err := splitCommand(v.Value)
		if err != nil {
			f.errorf(v, w, "key %q: %v", k, err)
		}
		return words
	case v.Kind == yaml.SequenceNode:
		words := []string{}
		for _, it := range f.stringList(k, v, w) {
			words = append(words, it.s)
		}
		return words
	}
	f.errorf(v, w, "key %q: want a string or a list, got %s", k, kind(v))
	return nil
}

// environment reads key k (`environment`, `build.args`): a `KEY: value` mapping or a
// `KEY=value` list.
func (f *file) environment(k string, v *yaml.Node, w where) []EnvVar {
	var env []EnvVar
	// add keeps e, written at n, unless its value holds a NUL, which no environment can.
	add := func(n *yaml.Node, e EnvVar) {
		if e.Value != nil && strings.ContainsRune(*e.Value, 0) {
			f.errorf(n, w, "key %q: %q: contains a NUL byte", k, e.Key)
			return
		}
		env = append(env, e)
	}
	switch v.Kind {
	case yaml.MappingNode:
		for _, p := range f.pairs(v, w) {
			e := EnvVar{Key: p.key.Value, Pos: f.pos(p.key)}
			if err := checkEnvKey(e.Key); err != nil {
				f.errorf(p.key, w, "%s: %v", k, err)
				continue
			}
			val := resolve(p.val)
			if val.Kind != yaml.ScalarNode {
				f.errorf(val, w, "%s %q: want a string, got %s", k, e.Key, kind(val))
				continue
			}
			if val.ShortTag() != "!!null" {
				e.Value = &val.Value
			}
			add(val, e)
		}
	case yaml.SequenceNode:
		for _, it := range f.stringList(k, v, w) {
			item, s := it.n, it.s
			e := EnvVar{Key: s, Pos: f.pos(item)}
			if key, val, ok := strings.Cut(s, "="); ok {
				e.Key, e.Value = key, &val
			}
			if err := checkEnvKey(e.Key); err != nil {
				f.errorf(item, w, "%s %q: %v", k, s, err)
				continue
			}
			add(item, e)
		}
	default:
		f.errorf(v, w, "key %q: want a mapping or a list, got %s", k, kind(v))
	}
	return env
}

func checkEnvKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty variable name")
	case strings.ContainsAny(k, "=\x00"):
		return fmt.Errorf("variable name %q contains '=' or NUL", k)
	}
	return nil
}

// volumes reads the `volumes` list; the specs are checked by the mounts package.
func (f *file) volumes(v *yaml.Node, w where) []Volume {
	var out []Volume
	for _, item := range f.list("volumes", v, w) {
		if text, why := misreadVolume(item); why != "" {
			f.errorf(item, w, "key \"volumes\": %q reads as a mapping in YAML because %s", text, why)
			continue
		}
		if item.Kind == yaml.MappingNode {
			f.add(f.pos(item), w, fmt.Errorf("key \"volumes\": the long syntax (a mapping): %w", ErrNotSupported))
			continue
		}
		s, err := scalar(item)
		if err != nil {
			f.errorf(item, w, "key \"volumes\": %v", err)
			continue
		}
		out = append(out, Volume{Spec: s, Pos: f.pos(item)})
	}
	return out
}

// misreadVolume recognises a short-syntax volume that YAML read as a one-entry mapping,
// `./tmp:/x:` (key "./tmp:/x", null) or `./tmp: /x`, and returns it as written and why
// YAML read it so, with the way out ("" when it is no such volume). The long syntax has
// keys such as `type` and `target` and is not taken for one.
func misreadVolume(item *yaml.Node) (text, why string) {
	if item.Kind != yaml.MappingNode || len(item.Content) != 2 {
		return "", ""
	}
	k, v := item.Content[0], resolve(item.Content[1])
	if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
		return "", ""
	}
	switch {
	case v.ShortTag() == "!!null" && v.Value == "" && strings.Contains(k.Value, "/"):
		return k.Value + ":", "it ends with \":\"; remove the final \":\""
	case strings.HasPrefix(k.Value, "/") || strings.HasPrefix(k.Value, ".") || strings.HasPrefix(k.Value, "~"):
		return k.Value + ": " + v.Value, "of the space after \":\"; remove the space"
	}
	return "", ""
}

// volumesFrom reads `volumes_from`: `service`, `service:ro` or `service:rw`.
func (f *file) volumesFrom(v *yaml.Node, w where) []VolumeFrom {
	var out []VolumeFrom
	for _, it := range f.stringList("volumes_from", v, w) {
		item, s := it.n, it.s
		vf := VolumeFrom{Service: s, Pos: f.pos(item)}
		if name, mode, ok := strings.Cut(s, ":"); ok {
			vf.Service = name
			switch mode {
			case "ro":
				vf.ReadOnly = true
			case "rw":
			default:
				f.errorf(item, w, "volumes_from %q: want \"service\", \"service:ro\" or \"service:rw\"", s)
				continue
			}
		}
		if vf.Service == "" {
			f.errorf(item, w, "volumes_from %q: empty service name", s)
			continue
		}
		out = append(out, vf)
	}
	return out
}

// dependsOn reads `depends_on`: a list of names, or the long form mapping each name to
// a `condition`.
func (f *file) dependsOn(v *yaml.Node, w where) []Ref {
	var out []Ref
	switch v.Kind {
	case yaml.SequenceNode:
		for _, it := range f.stringList("depends_on", v, w) {
			out = append(out, Ref{Service: it.s, Pos: f.pos(it.n)})
		}
	case yaml.MappingNode:
		for _, p := range f.pairs(v, w) {
			name := p.key.Value
			out = append(out, Ref{Service: name, Pos: f.pos(p.key)})
			ref := &out[len(out)-1]
			opts := resolve(p.val)
			if opts.Kind != yaml.MappingNode {
				f.errorf(opts, w, "depends_on %q: want a mapping, got %s", name, kind(opts))
				continue
			}
			for _, o := range f.pairs(opts, w) {
				if o.key.Value != "condition" {
					f.errorf(o.key, w, "depends_on %q: unknown key %q", name, o.key.Value)
					continue
				}
				c, err := scalar(o.val)
				if err != nil {
					f.errorf(resolve(o.val), w, "depends_on %q: key \"condition\": %v", name, err)
					continue
				}
				if !conditions[c] {
					f.errorf(resolve(o.val), w, "depends_on %q: unknown condition %q (want service_started, service_healthy or service_completed_successfully)", name, c)
				}
				ref.Condition = c
			}
		}
	default:
		f.errorf(v, w, "key \"depends_on\": want a list or a mapping, got %s", kind(v))
	}
	return out
}

// links reads `links`: `service` or `service:alias`.
func (f *file) links(v *yaml.Node, w where) []Link {
	var out []Link
	for _, it := range f.stringList("links", v, w) {
		item, s := it.n, it.s
		l := Link{Service: s, Pos: f.pos(item)}
		if name, alias, ok := strings.Cut(s, ":"); ok {
			l.Service, l.Alias = name, alias
			if alias == "" {
				f.errorf(item, w, "link %q: empty alias", s)
				continue
			}
		}
		if l.Service == "" {
			f.errorf(item, w, "link %q: empty service name", s)
			continue
		}
		out = append(out, l)
	}
	return out
}

// healthcheck reads Compose's `healthcheck:` key.
func (f *file) healthcheck(v *yaml.Node, w where) *Healthcheck {
	if v.Kind != yaml.MappingNode {
		f.errorf(v, w, "key \"healthcheck\": want a mapping, got %s", kind(v))
		return nil
	}
	h := &Healthcheck{Pos: f.pos(v)}
	for _, p := range f.pairs(v, w) {
		k, val := p.key.Value, resolve(p.val)
		key := "healthcheck." + k
		switch k {
		case "test":
			switch val.Kind {
			case yaml.ScalarNode:
				h.Test = []string{"CMD-SHELL", f.text(key, val, w)}
			case yaml.SequenceNode:
				for _, it := range f.stringList(key, val, w) {
					h.Test = append(h.Test, it.s)
				}
				if len(h.Test) == 0 || (h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL" && h.Test[0] != "NONE") {
					f.errorf(val, w, "key %q: a list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"", key)
				} else if h.Test[0] != "NONE" && len(h.Test) < 2 {
					f.errorf(val, w, "key %q: %q needs a command", key, h.Test[0])
				}
			default:
				f.errorf(val, w, "key %q: want a string or a list, got %s", key, kind(val))
			}
		case "interval", "timeout", "start_period", "start_interval":
			text := f.text(key, val, w)
			d, err := time.ParseDuration(text)
			if err != nil || d < 0 {
				f.errorf(val, w, "key %q: %q is not a duration (write e.g. 1s or 1m30s)", key, text)
			}
			switch k {
			case "interval":
				h.Interval = d
			case "timeout":
				h.Timeout = d
			case "start_period":
				h.StartPeriod = d
			}
		case "retries":
			text := f.text(key, val, w)
			n, err := strconv.Atoi(text)
			if err != nil || n < 0 {
				f.errorf(val, w, "key %q: %q is not a whole number", key, text)
			}
			h.Retries = n
		case "disable":
			text := f.text(key, val, w)
			b, err := strconv.ParseBool(text)
			if err != nil {
				f.errorf(val, w, "key %q: %q is not true or false", key, text)
			}
			h.Disable = b
		default:
			f.errorf(p.key, w, "unknown key %q", key)
		}
	}
	if h.Test == nil && !h.Disable {
		f.errorf(v, w, "key \"healthcheck\": no \"test\"")
	}
	return h
}

// values reads a key that is a string or a list of strings (env_file, …).
func (f *file) values(k string, v *yaml.Node, w where) []Value {
	if v.Kind == yaml.ScalarNode {
		text := f.text(k, v, w)
		if text == "" {
			f.errorf(v, w, "key %q: empty", k)
			return nil
		}
		return []Value{{Text: text, Pos: f.pos(v)}}
	}
	var out []Value
	for _, it := range f.stringList(k, v, w) {
		if it.s == "" {
			f.errorf(it.n, w, "key %q: empty entry", k)
			continue
		}
		out = append(out, Value{Text: it.s, Pos: f.pos(it.n)})
	}
	return out
}

// encryptedValues reads a list of encrypted KEY=value texts (encrypted_environment,
// build.encrypted_args); unlike env_file, a single string is refused.
func (f *file) encryptedValues(k string, v *yaml.Node, w where) []Value {
	// One string is a list of one, as Codeship's build-arguments page and examples
	// write it.
	if v.Kind != yaml.SequenceNode && v.Kind != yaml.ScalarNode {
		f.errorf(v, w, "key %q: want an encrypted string or a list of them, got %s", k, kind(v))
		return nil
	}
	return f.values(k, v, w)
}

// signal reads a signal: its name (SIGTERM, TERM) or number.
func (f *file) signal(k string, v *yaml.Node, w where) syscall.Signal {
	text, err := scalar(v)
	if err != nil {
		f.errorf(v, w, "key %q: %v", k, err)
		return 0
	}
	sig, err := ParseSignal(text)
	if err != nil {
		f.errorf(v, w, "key %q: %v", k, err)
	}
	return sig
}

// ParseSignal reads what STOPSIGNAL and stop_signal may name: a number or SIGNAME / NAME.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	if n := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")); n != 0 {
		return n, nil
	}
	return 0, fmt.Errorf("%q is not a signal", s)
}

// exposeRE is an entry of `expose`: a port or a range of ports, with a protocol or not.
var exposeRE = regexp.MustCompile(`^([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/(tcp|udp|sctp))?$`)

// expose reads `expose`: ports ("5432", 5432, "53/udp", "8000-8010") the service's
// containers listen on, for the link variables. Each port is given as "PORT/PROTO".
func (f *file) expose(v *yaml.Node, w where) []Value {
	var out []Value
	for _, it := range f.stringList("expose", v, w) {
		m := exposeRE.FindStringSubmatch(strings.ToLower(it.s))
		if m == nil {
			f.errorf(it.n, w, "key \"expose\": %q: want a port, a range of ports (8000-8010), with /tcp, /udp or /sctp or not", it.s)
			continue
		}
		lo, _ := strconv.Atoi(m[1])
		hi := lo
		if m[2] != "" {
			hi, _ = strconv.Atoi(m[2])
		}
		proto := m[3]
		if proto == "" {
			proto = "tcp"
		}
		if lo < 1 || hi > 65535 || hi < lo || hi-lo > 1000 {
			f.errorf(it.n, w, "key \"expose\": %q: want ports from 1 to 65535, a range of at most 1000", it.s)
			continue
		}
		for p := lo; p <= hi; p++ {
			out = append(out, Value{Text: fmt.Sprintf("%d/%s", p, proto), Pos: f.pos(it.n)})
		}
	}
	return out
}

func isIgnored(k string) bool {
	_, ok := ignoredKeys[k]
	return ok
}

// labels reads `labels`: a mapping or a "KEY=VALUE" list. The keys of crun-ci's own
// labels and containerd's are refused.
func (f *file) labels(v *yaml.Node, w where) map[string]string {
	out := map[string]string{}
	for _, e := range f.environment("labels", v, w) {
		switch {
		case strings.HasPrefix(e.Key, "crun-ci.") || strings.HasPrefix(e.Key, "containerd.io/") || strings.HasPrefix(e.Key, "io.containerd."):
			f.errorf(v, w, "key \"labels\": %q: crun-ci's and containerd's own labels cannot be set", e.Key)
		case e.Value == nil:
			out[e.Key] = ""
		default:
			out[e.Key] = *e.Value
		}
	}
	return out
}
