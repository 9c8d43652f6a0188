package secrets

import (
	"strings"
	"testing"
)

// FuzzMaskedRoundTrip: a reader who may not see secrets gets the text
// masked; saving that text back unchanged must keep every stored secret
// exactly, and the masked text must never carry a sealed value.
func FuzzMaskedRoundTrip(f *testing.F) {
	for _, s := range []string{
		"", "no secrets", "token: <encrypted>abc</encrypted>\n",
		"a=<encrypted>1</encrypted> b=<encrypted>2</encrypted>",
		"<encrypted>x</encrypted>\n<encrypted>x</encrypted>\n",
		"<encrypted v=\"1\">bm90IHJlYWw=</encrypted>", "<encrypted>unclosed", "</encrypted><encrypted>",
		"<encrypted><encrypted>y</encrypted>", "<encrypted v=1>", "line1\nkey: <encrypted>multi\nline</encrypted>",
	} {
		f.Add(s)
	}
	s := sealer(f, 7)
	f.Fuzz(func(t *testing.T, text string) {
		if HasPlaceholder(text) || CheckTags(text) != nil {
			return // both are refused on save (items.Prepare)
		}
		sealed, err := s.SealText(text, "")
		if err != nil {
			t.Fatalf("SealText(%q): %v", text, err)
		}
		if HasPlain(sealed) {
			t.Fatalf("SealText left a plain secret in %q", sealed)
		}
		masked := MaskText(sealed)
		for _, tok := range scan(sealed) {
			if tok.kind == tokSealed && len(tok.value) > 8 && strings.Contains(masked, tok.value) {
				t.Fatalf("the masked text %q holds the sealed value %q", masked, tok.value)
			}
		}
		restored, err := RestoreText(masked, sealed)
		if err != nil {
			t.Fatalf("RestoreText(MaskText(%q)): %v", sealed, err)
		}
		if restored != sealed {
			t.Fatalf("saving the masked text back changed what is stored:\n text     %q\n stored   %q\n masked   %q\n restored %q", text, sealed, masked, restored)
		}
		// The editor's view reseals to the same stored text.
		again, err := s.SealText(s.OpenText(sealed), sealed)
		if err != nil || again != sealed {
			t.Fatalf("open and save again: %q, %v; want %q", again, err, sealed)
		}
	})
}
