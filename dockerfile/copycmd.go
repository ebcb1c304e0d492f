package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/crun-ci/crun-ci/hostfs"
	"github.com/crun-ci/crun-ci/network"
	"github.com/crun-ci/crun-ci/oci"
	"github.com/crun-ci/crun-ci/snapshot"
)

// copy carries out a COPY or (add) an ADD: the sources come from the build context, from
// an earlier stage or an image (--from), or, for ADD, from URLs.
func (x *run) copy(ctx context.Context, s *state, text string, sd instructions.SourcesAndDest, from, chown string, add bool, stage int) error {
	if len(sd.SourcePaths) == 0 {
		return errors.New("no source")
	}
	dest, workdir := sd.DestPath, s.config.Config.WorkingDir
	if len(sd.SourcePaths) > 1 && !strings.HasSuffix(dest, "/") {
		// Copy checks this too, but sources may come from several places here.
		if _, isDir := map[string]bool{".": true, "/": true}[dest]; !isDir {
			return errors.New("when using COPY with more than one source file, the destination must be a directory and end with a /")
		}
	}
	keyParts := []string{s.key.String(), strings.ToUpper(strings.Fields(text)[0]), dest, workdir, chown, strings.Join(s.dirs, "\x00")}
	keyParts = append(keyParts, sd.SourcePaths...)
	opts := func(uid, gid int) CopyOptions { return CopyOptions{UID: uid, GID: gid} }

	var fill func(root string, uid, gid int) error
	switch {
	case from != "":
		var src *state
		if j, ok := x.stageIndex(from, stage); ok {
			src = x.built[j]
		} else {
			img, err := x.image(ctx, from)
			if err != nil {
				return fmt.Errorf("--from=%s: %w", from, err)
			}
			src = img
		}
		keyParts = append(keyParts, "from", src.key.String())
		fill = func(root string, uid, gid int) error {
			if chown == "" {
				uid, gid = -1, -1 // another stage's files keep their owners
			}
			target := filepath.Join(x.r.Dir, "mnt", fmt.Sprintf("%s-from-%d", x.r.ID, x.seq.Add(1)))
			return snapshot.View(ctx, x.c, filepath.Base(target), src.chainID(), x.r.Labels, target, func(fromRoot string) error {
				// What earlier RUNs left there is read as any untrusted tree is.
				d, err := hostfs.Open(fromRoot, hostfs.InRoot, "--from="+from)
				if err != nil {
					return err
				}
				defer d.Close()
				rels, err := (&Context{root: d}).Sources(sd.SourcePaths)
				if err != nil {
					return err
				}
				return Copy(ctx, d, rels, root, dest, workdir, opts(uid, gid))
			})
		}
	case add && anyURL(sd.SourcePaths):
		dir := filepath.Join(x.r.Dir, "add", strconv.FormatInt(x.seq.Add(1), 10))
		defer os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		var dial network.DialFunc
		if x.r.Pod != nil {
			dial = x.r.Pod.Dial()
		}
		var local, rels []string
		for _, src := range sd.SourcePaths {
			if !IsURL(src) {
				local = append(local, src)
				continue
			}
			p, err := Fetch(ctx, src, dir, dial)
			if err != nil {
				return err
			}
			rels = append(rels, filepath.Base(p))
		}
		var ctxRels []string
		if len(local) > 0 {
			var err error
			if ctxRels, err = x.ctxDir.Sources(local); err != nil {
				return err
			}
		}
		fetched, err := hostfs.Open(dir, hostfs.InRoot, "the downloads")
		if err != nil {
			return err
		}
		defer fetched.Close()
		sum, err := (&Context{root: fetched}).Digest(rels)
		if err != nil {
			return err
		}
		ctxSum, err := x.ctxDir.Digest(ctxRels)
		if err != nil {
			return err
		}
		keyParts = append(keyParts, sum.String(), ctxSum.String())
		fill = func(root string, uid, gid int) error {
			if err := Copy(ctx, fetched, rels, root, dest, workdir, opts(uid, gid)); err != nil {
				return err
			}
			if len(ctxRels) == 0 {
				return nil
			}
			o := opts(uid, gid)
			o.Ignored, o.SkipDir, o.Extract, o.ArchiveOwners = x.ctxDir.Ignored, x.ctxDir.SkipDir, true, chown == ""
			return Copy(ctx, x.ctxDir.root, ctxRels, root, dest, workdir, o)
		}
	default:
		rels, err := x.ctxDir.Sources(sd.SourcePaths)
		if err != nil {
			return err
		}
		sum, err := x.ctxDir.Digest(rels)
		if err != nil {
			return err
		}
		keyParts = append(keyParts, sum.String())
		fill = func(root string, uid, gid int) error {
			o := opts(uid, gid)
			o.Ignored, o.SkipDir, o.Extract, o.ArchiveOwners = x.ctxDir.Ignored, x.ctxDir.SkipDir, add, chown == ""
			return Copy(ctx, x.ctxDir.root, rels, root, dest, workdir, o)
		}
	}

	key := x.key(keyParts...)
	return x.layer(ctx, s, key, text, func(id string) error {
		return x.mounted(ctx, id, func(root string) error {
			uid, gid, err := chownIDs(root, chown)
			if err != nil {
				return err
			}
			return fill(root, uid, gid)
		})
	})
}

func anyURL(srcs []string) bool {
	for _, s := range srcs {
		if IsURL(s) {
			return true
		}
	}
	return false
}

// chownIDs resolves a --chown value (user, user:group, uid, uid:gid) with the passwd and
// group files of the image at root. A user without group gets the user's id as group id,
// as Docker does. No --chown is 0:0.
func chownIDs(root, chown string) (int, int, error) {
	if chown == "" {
		return 0, 0, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(chown, ":")
	passwd, group := oci.Accounts(root)
	u, err := oci.User(userPart, passwd, group)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", chown, err)
	}
	uid, gid := int(u.UID), int(u.UID)
	if hasGroup {
		g, err := oci.User("0:"+groupPart, passwd, group)
		if err != nil {
			return 0, 0, fmt.Errorf("--chown=%s: no group %q in the image's /etc/group", chown, groupPart)
		}
		gid = int(g.GID)
	}
	return uid, gid, nil
}
