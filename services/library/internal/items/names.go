package items

import (
	"fmt"
	"strings"
)

// maxNameLen bounds an item name; names become file names and git paths.
const maxNameLen = 100

// maxFileDepth bounds how deep an extra file may sit inside a skill.
const maxFileDepth = 8

// ValidName reports why name cannot name an item, or nil. Names are one
// path segment of letters, digits, '-', '_' and '.', never starting with a
// dot and never holding "..": the charset alone rules out slashes,
// backslashes, NUL and percent signs, so an encoded or double-encoded
// traversal ("%2e%2e", "%252F") can never reach the file system.
func ValidName(name string) error {
	switch {
	case name == "":
		return invalid(CodeInvalidName, "the name is empty")
	case len(name) > maxNameLen:
		return invalidf(CodeInvalidName, "the name is longer than %d characters", maxNameLen)
	case strings.HasPrefix(name, "."):
		return invalidf(CodeInvalidName, "the name %q starts with a dot; hidden names are not allowed", name)
	case strings.Contains(name, ".."):
		return invalidf(CodeInvalidName, "the name %q contains \"..\"", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return invalidf(CodeInvalidName, "the name %q may hold only letters, digits, '-', '_' and '.' (found %q)", name, r)
		}
	}
	return nil
}

// ValidFilePath checks the path of an extra file inside a skill: slash
// separated segments that are each a valid name.
func ValidFilePath(p string) error {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return invalid(CodeInvalidPath, "the file path is empty")
	}
	segs := strings.Split(p, "/")
	if len(segs) > maxFileDepth {
		return invalidf(CodeInvalidPath, "the file path %q is deeper than %d folders", p, maxFileDepth)
	}
	for _, s := range segs {
		if err := ValidName(s); err != nil {
			return invalidf(CodeInvalidPath, "the file path %q is not allowed: %v", p, err)
		}
	}
	return nil
}

// Error codes of invalid input, beside kit's.
const (
	CodeInvalidName          = "invalid_name"
	CodeInvalidPath          = "invalid_path"
	CodeInvalidFrontmatter   = "invalid_frontmatter"
	CodeInvalidTemplate      = "invalid_template"
	CodeInvalidMCP           = "invalid_mcp"
	CodeInvalidContent       = "invalid_content"
	CodeEncryptionDisabled   = "encryption_unavailable"
	CodeInvalidStoredItem    = "invalid_item"
	CodeUnsupportedOperation = "unsupported_operation"
	// CodeForbidden is kit's forbidden: the caller's role may not do it.
	CodeForbidden = "forbidden"
)

// Error is input the library refuses; the HTTP layer answers it with a 400
// and Code (403 for CodeForbidden, 409 for CodeInvalidStoredItem).
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func invalid(code, msg string) *Error { return &Error{Code: code, Msg: msg} }

func invalidf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
