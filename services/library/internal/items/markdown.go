package items

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
)

type skillMeta struct {
	Name          string   `yaml:"name"`
	Description   string   `yaml:"description"`
	SetupCommands []string `yaml:"setup_commands"`
}

// SkillSource says where a skill came from: {"type":"Local"} or what a
// registry install recorded in .skill-source.json.
type SkillSource = json.RawMessage

var localSource = SkillSource(`{"type":"Local"}`)

// SkillSummary is a skill in a list.
type SkillSummary struct {
	Name          string      `json:"name"`
	Description   string      `json:"description,omitempty"`
	Path          string      `json:"path"`
	Source        SkillSource `json:"source"`
	SetupCommands []string    `json:"setup_commands,omitempty"`
}

// SkillFileItem is an extra file of a skill.
type SkillFileItem struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Content string `json:"content"`
}

// SkillItem is a whole skill: SKILL.md, its other markdown files and the
// paths of its non-markdown references.
type SkillItem struct {
	SkillSummary
	Content    string          `json:"content"`
	Files      []SkillFileItem `json:"files"`
	References []string        `json:"references"`
}

// SkillDescription is the description in a SKILL.md's frontmatter.
func SkillDescription(content string) string {
	var m skillMeta
	_ = parseFrontmatter(content, &m)
	return m.Description
}

func skillSummary(fsys fs.FS, name, content string, v View) SkillSummary {
	var m skillMeta
	_ = parseFrontmatter(content, &m) // a broken file still lists by name
	s := SkillSummary{
		Name: name, Description: v.text(m.Description), Path: path.Join("skill", name),
		Source: localSource, SetupCommands: v.texts(m.SetupCommands),
	}
	if src, err := fs.ReadFile(fsys, path.Join("skill", name, ".skill-source.json")); err == nil {
		var probe struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(src, &probe) == nil && probe.Type != "" {
			s.Source = v.source(src)
		}
	}
	return s
}

// source shows a skill's .skill-source.json; one that mentions a secret is
// decoded and shown string by string.
func (v View) source(src []byte) SkillSource {
	if !bytes.Contains(src, []byte("encrypted")) {
		return SkillSource(src)
	}
	var x any
	if err := json.Unmarshal(src, &x); err != nil {
		return localSource
	}
	out, err := json.Marshal(v.anyValue(x))
	if err != nil {
		return localSource
	}
	return SkillSource(out)
}

func getSkill(fsys fs.FS, name, content string, v View) (SkillItem, error) {
	item := SkillItem{
		SkillSummary: skillSummary(fsys, name, content, v),
		Content:      v.text(content),
		Files:        []SkillFileItem{},
		References:   []string{},
	}
	dir := path.Join("skill", name)
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel := strings.TrimPrefix(p, dir+"/")
		if rel == "SKILL.md" {
			return nil
		}
		if !strings.HasSuffix(rel, ".md") {
			item.References = append(item.References, rel)
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		item.Files = append(item.Files, SkillFileItem{Name: d.Name(), Path: rel, Content: v.text(string(data))})
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return SkillItem{}, ErrNotFound
	}
	return item, err
}

type commandMeta struct {
	Description string `yaml:"description"`
	Params      any    `yaml:"params"`
}

// Param is a parameter of a command.
type Param struct {
	Name        string `json:"name"`
	Required    bool   `json:"required"`
	Description string `json:"description,omitempty"`
}

// params accepts a list of names or of {name, required, description}.
func (m commandMeta) params() ([]Param, error) {
	if m.Params == nil {
		return nil, nil
	}
	list, ok := m.Params.([]any)
	if !ok {
		return nil, invalid(CodeInvalidFrontmatter, "params must be a list of names or of {name, required, description}")
	}
	out := make([]Param, 0, len(list))
	for _, v := range list {
		switch p := v.(type) {
		case string:
			out = append(out, Param{Name: p, Required: true})
		case map[string]any:
			name, _ := p["name"].(string)
			if name == "" {
				return nil, invalid(CodeInvalidFrontmatter, "each param needs a name")
			}
			param := Param{Name: name, Required: true}
			if r, ok := p["required"]; ok {
				b, ok := r.(bool)
				if !ok {
					return nil, invalidf(CodeInvalidFrontmatter, "param %q: required must be true or false", name)
				}
				param.Required = b
			}
			if d, ok := p["description"]; ok {
				s, ok := d.(string)
				if !ok {
					return nil, invalidf(CodeInvalidFrontmatter, "param %q: description must be text", name)
				}
				param.Description = s
			}
			out = append(out, param)
		default:
			return nil, invalid(CodeInvalidFrontmatter, "params must be a list of names or of {name, required, description}")
		}
	}
	return out, nil
}

