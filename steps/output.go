package steps

import (
	"bytes"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/crun-ci/crun-ci/config"
)

// maxLine bounds how much of a line without a newline is held back; a longer line is
// printed in pieces of this size, each with the prefix, so memory stays bounded.
const maxLine = 64 << 10

// Output serialises the container output of all steps onto one writer, a whole line at a
// time, so that parallel steps never interleave within a line.
type Output struct {
	mu sync.Mutex
	w  io.Writer
	// width pads every prefix's name ("step/service") to it, so that the output of
	// parallel steps lines up; color gives each service's prefix a colour of its own
	// (a terminal's output, without NO_COLOR).
	width int
	color bool
}

// NewOutput returns an Output writing to w.
func NewOutput(w io.Writer) *Output { return &Output{w: w} }

// prefixWidth is the width of the longest prefix name ("step/service") of the plan's
// run steps and their dependencies, at most maxPrefixWidth.
func prefixWidth(p *config.Project, plan []*config.Step) int {
	width := 0
	config.WalkSteps(plan, func(s *config.Step) {
		if s.Type != config.Run {
			return
		}
		for _, svc := range append(p.Graph.Dependencies(s.Service), s.Service) {
			width = max(width, utf8.RuneCountInString(config.EscapeControls(s.Name+"/"+svc)))
		}
	})
	return min(width, maxPrefixWidth)
}

// maxPrefixWidth bounds the padding of prefixes: a long name does not push every line.
const maxPrefixWidth = 32

// Stream returns a writer for one stream of one container; every line it is given is
// printed with prefix in front. Close prints what is left of an unterminated last line.
// The output is data and stays as it is; the prefix is crun-ci's, and a control character
// in it is printed escaped.
func (o *Output) Stream(prefix string) *Stream {
	prefix = config.EscapeControls(prefix)
	if name, ok := strings.CutSuffix(prefix, " | "); ok {
		if pad := o.width - utf8.RuneCountInString(name); pad > 0 {
			name += strings.Repeat(" ", pad)
		}
		if o.color {
			name = colorOf(name) + name + "\x1b[0m"
		}
		prefix = name + " | "
	}
	return &Stream{out: o, prefix: []byte(prefix)}
}

// colors are the terminal colours of prefixes: normal and bright, without black and
// white.
var colors = []string{"31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96"}

// colorOf is the colour of a prefix's name, by the service it names (after the last
// "/", without " build").
func colorOf(name string) string {
	name = strings.TrimSpace(name)
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimSuffix(name, " build")
	h := fnv.New32a()
	h.Write([]byte(name))
	return "\x1b[" + colors[h.Sum32()%uint32(len(colors))] + "m"
}

// Stream is one container stream, see Output.Stream. A Stream is used by one goroutine.
type Stream struct {
	out    *Output
	prefix []byte
	buf    []byte
	// tail, when not nil, keeps the last lines written.
	tail *Tail
}

// Tail keeps the last TailLines lines of a step's streams, in a ring.
type Tail struct {
	mu    sync.Mutex
	lines [TailLines]string
	n     int // lines written
}

func (t *Tail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines[t.n%TailLines] = string(bytes.TrimSuffix(line, []byte("\n")))
	t.n++
}

// Lines returns the lines kept, oldest first.
func (t *Tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n <= TailLines {
		return slices.Clone(t.lines[:t.n])
	}
	i := t.n % TailLines
	return append(slices.Clone(t.lines[i:]), t.lines[:i]...)
}

// Write prints each complete line of p with the prefix and keeps the rest for later. A
// line longer than maxLine is printed in pieces of maxLine bytes, each ended with a
// newline; a line of exactly a multiple of maxLine bytes gives no empty piece.
func (s *Stream) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := maxLine - len(s.buf)
		if i := bytes.IndexByte(p, '\n'); i >= 0 && i <= room {
			s.buf = append(s.buf, p[:i+1]...)
			p = p[i+1:]
			if err := s.flush(false); err != nil {
				return n, err
			}
			continue
		}
		if len(p) <= room {
			s.buf = append(s.buf, p...)
			return n, nil
		}
		s.buf = append(s.buf, p[:room]...)
		p = p[room:]
		if err := s.flush(true); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Close prints an unterminated last line, with a newline added.
func (s *Stream) Close() error {
	if len(s.buf) == 0 {
		return nil
	}
	return s.flush(true)
}

func (s *Stream) flush(addNewline bool) error {
	line := make([]byte, 0, len(s.prefix)+len(s.buf)+1)
	line = append(append(line, s.prefix...), s.buf...)
	if addNewline {
		line = append(line, '\n')
	}
	if s.tail != nil {
		s.tail.add(s.buf)
	}
	s.buf = s.buf[:0]
	if cap(s.buf) > maxLine {
		s.buf = nil
	}
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	_, err := s.out.w.Write(line)
	return err
}
