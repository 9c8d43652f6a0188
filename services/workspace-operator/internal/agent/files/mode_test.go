package files

import (
	"io/fs"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    fs.FileMode
		wantErr bool
	}{
		"default":      {in: "", want: 0o644},
		"four digits":  {in: "0755", want: 0o755},
		"three digits": {in: "600", want: 0o600},
		"not octal":    {in: "0999", wantErr: true},
		"setuid":       {in: "4755", wantErr: true},
		"word":         {in: "rw", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Errorf("ParseMode(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
