// Package app is the shell every service's main runs in: a context that
// ends on SIGINT or SIGTERM, one error reported, one exit code.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// RunFunc is a service's whole life. It returns when ctx ends (shutdown)
// or on a fatal error.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs run and exits: 0 on a clean stop, 2 on a usage error, 1
// otherwise. Nothing else in a service calls os.Exit.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(name, err, os.Stderr))
}

// ExitCode reports err on w and returns the process exit code for it.
func ExitCode(name string, err error, w io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(UsageError)):
		fmt.Fprintf(w, "%s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(w, "%s: %v\n", name, err)
		return 1
	}
}

// UsageError is a mistake in the command line.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }
