package dockerfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"

	"github.com/crun-ci/crun-ci/hostfs"
)

// ignoreFile is the name of the file, at the root of the build context, that lists the
// paths left out of the context.
const ignoreFile = ".dockerignore"

// Context is a build context: a host directory, pinned, and the rules of its
// .dockerignore.
//
// Paths "in the context" are slash-separated, clean and relative to its top ("." is the
// top itself). Symbolic links in the context are resolved as if its top were the root
// of the filesystem, so no path ever leaves it, however the context changes while it
// is read (see hostfs.InRoot).
type Context struct {
	root *hostfs.Dir

	mu       sync.Mutex // patternmatcher compiles lazily and is not safe for concurrent use
	matcher  *patternmatcher.PatternMatcher
	patterns []string
}

// NewContext reads the .dockerignore of the context root (absent is fine; at most max
// bytes) and returns the context. root must resolve InRoot; the context reads through
// it, and the caller closes it when the context is no longer used.
func NewContext(root *hostfs.Dir, max int64) (*Context, error) {
	patterns, err := readIgnoreFile(root, max)
	if err != nil {
		return nil, err
	}
	c := &Context{root: root, patterns: patterns}
	if len(patterns) > 0 {
		if c.matcher, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("%s: %w", ignoreFile, err)
		}
	}
	return c, nil
}

// readIgnoreFile returns the patterns of the context's .dockerignore, none if it does
// not exist.
func readIgnoreFile(root *hostfs.Dir, max int64) ([]string, error) {
	data, err := root.ReadFile(ignoreFile, max)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ignore file: %w", err)
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ignoreFile, err)
	}
	return patterns, nil
}

