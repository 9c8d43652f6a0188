package items

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"sortie.dev/services/library/internal/secrets"
)

// ErrNotFound means no item (or skill file) has that name.
var ErrNotFound = errors.New("not found")

// Write is one file a save writes.
type Write struct {
	Path string
	Data []byte
}

// Change is what a save or delete does to the repository: files to write
// and paths (files or folders) to remove.
type Change struct {
	Writes  []Write
	Removes []string
}

// List returns the summaries of every item of kind k, sorted by name. A
// missing folder is an empty list; an item whose file does not parse is
// listed with what could be read, so that a user can still find and fix it.
func List(fsys fs.FS, k Kind, v View) ([]any, error) {
	if k == MCP {
		return listMCP(fsys, v)
	}
	names, err := listNames(fsys, k)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(fsys, File(k, name))
		if err != nil {
			continue // removed while listing, or not a regular file
		}
		out = append(out, summary(fsys, k, name, string(data), v))
	}
	return out, nil
}

// Names returns the names of the items of kind k, sorted.
func Names(fsys fs.FS, k Kind) ([]string, error) {
	if k == MCP {
		m, err := readMCP(fsys)
		if err != nil {
			return nil, err
		}
		return slices.Sorted(maps.Keys(m)), nil
	}
	return listNames(fsys, k)
}

