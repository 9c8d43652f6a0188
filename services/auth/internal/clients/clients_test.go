package clients

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const secret = "a-secret-of-at-least-24-chars"

func TestParse(t *testing.T) {
	tests := map[string]struct {
		content string
		want    string // "" means valid
	}{
		"valid":             {content: `{"mission-control":"` + secret + `","workspace-operator":"` + secret + `x"}`},
		"not JSON":          {content: `mission-control=secret`, want: "not a JSON object"},
		"a list":            {content: `["mission-control"]`, want: "not a JSON object"},
		"secret not string": {content: `{"mission-control":123456789012345678901234567}`, want: "not a JSON object"},
		"short secret":      {content: `{"mission-control":"short"}`, want: "at least 24 characters"},
		"empty id":          {content: `{" ":"` + secret + `"}`, want: "client id is empty"},
		"padded id":         {content: `{" mission-control":"` + secret + `"}`, want: "no surrounding space"},
		"control character": {content: `{"mission\ncontrol":"` + secret + `"}`, want: "control characters"},
		"long id":           {content: `{"` + strings.Repeat("m", 129) + `":"` + secret + `"}`, want: "at most 128"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(tc.content))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if err := s.Authenticate("mission-control", secret); err != nil {
					t.Errorf("the right secret: %v", err)
				}
				if err := s.Authenticate("workspace-operator", secret); !errors.Is(err, ErrInvalidClient) {
					t.Errorf("another client's secret: %v", err)
				}
				if err := s.Authenticate("library", secret); !errors.Is(err, ErrInvalidClient) {
					t.Errorf("an unknown client: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// FuzzParse: a clients file never panics the parser, and every client it
// accepts authenticates with its secret and with nothing else tried here.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"mission-control":"` + secret + `","workspace-operator":"` + secret + `x"}`,
		`{"mission-control":"short"}`, `{" ":"` + secret + `"}`, `{"a":"` + secret + `","a":"x"}`,
		`[]`, `null`, ``, `{"a":null}`, `{"\u0000":"` + secret + `"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		var m map[string]string
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("Parse accepted what is not a JSON object: %v", err)
		}
		for id, sec := range m {
			if id == "" || len(id) > MaxIDLength || len(sec) < MinSecretLength {
				t.Fatalf("accepted client %q with a %d-character secret", id, len(sec))
			}
			if err := s.Authenticate(id, sec); err != nil {
				t.Fatalf("client %q does not authenticate with its secret: %v", id, err)
			}
			if err := s.Authenticate(id, sec+"x"); err == nil {
				t.Fatalf("client %q authenticates with another secret", id)
			}
		}
		if len(s.IDs()) != len(m) {
			t.Fatalf("%d clients for %d entries", len(s.IDs()), len(m))
		}
	})
}
