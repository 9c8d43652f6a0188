package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"sortie.dev/services/mission-control/internal/jsontrim"
)

// DefaultMaxLine is the longest output line kept whole in memory, and
// DefaultFieldLimit the longest string kept of a longer JSON line. A CLI
// prints a whole tool input or output (a file, a build log) on one line, so
// a line is allowed to be far longer than bufio.Scanner's 64 KiB; past the
// bound it is cut rather than held.
const (
	DefaultMaxLine    = 1 << 20
	DefaultFieldLimit = 64 << 10
)

// Line is one line of a CLI's output, as Lines passes it on.
type Line struct {
	// Bytes is the line without its ending (and without a trailing \r).
	// It is only valid during the call.
	Bytes []byte
	// End is the output offset just past the line's newline.
	End int64
	// Size is how many bytes the line had.
	Size int64
	// Cut is set on a line longer than the maximum. When it was a JSON
	// value, Bytes is that value with its long strings cut (each to the
	// field limit, with a marker), so it still parses; otherwise (Lost)
	// Bytes is only the line's first bytes.
	Cut, Lost bool
}

// lostHead is how much of a line that could not be kept is passed on, for
// the error that reports it.
const lostHead = 512

// Lines splits output into lines without ever holding more than about max
// bytes of one: a longer JSON line is copied through a jsontrim.Shrinker as
// it arrives (its strings cut to field bytes), any other long line is cut
// to its first max bytes. Write the output in any pieces, then Close. Not
// safe for concurrent use.
type Lines struct {
	max, field int
	fn         func(Line) error

	buf  []byte
	size int64 // bytes of the current line so far
	pos  int64 // bytes written
	sh   *jsontrim.Shrinker
	head []byte // the first bytes of a line being shrunk
	cut  bool   // the current line is being cut (not JSON)
}

// NewLines returns a splitter that calls fn with each line. An error from
// fn stops it and is returned by Write or Close.
func NewLines(max, field int, fn func(Line) error) *Lines {
	return &Lines{max: max, field: field, fn: fn}
}

// Write consumes the next piece of output.
func (l *Lines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.add(p)
			l.pos += int64(len(p))
			return n, nil
		}
		l.add(p[:i])
		l.pos += int64(i + 1)
		if err := l.finish(); err != nil {
			return n - len(p) + i + 1, err
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close passes on a last line that had no newline.
func (l *Lines) Close() error {
	if l.size == 0 {
		return nil
	}
	return l.finish()
}

func (l *Lines) add(seg []byte) {
	l.size += int64(len(seg))
	switch {
	case l.sh != nil:
		_, _ = l.sh.Write(seg)
	case l.cut:
	case len(l.buf)+len(seg) <= l.max:
		l.buf = append(l.buf, seg...)
	default:
		// Too long to keep: from here on the line is copied cut.
		if isJSONStart(l.buf, seg) {
			l.sh = jsontrim.New(l.field, l.max)
			keep := min(lostHead, l.max)
			l.head = append(l.head[:0], l.buf[:min(len(l.buf), keep)]...)
			if len(l.head) < keep {
				l.head = append(l.head, seg[:min(len(seg), keep-len(l.head))]...)
			}
			_, _ = l.sh.Write(l.buf)
			_, _ = l.sh.Write(seg)
			l.buf = l.buf[:0]
			return
		}
		l.buf = append(l.buf, seg[:l.max-len(l.buf)]...)
		l.cut = true
	}
}

// isJSONStart reports whether the line that starts with a then b is a JSON
// object or array (after leading spaces).
func isJSONStart(a, b []byte) bool {
	for _, part := range [][]byte{a, b} {
		if t := bytes.TrimLeft(part, " \t\r"); len(t) > 0 {
			return t[0] == '{' || t[0] == '['
		}
	}
	return false
}

func (l *Lines) finish() error {
	line := Line{End: l.pos, Size: l.size}
	switch {
	case l.sh != nil:
		out, err := l.sh.Close()
		line.Cut = true
		if err != nil {
			line.Bytes, line.Lost = l.head, true
		} else {
			line.Bytes = out
		}
	default:
		line.Bytes, line.Cut, line.Lost = bytes.TrimRight(l.buf, "\r"), l.cut, l.cut
	}
	err := l.fn(line)
	l.buf, l.size, l.sh, l.cut = l.buf[:0], 0, nil, false
	return err
}

// ReadLines calls fn with each line of r, without the line ending, through
// Lines: a line longer than max is cut (a JSON one to its strings cut to
// DefaultFieldLimit or half of max, any other to its first max bytes), so one runaway line
// cannot exhaust memory. fn must not keep the slice.
func ReadLines(r io.Reader, max int, fn func(line []byte)) error {
	l := NewLines(max, min(DefaultFieldLimit, max/2), func(line Line) error {
		fn(line.Bytes)
		return nil
	})
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = l.Write(buf[:n]) // fn never fails
		}
		if errors.Is(err, io.EOF) {
			return l.Close()
		}
		if err != nil {
			return fmt.Errorf("read output: %w", err)
		}
	}
}

// Clean prepares one output line for JSON decoding: it drops a trailing
// carriage return, ANSI escape sequences and other control characters (what a
// PTY or a chatty CLI adds), and surrounding spaces. It reports whether the
// result looks like a JSON object. Lines without escapes are returned without
// copying.
func Clean(line []byte) (clean []byte, isJSON bool) {
	if bytes.ContainsFunc(line, isJunk) {
		line = stripJunk(line)
	}
	line = bytes.TrimSpace(line)
	return line, len(line) > 0 && line[0] == '{'
}

func isJunk(r rune) bool {
	return r < ' ' && r != '\t' || r == 0x7f
}

// stripJunk removes control characters and ANSI CSI/OSC sequences.
func stripJunk(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == 0x1b && i+1 < len(in) {
			switch in[i+1] {
			case '[': // CSI: parameters, then a final byte in 0x40..0x7e
				j := i + 2
				for j < len(in) && (in[j] < 0x40 || in[j] > 0x7e) {
					j++
				}
				i = j
				continue
			case ']': // OSC: up to BEL or ESC \
				j := i + 2
				for j < len(in) && in[j] != 0x07 && in[j] != 0x1b {
					j++
				}
				if j < len(in) && in[j] == 0x1b {
					j++
				}
				i = j
				continue
			}
		}
		if isJunk(rune(c)) {
			continue
		}
		out = append(out, c)
	}
	return out
}