// listNames returns the names of the items of kind k, sorted.
func listNames(fsys fs.FS, k Kind) ([]string, error) {
	entries, err := fs.ReadDir(fsys, string(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if isDirKind(k) {
			if !e.IsDir() {
				continue
			}
		} else {
			if e.IsDir() || !strings.HasSuffix(name, suffix(k)) {
				continue
			}
			name = strings.TrimSuffix(name, suffix(k))
		}
		if ValidName(name) != nil {
			continue // hidden or otherwise unservable; never listed
		}
		if isDirKind(k) {
			if _, err := fs.Stat(fsys, File(k, name)); err != nil {
				continue // only folders that hold the marker file are items
			}
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

func summary(fsys fs.FS, k Kind, name, content string, v View) any {
	switch k {
	case Skill:
		return skillSummary(fsys, name, content, v)
	case Command:
		return commandSummary(name, content, v)
	case Agent:
		a := agentItem(name, content, v)
		return AgentSummary{Name: a.Name, Description: a.Description, Path: a.Path}
	case Template:
		return templateSummary(name, []byte(content), v)
	default: // rule, tool, init script
		return textItem(k, name, content, v).TextSummary
	}
}

// Get returns the full item, its secrets shown as v shows them: opened
// for editing with v's sealer (nil: left sealed), or masked.
func Get(fsys fs.FS, k Kind, name string, v View) (any, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if k == MCP {
		return getMCP(fsys, name, v)
	}
	data, err := fs.ReadFile(fsys, File(k, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	content := string(data)
	switch k {
	case Skill:
		return getSkill(fsys, name, content, v)
	case Command:
		c := commandSummary(name, content, v)
		return CommandItem{CommandSummary: c, Content: v.text(content)}, nil
	case Agent:
		a := agentItem(name, content, v)
		a.Content = v.text(content)
		return a, nil
	case Template:
		return getTemplate(name, data, v)
	default:
		t := textItem(k, name, content, v)
		t.Content = v.text(content)
		return t, nil
	}
}

// Exists reports whether the item is there.
func Exists(fsys fs.FS, k Kind, name string) bool {
	if k == MCP {
		_, err := getMCP(fsys, name, View{})
		return err == nil
	}
	_, err := fs.Stat(fsys, File(k, name))
	return err == nil
}

// Prepare validates a save of body (the request's JSON) as item name of
// kind k and returns the files to write. fsys is the repository as it is
// now (for the MCP file, to keep unchanged secrets' ciphertext, and to put
// back the stored secrets the caller's placeholders stand for). v is the
// caller's view: a masked caller may not write sealed values.
func Prepare(fsys fs.FS, k Kind, name string, body []byte, v View) (Change, error) {
	if err := ValidName(name); err != nil {
		return Change{}, err
	}
	switch k {
	case MCP:
		return prepareMCP(fsys, name, body, v)
	case Template:
		return prepareTemplate(fsys, name, body, v)
	default:
		return prepareText(fsys, k, name, body, v)
	}
}

// Delete returns the change that removes an item, or ErrNotFound.
func Delete(fsys fs.FS, k Kind, name string) (Change, error) {
	if err := ValidName(name); err != nil {
		return Change{}, err
	}
	if !Exists(fsys, k, name) {
		return Change{}, ErrNotFound
	}
	if k == MCP {
		return deleteMCP(fsys, name)
	}
	return Change{Removes: []string{Root(k, name)}}, nil
}

// ContentRequest is the body of a save of a text item.
type ContentRequest struct {
	Content *string `json:"content"`
}

func decodeContent(body []byte) (string, error) {
	var req ContentRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return "", invalidf(CodeInvalidContent, "the body must be a JSON object {\"content\": \"...\"}: %v", err)
	}
	if req.Content == nil {
		return "", invalid(CodeInvalidContent, "the field \"content\" is required")
	}
	return *req.Content, nil
}

// prepareText validates a markdown, script or tool save and seals the
// secrets in it.
func prepareText(fsys fs.FS, k Kind, name string, body []byte, v View) (Change, error) {
	content, err := decodeContent(body)
	if err != nil {
		return Change{}, err
	}
	if strings.ContainsRune(content, 0) {
		return Change{}, invalid(CodeInvalidContent, "the content holds a NUL byte; items are text")
	}
	if err := validateText(k, content); err != nil {
		return Change{}, err
	}
	sealed, err := sealContent(fsys, File(k, name), content, v)
	if err != nil {
		return Change{}, err
	}
	return Change{Writes: []Write{{Path: File(k, name), Data: []byte(sealed)}}}, nil
}

// sealContent puts back the stored secrets content's placeholders stand
// for and seals its new secrets, reusing the ciphertext the stored file at
// p already has for unchanged values.
func sealContent(fsys fs.FS, p, content string, v View) (string, error) {
	if !strings.Contains(content, "<encrypted") {
		return content, nil
	}
	previous, _ := fs.ReadFile(fsys, p)
	return sealString(content, string(previous), v)
}

// sealString is sealContent for one string whose stored version is
// previous.
func sealString(content, previous string, v View) (string, error) {
	if err := secrets.CheckTags(content); err != nil {
		return "", invalid(CodeInvalidContent, err.Error())
	}
	content, err := v.restoreText(content, previous)
	if err != nil {
		return "", err
	}
	if !secrets.HasPlain(content) {
		return content, nil
	}
	sealed, err := v.Sealer.SealText(content, previous)
	if errors.Is(err, secrets.ErrNoKey) {
		return "", invalid(CodeEncryptionDisabled, "the content has <encrypted> values but "+err.Error())
	}
	return sealed, err
}

// validateText checks the frontmatter of a markdown item against the
// fields its type defines.
func validateText(k Kind, content string) error {
	switch k {
	case Skill:
		var m skillMeta
		return parseFrontmatter(content, &m)
	case Command:
		var m commandMeta
		if err := parseFrontmatter(content, &m); err != nil {
			return err
		}
		_, err := m.params()
		return err
	case Agent:
		var m agentMeta
		return parseFrontmatter(content, &m)
	case Rule:
		var m ruleMeta
		return parseFrontmatter(content, &m)
	}
	return nil
}

// SkillFile reads an extra file of a skill.
func SkillFile(fsys fs.FS, skill, file string, v View) (SkillFileItem, error) {
	if err := ValidName(skill); err != nil {
		return SkillFileItem{}, err
	}
	if err := ValidFilePath(file); err != nil {
		return SkillFileItem{}, err
	}
	if !Exists(fsys, Skill, skill) {
		return SkillFileItem{}, ErrNotFound
	}
	data, err := fs.ReadFile(fsys, path.Join("skill", skill, file))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return SkillFileItem{}, ErrNotFound
	}
	if err != nil {
		return SkillFileItem{}, err
	}
	return SkillFileItem{Name: path.Base(file), Path: file, Content: v.text(string(data))}, nil
}

// PrepareSkillFile validates the save of an extra file of a skill.
func PrepareSkillFile(fsys fs.FS, skill, file string, body []byte, v View) (Change, error) {
	if err := checkSkillFile(fsys, skill, file); err != nil {
		return Change{}, err
	}
	content, err := decodeContent(body)
	if err != nil {
		return Change{}, err
	}
	p := path.Join("skill", skill, file)
	if fi, err := fs.Stat(fsys, p); err == nil && fi.IsDir() {
		return Change{}, invalidf(CodeInvalidPath, "%q is a folder", file)
	}
	sealed, err := sealContent(fsys, p, content, v)
	if err != nil {
		return Change{}, err
	}
	return Change{Writes: []Write{{Path: p, Data: []byte(sealed)}}}, nil
}

// DeleteSkillFile validates the removal of an extra file of a skill.
func DeleteSkillFile(fsys fs.FS, skill, file string) (Change, error) {
	if err := checkSkillFile(fsys, skill, file); err != nil {
		return Change{}, err
	}
	p := path.Join("skill", skill, file)
	if _, err := fs.Stat(fsys, p); err != nil {
		return Change{}, ErrNotFound
	}
	return Change{Removes: []string{p}}, nil
}

func checkSkillFile(fsys fs.FS, skill, file string) error {
	if err := ValidName(skill); err != nil {
		return err
	}
	if err := ValidFilePath(file); err != nil {
		return err
	}
	if strings.TrimPrefix(file, "/") == "SKILL.md" {
		return invalid(CodeUnsupportedOperation, "SKILL.md is the skill itself: save or delete it with /api/library/skill/{name}")
	}
	if !Exists(fsys, Skill, skill) {
		return ErrNotFound
	}
	return nil
}