// CommandSummary is a command in a list.
type CommandSummary struct {
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	Path        string  `json:"path"`
	Params      []Param `json:"params,omitempty"`
}

// CommandItem is a whole command.
type CommandItem struct {
	CommandSummary
	Content string `json:"content"`
}

func commandSummary(name, content string, v View) CommandSummary {
	var m commandMeta
	_ = parseFrontmatter(content, &m)
	params, _ := m.params()
	for i := range params {
		params[i].Name, params[i].Description = v.text(params[i].Name), v.text(params[i].Description)
	}
	return CommandSummary{Name: name, Description: v.text(m.Description), Path: File(Command, name), Params: params}
}

type agentMeta struct {
	Description string          `yaml:"description"`
	Model       string          `yaml:"model"`
	Tools       map[string]bool `yaml:"tools"`
	Permissions map[string]any  `yaml:"permissions"`
}

// AgentSummary is an agent in a list.
type AgentSummary struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Path        string `json:"path"`
}

// AgentItem is a whole agent; tools and permissions come from its
// frontmatter.
type AgentItem struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Path        string          `json:"path"`
	Content     string          `json:"content"`
	Model       string          `json:"model,omitempty"`
	Tools       map[string]bool `json:"tools"`
	Permissions map[string]any  `json:"permissions"`
}

func agentItem(name, content string, v View) AgentItem {
	var m agentMeta
	_ = parseFrontmatter(content, &m)
	a := AgentItem{Name: name, Description: v.text(m.Description), Path: File(Agent, name), Model: v.text(m.Model),
		Tools: m.Tools, Permissions: m.Permissions}
	if a.Permissions != nil {
		a.Permissions = v.anyValue(a.Permissions).(map[string]any)
	}
	if a.Tools == nil {
		a.Tools = map[string]bool{}
	}
	if a.Permissions == nil {
		a.Permissions = map[string]any{}
	}
	return a
}

type ruleMeta struct {
	Description string `yaml:"description"`
}

// TextSummary is a rule, tool or init script in a list.
type TextSummary struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Path        string `json:"path"`
}

// TextItem is a whole rule, tool or init script.
type TextItem struct {
	TextSummary
	Content string `json:"content"`
}

func textItem(k Kind, name, content string, v View) TextItem {
	t := TextItem{TextSummary: TextSummary{Name: name, Path: File(k, name)}}
	switch k {
	case Rule:
		var m ruleMeta
		_ = parseFrontmatter(content, &m)
		t.Description = m.Description
	case InitScript:
		t.Description = commentDescription(content, "#")
	case Tool:
		t.Description = commentDescription(content, "//")
	}
	t.Description = v.text(t.Description)
	return t
}

// commentDescription is the first comment of a script (after a shebang),
// without a "Description:" label: "# Description: installs bun" and
// "# installs bun" both describe the script as "installs bun".
func commentDescription(content, marker string) string {
	for i, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if i == 0 && strings.HasPrefix(line, "#!") || line == "" {
			continue
		}
		var text string
		switch {
		case strings.HasPrefix(line, marker):
			text = strings.TrimPrefix(line, marker)
		case marker == "//" && (strings.HasPrefix(line, "/*") || strings.HasPrefix(line, "*")):
			text = strings.TrimLeft(line, "/*")
			text = strings.TrimSuffix(strings.TrimSpace(text), "*/")
			if strings.TrimSpace(text) == "" {
				continue
			}
		default:
			return ""
		}
		text = strings.TrimSpace(text)
		if label, rest, ok := strings.Cut(text, ":"); ok && strings.EqualFold(strings.TrimSpace(label), "description") {
			text = strings.TrimSpace(rest)
		}
		return text
	}
	return ""
}
