package secrets

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Placeholder is what a caller who may not see secrets (anyone but an
// admin or a service) gets in place of every secret value: never the
// plaintext, never the ciphertext. Saving an item back with the
// placeholders keeps the stored secrets (RestoreText, RestoreEnv).
const Placeholder = "<encrypted>"

const (
	openTag  = "<encrypted>"
	closeTag = "</encrypted>"
	tagStart = "<encrypted"
)

// ErrUnmatchedPlaceholder means a text holds <encrypted> placeholders
// that cannot be told apart: which stored secret each stands for is not
// clear, and guessing could put one secret where another was.
var ErrUnmatchedPlaceholder = errors.New("the text holds <encrypted> placeholders that cannot each be matched to a stored secret; save the change in smaller steps, or write each value anew as <encrypted>value</encrypted>")

// ErrNoStoredSecret means a value is the placeholder but nothing is stored
// for it to stand for.
var ErrNoStoredSecret = errors.New("the value is the <encrypted> placeholder, but no secret is stored for it; write the value itself")

type tokenKind int

const (
	tokSealed tokenKind = iota // <encrypted v="1">…</encrypted>
	tokPlain                   // <encrypted>value</encrypted>
	tokBare                    // <encrypted> with no closing tag of its own: the placeholder
)

// token is one secret (or placeholder) of a text.
type token struct {
	kind       tokenKind
	start, end int
	raw        string // text[start:end]
	value      string // sealed: the base64; plain: the value
}

// scan finds the secrets of text in order. A <encrypted> is a plain value
// only when its closing tag comes before the next <encrypted: otherwise
// it is a bare placeholder, so "a <encrypted> b <encrypted>c</encrypted>"
// is a placeholder followed by the plain value c.
func scan(text string) []token {
	var out []token
	for i := 0; i < len(text); {
		j := strings.Index(text[i:], tagStart)
		if j < 0 {
			break
		}
		j += i
		rest := text[j:]
		if loc := sealedAt.FindStringSubmatchIndex(rest); loc != nil {
			out = append(out, token{kind: tokSealed, start: j, end: j + loc[1], raw: rest[:loc[1]], value: rest[loc[2]:loc[3]]})
			i = j + loc[1]
			continue
		}
		if !strings.HasPrefix(rest, openTag) {
			i = j + len(tagStart)
			continue
		}
		body := rest[len(openTag):]
		c := strings.Index(body, closeTag)
		n := strings.Index(body, tagStart)
		if c >= 0 && (n < 0 || c < n) {
			end := j + len(openTag) + c + len(closeTag)
			out = append(out, token{kind: tokPlain, start: j, end: end, raw: text[j:end], value: body[:c]})
			i = end
			continue
		}
		out = append(out, token{kind: tokBare, start: j, end: j + len(openTag), raw: openTag})
		i = j + len(openTag)
	}
	return out
}

// replaceTokens rebuilds text with each token replaced by f's answer.
func replaceTokens(text string, f func(token) string) string {
	toks := scan(text)
	if len(toks) == 0 {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for _, t := range toks {
		b.WriteString(text[last:t.start])
		b.WriteString(f(t))
		last = t.end
	}
	b.WriteString(text[last:])
	return b.String()
}

// ErrStrayCloseTag means a text has a </encrypted> that closes nothing
// after one of its secrets. Masked, that secret's placeholder would pair
// with the stray tag into a new value, and saving the masked text back
// would replace the stored secret with the text in between.
var ErrStrayCloseTag = errors.New("the text has a </encrypted> that closes nothing after an <encrypted> value; remove it, or write it inside a secret value")

// CheckTags reports ErrStrayCloseTag for a text whose masked form would
// not read back as the same secrets.
func CheckTags(text string) error {
	toks := scan(text)
	for i, t := range toks {
		next := len(text)
		if i+1 < len(toks) {
			next = toks[i+1].start
		}
		if strings.Contains(text[t.end:next], closeTag) {
			return ErrStrayCloseTag
		}
	}
	return nil
}

// MaskText shows every secret of text, sealed or not, as the Placeholder.
func MaskText(text string) string {
	if !strings.Contains(text, tagStart) {
		return text
	}
	return replaceTokens(text, func(token) string { return Placeholder })
}

// MaskEnv shows the environment of a template to a caller who may not see
// secrets: every value listed in keys (unless empty) and every sealed
// value is the Placeholder; a value holding a secret among other text has
// that secret masked.
func MaskEnv(env map[string]string, keys []string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		if v != "" && slices.Contains(keys, k) {
			out[k] = Placeholder
			continue
		}
		out[k] = MaskText(v)
	}
	return out
}

// HasPlaceholder reports whether text holds a bare <encrypted>.
func HasPlaceholder(text string) bool {
	for _, t := range scan(text) {
		if t.kind == tokBare {
			return true
		}
	}
	return false
}

// RestoreText puts back, for each placeholder in text, the secret of
// previous (the stored version) it stands for, as previous holds it
// (sealed, normally). A masked reader sees every secret of previous as a
// placeholder; to find which is which, placeholders are matched to the
// stored secrets by the line around them (with every secret written as
// the placeholder), then by what precedes them on their line, then by what
// follows (each half only when it is not blank and points at one secret),
// then, when as many placeholders as stored secrets are left, in order. A placeholder left over when every stored secret has been
// matched is kept as literal text; one left over while stored secrets are
// unmatched is ErrUnmatchedPlaceholder.
func RestoreText(text, previous string) (string, error) {
	toks := scan(text)
	var bare []int
	for i, t := range toks {
		if t.kind == tokBare {
			bare = append(bare, i)
		}
	}
	if len(bare) == 0 {
		return text, nil
	}
	old := scan(previous)
	newCtx, oldCtx := contexts(text, toks), contexts(previous, old)
	assign := map[int]int{} // index in toks -> index in old
	used := make([]bool, len(old))
	for pass := range 3 {
		queue := map[string][]int{}
		for j := range old {
			if !used[j] {
				queue[oldCtx[j][pass]] = append(queue[oldCtx[j][pass]], j)
			}
		}
		wanted := map[string]int{}
		for _, i := range bare {
			if _, done := assign[i]; !done {
				wanted[newCtx[i][pass]]++
			}
		}
		for _, i := range bare {
			if _, done := assign[i]; done {
				continue
			}
			key := newCtx[i][pass]
			q := queue[key]
			// Identical lines cannot be told apart and need not be: they
			// match in order. Half a line is a clue only when it is not
			// blank and names one secret on each side.
			if len(q) == 0 || pass > 0 && (strings.TrimSpace(key) == "" || len(q) != 1 || wanted[key] != 1) {
				continue
			}
			assign[i], used[q[0]] = q[0], true
			queue[key] = q[1:]
		}
	}
	var leftNew, leftOld []int
	for _, i := range bare {
		if _, done := assign[i]; !done {
			leftNew = append(leftNew, i)
		}
	}
	for j := range old {
		if !used[j] {
			leftOld = append(leftOld, j)
		}
	}
	if len(leftNew) > 0 && len(leftNew) == len(leftOld) {
		for n, i := range leftNew {
			assign[i] = leftOld[n]
		}
	} else if len(leftNew) > 0 {
		for _, j := range leftOld {
			if old[j].kind != tokBare {
				return "", ErrUnmatchedPlaceholder
			}
		}
	}
	var b strings.Builder
	last := 0
	for _, i := range bare {
		b.WriteString(text[last:toks[i].start])
		if j, ok := assign[i]; ok {
			b.WriteString(old[j].raw)
		} else {
			b.WriteString(Placeholder)
		}
		last = toks[i].end
	}
	b.WriteString(text[last:])
	return b.String(), nil
}

// contexts gives each token of text the three keys RestoreText matches
// on: its whole line, the line up to it and the line after it, each with
// every token written as the placeholder (as a masked reader sees it).
func contexts(text string, toks []token) [][3]string {
	var r strings.Builder
	at := make([]int, len(toks))
	last := 0
	for i, t := range toks {
		r.WriteString(text[last:t.start])
		at[i] = r.Len()
		r.WriteString(Placeholder)
		last = t.end
	}
	r.WriteString(text[last:])
	rendered := r.String()
	out := make([][3]string, len(toks))
	for i, o := range at {
		ls := strings.LastIndexByte(rendered[:o], '\n') + 1
		le := len(rendered)
		if n := strings.IndexByte(rendered[o:], '\n'); n >= 0 {
			le = o + n
		}
		nth := 0
		for k := i - 1; k >= 0 && at[k] >= ls; k-- {
			nth++
		}
		line := rendered[ls:le]
		out[i] = [3]string{
			strconv.Itoa(nth) + "\x00" + line,
			rendered[ls:o],
			rendered[o+len(Placeholder) : le],
		}
	}
	return out
}

// RestoreEnv puts back, for each variable whose value is the placeholder,
// the value previous (the stored environment) holds for it. A variable
// with no stored value is ErrNoStoredSecret, naming it.
func RestoreEnv(env, previous map[string]string) (map[string]string, error) {
	out := maps.Clone(env)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if env[k] != Placeholder {
			continue
		}
		old, ok := previous[k]
		if !ok || old == Placeholder {
			return nil, &VarError{Name: k, Err: ErrNoStoredSecret}
		}
		out[k] = old
	}
	return out, nil
}

// VarError is an error about one variable of an environment.
type VarError struct {
	Name string
	Err  error
}

func (e *VarError) Error() string { return e.Name + ": " + e.Err.Error() }
func (e *VarError) Unwrap() error { return e.Err }

// ForeignSealed reports whether text holds a sealed value that previous
// (the stored version) does not hold as it is. Only admins may write such
// values: anyone else could otherwise copy a secret's ciphertext (from the
// remote, say) into an item of their own and have it opened.
func ForeignSealed(text, previous string) bool {
	var known map[string]bool
	for _, t := range scan(text) {
		if t.kind != tokSealed {
			continue
		}
		if known == nil {
			known = map[string]bool{}
			for _, o := range scan(previous) {
				if o.kind == tokSealed {
					known[normalSealed(o.value)] = true
				}
			}
		}
		if !known[normalSealed(t.value)] {
			return true
		}
	}
	return false
}

func normalSealed(b64 string) string { return strings.Join(strings.Fields(b64), "") }
