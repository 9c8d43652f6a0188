package backend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxLine is the longest output line ReadLines passes on whole. A CLI prints
// a whole tool output (a file, a build log) on one line, so the default 64 KiB
// of bufio.Scanner is far too small.
const MaxLine = 64 << 20

// ReadLines calls fn with each line of r, without the line ending. A line
// longer than max is cut to its first max bytes (the rest is discarded), so
// one runaway line cannot exhaust memory; a cut JSON line simply fails to
// parse and counts as noise. fn must not keep the slice.
func ReadLines(r io.Reader, max int, fn func(line []byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !cut {
				long = append(long, chunk...)
				if len(long) > max {
					long, cut = long[:max], true
				}
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("read output: %w", err)
		}
		line := chunk
		if len(long) > 0 || cut {
			if !cut {
				long = append(long, chunk...)
				if len(long) > max {
					long = long[:max]
				}
			}
			line = long
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 || err == nil {
			fn(line)
		}
		long, cut = long[:0], false
		if err != nil {
			return nil
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
