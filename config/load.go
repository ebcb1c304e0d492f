package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/crun-ci/crun-ci/hostfs"
)

// File names looked for in the build directory, in order.
var (
	servicesNames = []string{"codeship-services.yml", "codeship-services.json", "docker-compose.yml"}
	stepsNames    = []string{"codeship-steps.yml", "codeship-steps.json"}
)

// Load finds and reads the services and steps files of the build directory dir and
// checks them together. servicesPath and stepsPath override discovery when non-empty
// (relative to dir unless absolute). It returns every problem found, as an errors.Join
// of *Error values in file order (services file first), not just the first one; the
// project is then nil.
func Load(dir, servicesPath, stepsPath string) (*Project, error) {
	return load(dir, servicesPath, stepsPath, true)
}

// LoadServices is Load without the steps file, for commands that run one service (crun-ci
// run): the project has no steps.
func LoadServices(dir, servicesPath string) (*Project, error) {
	return load(dir, servicesPath, "", false)
}

func load(dir, servicesPath, stepsPath string, withSteps bool) (*Project, error) {
	if dir == "" {
		dir = "."
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, join([]*Error{{Pos: Pos{File: dir}, Err: err}})
	}

	var svcErrs, stepErrs []*Error
	svcGiven, svcAbs, svcErr := locate(dir, absDir, servicesPath, "services", servicesNames)
	buildDir := absDir
	if svcErr == nil {
		buildDir = filepath.Dir(svcAbs)
	} else {
		svcErrs = append(svcErrs, svcErr)
	}
	var stepGiven, stepAbs string
	var stepErr *Error
	if withSteps {
		stepGiven, stepAbs, stepErr = locate(dir, absDir, stepsPath, "steps", stepsNames)
		if stepErr != nil {
			stepErrs = append(stepErrs, stepErr)
		}
	}

	var svc *servicesFile
	if svcErr == nil {
		name := displayName(buildDir, svcAbs, svcGiven)
		if data, err := readFile(buildDir, svcAbs, name); err != nil {
			svcErrs = append(svcErrs, err)
		} else {
			svc = parseServices(name, data)
			svcErrs = append(svcErrs, svc.errs...)
			svcErrs = append(svcErrs, checkServices(svc)...)
		}
	}
	steps := &stepsFile{}
	if withSteps && stepErr == nil {
		name := displayName(buildDir, stepAbs, stepGiven)
		if data, err := readFile(buildDir, stepAbs, name); err != nil {
			stepErrs = append(stepErrs, err)
		} else {
			steps = parseSteps(name, data)
			stepErrs = append(stepErrs, steps.errs...)
			if svc != nil && svc.named {
				stepErrs = append(stepErrs, checkStepRefs(steps.refs, svc.services)...)
			}
		}
	}

	if err := join(append(sortErrors(svcErrs), sortErrors(stepErrs)...)); err != nil {
		return nil, err
	}
	return &Project{
		Dir:          buildDir,
		ServicesFile: svcAbs,
		StepsFile:    stepAbs,
		Services:     svc.services,
		Order:        svc.order,
		Graph:        newGraph(svc.services),
		Steps:        steps.steps,
		Ignored:      append(slices.Clip(svc.ignored), steps.ignored...),
	}, nil
}

// locate returns the path of a file as the user gave it (or as discovery formed it) and
// as an absolute path, or an error naming what was looked for.
func locate(dir, absDir, override, what string, names []string) (given, abs string, _ *Error) {
	if override != "" {
		given, abs = override, override
		if !filepath.IsAbs(override) {
			abs = filepath.Join(absDir, override)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", "", &Error{Pos: Pos{File: given}, Err: pathError(err)}
		}
		return given, filepath.Clean(abs), nil
	}
	for _, n := range names {
		abs := filepath.Join(absDir, n)
		_, err := os.Stat(abs)
		if err == nil {
			return filepath.Join(dir, n), abs, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", "", &Error{Pos: Pos{File: filepath.Join(dir, n)}, Err: pathError(err)}
		}
	}
	return "", "", &Error{Err: fmt.Errorf("no %s file in %s: looked for %s", what, absDir, strings.Join(names, ", "))}
}

// pathError drops the operation and path from an *fs.PathError: Error.Pos names the
// file already ("nope.yml: no such file or directory").
func pathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// displayName is how messages name a file: relative to the build directory when inside
// it, else as given.
func displayName(buildDir, abs, given string) string {
	rel, err := filepath.Rel(buildDir, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return given
	}
	return rel
}

