package shell

import (
	"testing"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func TestCapture(t *testing.T) {
	euro := "\u20ac"
	tests := map[string]struct {
		max           int64
		writes        []string
		want          string
		wantTruncated bool
	}{
		"under the cap":         {max: 10, writes: []string{"abc", "def"}, want: "abcdef"},
		"exactly the cap":       {max: 6, writes: []string{"abc", "def"}, want: "abcdef"},
		"over the cap":          {max: 4, writes: []string{"abc", "def", "ghi"}, want: "abcd", wantTruncated: true},
		"cut inside a rune":     {max: 4, writes: []string{"ab" + euro}, want: "ab", wantTruncated: true},
		"keeps a whole rune":    {max: 5, writes: []string{"ab" + euro + "c"}, want: "ab" + euro, wantTruncated: true},
		"keeps a real U+FFFD":   {max: 5, writes: []string{"ab\ufffdc"}, want: "ab\ufffd", wantTruncated: true},
		"binary is left alone":  {max: 3, writes: []string{"\xff\xfe\xfd\xfc"}, want: "\xff\xfe\xfd", wantTruncated: true},
		"uncut binary is whole": {max: 8, writes: []string{"\xff\xfe"}, want: "\xff\xfe"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := &capture{max: tc.max}
			for _, w := range tc.writes {
				c.add([]byte(w))
			}
			want := tc.want
			if tc.wantTruncated {
				want += agentapi.TruncationMarker(tc.max)
			}
			if got := c.String(); got != want || c.truncated != tc.wantTruncated {
				t.Errorf("got %q truncated=%v, want %q truncated=%v", got, c.truncated, want, tc.wantTruncated)
			}
			if int64(len(c.buf)) > tc.max {
				t.Errorf("kept %d bytes over a cap of %d", len(c.buf), tc.max)
			}
		})
	}
}
