package remote

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
)

// board is the progress of all pulls on a terminal: one line per layer being fetched,
// redrawn in place a few times a second with its bytes and rate, and a permanent line per
// layer when it has arrived. Pulls of one build run at the same time; they share the
// board, so that their lines do not overwrite each other.
type board struct {
	w  io.Writer
	cs content.Store

	mu     sync.Mutex
	pulls  int
	stop   chan struct{}
	done   chan struct{}
	drawn  int                   // lines of the block on screen
	layers map[string]*layerLine // by ingest ref
}

type layerLine struct {
	offset, total int64
	// rate is smoothed over the redraws.
	rate     float64
	lastSeen time.Time
}

// redraw is how often the block is drawn again.
const redraw = 200 * time.Millisecond

func newBoard(w io.Writer, cs content.Store) *board {
	return &board{w: w, cs: cs, layers: map[string]*layerLine{}}
}

// begin notes a pull that starts; the first one starts drawing.
func (b *board) begin(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pulls++
	if b.pulls == 1 {
		b.stop, b.done = make(chan struct{}), make(chan struct{})
		go b.run(context.WithoutCancel(ctx), b.stop, b.done)
	}
}

// end notes a pull that ended, printing line (when not "") above the block; the last one
// stops drawing and clears the block.
func (b *board) end(line string) {
	b.mu.Lock()
	b.pulls--
	last := b.pulls == 0
	stop, done := b.stop, b.done
	b.mu.Unlock()
	if last {
		close(stop)
		<-done
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if line != "" {
		b.clear()
		fmt.Fprintln(b.w, line)
		if !last {
			b.draw()
		}
	}
}

func (b *board) run(ctx context.Context, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(redraw)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			b.mu.Lock()
			b.update(ctx) // the layers that arrived since the last tick
			b.clear()
			b.mu.Unlock()
			return
		case <-tick.C:
		}
		b.mu.Lock()
		b.update(ctx)
		b.clear()
		b.draw()
		b.mu.Unlock()
	}
}

// update reads the content store's ingests: a layer that is gone has arrived and gets
// its permanent line (printed where the block was; the caller redraws).
func (b *board) update(ctx context.Context) {
	statuses, err := b.cs.ListStatuses(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	active := map[string]bool{}
	for _, st := range statuses {
		active[st.Ref] = true
		l, ok := b.layers[st.Ref]
		if !ok {
			b.layers[st.Ref] = &layerLine{offset: st.Offset, total: st.Total, lastSeen: now}
			continue
		}
		if dt := now.Sub(l.lastSeen).Seconds(); dt > 0 {
			r := float64(st.Offset-l.offset) / dt
			l.rate = 0.5*l.rate + 0.5*r
		}
		l.offset, l.total, l.lastSeen = st.Offset, st.Total, now
	}
	var arrived []string
	for ref, l := range b.layers {
		if !active[ref] {
			arrived = append(arrived, fmt.Sprintf("layer %s done (%s)", layerName(ref), Size(l.total)))
			delete(b.layers, ref)
		}
	}
	if len(arrived) > 0 {
		sort.Strings(arrived)
		b.clear()
		for _, a := range arrived {
			fmt.Fprintln(b.w, a)
		}
	}
}

// clear erases the block: the cursor goes up to its first line, and everything below is
// cleared.
func (b *board) clear() {
	if b.drawn > 0 {
		fmt.Fprintf(b.w, "\x1b[%dF\x1b[J", b.drawn)
		b.drawn = 0
	}
}

// draw writes the block: a line per layer being fetched.
func (b *board) draw() {
	refs := make([]string, 0, len(b.layers))
	for ref := range b.layers {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	var sb strings.Builder
	for _, ref := range refs {
		l := b.layers[ref]
		fmt.Fprintf(&sb, "layer %s %s of %s, %s/s\n", layerName(ref), Size(l.offset), Size(l.total), Size(int64(l.rate)))
	}
	io.WriteString(b.w, sb.String())
	b.drawn = len(refs)
}
