package event

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Truncated returns e with Content and Result cut to at most limit bytes of
// text plus a marker saying how much was dropped. The store calls it before
// writing so that one huge tool output cannot bloat Redis or every replay. A
// Result that is not a JSON string is replaced by a string holding the cut
// JSON text: it can no longer be parsed anyway.
func (e Event) Truncated(limit int) Event {
	e.Content = cut(e.Content, limit)
	if len(e.Result) > limit {
		var s string
		if err := json.Unmarshal(e.Result, &s); err != nil {
			s = string(e.Result)
		}
		if len(s) > limit {
			// Marshal cannot fail on a string.
			e.Result, _ = json.Marshal(cut(s, limit))
		}
	}
	return e
}

// cut shortens s to at most limit bytes without splitting a UTF-8 sequence.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	n := max(limit, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("\n[truncated %d bytes]", len(s)-n)
}
