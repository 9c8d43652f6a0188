package items

import (
	"errors"

	"sortie.dev/services/library/internal/secrets"
)

// View is how one caller sees the secrets of items, and what a save of
// theirs may do with them. Admins and services see them opened
// (<encrypted>value</encrypted> in text, bare values in a template's
// environment); everyone else sees every secret as secrets.Placeholder, in
// every field of every answer.
type View struct {
	Sealer *secrets.Sealer
	// Masked: the caller may not see secrets (nor write sealed values
	// they were not given).
	Masked bool
}

// text shows one string of an item.
func (v View) text(s string) string {
	if v.Masked {
		return secrets.MaskText(s)
	}
	return v.Sealer.OpenText(s)
}

func (v View) texts(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = v.text(s)
	}
	return out
}

func (v View) textMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, s := range m {
		out[k] = v.text(s)
	}
	return out
}

// env shows a template's environment; keys are its encrypted_keys.
func (v View) env(env map[string]string, keys []string) map[string]string {
	if v.Masked {
		return secrets.MaskEnv(env, keys)
	}
	return v.Sealer.OpenEnv(env)
}

// anyValue shows a value decoded from YAML or JSON (agent permissions, a
// skill's source): every string in it is shown as text is.
func (v View) anyValue(x any) any {
	switch t := x.(type) {
	case string:
		return v.text(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = v.anyValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = v.anyValue(e)
		}
		return out
	default:
		return x
	}
}

// Text shows one string as the view does (commit messages, say).
func (v View) Text(s string) string { return v.text(s) }

// Reveal is how a bundle shows text: opened to bare values for admins and
// services (a workspace gets what it runs), masked for everyone else.
func (v View) Reveal(s string) string {
	if v.Masked {
		return secrets.MaskText(s)
	}
	return v.Sealer.RevealText(s)
}

// restoreText turns the placeholders of a text saved back into the stored
// secrets they stand for (previous is the stored text), and refuses a
// sealed value a masked caller could not have been given.
func (v View) restoreText(text, previous string) (string, error) {
	out, err := secrets.RestoreText(text, previous)
	if errors.Is(err, secrets.ErrUnmatchedPlaceholder) {
		return "", invalid(CodeInvalidContent, err.Error())
	}
	if err != nil {
		return "", err
	}
	if v.Masked && secrets.ForeignSealed(out, previous) {
		return "", invalid(CodeForbidden, "only an admin may write a sealed value (<encrypted v=\"1\">…</encrypted>) the item does not already hold; write a new secret as <encrypted>value</encrypted>")
	}
	return out, nil
}