// readFile reads the file at the absolute path abs, of at most maxFileSize bytes: a
// regular file, found below the build directory without a symlink out of it (below its
// own directory when it lies elsewhere: the operator named it), never a FIFO or a device.
// name is how messages name it.
func readFile(buildDir, abs, name string) ([]byte, *Error) {
	dir, rel := buildDir, ""
	if r, err := filepath.Rel(buildDir, abs); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		rel = r
	} else {
		dir, rel = filepath.Dir(abs), filepath.Base(abs)
	}
	fail := func(err error) *Error {
		var he *hostfs.Error
		if errors.As(err, &he) {
			err = he.Reason() // Pos names the file
		}
		return &Error{Pos: Pos{File: name}, Err: pathError(err)}
	}
	d, err := hostfs.Open(dir, hostfs.Beneath, "the build directory")
	if err != nil {
		return nil, fail(err)
	}
	defer d.Close()
	data, err := d.ReadFile(rel, maxFileSize)
	if errors.Is(err, hostfs.ErrTooLarge) {
		return nil, &Error{Pos: Pos{File: name}, Err: fmt.Errorf("file is larger than %d MiB", maxFileSize>>20)}
	}
	if err != nil {
		return nil, fail(err)
	}
	return data, nil
}

// edge is a reference from one service to another: volumes_from, depends_on, links or
// dockercfg_service (the credentials service must run before the image can be pulled).
type edge struct {
	key    string
	target string
	pos    Pos
}

func edges(s *Service) []edge {
	var out []edge
	for _, v := range s.VolumesFrom {
		out = append(out, edge{"volumes_from", v.Service, v.Pos})
	}
	for _, r := range s.DependsOn {
		out = append(out, edge{"depends_on", r.Service, r.Pos})
	}
	for _, l := range s.Links {
		out = append(out, edge{"links", l.Service, l.Pos})
	}
	if d := s.DockercfgService; d.Text != "" {
		out = append(out, edge{"dockercfg_service", d.Text, d.Pos})
	}
	slices.SortStableFunc(out, func(a, b edge) int {
		return cmp.Or(cmp.Compare(a.pos.Line, b.pos.Line), cmp.Compare(a.pos.Column, b.pos.Column))
	})
	return out
}

// checkServices checks that services refer to other, existing services and that these
// references have no cycle.
func checkServices(r *servicesFile) []*Error {
	var errs []*Error
	graph := map[string][]string{}
	for _, name := range r.order {
		s := r.services[name]
		for _, e := range edges(s) {
			switch {
			case e.target == name:
				errs = append(errs, &Error{Pos: e.pos, Service: name, Err: fmt.Errorf("key %q: %q is the service itself", e.key, e.target)})
			case r.services[e.target] == nil:
				errs = append(errs, &Error{Pos: e.pos, Service: name, Err: fmt.Errorf("key %q: unknown service %q%s", e.key, e.target, Suggest(e.target, r.order))})
			case !slices.Contains(graph[name], e.target):
				graph[name] = append(graph[name], e.target)
			}
		}
	}

	const (
		unseen = iota
		active
		finished
	)
	state := map[string]int{}
	var path []string
	var visit func(string)
	visit = func(n string) {
		state[n] = active
		path = append(path, n)
		for _, t := range graph[n] {
			switch state[t] {
			case unseen:
				visit(t)
			case active:
				cycle := append(slices.Clone(path[slices.Index(path, t):]), t)
				errs = append(errs, &Error{
					Pos:     r.services[t].Pos,
					Service: t,
					Err:     fmt.Errorf("dependency cycle: %s", strings.Join(printable(cycle), " -> ")),
				})
			}
		}
		path = path[:len(path)-1]
		state[n] = finished
	}
	for _, name := range r.order {
		if state[name] == unseen {
			visit(name)
		}
	}
	return errs
}

// checkStepRefs checks that the services named in the steps file exist.
func checkStepRefs(refs []stepRef, services map[string]*Service) []*Error {
	var errs []*Error
	for _, ref := range refs {
		if services[ref.service] != nil {
			continue
		}
		err := fmt.Errorf("unknown service %q%s", ref.service, Suggest(ref.service, slices.Collect(maps.Keys(services))))
		if ref.key != "" {
			err = fmt.Errorf("key %q: %w", ref.key, err)
		}
		errs = append(errs, &Error{Pos: ref.pos, Step: ref.step, Err: err})
	}
	return errs
}

// Printable returns a name as crun-ci's own lines may print it: as it is, or quoted when
// it holds a control character (such names are refused, but messages about them must not
// send an escape sequence to a terminal).
func Printable(name string) string {
	if _, ok := controlChar(name); ok {
		return strconv.Quote(name)
	}
	return name
}

// EscapeControls returns s with every control character written as Go escapes it
// (\x1b), unquoted: for text of crun-ci's own, such as output prefixes, that holds a
// name. s without one is returned as it is.
func EscapeControls(s string) string {
	if _, ok := controlChar(s); !ok {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func printable(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = Printable(n)
	}
	return out
}
