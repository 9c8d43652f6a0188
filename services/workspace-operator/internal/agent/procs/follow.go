package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// partialWait is how long a follower holds back an unfinished last line of a
// running process, hoping for its newline, before sending it anyway.
const partialWait = 200 * time.Millisecond

// Output is an open output file of one process, positioned at an offset.
type Output struct {
	p      *proc
	f      *os.File
	offset int64
	poll   time.Duration
}

// Output opens the output of process id at offset, which must not be past
// the current end (ErrOffset), so that a caller can answer with an error
// before it starts streaming.
func (m *Manager) Output(id string, offset int64) (*Output, error) {
	p, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(p.dir, outputFile))
	if err != nil {
		return nil, fmt.Errorf("open output: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat output: %w", err)
	}
	if offset < 0 || offset > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%w: offset %d, size %d", ErrOffset, offset, fi.Size())
	}
	// What was dropped (Options.MaxOutput) is not read: the stream starts
	// where the kept output does, and its first event says so.
	offset = max(offset, p.outputStart())
	return &Output{p: p, f: f, offset: offset, poll: m.opts.Poll}, nil
}

// Close closes the output file.
func (o *Output) Close() error { return o.f.Close() }

// Stream sends the output to emit in chunks of at most
// agentapi.MaxOutputChunk that end on a line break when possible.
//
// Once the process has exited and all its output has been sent, Stream
// emits the EOF event and returns. Otherwise, without follow it returns at
// the current end; with follow it waits for more output until ctx ends or
// stop is closed (server shutdown). Neither affects the process.
//
// "Exited" is about the process itself: a grandchild left in its group that
// writes after that has its output in the file but not in the stream.
//
// A positive limit ends the stream (without an EOF event) once that many
// bytes have been sent: a page of the output.
func (o *Output) Stream(ctx context.Context, follow bool, limit int64, stop <-chan struct{}, emit func(agentapi.OutputEvent) error) error {
	p, f, offset := o.p, o.f, o.offset
	defer func() { o.offset = offset }()
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	buf := make([]byte, agentapi.MaxOutputChunk)
	left := limit
	var partialSince time.Time
	for {
		if limit > 0 && left <= 0 {
			return nil
		}
		// Look at the state before reading: everything the process wrote
		// before it exited is then in what we read.
		exited := p.exited()
		window := buf
		if limit > 0 && left < int64(len(buf)) {
			window = buf[:left]
		}
		if start := p.outputStart(); offset < start {
			offset = start
		}
		n, err := f.ReadAt(window, offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read output: %w", err)
		}
		if start := p.outputStart(); offset < start {
			// Dropped while we read: what we have may be the hole's zeros.
			continue
		}
		if n > 0 {
			full := n == len(window)
			chunk, whole := cut(window[:n], full)
			if !whole && !full && follow && !exited {
				if partialSince.IsZero() {
					partialSince = time.Now()
				}
				if time.Since(partialSince) < partialWait {
					if err := pause(ctx, stop, p.done, tick.C); err != nil || closed(stop) {
						return err
					}
					continue
				}
			}
			partialSince = time.Time{}
			if err := emit(agentapi.NewOutputData(offset, chunk)); err != nil {
				return err
			}
			offset += int64(len(chunk))
			left -= int64(len(chunk))
			continue
		}
		if exited {
			code, sig := p.status()
			return emit(agentapi.OutputEvent{Offset: offset, EOF: true, ExitCode: code, Signal: sig})
		}
		if !follow {
			return nil
		}
		if err := pause(ctx, stop, p.done, tick.C); err != nil || closed(stop) {
			return err
		}
	}
}

// cut returns the part of b to send now: up to its last line break if it
// has one. Otherwise all of it, with whole=false, except that a full chunk
// is cut before a trailing incomplete UTF-8 sequence.
func cut(b []byte, full bool) (chunk []byte, whole bool) {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[:i+1], true
	}
	if k := agentapi.PartialRune(b); full && k < len(b) {
		// Never all of it: a chunk that is one rune's start is sent as it is.
		return b[:len(b)-k], false
	}
	return b, false
}

func pause(ctx context.Context, stop, done <-chan struct{}, tick <-chan time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
	case <-done:
	case <-tick:
	}
	return nil
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// exited reads the same record as the process API, so a caller told that
// a process is no longer running also gets its EOF from the stream.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.meta.Running
}

func (p *proc) outputStart() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.OutputStart
}

func (p *proc) status() (*int, *string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.ExitCode, p.meta.Signal
}
