package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/broken/*/want from what crun-ci validate prints")

// TestValidateBroken runs `crun-ci validate` on every case of testdata/broken and checks
// that it exits 2 and prints exactly the lines of the case's `want` file.
//
// A case is a directory holding the pipeline's files as a user would write them, and
// these files of the test's own, which are not copied into the build directory:
//
//   - want: the expected stderr. $DIR stands for the build directory and $OUTSIDE for
//     a directory next to it (outside it), since resolved host paths appear in messages.
//   - symlinks: lines `LINK -> TARGET` made in the build directory before the run. LINK
//     is relative to the build directory; TARGET is used as written (relative to the
//     link, or absolute like /etc), with a leading $OUTSIDE replaced by the outside
//     directory. Git keeps no symlinks we can trust across checkouts, so they are made
//     here.
//   - generate: lines `FILE: repeat N "TEXT"` that append the Go-quoted TEXT N times to
//     FILE (created if need be), for files too large to commit.
//
// Git keeps no empty directories, so a case that needs one holds a .gitkeep in it.
// With -update the want files are rewritten from the actual output: read every diff.
func TestValidateBroken(t *testing.T) {
	const root = "testdata/broken"
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			src := filepath.Join(root, e.Name())
			tmp, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(tmp, "build")
			outside := filepath.Join(tmp, "outside")
			if err := os.MkdirAll(filepath.Join(outside, "secrets"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := copyCase(src, dir); err != nil {
				t.Fatal(err)
			}
			if err := makeSymlinks(filepath.Join(src, "symlinks"), dir, outside); err != nil {
				t.Fatal(err)
			}
			if err := generate(filepath.Join(src, "generate"), dir); err != nil {
				t.Fatal(err)
			}

			var stdout, stderr bytes.Buffer
			err = run(context.Background(), []string{"validate", "--dir", dir}, &stdout, &stderr)
			if code := exitCode(err); code != 2 {
				t.Errorf("exit code %d (err %v), want 2", code, err)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q, want nothing", stdout.String())
			}
			got := strings.NewReplacer(dir, "$DIR", outside, "$OUTSIDE").Replace(stderr.String())

			wantFile := filepath.Join(src, "want")
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("validate: stderr mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if n < 45 {
		t.Errorf("%d cases in %s, want at least 45", n, root)
	}
}

// caseFiles are the files of a case that belong to the test, not to the build directory.
var caseFiles = map[string]bool{"want": true, "symlinks": true, "generate": true}

// copyCase copies the case directory src to dir, leaving out the test's own files.
func copyCase(src, dir string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && !strings.Contains(rel, string(filepath.Separator)) && caseFiles[rel] {
			return nil
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}

// makeSymlinks makes the links listed in file (`LINK -> TARGET` lines), if it exists.
func makeSymlinks(file, dir, outside string) error {
	return eachLine(file, func(line string) error {
		link, target, ok := strings.Cut(line, " -> ")
		if !ok {
			return fmt.Errorf("want LINK -> TARGET")
		}
		if rest, ok := strings.CutPrefix(target, "$OUTSIDE"); ok {
			target = outside + rest
		}
		p := filepath.Join(dir, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.Symlink(target, p)
	})
}

// generate appends the content described in file (`FILE: repeat N "TEXT"` lines), if it
// exists.
func generate(file, dir string) error {
	return eachLine(file, func(line string) error {
		name, rest, ok := strings.Cut(line, ": repeat ")
		if !ok {
			return fmt.Errorf(`want FILE: repeat N "TEXT"`)
		}
		count, quoted, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(count)
		if err != nil {
			return err
		}
		text, err := strconv.Unquote(quoted)
		if err != nil {
			return fmt.Errorf("text %s: %w", quoted, err)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		for range n {
			w.WriteString(text)
		}
		return errors.Join(w.Flush(), f.Close())
	})
}

// eachLine calls fn for each non-empty line of file; a missing file has no lines.
func eachLine(file string, fn func(string) error) error {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("%s:%d: %w", file, i+1, err)
		}
	}
	return nil
}
