package images

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/task"
)

// Store is the images of one build.
type Store struct {
	// Find looks an image up in containerd's store, unpacked; absent is
	// errdefs.ErrNotFound (task.Client.Image).
	Find func(ctx context.Context, ref string) (*task.Image, error)
	// Pull fetches the normalised reference with creds, which win over the host's for
	// their registries; nil pulls nothing, so missing images are errors.
	Pull func(ctx context.Context, ref string, creds remote.Credentials) error
	// IfPresent pulls images that are in the store too.
	IfPresent bool

	mu   sync.Mutex
	refs map[string]*entry
}

// entry is one reference's outcome, ready once done is closed.
type entry struct {
	done chan struct{}
	img  *task.Image
	err  error
}

// Get returns the image ref, pulling it when it is missing, or always with IfPresent;
// callers asking for the same ref at the same time wait for the one pull. creds, when not
// nil, gives the caller's credentials, and is called only when its pull happens; a pull
// that failed (for its caller's credentials, or its cancelled context) is tried again by
// the next caller, as itself.
func (s *Store) Get(ctx context.Context, ref string, creds func(context.Context) (remote.Credentials, error)) (*task.Image, error) {
	// Keyed by the normalised name: busybox and docker.io/library/busybox:latest are one.
	name, err := task.Normalize(ref)
	if err != nil {
		return nil, err
	}
	return s.once(ctx, name, func() (*task.Image, error) {
		img, err := s.Find(ctx, ref)
		missing := errdefs.IsNotFound(err)
		if s.Pull == nil || !(missing || s.IfPresent) {
			return img, err
		}
		var more remote.Credentials
		if creds != nil {
			if more, err = creds(ctx); err != nil {
				return nil, err
			}
		}
		if err := s.Pull(ctx, name, more); err != nil {
			return nil, &PullError{Name: name, Err: err}
		}
		return s.Find(ctx, ref)
	})
}

// PullError is a pull that failed: Name is the normalised reference, Err what the
// registry (or the way to it) said.
type PullError struct {
	Name string
	Err  error
}

func (e *PullError) Error() string { return fmt.Sprintf("pull image %s: %v", e.Name, e.Err) }
func (e *PullError) Unwrap() error { return e.Err }

// Waiting reports whether ref is to be pulled (missing, or always with IfPresent) but is
// not yet: an image whose pull needs the credentials of a credential service, which
// runs first. It returns the image when it is present and is not to be pulled.
func (s *Store) Waiting(ctx context.Context, ref string) (*task.Image, bool, error) {
	if s.Pull != nil && s.IfPresent {
		return nil, true, nil
	}
	img, err := s.Find(ctx, ref)
	if errdefs.IsNotFound(err) && s.Pull != nil {
		return nil, true, nil
	}
	return img, false, err
}

// PullWith pulls ref with creds now, whatever the store has (the credentials came from a
// credential service), once per build, and returns it.
func (s *Store) PullWith(ctx context.Context, ref string, creds remote.Credentials) (*task.Image, error) {
	if s.Pull == nil {
		return nil, errors.New("this build pulls no images")
	}
	name, err := task.Normalize(ref)
	if err != nil {
		return nil, err
	}
	// Keyed apart from Get's: an image found present by Get is still pulled here.
	return s.once(ctx, "with credentials:"+name, func() (*task.Image, error) {
		if err := s.Pull(ctx, name, creds); err != nil {
			return nil, err
		}
		return s.Find(ctx, ref)
	})
}

// once runs get for key unless it ran (or runs) already and returns its outcome. Only
// images are kept: when get fails, a caller that waited for it tries once more, as
// itself (its own context, its own credentials), and so does every later caller.
func (s *Store) once(ctx context.Context, key string, get func() (*task.Image, error)) (*task.Image, error) {
	for retried := false; ; retried = true {
		s.mu.Lock()
		if s.refs == nil {
			s.refs = map[string]*entry{}
		}
		e, inFlight := s.refs[key]
		if !inFlight {
			e = &entry{done: make(chan struct{})}
			s.refs[key] = e
		}
		s.mu.Unlock()
		if !inFlight {
			e.img, e.err = get()
			if e.err != nil {
				s.mu.Lock()
				delete(s.refs, key)
				s.mu.Unlock()
			}
			close(e.done)
			return e.img, e.err
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err == nil || retried {
			return e.img, e.err
		}
	}
}
