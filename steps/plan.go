package steps

import (
	"regexp"
	"strings"

	"github.com/crun-ci/crun-ci/config"
)

// Plan returns the steps that run for a build with the given tag: steps (and groups)
// whose tag does not match, or whose exclude does, are dropped, and so are groups left
// empty. The input is not changed.
func Plan(steps []*config.Step, tag string) []*config.Step {
	return PlanKeeping(steps, tag, nil)
}

// Skips are the steps and groups that a build without a tag (tag "") skips because they
// have one, as jet did, each with the note the summary shows; nil when tag is given (a
// step whose tag does not match it is left out of the plan, as always).
func Skips(steps []*config.Step, tag string) map[*config.Step]string {
	if tag != "" {
		return nil
	}
	out := map[*config.Step]string{}
	var walk func([]*config.Step)
	walk = func(ss []*config.Step) {
		for _, s := range ss {
			if s.Tag != "" {
				out[s] = "tag " + s.Tag + "; pass --tag to run it"
				continue
			}
			walk(s.Steps)
		}
	}
	walk(steps)
	return out
}

// PlanKeeping is Plan but for the steps in keep, which stay in it as they are (to be
// shown as skipped).
func PlanKeeping(steps []*config.Step, tag string, keep map[*config.Step]string) []*config.Step {
	var out []*config.Step
	for _, s := range steps {
		if _, ok := keep[s]; ok {
			out = append(out, s)
			continue
		}
		if !Selected(s, tag) {
			continue
		}
		if s.Type == config.Serial || s.Type == config.Parallel {
			c := *s
			c.Steps = PlanKeeping(s.Steps, tag, keep)
			if len(c.Steps) == 0 {
				continue
			}
			s = &c
		}
		out = append(out, s)
	}
	return out
}

// Selected reports whether step s runs for a build with the given tag.
func Selected(s *config.Step, tag string) bool {
	if s.Tag != "" && (tag == "" || !Match(s.Tag, tag)) {
		return false
	}
	if s.Exclude != "" && tag != "" && Match(s.Exclude, tag) {
		return false
	}
	return true
}

// Match applies a tag or exclude pattern to the build's tag. A pattern holding "^" or "$"
// is a regular expression (the loader has checked that it compiles); any other is matched
// exactly.
func Match(pattern, tag string) bool {
	if strings.ContainsAny(pattern, "^$") {
		re, err := regexp.Compile(pattern)
		return err == nil && re.MatchString(tag)
	}
	return pattern == tag
}
