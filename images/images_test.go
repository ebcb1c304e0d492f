package images

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/crun-ci/crun-ci/remote"
	"github.com/crun-ci/crun-ci/task"
)

// registry is a fake store and registry: present images are found, pulls make them
// present and are counted.
type registry struct {
	mu      sync.Mutex
	present map[string]bool
	pulls   atomic.Int32
	fail    error
}

func (r *registry) find(_ context.Context, ref string) (*task.Image, error) {
	name, _ := task.Normalize(ref)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.present[name] {
		return nil, fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
	}
	return &task.Image{Name: name}, nil
}

func (r *registry) pull(_ context.Context, name string, _ remote.Credentials) error {
	r.pulls.Add(1)
	time.Sleep(20 * time.Millisecond)
	if r.fail != nil {
		return r.fail
	}
	r.mu.Lock()
	r.present[name] = true
	r.mu.Unlock()
	return nil
}

func TestAMissingImageIsPulledOnceHoweverManyAsk(t *testing.T) {
	r := &registry{present: map[string]bool{}}
	s := &Store{Find: r.find, Pull: r.pull}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			img, err := s.Get(context.Background(), "busybox", nil)
			if err != nil || img.Name != "docker.io/library/busybox:latest" {
				t.Errorf("Get = %v, %v", img, err)
			}
		})
	}
	wg.Wait()
	if _, err := s.Get(context.Background(), "busybox", nil); err != nil {
		t.Fatal(err)
	}
	if n := r.pulls.Load(); n != 1 {
		t.Errorf("%d pulls, want 1", n)
	}
}

// References that name the same image share its one pull.
func TestReferencesToOneImageShareItsPull(t *testing.T) {
	r := &registry{present: map[string]bool{}}
	s := &Store{Find: r.find, Pull: r.pull, IfPresent: true}
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox"} {
		if _, err := s.Get(context.Background(), ref, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PullWith(context.Background(), ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.pulls.Load(); n != 2 {
		t.Errorf("%d pulls, want 2 (one for Get, one with credentials)", n)
	}
}

func TestPullPolicy(t *testing.T) {
	for _, tt := range []struct {
		name      string
		present   bool
		ifPresent bool
		noPull    bool
		wantPulls int32
		wantErr   bool
	}{
		{name: "a present image is not pulled", present: true},
		{name: "a missing image is pulled", wantPulls: 1},
		{name: "IfPresent pulls a present image too", present: true, ifPresent: true, wantPulls: 1},
		{name: "without pulls a missing image is an error", noPull: true, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &registry{present: map[string]bool{"docker.io/library/busybox:latest": tt.present}}
			s := &Store{Find: r.find, Pull: r.pull, IfPresent: tt.ifPresent}
			if tt.noPull {
				s.Pull = nil
			}
			_, err := s.Get(context.Background(), "busybox", nil)
			if (err != nil) != tt.wantErr {
				t.Errorf("Get: %v", err)
			}
			if tt.wantErr && !errdefs.IsNotFound(err) {
				t.Errorf("error %v is not NotFound", err)
			}
			if n := r.pulls.Load(); n != tt.wantPulls {
				t.Errorf("%d pulls, want %d", n, tt.wantPulls)
			}
		})
	}
}

// A pull refused for one service's credentials does not refuse another's: the next
// caller tries with its own.
func TestAFailedPullSaysWhatAndTheNextCallerTriesWithItsOwnCredentials(t *testing.T) {
	r := &registry{present: map[string]bool{}, fail: errors.New("access denied by the registry")}
	s := &Store{Find: r.find, Pull: r.pull}
	_, err := s.Get(context.Background(), "private/base", nil)
	var pe *PullError
	if !errors.As(err, &pe) || err.Error() != "pull image docker.io/private/base:latest: access denied by the registry" {
		t.Errorf("Get = %v", err)
	}
	r.fail = nil // the second caller's credentials are good
	if _, err := s.Get(context.Background(), "private/base", func(context.Context) (remote.Credentials, error) {
		return remote.Credentials{}, nil
	}); err != nil {
		t.Errorf("Get with the other credentials: %v", err)
	}
	if n := r.pulls.Load(); n != 2 {
		t.Errorf("%d pulls, want 2", n)
	}
}

// A caller whose context ends does not fail another that waited for its pull.
func TestAWaiterOutlivesTheCancelledPullItWaitedFor(t *testing.T) {
	r := &registry{present: map[string]bool{}}
	started := make(chan struct{})
	s := &Store{Find: r.find, Pull: func(ctx context.Context, name string, c remote.Credentials) error {
		if ctx.Err() == nil && r.pulls.Load() == 0 {
			r.pulls.Add(1)
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return r.pull(ctx, name, c)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Get(ctx, "busybox", nil)
	<-started
	done := make(chan error)
	go func() {
		_, err := s.Get(context.Background(), "busybox", nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the waiter's Get = %v, want the image", err)
	}
}

func TestACancelledGetIsNotKept(t *testing.T) {
	r := &registry{present: map[string]bool{}}
	s := &Store{Find: r.find, Pull: func(ctx context.Context, _ string, _ remote.Credentials) error { return ctx.Err() }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "busybox", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v, want context.Canceled", err)
	}
	s.Pull = r.pull
	if _, err := s.Get(context.Background(), "busybox", nil); err != nil {
		t.Errorf("Get after the cancelled one: %v", err)
	}
}

func TestAnImageWaitingForCredentialsIsPulledWithThem(t *testing.T) {
	r := &registry{present: map[string]bool{"docker.io/library/busybox:latest": true}}
	s := &Store{Find: r.find, Pull: r.pull}
	if img, waiting, err := s.Waiting(context.Background(), "busybox"); err != nil || waiting || img == nil {
		t.Errorf("Waiting for a present image = %v, %v, %v", img, waiting, err)
	}
	if _, waiting, _ := s.Waiting(context.Background(), "private/app"); !waiting {
		t.Error("a missing image does not wait")
	}
	s.Get(context.Background(), "busybox", nil)
	if _, err := s.PullWith(context.Background(), "busybox", remote.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if n := r.pulls.Load(); n != 1 {
		t.Errorf("%d pulls: PullWith pulls what Get found present", n)
	}
}

func TestABuildRunsOnceAndAFailedOneAgain(t *testing.T) {
	s := &Store{}
	var runs atomic.Int32
	fail := errors.New("RUN failed")
	build := func(err error) func(context.Context) (*task.Image, error) {
		return func(context.Context) (*task.Image, error) {
			runs.Add(1)
			time.Sleep(20 * time.Millisecond)
			if err != nil {
				return nil, err
			}
			return &task.Image{Name: "docker.io/library/built:latest"}, nil
		}
	}
	if _, err := s.Build(context.Background(), "app", build(fail)); !errors.Is(err, fail) {
		t.Fatalf("failed build: %v", err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if img, err := s.Build(context.Background(), "app", build(nil)); err != nil || img.Name != "docker.io/library/built:latest" {
				t.Errorf("Build = %v, %v", img, err)
			}
		})
	}
	wg.Wait()
	if _, err := s.Build(context.Background(), "app", build(fail)); err != nil {
		t.Errorf("a later step: %v, want the image built before", err)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("%d builds, want the failed one and one more", n)
	}
	// Another service's build is its own, even of the same image name.
	if _, err := s.Build(context.Background(), "other", build(nil)); err != nil || runs.Load() != 3 {
		t.Errorf("another service: %v, %d builds", err, runs.Load())
	}
}
