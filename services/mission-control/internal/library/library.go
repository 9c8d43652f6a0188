// Package library reads agent definitions from the library service, so a
// mission's agent can be handed to the CLIs that load agents from files.
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
	"time"
)

// TokenSource gives the service token for the library (nil: none).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Client calls the library's REST API.
type Client struct {
	base   string
	tokens TokenSource
	http   *http.Client
}

// New returns a client of the library at base (e.g. http://library:8080).
func New(base string, tokens TokenSource) *Client {
	return &Client{base: strings.TrimSuffix(base, "/"), tokens: tokens, http: &http.Client{Timeout: 10 * time.Second}}
}

// Agent returns the markdown of agent/<name>; found is false when the
// library has no such agent (the name may be one the CLI knows itself).
func (c *Client) Agent(ctx context.Context, name string) (content string, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/library/agent/"+url.PathEscape(name), nil)
	if err != nil {
		return "", false, fmt.Errorf("library request: %w", err)
	}
	if c.tokens != nil {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return "", false, fmt.Errorf("service token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("ask the library for agent %s: %w", name, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", false, nil
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return "", false, fmt.Errorf("library agent %s: %d %s", name, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var item struct {
		Content string `json:"content"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&item); err != nil {
		return "", false, fmt.Errorf("library agent %s: %w", name, err)
	}
	if item.Content == "" {
		return "", false, errors.New("library agent " + name + " has no content")
	}
	return item.Content, true, nil
}
