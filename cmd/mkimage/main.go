// Command mkimage writes the busybox test image as an OCI image archive, offline, from
// Debian's busybox-static, for `crun-ci import`.
//
//	mkimage -o busybox.tar [-name docker.io/library/busybox:latest] [-file SRC:DST]… [-dir DST]…
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/crun-ci/crun-ci/ociarchive"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	out := flag.String("o", "", "output file")
	name := flag.String("name", "docker.io/library/busybox:latest", "image reference")
	bin := flag.String("busybox", ociarchive.BusyboxPath, "static busybox binary")
	var files, dirs list
	flag.Var(&files, "file", "SRC:DST: add the host file SRC at DST in the image (repeatable)")
	flag.Var(&dirs, "dir", "DST: add an empty directory (repeatable)")
	flag.Parse()
	if err := run(*out, *name, *bin, files, dirs); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, name, bin string, files, dirs []string) error {
	if out == "" {
		return fmt.Errorf("-o is required")
	}
	img := ociarchive.Image{Name: name, Config: ociarchive.BusyboxConfig()}
	var err error
	if img.Files, err = ociarchive.Busybox(bin); err != nil {
		return err
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, ":")
		if !ok {
			return fmt.Errorf("-file %q: want SRC:DST", f)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		img.Files = append(img.Files, ociarchive.File{Path: dst, Mode: 0o644, Data: data})
	}
	for _, d := range dirs {
		img.Files = append(img.Files, ociarchive.File{Path: d, Mode: fs.ModeDir | 0o755})
	}
	return ociarchive.WriteFile(out, img)
}
