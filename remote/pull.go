package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// Puller pulls images with one set of credentials and insecure registries.
type Puller struct {
	Client *client.Client
	// Keychain gives the logins of registries (the host's DockerConfig); nil, none.
	Keychain Keychain
	// Insecure lists the registries (host or host:port) reached over plain HTTP besides
	// loopback ones.
	Insecure []string
	// Progress receives a line per layer when it has arrived, and every 5 s a line per
	// pull in progress; nil discards them. With Terminal, Progress is a terminal: every
	// layer being fetched has a line there, redrawn in place with its bytes and rate.
	Progress io.Writer
	Terminal bool
	// Snapshotter unpacks the pulled image.
	Snapshotter string

	boardOnce     sync.Once
	progressBoard *board
}

// Keychain gives the login of a registry host, as containerd's authorizer asks for it:
// an identity token is a secret with an empty user; no login is two empty strings.
type Keychain interface {
	Lookup(host string) (user, secret string, err error)
}

// resolver is the resolver of one pull or push, with p.lookup(more).
func (p *Puller) resolver(more Credentials) remotes.Resolver {
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(p.plainHTTP),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(p.lookup(more)))),
	)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts})
}

// lookup answers the authorizer of one pull or push: more's logins win over the
// Keychain's for their registries, and the Keychain is not asked for those (no helper
// runs for them).
func (p *Puller) lookup(more Credentials) func(host string) (string, string, error) {
	return func(host string) (string, string, error) {
		if _, ok := more[normalizeHost(host)]; ok || p.Keychain == nil {
			return more.Lookup(host)
		}
		return p.Keychain.Lookup(host)
	}
}

// plainHTTP reports whether host is reached over plain HTTP: a loopback registry or one
// listed as insecure.
func (p *Puller) plainHTTP(host string) (bool, error) {
	for _, h := range p.Insecure {
		if h == host {
			return true, nil
		}
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if name == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback(), nil
}

// board returns the terminal progress board the Puller's pulls share.
func (p *Puller) board() *board {
	p.boardOnce.Do(func() { p.progressBoard = newBoard(p.Progress, p.Client.ContentStore()) })
	return p.progressBoard
}

// Pull fetches ref (normalised) and unpacks it. Its errors carry the registry's own
// message (denied, not found, rate limited).
func (p *Puller) Pull(ctx context.Context, ref string) error {
	return p.PullWith(ctx, ref, nil)
}

// PullWith is Pull with more credentials, which win over the Puller's Keychain for
// their registries (a service's encrypted_dockercfg_path or dockercfg_service).
func (p *Puller) PullWith(ctx context.Context, ref string, more Credentials) error {
	resolver := p.resolver(more)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var board *board
	switch {
	case p.Progress != nil && p.Terminal:
		board = p.board()
		board.begin(ctx)
	case p.Progress != nil:
		wg.Go(func() { p.report(ctx, ref, done) })
	}
	began := time.Now()
	img, err := p.Client.Pull(quiet(ctx), ref, client.WithPullUnpack, client.WithResolver(resolver), client.WithPullSnapshotter(p.Snapshotter))
	close(done)
	wg.Wait()
	line := ""
	if err == nil && p.Progress != nil {
		size, _ := img.Size(ctx)
		line = fmt.Sprintf("pulled %s (%s in %.1fs)", ref, Size(size), time.Since(began).Seconds())
	}
	if board != nil {
		board.end(line)
	} else if line != "" {
		fmt.Fprintln(p.Progress, line)
	}
	if err != nil {
		return pullError(err)
	}
	return nil
}

// pullError says what the registry said: denied, not found or rate limited, with its own
// message; or which credential helper failed, in its own words.
func pullError(err error) error {
	var helper *helperError
	if errors.As(err, &helper) {
		return helper
	}
	var status remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		msg := strings.TrimSpace(string(status.Body))
		if msg == "" {
			msg = status.Status
		}
		switch status.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("access denied by the registry (check the credentials in ~/.docker/config.json): %s", msg)
		case http.StatusTooManyRequests:
			return fmt.Errorf("rate limited by the registry: %s", msg)
		case http.StatusNotFound:
			return fmt.Errorf("not found in the registry: %s", msg)
		}
		return fmt.Errorf("the registry answered %s: %s", status.Status, msg)
	}
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("not found in the registry: %w", err)
	case errdefs.IsUnauthorized(err), errdefs.IsPermissionDenied(err):
		return fmt.Errorf("access denied by the registry (check the credentials in ~/.docker/config.json): %w", err)
	}
	return err
}

// report prints what the content store is fetching for this pull: a line when a layer
// has arrived, and every 5 s one line with the bytes and rate so far.
func (p *Puller) report(ctx context.Context, ref string, done <-chan struct{}) {
	cs := p.Client.ContentStore()
	seen := map[string]int64{} // active ingests: ref → total
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	var lastBytes int64
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		statuses, err := cs.ListStatuses(ctx)
		if err != nil {
			continue
		}
		now := map[string]int64{}
		var offset, total int64
		for _, st := range statuses {
			now[st.Ref] = st.Total
			offset += st.Offset
			total += st.Total
		}
		var finished []string
		for r, size := range seen {
			if _, ok := now[r]; !ok {
				finished = append(finished, fmt.Sprintf("%s: %s done (%s)", ref, layerName(r), Size(size)))
			}
		}
		sort.Strings(finished)
		for _, f := range finished {
			fmt.Fprintln(p.Progress, f)
		}
		seen = now
		if time.Since(last) >= 5*time.Second && len(now) > 0 {
			rate := float64(offset-lastBytes) / time.Since(last).Seconds()
			fmt.Fprintf(p.Progress, "%s: %d layers downloading, %s of %s, %s/s\n", ref, len(now), Size(offset), Size(total), Size(int64(rate)))
			last, lastBytes = time.Now(), offset
		}
	}
}

// layerName shortens an ingest ref ("layer-sha256:abc…") to its digest's first 12 hex.
func layerName(ingest string) string {
	if i := strings.LastIndex(ingest, ":"); i >= 0 && len(ingest)-i > 12 {
		return ingest[i+1 : i+13]
	}
	return ingest
}

// Size formats a byte count as progress lines do: 512 B, 3.1 KiB, 40.0 MiB, 1.2 GiB.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// quiet returns ctx with a logger that passes on containerd's resolver messages only
// from warnings up (at info it reports every failed request, which the pull's error
// says anyway), unless debugging is on.
func quiet(ctx context.Context) context.Context {
	entry := log.G(ctx)
	if entry.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return ctx
	}
	l := logrus.New()
	l.SetOutput(entry.Logger.Out)
	l.SetFormatter(entry.Logger.Formatter)
	l.SetLevel(logrus.WarnLevel)
	return log.WithLogger(ctx, logrus.NewEntry(l).WithFields(entry.Data))
}
