package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile or broken file from exhausting memory or time.
const (
	// maxFileSize is the largest services or steps file read.
	maxFileSize = 10 << 20
	// maxNodes bounds the size of a document once its aliases are expanded.
	maxNodes = 1_000_000
	// maxDepth bounds the nesting of a document once its aliases are expanded.
	maxDepth = 100
	// maxSteps bounds the step tree once aliases and `services:` groups are expanded.
	maxSteps = 100_000
)

// file collects the problems of one file while it is walked.
type file struct {
	name string
	errs []*Error
	// ignored are the keys read and deliberately not acted on (steps files; a services
	// file passes its own list).
	ignored []Ignored
}

// where says which service or step a problem belongs to.
type where struct {
	service string
	step    string
}

func (f *file) pos(n *yaml.Node) Pos {
	return Pos{File: f.name, Line: n.Line, Column: n.Column}
}

// errorf records a problem at node n.
func (f *file) errorf(n *yaml.Node, w where, format string, args ...any) {
	f.add(f.pos(n), w, fmt.Errorf(format, args...))
}

func (f *file) add(p Pos, w where, err error) {
	f.errs = append(f.errs, &Error{Pos: p, Service: w.service, Step: w.step, Err: err})
}

// yamlLine matches the position yaml.v3 writes into its syntax errors, the only place it
// gives one; it is moved into Pos so that every error has the same shape.
var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): `)

// decode parses data as exactly one YAML document (JSON is YAML too) and returns its root
// node with aliases still unexpanded, or nil after recording why it can't.
func (f *file) decode(data []byte) *yaml.Node {
	filePos := Pos{File: f.name}
	if len(data) > maxFileSize {
		f.add(filePos, where{}, fmt.Errorf("file is larger than %d MiB", maxFileSize>>20))
		return nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			f.add(filePos, where{}, errors.New("empty file"))
		} else {
			f.add(f.yamlErrorPos(err, data))
		}
		return nil
	}
	var next yaml.Node
	switch err := safeDecode(dec, &next); {
	case err == nil:
		f.errorf(&next, where{}, "more than one YAML document (a second one starts here)")
		return nil
	case !errors.Is(err, io.EOF):
		f.add(f.yamlErrorPos(err, data))
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			f.add(filePos, where{}, errors.New("empty file"))
			return nil
		}
		root = root.Content[0]
	}
	if r := resolve(root); r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null" {
		f.add(filePos, where{}, errors.New("empty file"))
		return nil
	}
	m := measure{done: map[*yaml.Node]extent{}, active: map[*yaml.Node]bool{}}
	if _, err := m.visit(root, 1); err != nil {
		p := filePos
		if m.at != nil {
			p = f.pos(m.at)
		}
		f.add(p, where{}, err)
		return nil
	}
	return root
}

// parserProblems are the problems of yaml.v3's parser stage. For them (unlike for its
// scanner stage) yaml.v3 prints a 0-based line and omits line 0, so the line is one more
// than printed, and 1 when none is printed.
var parserProblems = set(
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
)

// tabProblems are the scanner's complaints about a tab in the indentation. yaml.v3 gives
// the line where the scalar before the tab starts; the tab is on a later line.
var tabProblems = set(
	"found a tab character that violates indentation",
	"found a tab character where an indentation space is expected",
)

// quoteProblems are the scanner's complaints about a quoted string that is not closed,
// which the bare message doesn't say. yaml.v3 gives the line where the string starts
// (the end of the file when it starts on line 1).
var quoteProblems = set(
	"found unexpected end of stream",
	"found unexpected document indicator",
)

// yamlErrorPos turns an error of the YAML parser on data into a positioned problem.
func (f *file) yamlErrorPos(err error, data []byte) (Pos, where, error) {
	p := Pos{File: f.name}
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = "yaml: " + msg[len(m[0]):]
	}
	problem := strings.TrimPrefix(msg, "yaml: ")
	switch {
	case parserProblems[problem]:
		p.Line++
	case tabProblems[problem]:
		p.Line = tabLine(data, p.Line)
		msg += " (indent with spaces)"
	case quoteProblems[problem]:
		msg += " (a quoted string is not closed)"
	case problem == "mapping values are not allowed in this context":
		msg += ` (a value that holds ": " must be quoted: command: "echo a: b")`
	}
	return p, where{}, errors.New(msg)
}

// tabLine returns the number of the first line from line on whose indentation holds a
// tab, or line when there is none.
func tabLine(data []byte, line int) int {
	for i, l := range strings.Split(string(data), "\n") {
		if i+1 >= line && strings.Contains(l[:len(l)-len(strings.TrimLeft(l, " \t"))], "\t") {
			return i + 1
		}
	}
	return line
}

// safeDecode decodes the next document, turning a panic of the parser into an error: a
// broken file must never take the runner down.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error of the parser: %v", r)
		}
	}()
	return dec.Decode(n)
}

// measure computes the size and depth of a document with its aliases expanded, without
// expanding them: results are memoised per node, so an alias bomb is measured in linear
// time and refused before anything walks it.
type measure struct {
	done   map[*yaml.Node]extent
	active map[*yaml.Node]bool
	at     *yaml.Node // where a limit was hit, if a node can be blamed
}

// extent is the expanded size of a node and its height (1 for a scalar).
type extent struct {
	size, height int
}

// visit measures node n found at depth (1 for the root).
func (m *measure) visit(n *yaml.Node, depth int) (extent, error) {
	e, ok := m.done[n]
	if !ok {
		var err error
		if e, err = m.compute(n, depth); err != nil {
			return extent{}, err
		}
		m.done[n] = e
	}
	if depth-1+e.height > maxDepth {
		m.at = n
		return extent{}, fmt.Errorf("nested more than %d levels deep (counting expanded aliases)", maxDepth)
	}
	return e, nil
}

func (m *measure) compute(n *yaml.Node, depth int) (extent, error) {
	if depth > maxDepth {
		m.at = n
		return extent{}, fmt.Errorf("nested more than %d levels deep (counting expanded aliases)", maxDepth)
	}
	m.active[n] = true
	defer delete(m.active, n)
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if m.active[n.Alias] {
			m.at = n
			return extent{}, fmt.Errorf("alias *%s refers to a node that contains it", n.Value)
		}
		return m.visit(n.Alias, depth)
	}
	e := extent{size: 1, height: 1}
	for _, c := range n.Content {
		ce, err := m.visit(c, depth+1)
		if err != nil {
			return extent{}, err
		}
		e.size += ce.size
		e.height = max(e.height, 1+ce.height)
		if e.size > maxNodes {
			return extent{}, fmt.Errorf("more than %d nodes once aliases are expanded", maxNodes)
		}
	}
	return e, nil
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxDepth; i++ {
		n = n.Alias
	}
	return n
}

// kind describes a node for messages: "a mapping", "a list", "a number", ….
func kind(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "nothing"
}

// scalar returns the source text of a scalar (`true`, `01` stay as written). Null,
// lists and mappings are refused.
func scalar(n *yaml.Node) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", fmt.Errorf("want a string, got %s", kind(n))
	}
	return n.Value, nil
}

// pair is one key and value of a mapping.
type pair struct {
	key, val *yaml.Node
}

// pairs returns the entries of mapping m in file order. Keys must be scalars and unique;
// merge keys (`<<: *defaults`) are expanded, explicit keys winning over merged ones and
// earlier merged mappings over later ones, as YAML specifies.
func (f *file) pairs(m *yaml.Node, w where) []pair {
	var out []pair
	index := map[string]int{}     // key → position in out
	explicit := map[string]bool{} // key written in m itself
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			f.errorf(k, w, "a key must be a string, not %s", kind(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			for _, p := range f.merged(v, w) {
				if _, ok := index[p.key.Value]; ok {
					continue
				}
				index[p.key.Value] = len(out)
				out = append(out, p)
			}
			continue
		}
		if j, ok := index[k.Value]; ok {
			if explicit[k.Value] {
				f.errorf(k, w, "duplicate key %q (first at line %d)", k.Value, out[j].key.Line)
				continue
			}
			out[j].key = nil // a merged entry, overridden
		}
		index[k.Value] = len(out)
		explicit[k.Value] = true
		out = append(out, pair{key: k, val: v})
	}
	kept := out[:0]
	for _, p := range out {
		if p.key != nil {
			kept = append(kept, p)
		}
	}
	return kept
}

// merged returns the entries that a merge key brings in.
func (f *file) merged(v *yaml.Node, w where) []pair {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return f.pairs(v, w)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.MappingNode {
				f.errorf(item, w, "merge key \"<<\": want a mapping, got %s", kind(item))
				continue
			}
			out = append(out, f.pairs(item, w)...)
		}
		return out
	}
	f.errorf(v, w, "merge key \"<<\": want a mapping or a list of mappings, got %s", kind(v))
	return nil
}
