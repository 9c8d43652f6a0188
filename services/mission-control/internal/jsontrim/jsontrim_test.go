package jsontrim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestShrink(t *testing.T) {
	tests := map[string]struct {
		in         string
		field, max int
		want       string
		wantErr    error
	}{
		"short, spaces dropped":            {in: "{\"a\": \"b c\",\n \"n\": [1, 2.5e3, true, null]}\r", field: 10, max: 100, want: `{"a":"b c","n":[1,2.5e3,true,null]}`},
		"long string cut":                  {in: `{"a":"abcdefghij"}`, field: 5, max: 100, want: `{"a":"abcde\n[truncated 5 bytes]"}`},
		"key cut too":                      {in: `{"abcdefghij":1}`, field: 3, max: 100, want: `{"abc\n[truncated 7 bytes]":1}`},
		"no cut at the limit":              {in: `["abcde"]`, field: 5, max: 100, want: `["abcde"]`},
		"utf-8 kept whole":                 {in: `"ééé"`, field: 3, max: 100, want: `"éé\n[truncated 2 bytes]"`},
		"escape kept whole":                {in: `"ab\n cd"`, field: 3, max: 100, want: `"ab\n\n[truncated 3 bytes]"`},
		"cut before an escape":             {in: `"abc\"def"`, field: 3, max: 100, want: `"abc\n[truncated 4 bytes]"`},
		"unicode escapes count text bytes": {in: `"a\u00e9b"`, field: 1, max: 100, want: `"a\n[truncated 3 bytes]"`},
		"surrogate pair is 4 bytes":        {in: `"a\ud83d\ude00"`, field: 1, max: 100, want: `"a\n[truncated 4 bytes]"`},
		"an earlier marker adds up":        {in: `"abcdefghij\n[truncated 90 bytes]"`, field: 5, max: 100, want: `"abcde\n[truncated 95 bytes]"`},
		"nested":                           {in: `{"a":[{"b":"xxxxxxxx"},"yyyyyyyy"]}`, field: 2, max: 100, want: `{"a":[{"b":"xx\n[truncated 6 bytes]"},"yy\n[truncated 6 bytes]"]}`},
		"field zero":                       {in: `"ab"`, field: 0, max: 100, want: `"\n[truncated 2 bytes]"`},
		"too many values":                  {in: `[1,2,3,4,5,6,7,8,9]`, field: 10, max: 10, wantErr: ErrTooLarge},
		"a huge number":                    {in: `[` + strings.Repeat("9", 200) + `]`, field: 10, max: 100, wantErr: ErrTooLarge},
		"unterminated string":              {in: `{"a":"bbbbbbbbbbbb`, field: 3, max: 100, wantErr: ErrInvalid},
		"unterminated object":              {in: `{"a":1`, field: 3, max: 100, wantErr: ErrInvalid},
		"trailing junk":                    {in: `{"a":1} x`, field: 3, max: 100, wantErr: ErrInvalid},
		"not json":                         {in: `panic: something`, field: 3, max: 100, wantErr: ErrInvalid},
		"empty":                            {in: ``, field: 3, max: 100, wantErr: ErrInvalid},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := shrink([]byte(tc.in), tc.field, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			// The same in every pair of pieces.
			for i := range len(tc.in) {
				s := New(tc.field, tc.max)
				s.Write([]byte(tc.in[:i]))
				s.Write([]byte(tc.in[i:]))
				if g, e := s.Close(); string(g) != tc.want || !errors.Is(e, tc.wantErr) {
					t.Fatalf("split at %d: %s, %v", i, g, e)
				}
			}
		})
	}
}

