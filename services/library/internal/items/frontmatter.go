package items

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// splitFrontmatter separates YAML frontmatter (between a first line "---"
// and the next line "---") from the body. has is false when the content
// does not start with "---"; an opening line without a closing one is an
// error, since everything after it would silently become metadata.
func splitFrontmatter(content string) (front string, body string, has bool, err error) {
	first, rest, ok := strings.Cut(content, "\n")
	if strings.TrimRight(first, "\r \t") != "---" {
		return "", content, false, nil
	}
	if !ok {
		return "", "", true, invalid(CodeInvalidFrontmatter, "the frontmatter opens with --- but never closes")
	}
	var fm strings.Builder
	for rest != "" {
		line, after, _ := strings.Cut(rest, "\n")
		if t := strings.TrimRight(line, "\r \t"); t == "---" || t == "..." {
			return fm.String(), after, true, nil
		}
		fm.WriteString(line)
		fm.WriteByte('\n')
		rest = after
	}
	return "", "", true, invalid(CodeInvalidFrontmatter, "the frontmatter opens with --- but never closes")
}

// parseFrontmatter decodes the frontmatter of content into v (a struct
// with yaml tags). Fields v does not name are left alone: they stay in the
// file as the user wrote them.
func parseFrontmatter(content string, v any) error {
	front, _, has, err := splitFrontmatter(content)
	if err != nil || !has {
		return err
	}
	if strings.TrimSpace(front) == "" {
		return nil
	}
	var node yaml.Node
	dec := yaml.NewDecoder(bytes.NewBufferString(front))
	if err := dec.Decode(&node); err != nil {
		return invalidf(CodeInvalidFrontmatter, "the frontmatter is not valid YAML: %v", err)
	}
	if len(node.Content) == 0 {
		return nil
	}
	if node.Content[0].Kind != yaml.MappingNode {
		return invalid(CodeInvalidFrontmatter, "the frontmatter must be a YAML mapping of field: value")
	}
	if err := node.Decode(v); err != nil {
		return invalidf(CodeInvalidFrontmatter, "a frontmatter field has the wrong type: %v", err)
	}
	return nil
}

// ensureFrontmatterFields returns content whose frontmatter has name (and
// description, when given and missing): agent CLIs find skills by them.
func ensureFrontmatterFields(content, name, description string) string {
	front, body, has, err := splitFrontmatter(content)
	if err != nil {
		return content
	}
	var meta struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
	}
	if has {
		_ = yaml.Unmarshal([]byte(front), &meta)
	}
	var add strings.Builder
	if meta.Name == "" {
		add.WriteString("name: " + quoteYAML(name) + "\n")
	}
	if meta.Description == "" && description != "" {
		add.WriteString("description: " + quoteYAML(description) + "\n")
	}
	if add.Len() == 0 {
		return content
	}
	if !has {
		return "---\n" + add.String() + "---\n" + content
	}
	return "---\n" + add.String() + front + "---\n" + body
}

func quoteYAML(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		return `""`
	}
	return strings.TrimRight(string(b), "\n")
}

// EnsureSkillFrontmatter returns a skill's SKILL.md with name (and
// description, when known) in its frontmatter, as agent CLIs require when
// they discover skills.
func EnsureSkillFrontmatter(content, name, description string) string {
	return ensureFrontmatterFields(content, name, description)
}
