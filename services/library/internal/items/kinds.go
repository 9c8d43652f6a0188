// Package items knows the library's item types: where each lives in the
// repository, how its file is parsed into the JSON the original clients
// read, and how a save is validated and turned into files.
//
// Everything here works on an fs.FS (the work tree or a commit's tree), so
// it holds no state and never touches git itself.
package items

import (
	"path"
	"slices"
)

// Kind is an item type, named as its folder in the repository and its
// segment in /api/library/{type}.
type Kind string

// The item types.
const (
	Skill      Kind = "skill"
	Command    Kind = "command"
	Rule       Kind = "rule"
	Agent      Kind = "agent"
	MCP        Kind = "mcp"
	Template   Kind = "workspace-template"
	Tool       Kind = "tool"
	InitScript Kind = "init-script"
)

// Kinds lists every type.
var kinds = []Kind{Skill, Command, Rule, Agent, MCP, Template, Tool, InitScript}

// Kinds returns every type, in a fixed order.
func Kinds() []Kind { return slices.Clone(kinds) }

// ParseKind accepts a type's name and the plural the original dashboard
// uses (/skills, /commands, /mcps, ...).
func ParseKind(seg string) (Kind, bool) {
	for _, k := range kinds {
		if seg == string(k) || seg == string(k)+"s" {
			return k, true
		}
	}
	return "", false
}

// AdminOnly reports the types only admins may write: init scripts,
// workspace templates, tools and MCP servers run code or set the
// environment in the workspaces of everyone who uses them. Skills,
// commands, agents and rules may be written by any user.
func AdminOnly(k Kind) bool {
	return k == InitScript || k == Template || k == Tool || k == MCP
}

// MCPFile holds every MCP server, as the original server stores them.
const MCPFile = "mcp/servers.json"

// File is the main file of an item: what a get reads and a save writes.
func File(k Kind, name string) string {
	switch k {
	case Skill:
		return path.Join("skill", name, "SKILL.md")
	case InitScript:
		return path.Join("init-script", name, "SCRIPT.sh")
	case Template:
		return path.Join("workspace-template", name+".json")
	case Tool:
		return path.Join("tool", name+".ts")
	case MCP:
		return MCPFile
	default: // command, rule, agent
		return path.Join(string(k), name+".md")
	}
}

// Root is what deleting an item removes and what its history follows: the
// folder of a skill or init script, else the item's file.
func Root(k Kind, name string) string {
	switch k {
	case Skill, InitScript:
		return path.Join(string(k), name)
	default:
		return File(k, name)
	}
}

// isDirKind reports the types that are a folder with a marker file.
func isDirKind(k Kind) bool { return k == Skill || k == InitScript }

// suffix is the file extension of a single-file type.
func suffix(k Kind) string {
	switch k {
	case Template:
		return ".json"
	case Tool:
		return ".ts"
	default:
		return ".md"
	}
}
