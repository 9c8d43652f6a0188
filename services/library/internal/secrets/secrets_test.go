package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func sealer(t testing.TB, b byte) *Sealer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseKey(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	for name, in := range map[string]string{
		"hex": hex.EncodeToString(key), "base64": base64.StdEncoding.EncodeToString(key), "raw base64": base64.RawStdEncoding.EncodeToString(key),
	} {
		got, err := ParseKey(in)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "abc", hex.EncodeToString(key[:16]), strings.Repeat("z", 64)} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestSealOpenReveal(t *testing.T) {
	s := sealer(t, 1)
	text := "a <encrypted>one</encrypted> b <encrypted>two\nlines</encrypted>"
	sealed, err := s.SealText(text, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "one") || strings.Count(sealed, `<encrypted v="1">`) != 2 {
		t.Fatalf("sealed: %s", sealed)
	}
	if got := s.OpenText(sealed); got != text {
		t.Errorf("open: %q", got)
	}
	if got := s.RevealText(sealed); got != "a one b two\nlines" {
		t.Errorf("reveal: %q", got)
	}
	again, _ := s.SealText(text, sealed)
	if again != sealed {
		t.Errorf("unchanged values were sealed anew")
	}
	// Another key cannot open it: the editor keeps the sealed form (so a
	// save does not lose it) and a workspace gets a marker.
	other := sealer(t, 2)
	if got := other.OpenText(sealed); got != sealed {
		t.Errorf("wrong key, open: %q", got)
	}
	if got := other.RevealText(sealed); got != "a "+DecryptionFailed+" b "+DecryptionFailed {
		t.Errorf("wrong key, reveal: %q", got)
	}
	var none *Sealer
	if _, err := none.SealText(text, ""); err != ErrNoKey {
		t.Errorf("nil sealer: %v", err)
	}
	if got, err := none.SealText("no secrets", ""); err != nil || got != "no secrets" {
		t.Errorf("nil sealer, plain text: %q %v", got, err)
	}
}

func TestSealEnv(t *testing.T) {
	s := sealer(t, 3)
	env := map[string]string{"KEY": "v1", "OPEN": "o"}
	sealed, err := s.SealEnv(env, []string{"KEY", "ABSENT"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sealed["OPEN"] != "o" || !strings.HasPrefix(sealed["KEY"], `<encrypted v="1">`) {
		t.Fatalf("sealed: %v", sealed)
	}
	if got := s.OpenEnv(sealed); got["KEY"] != "v1" {
		t.Errorf("open: %v", got)
	}
	again, _ := s.SealEnv(env, []string{"KEY"}, sealed)
	if again["KEY"] != sealed["KEY"] {
		t.Errorf("unchanged value sealed anew")
	}
	failed := sealer(t, 4).OpenEnv(sealed)["KEY"]
	if !strings.HasPrefix(failed, DecryptionFailed) {
		t.Fatalf("wrong key: %q", failed)
	}
	back, _ := s.SealEnv(map[string]string{"KEY": failed}, []string{"KEY"}, sealed)
	if back["KEY"] != sealed["KEY"] {
		t.Errorf("saving a value that did not open lost it: %q", back["KEY"])
	}
}
