package rest

import (
	"io"
	"unicode/utf8"
)

// jsonString writes the bytes given to it as the inside of a JSON string
// (no quotes), escaped exactly as encoding/json escapes a string, HTML
// characters included: output of any size goes from the agent to the
// client a buffer at a time instead of being held, decoded and encoded
// again. A UTF-8 sequence split between two writes is joined; bytes that
// are not UTF-8 become U+FFFD, as encoding/json makes them. Close writes
// what is left of an unfinished sequence. Lines counts the line breaks
// written.
type jsonString struct {
	w       io.Writer
	pending []byte // the start of a sequence the last write did not finish
	out     []byte
	err     error // the first write error of w; nothing is written after it
	Lines   int64
}

const hexDigits = "0123456789abcdef"

func newJSONString(w io.Writer) *jsonString {
	return &jsonString{w: w, pending: make([]byte, 0, utf8.UTFMax), out: make([]byte, 0, 8<<10)}
}

func (s *jsonString) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	if len(s.pending) > 0 {
		// Complete the pending sequence with as few bytes of p as it takes.
		for len(p) > 0 && !utf8.FullRune(s.pending) {
			s.pending = append(s.pending, p[0])
			p = p[1:]
		}
		if !utf8.FullRune(s.pending) {
			return n, nil
		}
		rest := s.escape(s.pending, false)
		s.pending = append(s.pending[:0], rest...)
		if len(s.pending) > 0 {
			// Only when the pending bytes were not a rune: put them back
			// in front of p (at most UTFMax-1 bytes of p were taken).
			p = append(append([]byte(nil), s.pending...), p...)
			s.pending = s.pending[:0]
		}
	}
	rest := s.escape(p, false)
	s.pending = append(s.pending, rest...)
	if err := s.flush(); err != nil {
		return 0, err
	}
	return n, nil
}

// Close escapes what is pending as it stands.
func (s *jsonString) Close() error {
	s.escape(s.pending, true)
	s.pending = s.pending[:0]
	return s.flush()
}

func (s *jsonString) flush() error {
	if len(s.out) == 0 || s.err != nil {
		s.out = s.out[:0]
		return s.err
	}
	_, s.err = s.w.Write(s.out)
	s.out = s.out[:0]
	return s.err
}

// escape appends p escaped to s.out and returns the unfinished sequence
// at its end, if any (none when final). It writes out a buffer at a time.
func (s *jsonString) escape(p []byte, final bool) []byte {
	for i := 0; i < len(p); {
		if len(s.out) > cap(s.out)-16 {
			if s.flush() != nil {
				return nil
			}
		}
		b := p[i]
		if b < utf8.RuneSelf {
			s.Lines += int64(b2i(b == '\n'))
			switch {
			case htmlSafe(b):
				s.out = append(s.out, b)
			case b == '\\' || b == '"':
				s.out = append(s.out, '\\', b)
			case b == '\b':
				s.out = append(s.out, '\\', 'b')
			case b == '\f':
				s.out = append(s.out, '\\', 'f')
			case b == '\n':
				s.out = append(s.out, '\\', 'n')
			case b == '\r':
				s.out = append(s.out, '\\', 'r')
			case b == '\t':
				s.out = append(s.out, '\\', 't')
			default:
				s.out = append(s.out, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			continue
		}
		if !final && !utf8.FullRune(p[i:]) {
			return p[i:]
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			s.out = append(s.out, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			s.out = append(s.out, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			s.out = append(s.out, p[i:i+size]...)
		}
		i += size
	}
	return nil
}

// htmlSafe is encoding/json's htmlSafeSet: printable ASCII but for the
// quote, the backslash and <, > and &.
func htmlSafe(b byte) bool {
	return b >= 0x20 && b < utf8.RuneSelf && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
