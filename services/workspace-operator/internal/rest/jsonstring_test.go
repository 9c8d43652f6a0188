package rest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// writeSplit writes data into a jsonString in pieces cut at the given
// points and returns the JSON string it made, quotes included.
func writeSplit(t testing.TB, data []byte, cuts []int) (string, int64) {
	t.Helper()
	var out bytes.Buffer
	out.WriteByte('"')
	s := newJSONString(&out)
	last := 0
	for _, c := range cuts {
		c = min(max(c, last), len(data))
		if _, err := s.Write(data[last:c]); err != nil {
			t.Fatal(err)
		}
		last = c
	}
	if _, err := s.Write(data[last:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('"')
	return out.String(), s.Lines
}

// The streamed string is byte for byte what encoding/json makes of the
// whole string, however it is cut into writes.
func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	euro, emoji := "\u20ac", "\U0001F600"
	tests := map[string]struct {
		data string
		cuts []int
	}{
		"empty":                  {},
		"text":                   {data: "hello\nworld\n"},
		"escapes":                {data: "a\"b\\c\b\f\n\r\t\x00\x1f\x7f"},
		"html":                   {data: "<script>&amp;</script>"},
		"line separators":        {data: "a\u2028b\u2029c"},
		"multibyte":              {data: "h\u00e9" + euro + emoji},
		"rune cut in two":        {data: "ab" + euro + "cd", cuts: []int{3}},
		"rune cut in three":      {data: emoji, cuts: []int{1, 2, 3}},
		"rune cut byte by byte":  {data: euro + emoji + euro, cuts: []int{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		"invalid bytes":          {data: "a\xffb\xfe\xfd"},
		"unfinished at the end":  {data: "ab\xe2\x82"},
		"unfinished then ascii":  {data: "\xe2\x82A", cuts: []int{2}},
		"unfinished then start":  {data: "\xe2\xf0\x9f\x98\x80", cuts: []int{1}},
		"lone continuation":      {data: "\x80\x80abc", cuts: []int{1}},
		"real replacement char":  {data: "a\ufffdb"},
		"surrogate half (cesu)":  {data: "\xed\xa0\x80"},
		"overlong encoding":      {data: "\xc0\xaf"},
		"long":                   {data: strings.Repeat("x\x01<", 10000), cuts: []int{7, 8191, 8192, 20000}},
		"cut past the end":       {data: "abc", cuts: []int{10}},
		"empty writes in a rune": {data: euro, cuts: []int{1, 1, 1, 2, 2}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, lines := writeSplit(t, []byte(tc.data), tc.cuts)
			want, _ := json.Marshal(tc.data)
			if got != string(want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			if lines != int64(strings.Count(tc.data, "\n")) {
				t.Errorf("lines = %d, want %d", lines, strings.Count(tc.data, "\n"))
			}
		})
	}
}

// FuzzJSONString: for any bytes cut anywhere, the streamed string is what
// encoding/json makes of them, and it decodes to valid UTF-8.
func FuzzJSONString(f *testing.F) {
	f.Add([]byte("hello\n"), uint16(3), uint16(5))
	f.Add([]byte("\xe2\x82\xac\xf0\x9f\x98\x80"), uint16(1), uint16(4))
	f.Add([]byte("a\xff\"<\\\x00\u2028"), uint16(2), uint16(2))
	f.Add([]byte("\xe2\xf0\x9f\x98"), uint16(1), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint16) {
		got, _ := writeSplit(t, data, []int{int(a), int(b)})
		want, _ := json.Marshal(string(data))
		if got != string(want) {
			t.Fatalf("%q cut at %d, %d:\ngot  %q\nwant %q", data, a, b, got, want)
		}
	})
}
