package items

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"net/url"
	"slices"
)

// mcpServer is one entry of mcp/servers.json.
type mcpServer struct {
	Type    string            `json:"type"`
	Command []string          `json:"command,omitempty"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Enabled bool              `json:"enabled"`
}

// MCPItem is an MCP server as the API shows it: a local command or a
// remote URL.
type MCPItem struct {
	Name string `json:"name"`
	mcpServer
}

// MCPRequest is the body of an MCP server save. name is accepted and
// ignored; enabled defaults to true.
type MCPRequest struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Command []string          `json:"command"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Env     map[string]string `json:"env"`
	Enabled *bool             `json:"enabled"`
}

// readMCP reads the servers file. A file that does not parse is an error
// for writes (saving would wipe it) but lists as empty, as the original
// server does.
func readMCP(fsys fs.FS) (map[string]mcpServer, error) {
	data, err := fs.ReadFile(fsys, MCPFile)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]mcpServer{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]mcpServer{}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalidf(CodeInvalidStoredItem, "the stored %s is not valid JSON (%v); fix it in the repository first", MCPFile, err)
	}
	return m, nil
}

func listMCP(fsys fs.FS, v View) ([]any, error) {
	m, err := readMCP(fsys)
	if err != nil {
		m = map[string]mcpServer{}
	}
	out := make([]any, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if ValidName(name) == nil {
			out = append(out, v.mcp(name, m[name]))
		}
	}
	return out, nil
}

func getMCP(fsys fs.FS, name string, v View) (MCPItem, error) {
	m, err := readMCP(fsys)
	if err != nil {
		return MCPItem{}, err
	}
	s, ok := m[name]
	if !ok {
		return MCPItem{}, ErrNotFound
	}
	return v.mcp(name, s), nil
}

// mcp shows a server: secrets in its command, url, headers and env as the
// view shows them.
func (v View) mcp(name string, s mcpServer) MCPItem {
	s.Command, s.URL = v.texts(s.Command), v.text(s.URL)
	s.Headers, s.Env = v.textMap(s.Headers), v.textMap(s.Env)
	return MCPItem{Name: name, mcpServer: s}
}

// sealMap seals the <encrypted>value</encrypted> secrets of header or env
// values, putting back the stored value (of the same key in previous) a
// placeholder stands for.
func sealMap(m, previous map[string]string, v View) (map[string]string, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sealed, err := sealString(m[k], previous[k], v)
		if err != nil {
			return nil, err
		}
		out[k] = sealed
	}
	return out, nil
}

func prepareMCP(fsys fs.FS, name string, body []byte, v View) (Change, error) {
	var req MCPRequest
	if err := decodeStrict(body, &req, CodeInvalidMCP); err != nil {
		return Change{}, err
	}
	s := mcpServer{Type: req.Type, Headers: req.Headers, Env: req.Env, Enabled: req.Enabled == nil || *req.Enabled}
	switch req.Type {
	case "local":
		if len(req.Command) == 0 || req.Command[0] == "" {
			return Change{}, invalid(CodeInvalidMCP, "a local MCP server needs a command (a list: program and arguments)")
		}
		if req.URL != "" {
			return Change{}, invalid(CodeInvalidMCP, "a local MCP server has a command, not a url")
		}
		s.Command = req.Command
	case "remote":
		u, err := url.Parse(req.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Change{}, invalid(CodeInvalidMCP, "a remote MCP server needs an http or https url")
		}
		if len(req.Command) > 0 {
			return Change{}, invalid(CodeInvalidMCP, "a remote MCP server has a url, not a command")
		}
		s.URL = req.URL
	default:
		return Change{}, invalidf(CodeInvalidMCP, "type must be \"local\" or \"remote\", not %q", req.Type)
	}
	m, err := readMCP(fsys)
	if err != nil {
		return Change{}, err
	}
	if s.Headers, err = sealMap(s.Headers, m[name].Headers, v); err != nil {
		return Change{}, err
	}
	if s.Env, err = sealMap(s.Env, m[name].Env, v); err != nil {
		return Change{}, err
	}
	m[name] = s
	return writeMCP(m)
}

func deleteMCP(fsys fs.FS, name string) (Change, error) {
	m, err := readMCP(fsys)
	if err != nil {
		return Change{}, err
	}
	delete(m, name)
	return writeMCP(m)
}

func writeMCP(m map[string]mcpServer) (Change, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Change{}, err
	}
	return Change{Writes: []Write{{Path: MCPFile, Data: append(data, '\n')}}}, nil
}
