package config

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// ErrNotSupported is wrapped by the errors of syntax that belongs to later features of
// crun-ci (such as the long syntax of volumes). Test for it with errors.Is.
var ErrNotSupported = errors.New("not supported yet")

// Error is one problem of a services or steps file, positioned. Load, ParseServices and
// ParseSteps return every problem they find as an errors.Join of *Error values; reach the
// single ones with errors.As or by unwrapping the join.
type Error struct {
	// Pos is where the problem was written. Line is 0 for problems of a whole file
	// (missing, empty, too large); File is empty when no file could be named.
	Pos Pos
	// Service and Step name the service or the step the problem belongs to, when known.
	// Step is only set for steps whose name is written in the file.
	Service string
	Step    string
	Err     error
}

// Error formats the problem as
// `codeship-services.yml:12: service "app": volume "./x:/y:zz": unknown option "zz"`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.File != "" {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	if e.Service != "" {
		b.WriteString("service ")
		b.WriteString(strconv.Quote(e.Service))
		b.WriteString(": ")
	}
	if e.Step != "" {
		b.WriteString("step ")
		b.WriteString(strconv.Quote(e.Step))
		b.WriteString(": ")
	}
	if e.Err == nil {
		b.WriteString("unknown error")
	} else {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error, so errors.Is(err, ErrNotSupported) works.
func (e *Error) Unwrap() error { return e.Err }

// sortErrors orders the errors of one file by position (file-wide errors first) and
// drops exact repetitions, which arise when an anchored value is used several times.
func sortErrors(errs []*Error) []*Error {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	seen := make(map[string]bool, len(errs))
	out := errs[:0]
	for _, e := range errs {
		s := e.Error()
		if seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, e)
	}
	return out
}

// join returns the errors as one errors.Join, or nil when there are none.
func join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
