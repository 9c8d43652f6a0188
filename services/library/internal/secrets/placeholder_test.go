package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestMaskText(t *testing.T) {
	s := sealer(t, 5)
	sealed, err := s.SealText("a <encrypted>one</encrypted> b <encrypted>two</encrypted> c", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"sealed":           {sealed, "a <encrypted> b <encrypted> c"},
		"plain (unsealed)": {"x <encrypted>p</encrypted> y", "x <encrypted> y"},
		"placeholder":      {"x <encrypted> y", "x <encrypted> y"},
		"none":             {"nothing secret", "nothing secret"},
		"undecryptable":    {`k <encrypted v="1">AAAA</encrypted>`, "k <encrypted>"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := MaskText(tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaskEnv(t *testing.T) {
	s := sealer(t, 5)
	env, err := s.SealEnv(map[string]string{"KEY": "v", "OPEN": "o", "EMPTY": ""}, []string{"KEY", "EMPTY", "LISTED"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env["LISTED"] = "stored unsealed"
	got := MaskEnv(env, []string{"KEY", "EMPTY", "LISTED"})
	want := map[string]string{"KEY": Placeholder, "OPEN": "o", "EMPTY": Placeholder, "LISTED": Placeholder}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestRestoreText: a masked reader edits a text and saves it back with
// the placeholders; every stored secret they kept comes back as it was,
// wherever the edit moved it.
func TestRestoreText(t *testing.T) {
	s := sealer(t, 6)
	stored, err := s.SealText("# Deploy\nuse <encrypted>A</encrypted> for prod\nuse <encrypted>B</encrypted> for staging\n", "")
	if err != nil {
		t.Fatal(err)
	}
	masked := MaskText(stored)
	for name, tc := range map[string]struct {
		edit    func(string) string
		want    string // the restored text, opened
		wantErr error
	}{
		"unchanged":        {func(m string) string { return m }, "# Deploy\nuse <encrypted>A</encrypted> for prod\nuse <encrypted>B</encrypted> for staging\n", nil},
		"line added":       {func(m string) string { return "intro\n" + m + "more\n" }, "intro\n# Deploy\nuse <encrypted>A</encrypted> for prod\nuse <encrypted>B</encrypted> for staging\nmore\n", nil},
		"lines swapped":    {func(string) string { return "use <encrypted> for staging\nuse <encrypted> for prod\n" }, "use <encrypted>B</encrypted> for staging\nuse <encrypted>A</encrypted> for prod\n", nil},
		"line removed":     {func(string) string { return "use <encrypted> for staging\n" }, "use <encrypted>B</encrypted> for staging\n", nil},
		"line edited":      {func(m string) string { return strings.Replace(m, "for prod", "for production", 1) }, "# Deploy\nuse <encrypted>A</encrypted> for production\nuse <encrypted>B</encrypted> for staging\n", nil},
		"both lines moved": {func(string) string { return "first <encrypted> then <encrypted>\n" }, "first <encrypted>A</encrypted> then <encrypted>B</encrypted>\n", nil},
		"new value beside": {func(m string) string { return m + "and <encrypted>C</encrypted>\n" }, "# Deploy\nuse <encrypted>A</encrypted> for prod\nuse <encrypted>B</encrypted> for staging\nand <encrypted>C</encrypted>\n", nil},
		"ambiguous":        {func(string) string { return "one <encrypted> only, reworded\n" }, "", ErrUnmatchedPlaceholder},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := RestoreText(tc.edit(masked), stored)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if strings.Contains(got, "<encrypted>") && !strings.Contains(tc.want, "<encrypted>C") {
				t.Errorf("a placeholder is left: %q", got)
			}
			if opened := s.OpenText(got); opened != tc.want {
				t.Errorf("got %q, want %q", opened, tc.want)
			}
			// The kept secrets are the stored ciphertext itself.
			for _, tok := range scan(got) {
				if tok.kind == tokSealed && !strings.Contains(stored, tok.raw) {
					t.Errorf("sealed anew: %s", tok.raw)
				}
			}
		})
	}
	// A literal <encrypted> with nothing stored stays literal text.
	if got, err := RestoreText("write secrets as <encrypted>", "nothing"); err != nil || got != "write secrets as <encrypted>" {
		t.Errorf("literal: %q %v", got, err)
	}
}

func TestRestoreEnv(t *testing.T) {
	stored := map[string]string{"KEY": `<encrypted v="1">c2VhbGVk</encrypted>`}
	got, err := RestoreEnv(map[string]string{"KEY": Placeholder, "NEW": "n"}, stored)
	if err != nil || got["KEY"] != stored["KEY"] || got["NEW"] != "n" {
		t.Errorf("got %v %v", got, err)
	}
	_, err = RestoreEnv(map[string]string{"OTHER": Placeholder}, stored)
	var ve *VarError
	if !errors.As(err, &ve) || ve.Name != "OTHER" || !errors.Is(err, ErrNoStoredSecret) {
		t.Errorf("no stored value: %v", err)
	}
}

func TestForeignSealed(t *testing.T) {
	s := sealer(t, 7)
	stored, _ := s.SealText("k <encrypted>mine</encrypted>", "")
	other, _ := s.SealValue("someone else's")
	if ForeignSealed(stored+" edited", stored) {
		t.Errorf("the item's own sealed value is foreign")
	}
	if !ForeignSealed("copied "+other, stored) {
		t.Errorf("a copied sealed value is not foreign")
	}
	if ForeignSealed("new <encrypted>x</encrypted>", "") {
		t.Errorf("a plain value is foreign")
	}
}

// TestPlaceholderIsNotAValue: text with a placeholder before a new value
// seals only the new value (the old pattern took "<encrypted> a
// <encrypted>b" for one value).
func TestPlaceholderIsNotAValue(t *testing.T) {
	s := sealer(t, 8)
	out, err := s.SealText("x <encrypted> a <encrypted>b</encrypted>", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "x <encrypted> a <encrypted v=\"1\">") || s.OpenText(out) != "x <encrypted> a <encrypted>b</encrypted>" {
		t.Errorf("got %q", out)
	}
}

func TestCheckTags(t *testing.T) {
	for text, ok := range map[string]bool{
		"":                                       true,
		"a </encrypted> b":                       true, // no secret: nothing to mask
		"x</encrypted> <encrypted>v</encrypted>": true, // before the secret: its mask cannot pair with it
		"<encrypted>v</encrypted> <encrypted>w</encrypted>": true,
		"<encrypted>v</encrypted>abc</encrypted>":           false, // masked: <encrypted>abc</encrypted>
		"<encrypted></encrypted></encrypted>":               false,
		"<encrypted> then text</encrypted>":                 true, // a plain value, closed once
	} {
		if err := CheckTags(text); (err == nil) != ok {
			t.Errorf("CheckTags(%q) = %v, want ok=%v", text, err, ok)
		}
	}
}
