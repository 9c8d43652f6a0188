package agentapi

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Data events survive the JSON round trip byte for byte, so that End() is
// always the right place to resume.
func TestOutputEventRoundTrip(t *testing.T) {
	tests := map[string]struct {
		raw      string
		wantJSON string
	}{
		"text":         {raw: "hello\n", wantJSON: `{"offset":10,"data":"hello\n"}`},
		"unicode":      {raw: "h\u00e9\u20ac\n", wantJSON: `{"offset":10,"data":"hé€\n"}`},
		"not utf-8":    {raw: "a\xffb", wantJSON: `{"offset":10,"data_b64":"Yf9i"}`},
		"control char": {raw: "\x1b[1m", wantJSON: `{"offset":10,"data":"\u001b[1m"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ev := NewOutputData(10, []byte(tc.raw))
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.wantJSON {
				t.Errorf("JSON %s, want %s", b, tc.wantJSON)
			}
			var back OutputEvent
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]byte(tc.raw), back.Bytes()); diff != "" {
				t.Errorf("bytes (-want +got):\n%s", diff)
			}
			if back.End() != 10+int64(len(tc.raw)) {
				t.Errorf("End = %d", back.End())
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	err := error(&Error{Status: 409, Code: CodeConflict, Message: "busy"})
	if got := ErrorCode(err); got != CodeConflict {
		t.Errorf("ErrorCode = %q", got)
	}
	if got := ErrorCode(nil); got != "" {
		t.Errorf("ErrorCode(nil) = %q", got)
	}
}

func TestPartialRune(t *testing.T) {
	for in, want := range map[string]int{
		"": 0, "abc": 0, "a\u20ac": 0, "a\xe2": 1, "a\xe2\x82": 2, "\xf0\x9f\x98": 3, "\xf0\x9f\x98\x80": 0,
		"a\xff": 0, "a\x80": 0, "\xe2\xf0": 1, "\xed\xa0": 0,
	} {
		if got := PartialRune([]byte(in)); got != want {
			t.Errorf("PartialRune(%q) = %d, want %d", in, got, want)
		}
	}
}
