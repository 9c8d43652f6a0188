// Package jsontrim shortens JSON without ever holding it whole. A Shrinker
// reads a JSON text in pieces and keeps a copy in which every string longer
// than a limit is cut at a character boundary and ends with a marker saying
// how many bytes of text were dropped ("\n[truncated N bytes]", the marker
// of every stored event). The copy is valid JSON no longer than a bound, or
// the Shrinker reports why it cannot be.
//
// It is how mission-control keeps what an agent CLI prints: a CLI writes a
// whole tool input or output (a 30 MB file, a build log) on one JSON line,
// and the line must still parse, with the long text cut, after reading no
// more than the bound into memory.
package jsontrim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Errors of Close: the input is not one complete JSON value, or its copy
// stays longer than the bound even with its strings cut (too many values).
var (
	ErrInvalid  = errors.New("not a complete JSON value")
	ErrTooLarge = errors.New("JSON too large even with its strings cut")
)

// Marker returns the text that ends a string cut by n bytes.
func Marker(n int64) string { return "\n[truncated " + strconv.FormatInt(n, 10) + " bytes]" }

// markerTail is the longest marker in its JSON-encoded form (`\n` is two
// bytes there): what the end of a dropped tail is matched against to find
// a marker an earlier cut left, so that cutting again adds to its count
// instead of hiding it.
const markerTail = len(`\n[truncated  bytes]`) + 19

// Shrinker copies a JSON text, cutting long strings. Write the text in any
// pieces, then Close. The zero value is not usable; call New.
type Shrinker struct {
	field int // longest string kept, in encoded bytes between the quotes
	max   int // longest copy

	out  []byte
	size int // of the copy, counted on past max (for Fit)
	cuts int // strings cut

	inStr    bool
	afterBS  bool // the last byte was the backslash of an escape
	hex      int  // hex digits of a \u escape still to come
	escU     rune // value of the \u escape so far
	strLen   int  // encoded bytes kept of the current string
	dropping bool
	dropped  int64 // text bytes dropped from the current string
	tail     []byte
}

// New returns a Shrinker that keeps at most field bytes of each string and
// fails with ErrTooLarge once its copy passes max bytes.
func New(field, max int) *Shrinker {
	return &Shrinker{field: max0(field), max: max0(max)}
}

func max0(n int) int { return max(n, 0) }

// Write consumes the next piece of the text. It never fails: an error is
// reported by Close. Past max the copy is dropped and only counted.
func (s *Shrinker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if !s.inStr {
			p = s.outside(p)
			continue
		}
		p = s.inside(p)
	}
	return n, nil
}

// outside copies structure (everything but strings) until a string starts.
func (s *Shrinker) outside(p []byte) []byte {
	i := 0
	for i < len(p) {
		c := p[i]
		if c == '"' {
			s.emitByte('"')
			s.inStr, s.strLen, s.dropping, s.dropped, s.afterBS, s.hex = true, 0, false, 0, false, 0
			s.tail = s.tail[:0]
			return p[i+1:]
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			// Copy the run of structure bytes up to the next space or quote.
			j := i + 1
			for j < len(p) && p[j] != '"' && p[j] != ' ' && p[j] != '\t' && p[j] != '\n' && p[j] != '\r' {
				j++
			}
			s.emit(p[i:j])
			i = j
			continue
		}
		i++ // whitespace between tokens is not kept
	}
	return nil
}

