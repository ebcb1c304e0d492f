package steps

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// EventsVersion is the version of the events' format (Event): fields are only ever
// added within a version.
const EventsVersion = 1

// Event is one thing that happened in a build, for a CI system or a tool to follow
// (--events): JSON, one event a line. Type is one of
//
//   - build-start, build-end (Status passed or failed, Duration);
//   - step-start (Step, Service, Group), step-end (and Status, ExitCode, Duration,
//     Phases, Error, Note), step-removed (Duration: the teardown's, which runs while
//     the next steps go on);
//   - dependency-ready (Step, Service: the dependency);
//   - image-pulled, image-built (Image, Service, Duration).
//
// Durations are in milliseconds. Phases are a run step's: image (building what it
// needs), network (its pod and network), create (its containers), start (its
// dependencies until ready, and its own process), run (its command), stop (its
// dependencies).
type Event struct {
	Version    int                `json:"version"`
	Time       time.Time          `json:"time"`
	Type       string             `json:"type"`
	Build      string             `json:"build"`
	Step       string             `json:"step,omitempty"`
	Service    string             `json:"service,omitempty"`
	Group      []string           `json:"group,omitempty"`
	Status     Status             `json:"status,omitempty"`
	ExitCode   *uint32            `json:"exit_code,omitempty"`
	DurationMS *float64           `json:"duration_ms,omitempty"`
	Phases     map[string]float64 `json:"phases_ms,omitempty"`
	Image      string             `json:"image,omitempty"`
	Error      string             `json:"error,omitempty"`
	Note       string             `json:"note,omitempty"`
}

// JSONEvents returns an Options.Events that writes each event to w as a line of JSON,
// one at a time, and the first error it met.
func JSONEvents(w io.Writer) (func(Event), func() error) {
	var mu sync.Mutex
	var first error
	enc := json.NewEncoder(w)
	return func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			if err := enc.Encode(e); err != nil && first == nil {
				first = err
			}
		}, func() error {
			mu.Lock()
			defer mu.Unlock()
			return first
		}
}

// Phases are the times of a run step's phases (see Event).
type Phases struct {
	Image, Network, Create, Start, Run, Stop time.Duration
}

func (p Phases) ms() map[string]float64 {
	if p == (Phases{}) {
		return nil
	}
	m := map[string]float64{}
	for k, d := range map[string]time.Duration{"image": p.Image, "network": p.Network, "create": p.Create, "start": p.Start, "run": p.Run, "stop": p.Stop} {
		m[k] = ms(d)
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// emit sends e to Options.Events, with the version, time and build filled in.
func (b *build) emit(e Event) {
	if b.o.Events == nil {
		return
	}
	e.Version, e.Time, e.Build = EventsVersion, time.Now().UTC(), b.o.BuildID
	b.o.Events(e)
}

// withDuration is e with a duration.
func withDuration(e Event, d time.Duration) Event {
	v := ms(d)
	e.DurationMS = &v
	return e
}

// WriteJSON writes the summary as one JSON object (--log-format json): the build, its
// duration, the counts by status, and a result per step with the fields of a step-end
// Event.
func (s *Summary) WriteJSON(w io.Writer) error {
	type result struct {
		Step       string   `json:"step"`
		Service    string   `json:"service"`
		Group      []string `json:"group,omitempty"`
		Status     Status   `json:"status"`
		ExitCode   *uint32  `json:"exit_code,omitempty"`
		DurationMS float64  `json:"duration_ms"`
		Error      string   `json:"error,omitempty"`
		Note       string   `json:"note,omitempty"`
	}
	out := struct {
		Version    int            `json:"version"`
		Type       string         `json:"type"`
		Build      string         `json:"build"`
		Passed     bool           `json:"passed"`
		DurationMS float64        `json:"duration_ms"`
		Counts     map[Status]int `json:"counts"`
		Results    []result       `json:"results"`
	}{Version: EventsVersion, Type: "summary", Build: s.BuildID, Passed: s.Passed(), DurationMS: ms(s.Duration), Counts: map[Status]int{}, Results: []result{}}
	for _, r := range s.Results {
		out.Counts[r.Status]++
		e := result{Step: r.Step, Service: r.Service, Group: r.Group, Status: r.Status, DurationMS: ms(r.Duration), Note: r.Note}
		if r.Status == Failed && r.Err == nil {
			code := r.ExitCode
			e.ExitCode = &code
		}
		if r.Err != nil {
			e.Error = r.Err.Error()
		}
		out.Results = append(out.Results, e)
	}
	return json.NewEncoder(w).Encode(out)
}
