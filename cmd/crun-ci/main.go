// Command crun-ci runs Codeship-Pro-style pipelines (codeship-services.yml and
// codeship-steps.yml) on containerd, without Docker.
package main

import (
	"context"
	"errors"
	"fmt"

	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	var sig atomic.Value
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-signals
		sig.Store(s)
		cancel()
		// A second signal skips the grace period of running steps; clean-up still runs.
		<-signals
		close(hurry)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	code := exitCode(err)
	if s, ok := sig.Load().(os.Signal); ok && err != nil {
		code = 128 + int(s.(syscall.Signal))
	}
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintln(os.Stderr, "crun-ci: "+err.Error())
	}
	os.Exit(code)
}

// hurry is closed on a second SIGINT or SIGTERM.
var hurry = make(chan struct{})

// exitCode maps run's error to the exit status: 0 passed, 1 a step failed, 2 bad
// configuration, usage or a missing precondition.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errReported is wrapped by errors whose text was already printed.
var errReported = errors.New("reported")

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}