// A 30 MB string in a JSON line is read in pieces and kept cut: the copy
// never grows past the bound, and it parses.
func TestShrinkHugeLineInPieces(t *testing.T) {
	const total = 30 << 20
	s := New(64<<10, 1<<20)
	s.Write([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/a","content":"`))
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for n := 0; n < total; n += len(chunk) {
		s.Write(chunk)
		if len(s.out) > 1<<20 {
			t.Fatalf("the copy grew to %d bytes", len(s.out))
		}
	}
	s.Write([]byte(`"}}]}}` + "\n"))
	out, err := s.Close()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Message struct {
			Content []struct {
				Input struct{ Content string } `json:"input"`
			} `json:"content"`
		} `json:"message"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	got := v.Message.Content[0].Input.Content
	if want := Marker(total - 64<<10); !strings.HasSuffix(got, want) || len(got) != 64<<10+len(want) {
		t.Errorf("content of %d bytes ending %q, want 64 KiB and %q", len(got), got[len(got)-40:], want)
	}
}

func TestFit(t *testing.T) {
	long := strings.Repeat("x", 1000)
	tests := map[string]struct {
		in     string
		limit  int
		wantOK bool
	}{
		"fits":            {in: `{"a":"b"}`, limit: 100, wantOK: true},
		"one long string": {in: `{"command":"` + long + `"}`, limit: 200, wantOK: true},
		"many strings":    {in: `["` + long + `","` + long + `","` + long + `"]`, limit: 300, wantOK: true},
		"all structure":   {in: `[` + strings.Repeat("1,", 500) + `1]`, limit: 100},
		"not json":        {in: long, limit: 100},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, ok := Fit([]byte(tc.in), tc.limit)
			if ok != tc.wantOK {
				t.Fatalf("ok %v, want %v (%s)", ok, tc.wantOK, out)
			}
			if ok && (len(out) > tc.limit || !json.Valid(out)) {
				t.Errorf("%d bytes (limit %d), valid %v: %s", len(out), tc.limit, json.Valid(out), out)
			}
		})
	}
}

// FuzzShrink: whatever the input and however it is split, Shrink never
// panics, its copy is valid JSON within the bound, a valid input is only
// ever refused as too large, and an input with no long string comes back
// as json.Compact makes it.
func FuzzShrink(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `"ééé"`, `"a\u00e9\ud83d\ude00"`, `[1,{"x":[true,null]}]`, `{"a":"x\n[truncated 5 bytes]"}`,
		`{"type":"item.completed","item":{"type":"command_execution","aggregated_output":"` + strings.Repeat("y", 300) + `"}}`, `{"a":`, "\x1b[0m{}"} {
		f.Add([]byte(s), uint16(8), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, field, split uint16) {
		const max = 4096
		s := New(int(field%512), max)
		cut := int(split) % (len(in) + 1)
		s.Write(in[:cut])
		s.Write(in[cut:])
		out, err := s.Close()
		if err == nil && (!json.Valid(out) || len(out) > max) {
			t.Fatalf("copy of %d bytes, valid %v: %q", len(out), json.Valid(out), out)
		}
		if json.Valid(in) && errors.Is(err, ErrInvalid) {
			t.Fatalf("valid input refused as invalid: %q", in)
		}
		if whole, err := shrink(in, 1<<20, 1<<20); json.Valid(in) {
			var c bytes.Buffer
			_ = json.Compact(&c, in)
			if err != nil || !bytes.Equal(whole, c.Bytes()) {
				t.Fatalf("uncut copy %q (%v), want %q", whole, err, c.Bytes())
			}
		}
	})
}

// FuzzShrinkString: a cut string is a prefix of the text and a marker that
// counts exactly the bytes left out.
func FuzzShrinkString(f *testing.F) {
	for _, s := range []string{"hello world", "ééééé", "a\n\"b\\c\x01", "😀😀😀", "x\n[truncated 3 bytes]"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, text string, field uint8) {
		raw, _ := json.Marshal(text)
		var orig string
		_ = json.Unmarshal(raw, &orig) // invalid UTF-8 became U+FFFD
		out, err := shrink(raw, int(field), 1<<20)
		if err != nil {
			t.Fatalf("shrink(%q): %v", raw, err)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("copy %q does not decode: %v", out, err)
		}
		if got == orig {
			return
		}
		i := strings.LastIndex(got, "\n[truncated ")
		if i < 0 || !strings.HasPrefix(orig, got[:i]) {
			t.Fatalf("cut %q of %q is not a prefix and a marker", got, orig)
		}
		// An earlier marker at the end of the text adds to the count,
		// so only check inputs without one.
		if !strings.Contains(orig, "[truncated ") && got[i:] != Marker(int64(len(orig)-i)) {
			t.Fatalf("cut %q of %q: marker %q, want %q", got, orig, got[i:], Marker(int64(len(orig)-i)))
		}
	})
}

func BenchmarkShrink30MB(b *testing.B) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	b.SetBytes(30 << 20)
	b.ReportAllocs()
	for b.Loop() {
		s := New(64<<10, 1<<20)
		s.Write([]byte(`{"content":"`))
		for n := 0; n < 30<<20; n += len(chunk) {
			s.Write(chunk)
		}
		s.Write([]byte(`"}`))
		if _, err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// Fit keeps as much as fits: one long string is cut just short enough.
func TestFitKeepsMost(t *testing.T) {
	in := `{"command":"` + strings.Repeat("x", 10000) + `"}`
	out, ok := Fit([]byte(in), 1000)
	if !ok || len(out) > 1000 || len(out) < 990 {
		t.Errorf("ok %v, %d bytes: want just under 1000", ok, len(out))
	}
}

func TestCut(t *testing.T) {
	tests := map[string]struct {
		in    string
		limit int
		want  string
	}{
		"short":            {in: "abc", limit: 3, want: "abc"},
		"cut":              {in: "abcdef", limit: 2, want: "ab" + Marker(4)},
		"rune boundary":    {in: "xéé", limit: 2, want: "x" + Marker(4)},
		"earlier marker":   {in: "abcdef" + Marker(100), limit: 2, want: "ab" + Marker(104)},
		"marker only kept": {in: "ab" + Marker(7), limit: 4, want: "ab\n[" + Marker(int64(len(Marker(7))-2))},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Cut(tc.in, tc.limit); got != tc.want {
				t.Errorf("Cut(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
			}
		})
	}
}

// FuzzCut: Cut never panics, keeps a prefix of the text at a character
// boundary within the limit, and counts what it dropped.
func FuzzCut(f *testing.F) {
	for _, s := range []string{"hello world", "ééé", "x" + Marker(7), "ab\n[truncated  bytes]", "\n[truncated 99999999999999999999 bytes]"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, text string, limit uint8) {
		got := Cut(text, int(limit))
		if len(text) <= int(limit) {
			if got != text {
				t.Fatalf("Cut(%q, %d) changed a short text: %q", text, limit, got)
			}
			return
		}
		i := strings.LastIndex(got, "\n[truncated ")
		if i < 0 || i > int(limit) || !strings.HasPrefix(text, got[:i]) {
			t.Fatalf("Cut(%q, %d) = %q: not a prefix within the limit and a marker", text, limit, got)
		}
		if !strings.Contains(text, "[truncated") && got[i:] != Marker(int64(len(text)-i)) {
			t.Fatalf("Cut(%q, %d) = %q: marker %q, want %q", text, limit, got, got[i:], Marker(int64(len(text)-i)))
		}
	})
}

// shrink is a Shrinker over one slice.
func shrink(raw []byte, field, max int) ([]byte, error) {
	s := New(field, max)
	_, _ = s.Write(raw)
	return s.Close()
}