// inside handles the bytes of a string, from just after its opening quote.
func (s *Shrinker) inside(p []byte) []byte {
	for len(p) > 0 {
		if s.afterBS || s.hex > 0 {
			p = s.escape(p)
			continue
		}
		// A run of plain bytes up to the next quote or backslash.
		n := bytes.IndexAny(p, `"\`)
		if n < 0 {
			n = len(p)
		}
		if n > 0 {
			run := p[:n]
			if !s.dropping {
				take := min(len(run), max(s.field-s.strLen, 0))
				// Never end inside a UTF-8 sequence: keep its
				// continuation bytes.
				for take < len(run) && !utf8.RuneStart(run[take]) {
					take++
				}
				s.emit(run[:take])
				s.strLen += take
				if take < len(run) {
					s.dropping = true
					s.drop(run[take:], int64(len(run)-take))
				}
			} else {
				s.drop(run, int64(len(run)))
			}
			p = p[n:]
			continue
		}
		switch p[0] {
		case '"':
			if s.dropping {
				s.emit([]byte(encodeMarker(s.total())))
				s.cuts++
			}
			s.emitByte('"')
			s.inStr = false
			return p[1:]
		case '\\':
			if !s.dropping && s.strLen >= s.field {
				s.dropping = true
			}
			if s.dropping {
				s.drop(p[:1], 0) // counted when the escape is complete
			} else {
				s.emitByte('\\')
				s.strLen++
			}
			s.afterBS, s.escU = true, 0
			p = p[1:]
		}
	}
	return p
}

// escape handles one byte of an escape sequence (after the backslash).
func (s *Shrinker) escape(p []byte) []byte {
	c := p[0]
	if s.dropping {
		s.drop(p[:1], 0)
	} else {
		s.emitByte(c)
		s.strLen++
	}
	switch {
	case s.afterBS && c == 'u':
		s.afterBS, s.hex = false, 4
	case s.afterBS:
		s.afterBS = false
		if s.dropping {
			s.dropped++
		}
	default:
		s.escU = s.escU<<4 | hexVal(c)
		s.hex--
		if s.hex == 0 && s.dropping {
			// A surrogate half is two of the four bytes of its pair.
			n := utf8.RuneLen(s.escU)
			if n < 0 {
				n = 2
			}
			s.dropped += int64(n)
		}
	}
	return p[1:]
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10
	}
	return 0
}

// drop counts n text bytes of b as dropped and remembers the end of what
// was dropped.
func (s *Shrinker) drop(b []byte, n int64) {
	s.dropped += n
	if len(b) >= markerTail {
		s.tail = append(s.tail[:0], b[len(b)-markerTail:]...)
		return
	}
	s.tail = append(s.tail, b...)
	if over := len(s.tail) - markerTail; over > 0 {
		s.tail = append(s.tail[:0], s.tail[over:]...)
	}
}

// total is the bytes dropped from the current string, plus what an earlier
// cut's marker at its end said (that marker is part of the dropped text).
func (s *Shrinker) total() int64 {
	return withPrior(s.dropped, s.tail, `\n[truncated `)
}

// withPrior adds to dropped, the text bytes cut, the count of a marker that
// ends tail (the end of what was cut, starting with prefix in the form tail
// is in) and is part of those bytes.
func withPrior(dropped int64, tail []byte, prefix string) int64 {
	if !bytes.HasSuffix(tail, []byte(" bytes]")) {
		return dropped
	}
	i := bytes.LastIndex(tail, []byte(prefix))
	if i < 0 {
		return dropped
	}
	start, end := i+len(prefix), len(tail)-len(" bytes]")
	if start >= end || end-start > 18 || bytes.ContainsFunc(tail[start:end], func(r rune) bool { return r < '0' || r > '9' }) {
		return dropped
	}
	prior, _ := strconv.ParseInt(string(tail[start:end]), 10, 64) // up to 18 digits: cannot fail
	if markerLen := int64(len(Marker(prior))); dropped >= markerLen {
		return dropped - markerLen + prior
	}
	return dropped
}

// Cut shortens text to at most limit bytes, never inside a UTF-8 sequence,
// and ends it with the marker. A marker an earlier cut left at the end of
// text adds to the count rather than being hidden.
func Cut(text string, limit int) string {
	if len(text) <= limit {
		return text
	}
	head := Clip(text, limit)
	rest := text[len(head):]
	tail := rest[max(len(rest)-markerTail, 0):]
	return head + Marker(withPrior(int64(len(rest)), []byte(tail), "\n[truncated "))
}

// Clip shortens text to at most limit bytes, never inside a UTF-8
// sequence, without a marker.
func Clip(text string, limit int) string {
	if len(text) <= limit {
		return text
	}
	n := max(limit, 0)
	for n > 0 && !utf8.RuneStart(text[n]) {
		n--
	}
	return text[:n]
}

// encodeMarker is the marker as it appears inside a JSON string.
func encodeMarker(n int64) string { return `\n[truncated ` + strconv.FormatInt(n, 10) + ` bytes]` }

func (s *Shrinker) emitByte(c byte) { s.emit([]byte{c}) }

// emit adds b to the copy; past max it only counts.
func (s *Shrinker) emit(b []byte) {
	s.size += len(b)
	if s.size > s.max {
		s.out = nil
		return
	}
	s.out = append(s.out, b...)
}

// Close ends the text and returns the copy: valid JSON of at most max
// bytes, or ErrTooLarge or ErrInvalid. The copy is the Shrinker's; it is
// not used again.
func (s *Shrinker) Close() ([]byte, error) {
	if s.size > s.max {
		return nil, ErrTooLarge
	}
	if s.inStr || !json.Valid(s.out) {
		return nil, ErrInvalid
	}
	return s.out, nil
}

// minField is the shortest cut Fit tries: shorter strings are not worth
// keeping, and below it Fit gives up.
const minField = 8

// Fit returns raw when it is at most limit bytes. Otherwise it returns raw
// with its long strings cut, cutting shorter until the whole is at most
// limit bytes; ok is false when raw is not JSON or no cut of its strings
// makes it fit (it is mostly structure: many small values).
func Fit(raw []byte, limit int) (out []byte, ok bool) {
	if len(raw) <= limit {
		return raw, true
	}
	field := limit
	// Each round shortens the cut by the excess shared among the strings
	// it cut; cutting shorter can only cut more strings, so a few rounds
	// reach the longest cut that fits.
	for range 32 {
		if field < minField {
			return nil, false
		}
		s := New(field, limit)
		_, _ = s.Write(raw)
		out, err := s.Close()
		switch {
		case err == nil:
			return out, true
		case !errors.Is(err, ErrTooLarge):
			return nil, false
		case s.cuts == 0:
			field /= 2 // no string is that long: look for shorter ones
		default:
			over := s.size - limit
			field -= max((over+s.cuts-1)/s.cuts, 1)
		}
	}
	return nil, false
}
