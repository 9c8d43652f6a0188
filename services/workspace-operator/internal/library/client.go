// Package library is the workspace-operator's client of the library
// service: workspace templates, init-script fragments, and the bundle of
// skills and tools a workspace gets (a tar stream at one revision).
package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrNotFound is the library's 404 for an item.
var ErrNotFound = errors.New("not in the library")

// UnavailableError says the library could not be asked (not configured,
// down, or failing); callers answer 503 or retry.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return "the library service is unavailable: " + e.Err.Error()
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// TokenSource gives the operator's service token (nil: no token, for dev
// mode).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Client calls the library's REST API.
type Client struct {
	BaseURL string // e.g. http://library:8080; empty: no library
	Tokens  TokenSource
	HTTP    *http.Client
}

// Configured reports whether a library is set up at all.
func (c *Client) Configured() bool { return c != nil && c.BaseURL != "" }

// Template is a workspace template as the library serves it.
type Template struct {
	Name    string            `json:"name"`
	Distro  string            `json:"distro"`
	Skills  []string          `json:"skills"`
	EnvVars map[string]string `json:"env_vars"`
	// EncryptedKeys name the env vars whose values were sealed in the
	// library (<encrypted>): the library opens them for the operator's
	// service token, and they must stay secret.
	EncryptedKeys []string `json:"encrypted_keys"`
	InitScripts   []string `json:"init_scripts"`
	InitScript    string   `json:"init_script"`
	// Resources are the template's requests and limits of cpu, memory and
	// ephemeral-storage, as quantities ("2", "4Gi").
	Resources *TemplateResources `json:"resources"`
	// RuntimeClassName runs the template's workspaces under that
	// RuntimeClass (gVisor, Kata).
	RuntimeClassName string `json:"runtime_class_name"`
}

// TemplateResources are a template's requests and limits.
type TemplateResources struct {
	Requests map[string]string `json:"requests"`
	Limits   map[string]string `json:"limits"`
}

// Template fetches workspace-template/<name>, secrets opened.
func (c *Client) Template(ctx context.Context, name string) (*Template, error) {
	var t Template
	if err := c.getJSON(ctx, "/api/library/workspace-template/"+url.PathEscape(name), &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// InitScript fetches the text of init-script/<name>.
func (c *Client) InitScript(ctx context.Context, name string) (string, error) {
	var item struct {
		Content string `json:"content"`
	}
	if err := c.getJSON(ctx, "/api/library/init-script/"+url.PathEscape(name), &item); err != nil {
		return "", err
	}
	return item.Content, nil
}

// Bundle is an open bundle response.
type Bundle struct {
	Body     io.ReadCloser
	Revision string   // the commit it was built from
	Missing  []string // requested items the library lacks, as type/name
}

// Bundle asks for the skills and tools a workspace needs in the workspace
// layout. nil means every item of the kind; revision "" means the latest.
func (c *Client) Bundle(ctx context.Context, revision string, skills, tools []string) (*Bundle, error) {
	q := url.Values{}
	if revision != "" {
		q.Set("revision", revision)
	}
	if skills != nil {
		q.Set("skills", strings.Join(skills, ","))
	}
	if tools != nil {
		q.Set("tools", strings.Join(tools, ","))
	}
	resp, err := c.do(ctx, "/api/library/bundle?"+q.Encode())
	if err != nil {
		return nil, err
	}
	b := &Bundle{Body: resp.Body, Revision: resp.Header.Get("X-Library-Revision")}
	if m := resp.Header.Get("X-Library-Missing"); m != "" {
		b.Missing = strings.Split(m, ",")
	}
	return b, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &UnavailableError{fmt.Errorf("decode %s: %w", path, err)}
	}
	return nil
}

// do sends a GET and returns a 200 response; the caller closes its body.
func (c *Client) do(ctx context.Context, path string) (*http.Response, error) {
	if !c.Configured() {
		return nil, &UnavailableError{errors.New("no library URL is configured (SORTIE_LIBRARY_URL)")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+path, nil)
	if err != nil {
		return nil, fmt.Errorf("library request: %w", err)
	}
	if c.Tokens != nil {
		tok, err := c.Tokens.Token(ctx)
		if err != nil {
			return nil, &UnavailableError{fmt.Errorf("service token: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &UnavailableError{err}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp, nil
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	default:
		var e struct{ Error, Code string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		resp.Body.Close()
		return nil, &UnavailableError{fmt.Errorf("GET %s: %d %s %s", path, resp.StatusCode, e.Code, e.Error)}
	}
}
