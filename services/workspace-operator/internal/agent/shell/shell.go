// Package shell runs a command synchronously with /bin/sh -c and captures its
// output, with a timeout and a cap on each stream.
//
// stdout and stderr are read concurrently from the moment the child starts
// and bytes past the cap are read and dropped, so a chatty child never blocks
// on a full pipe (the reference implementation read only after wait and hung
// past the 64 KiB pipe buffer).
package shell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"sortie.dev/services/workspace-operator/internal/agent/children"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// ErrBadTimeout is returned for a timeout outside 0..agentapi.MaxExecTimeoutSecs.
var ErrBadTimeout = errors.New("invalid timeout_secs")

// Starter starts and waits for children; *children.Tracker implements it.
type Starter interface {
	Start(*exec.Cmd) error
	Wait(*exec.Cmd) error
}

// Runner runs commands. Its fields must not change once Run is in use.
type Runner struct {
	Children Starter
	// Workdir is where relative cwds start.
	Workdir string
	// Env is the base environment of every command.
	Env []string
	// MaxOutput caps the bytes kept of each of stdout and stderr.
	MaxOutput int64
	// DrainDelay bounds how long to wait for the pipes to close after the
	// command has exited: a background job that inherited them (`cmd &`)
	// would otherwise hold the response open for as long as it runs.
	DrainDelay time.Duration
}

// Run runs req.Command. Errors are for requests that cannot be run at all
// (bad cwd, env or timeout); everything about the command itself, including
// failing to start it, is in the result.
func (r *Runner) Run(ctx context.Context, req agentapi.ExecRequest) (agentapi.ExecResult, error) {
	timeout, err := timeoutOf(req.TimeoutSecs)
	if err != nil {
		return agentapi.ExecResult{}, err
	}
	dir, err := children.Dir(r.Workdir, req.Cwd)
	if err != nil {
		return agentapi.ExecResult{}, err
	}
	env, err := children.Environ(r.Env, req.Env)
	if err != nil {
		return agentapi.ExecResult{}, err
	}
	cmd := exec.Command("/bin/sh", "-c", req.Command)
	cmd.Dir, cmd.Env = dir, env
	if req.Stdin != "" {
		cmd.Stdin = strings.NewReader(req.Stdin)
		// os/exec copies stdin in a goroutine that Wait waits for; a
		// grandchild holding stdin open must not stall us forever.
		cmd.WaitDelay = r.DrainDelay
	}
	return r.run(ctx, cmd, timeout)
}

func timeoutOf(secs int) (time.Duration, error) {
	switch {
	case secs == 0:
		return agentapi.DefaultExecTimeoutSecs * time.Second, nil
	case secs < 0 || secs > agentapi.MaxExecTimeoutSecs:
		return 0, fmt.Errorf("%w: %d (allowed 1..%d, 0 for the default %d)",
			ErrBadTimeout, secs, agentapi.MaxExecTimeoutSecs, agentapi.DefaultExecTimeoutSecs)
	}
	return time.Duration(secs) * time.Second, nil
}

func (r *Runner) run(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (agentapi.ExecResult, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return agentapi.ExecResult{}, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return agentapi.ExecResult{}, fmt.Errorf("stderr pipe: %w", err)
	}
	// Handing *os.File to the child means no copying goroutine inside
	// os/exec: the child writes straight into our pipes.
	cmd.Stdout, cmd.Stderr = outW, errW
	start := time.Now()
	err = r.Children.Start(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		// Like a shell that cannot run a command.
		return agentapi.ExecResult{ExitCode: 127, Stderr: err.Error() + "\n", DurationMS: since(start)}, nil
	}

	stdout, stderr := &capture{max: r.MaxOutput}, &capture{max: r.MaxOutput}
	var readers sync.WaitGroup
	readers.Go(func() { stdout.drain(outR) })
	readers.Go(func() { stderr.drain(errR) })

	waited := make(chan struct{})
	go func() {
		_ = r.Children.Wait(cmd) // the status is in cmd.ProcessState
		close(waited)
	}()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timedOut := false
	select {
	case <-waited:
	case <-ctx.Done():
		timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		// The leader has not been waited for, so its pid is still its
		// group's id: killing the group cannot hit a recycled pid.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}

	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(r.DrainDelay):
		// Closing the read ends wakes the blocked readers; a writer left
		// behind gets EPIPE.
		outR.Close()
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()

	res := agentapi.ExecResult{
		Stdout:          stdout.String(),
		Stderr:          stderr.String(),
		StdoutTruncated: stdout.truncated,
		StderrTruncated: stderr.truncated,
		TimedOut:        timedOut,
		DurationMS:      since(start),
	}
	code, sig := children.Status(cmd.ProcessState)
	switch {
	case code != nil && !timedOut:
		res.ExitCode = *code
	case sig != nil:
		res.ExitCode, res.Signal = -1, *sig
	default:
		res.ExitCode = -1
	}
	return res, nil
}

func since(t time.Time) int64 { return time.Since(t).Milliseconds() }

// capture keeps the first max bytes read and counts the rest as dropped.
type capture struct {
	max       int64
	buf       []byte
	truncated bool
}

func (c *capture) drain(f *os.File) {
	chunk := make([]byte, 64<<10)
	for {
		n, err := f.Read(chunk)
		c.add(chunk[:n])
		if err != nil {
			return
		}
	}
}

func (c *capture) add(p []byte) {
	room := c.max - int64(len(c.buf))
	if int64(len(p)) > room {
		c.truncated = true
		p = p[:max(room, 0)]
	}
	c.buf = append(c.buf, p...)
}

// String returns the kept bytes; a cap that fell inside a UTF-8 sequence
// drops that sequence's first bytes rather than turn them into U+FFFD. Cut
// output ends with agentapi.TruncationMarker, so that whoever reads only
// the text still sees it is not whole.
func (c *capture) String() string {
	b := c.buf
	if !c.truncated {
		return string(b)
	}
	b = b[:len(b)-agentapi.PartialRune(b)]
	return string(b) + agentapi.TruncationMarker(c.max)
}