// Ignored reports whether the context-relative path rel (slash-separated, clean, no
// leading "/") is excluded by .dockerignore. A path is excluded when the last pattern
// that matches it, or one of its parent directories, is not a "!" exception. The context
// root itself is never excluded.
func (c *Context) Ignored(rel string) bool {
	if c.matcher == nil || rel == "" || rel == "." {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ignored, err := c.matcher.MatchesOrParentMatches(rel)
	// The patterns were checked by patternmatcher.New; an error here can only be a
	// pattern that compiles to no regular expression, which matches nothing.
	return err == nil && ignored
}

// SkipDir reports whether the context directory rel and everything below it are
// excluded: rel is ignored and no "!" exception can match a path below it. A walk of
// the context may skip such a directory without looking inside. Copy takes it as
// CopyOptions.SkipDir.
func (c *Context) SkipDir(rel string) bool {
	if !c.Ignored(rel) {
		return false
	}
	elems := strings.Split(rel, "/")
	for _, p := range c.matcher.Patterns() {
		if p.Exclusion() && mayMatchBelow(p.String(), elems) {
			return false
		}
	}
	return true
}

// mayMatchBelow reports whether the cleaned ignore pattern could match a path below the
// directory whose path elements are dir. It errs on the side of "yes".
func mayMatchBelow(pattern string, dir []string) bool {
	pelems := strings.Split(pattern, "/")
	star := slices.IndexFunc(pelems, func(e string) bool { return strings.Contains(e, "**") })
	if star < 0 && len(pelems) <= len(dir) {
		// A pattern no longer than dir matches a path below dir only through a parent
		// of it, and then it matches dir too: it already decided whether dir is ignored.
		return false
	}
	for i, d := range dir {
		if i == star {
			return true // "**" may stand for the rest of dir and more
		}
		if ok, err := path.Match(pelems[i], d); err == nil && !ok {
			return false
		}
	}
	return true
}

// Sources resolves the source arguments of one COPY or ADD in the context and returns
// the context-relative paths they match, sorted and without duplicates.
//
// Each source is relative to the context root, also when it starts with "/". It may
// hold wildcards (filepath.Match syntax) in any path element. ".." never leaves the
// context and symbolic links are resolved inside it, as if the context were the root of
// the filesystem. Each source must match at least one path that .dockerignore does not
// exclude.
func (c *Context) Sources(srcs []string) ([]string, error) {
	var out []string
	for _, src := range srcs {
		matched, err := c.source(src)
		if err != nil {
			return nil, err
		}
		if len(matched) == 0 {
			return nil, fmt.Errorf("%q: not found in the build context (or excluded by .dockerignore)", src)
		}
		out = append(out, matched...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// source returns the context paths one source argument matches.
func (c *Context) source(src string) ([]string, error) {
	rel := contextRel(src)
	candidates := []string{"."}
	if rel != "." {
		for _, elem := range strings.Split(rel, "/") {
			var next []string
			for _, dir := range candidates {
				m, err := c.matchElem(dir, elem)
				if err != nil {
					return nil, fmt.Errorf("%q: %w", src, err)
				}
				next = append(next, m...)
			}
			candidates = next
		}
	}
	var out []string
	for _, cand := range candidates {
		ok, err := c.present(cand)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", src, err)
		}
		if ok {
			out = append(out, cand)
		}
	}
	return out, nil
}

// contextRel turns a source argument into a clean context-relative path: "/" and ".."
// stop at the context root.
func contextRel(src string) string {
	rel := strings.TrimPrefix(path.Join("/", filepath.ToSlash(src)), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// hasMeta reports whether a path element holds filepath.Match wildcards.
func hasMeta(elem string) bool {
	return strings.ContainsAny(elem, `*?[\`)
}

// matchElem returns the paths below the context directory dir whose last element is
// elem, a name or a wildcard pattern. A literal name is returned as is, whether or not
// it exists.
func (c *Context) matchElem(dir, elem string) ([]string, error) {
	if !hasMeta(elem) {
		return []string{path.Join(dir, elem)}, nil
	}
	if _, err := filepath.Match(elem, ""); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", elem, err)
	}
	entries, err := c.root.ReadDir(dir)
	if err != nil {
		// Not there or not a directory: nothing matches below it.
		return nil, nil
	}
	var out []string
	for _, e := range entries {
		if ok, _ := filepath.Match(elem, e.Name()); ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// present reports whether the context path rel exists and is part of the context: it
// is not excluded, nor is what it resolves to, or it is a directory with paths below it
// that are not excluded.
func (c *Context) present(rel string) (bool, error) {
	base, err := c.root.Resolve(rel)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	fi, err := c.root.Lstat(base)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	if !c.Ignored(rel) && !c.Ignored(base) {
		return true, nil
	}
	if !fi.IsDir() || c.SkipDir(base) {
		return false, nil
	}
	entries, err := walk(c.root, base, fi, c.filter())
	if err != nil {
		return false, err
	}
	return len(entries) > 1, nil
}

// notFound reports whether err says that a path does not exist, also because one of its
// parents is not a directory.
func notFound(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// filter returns the .dockerignore rules as a walk filter.
func (c *Context) filter() filter {
	if c.matcher == nil {
		return filter{}
	}
	return filter{ignored: c.Ignored, skipDir: c.SkipDir}
}

// Digest is a digest of what copying rels (context paths, as Sources returns them) from
// the context would copy: for every file, directory and symbolic link under each that
// .dockerignore does not exclude, walked in sorted order, its relative path, type, mode
// bits, size, link target and the sha256 of its content. Ownership and modification
// times are left out: COPY from the context sets them itself, and Docker does not key
// its cache on modification times either. It is the content part of the layer-cache key
// of COPY and ADD.
func (c *Context) Digest(rels []string) (digest.Digest, error) {
	h := sha256.New()
	for _, rel := range rels {
		if err := c.digestSource(h, rel); err != nil {
			return "", err
		}
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// digestSource writes to h the description of one source and everything below it.
func (c *Context) digestSource(h hash.Hash, rel string) error {
	base, err := c.root.Resolve(rel)
	if err != nil {
		return fmt.Errorf("digest %q: %w", rel, err)
	}
	fi, err := c.root.Lstat(base)
	if err != nil {
		return fmt.Errorf("digest %q: %w", rel, err)
	}
	entries, err := walk(c.root, base, fi, c.filter())
	if err != nil {
		return fmt.Errorf("digest %q: %w", rel, err)
	}
	fmt.Fprintf(h, "source %q %d\n", rel, len(entries))
	for _, e := range entries {
		if err := digestEntry(h, c.root, e); err != nil {
			return fmt.Errorf("digest %q: %w", path.Join(rel, e.rel), err)
		}
	}
	return nil
}

// digestEntry writes to h one line that describes e, read through root.
func digestEntry(h hash.Hash, root *hostfs.Dir, e entry) error {
	mode := e.fi.Mode()
	var size int64
	var target, content string
	switch {
	case mode.IsRegular():
		size = e.fi.Size()
		sum, err := fileSHA256(root, e.path)
		if err != nil {
			return err
		}
		content = sum
	case mode&os.ModeSymlink != 0:
		t, err := root.Readlink(e.path)
		if err != nil {
			return err
		}
		target = t
	}
	_, err := fmt.Fprintf(h, "%q %s %o %d %q %s\n",
		e.rel, mode.Type(), mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky),
		size, target, content)
	return err
}

// fileSHA256 returns the hex sha256 of the content of the regular file name below root.
func fileSHA256(root *hostfs.Dir, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// entry is one path found by walk.
type entry struct {
	rel  string // slash-separated, relative to the walked source; "." is the source
	path string // below the walked Dir
	fi   os.FileInfo
}

// filter says which paths a walk leaves out. The zero filter leaves out nothing.
type filter struct {
	ignored func(rel string) bool // path excluded
	skipDir func(rel string) bool // directory and all below excluded; nil: look inside
}

// walk lists the source at path top below d (described by fi) and, if it is a
// directory, everything below it in sorted order, parents before children. f sees the
// paths below d. A path f ignores is left out, except a directory with paths below it
// that f does not ignore.
func walk(d *hostfs.Dir, top string, fi os.FileInfo, f filter) ([]entry, error) {
	first := entry{rel: ".", path: top, fi: fi}
	if !fi.IsDir() {
		if f.excluded(top) {
			return nil, nil
		}
		return []entry{first}, nil
	}
	below, err := walkDir(d, top, ".", f)
	if err != nil {
		return nil, err
	}
	if len(below) == 0 && f.excluded(top) {
		return nil, nil
	}
	return append([]entry{first}, below...), nil
}

// walkDir lists what is below the directory at path dir below d, whose path is rel in
// the walk.
func walkDir(d *hostfs.Dir, dir, rel string, f filter) ([]entry, error) {
	fis, err := d.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, fi := range fis {
		e := entry{rel: path.Join(rel, fi.Name()), path: path.Join(dir, fi.Name()), fi: fi}
		ignored := f.excluded(e.path)
		if !e.fi.IsDir() {
			if !ignored {
				out = append(out, e)
			}
			continue
		}
		if ignored && f.skipDir != nil && f.skipDir(e.path) {
			continue
		}
		below, err := walkDir(d, e.path, e.rel, f)
		if err != nil {
			return nil, err
		}
		if !ignored || len(below) > 0 {
			out = append(out, e)
			out = append(out, below...)
		}
	}
	return out, nil
}

// excluded reports whether f leaves out the path rel.
func (f filter) excluded(rel string) bool {
	return f.ignored != nil && rel != "." && f.ignored(rel)
}
