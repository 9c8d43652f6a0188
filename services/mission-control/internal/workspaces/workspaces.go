// Package workspaces is mission-control's client of the workspace-operator's
// REST API: workspace lookup, synchronous exec, and the detached-process API
// turns run through.
//
// Every call about a workspace is made for a user: Client has no such
// method, only As(user) has, and its calls carry a delegated token for that
// user (sub and role of the user, act = mission-control), so the operator
// authorises the user and never mission-control's own service token. Only
// Ping, the health check, uses the service token.
package workspaces

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"sortie.dev/services/kit/authn"
)

// ErrNotFound is returned when the workspace or process does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned for a 409 (e.g. a process id already in use).
var ErrConflict = errors.New("conflict")

// TokenSource supplies the bearer tokens for the operator: the service's
// own (health checks) and delegated ones for a user (everything else).
// nil sends none (dev mode). authn.ServiceTokenSource is one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	TokenFor(ctx context.Context, userID string) (string, error)
}

// ErrNoUser is returned by a view made for no user: no call about a
// workspace goes out without a user, not even in dev mode.
var ErrNoUser = errors.New("workspace call without a user")

// IdentityError is auth refusing (or failing) to issue a token for the
// user a call is made for. Refused is true when auth answered 4xx: the
// user no longer exists, or mission-control may not act for users.
type IdentityError struct {
	User    string
	Refused bool
	Err     error
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("token for user %s: %v", e.User, e.Err)
}

func (e *IdentityError) Unwrap() error { return e.Err }

// Client calls the workspace-operator. Calls about workspaces go through
// As.
type Client struct {
	base   string
	tokens TokenSource
	http   *http.Client // ordinary calls, with a timeout
	stream *http.Client // output following, without one
}

// New returns a client for the operator at base (http://host:port).
func New(base string, tokens TokenSource) *Client {
	return &Client{
		base:   strings.TrimSuffix(base, "/"),
		tokens: tokens,
		http:   &http.Client{Timeout: 30 * time.Second},
		stream: &http.Client{},
	}
}

// Workspace is the part of the operator's workspace object missions use.
type Workspace struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Owner is the user the workspace belongs to; empty for workspaces
	// made without one (kubectl), which belong to the admins.
	Owner         string            `json:"owner,omitempty"`
	WorkspaceType string            `json:"workspace_type"`
	Path          string            `json:"path"`
	Status        string            `json:"status"`
	ErrorMessage  *string           `json:"error_message"`
	EnvVars       map[string]string `json:"env_vars"`
}

// UsableBy reports whether a mission of user may run in ws: the workspace
// is the user's, or has no owner (made with kubectl: the admins', which the
// operator shows to admins only). An admin sees every workspace, but a
// mission in another user's workspace would put its processes, output,
// mission directory and the admin's credentials where that user reads them.
func (ws *Workspace) UsableBy(user string) bool {
	return ws.Owner == "" || ws.Owner == user
}

// ExecResult is the answer of a synchronous exec.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// ExecRequest is a synchronous exec: Command runs with /bin/sh -c in Cwd
// (relative to the workspace's directory, or absolute) with Stdin written
// and closed, and is killed after TimeoutSecs (1..600; 0 means 120).
type ExecRequest struct {
	Command     string            `json:"command"`
	Cwd         string            `json:"cwd,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Stdin       string            `json:"stdin"`
	TimeoutSecs int               `json:"timeout_secs"`
}

// StartRequest starts a detached process.
type StartRequest struct {
	ID    string            `json:"id"`
	Argv  []string          `json:"argv"`
	Cwd   string            `json:"cwd,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Stdin string            `json:"stdin,omitempty"`
}

// Process is the operator's view of a detached process.
type Process struct {
	ID          string  `json:"id"`
	PID         int     `json:"pid"`
	Running     bool    `json:"running"`
	ExitCode    *int    `json:"exit_code"`
	Signal      *string `json:"signal"`
	OutputBytes int64   `json:"output_bytes"`
	Lost        bool    `json:"lost,omitempty"`
}

// OutputEvent is one NDJSON line of a process's output.
type OutputEvent struct {
	Offset     int64   `json:"offset"`
	Data       string  `json:"data,omitempty"`
	DataBase64 []byte  `json:"data_b64,omitempty"`
	EOF        bool    `json:"eof,omitempty"`
	ExitCode   *int    `json:"exit_code,omitempty"`
	Signal     *string `json:"signal,omitempty"`
}

// Bytes returns the raw bytes of a data event.
func (e OutputEvent) Bytes() []byte {
	if e.DataBase64 != nil {
		return e.DataBase64
	}
	return []byte(e.Data)
}

// Error is a non-2xx answer of the operator.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("workspace-operator answered %d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	}
	return nil
}

// User is the operator as seen by one user: every call carries a delegated
// token for that user.
type User struct {
	c    *Client
	user string
}

// As returns the view of the operator of user (a mission's owner).
func (c *Client) As(user string) *User { return &User{c: c, user: user} }

// ID is the user the view acts for.
func (u *User) ID() string { return u.user }

// token returns the bearer token of a call: the delegated token of user,
// or (user empty, for health checks only) the service's own.
func (c *Client) token(ctx context.Context, user string) (string, error) {
	if c.tokens == nil {
		return "", nil
	}
	if user == "" {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("service token: %w", err)
		}
		return tok, nil
	}
	tok, err := c.tokens.TokenFor(ctx, user)
	if err != nil {
		var te *authn.TokenError
		refused := errors.As(err, &te) && te.Status >= 400 && te.Status < 500
		return "", &IdentityError{User: user, Refused: refused, Err: err}
	}
	return tok, nil
}

func (u *User) do(ctx context.Context, hc *http.Client, method, path string, body, out any) (*http.Response, error) {
	if u.user == "" {
		return nil, ErrNoUser
	}
	return u.c.do(ctx, hc, u.user, method, path, body, out)
}

// forgetter is a TokenSource that can drop a user's cached token.
type forgetter interface{ Forget(userID string) }

// do makes one call for user ("" only for Ping: the service token). A
// delegated token the operator refuses (401) is dropped and the call made
// once more with a fresh one: the user's role may have changed since it
// was issued, and auth issues the new token with the current role (or
// refuses it, for a user who is gone).
func (c *Client) do(ctx context.Context, hc *http.Client, user, method, path string, body, out any) (*http.Response, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		payload = b
	}
	resp, err := c.send(ctx, hc, user, method, path, payload)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && user != "" {
		if f, ok := c.tokens.(forgetter); ok {
			resp.Body.Close()
			f.Forget(user)
			resp, err = c.send(ctx, hc, user, method, path, payload)
		}
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb struct{ Error, Code string }
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(raw, &eb) != nil {
			eb.Error = strings.TrimSpace(string(raw))
		}
		return nil, &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	if out == nil {
		return resp, nil
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return resp, nil
}

// send makes one request with the current token of user.
func (c *Client) send(ctx context.Context, hc *http.Client, user, method, path string, payload []byte) (*http.Response, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := c.token(ctx, user)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

func wsPath(id string) string { return "/api/workspaces/" + url.PathEscape(id) }

// Get returns a workspace; ErrNotFound when it does not exist or the user
// cannot see it (the operator does not tell the two apart).
func (u *User) Get(ctx context.Context, id string) (*Workspace, error) {
	var ws Workspace
	if _, err := u.do(ctx, u.c.http, http.MethodGet, wsPath(id), nil, &ws); err != nil {
		return nil, err
	}
	return &ws, nil
}

// Ping checks that the operator is ready (its /readyz), for /api/health,
// with the service's own token: it reads nobody's workspace.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, c.http, "", http.MethodGet, "/readyz", nil, &json.RawMessage{})
	return err
}

// Exec runs a shell command synchronously.
func (u *User) Exec(ctx context.Context, id, command, stdin string) (*ExecResult, error) {
	return u.ExecWith(ctx, id, ExecRequest{Command: command, Stdin: stdin})
}

// ExecWith runs a shell command synchronously with a working directory,
// environment and time limit. The call waits for the command a little
// longer than its time limit.
func (u *User) ExecWith(ctx context.Context, id string, req ExecRequest) (*ExecResult, error) {
	if req.TimeoutSecs <= 0 {
		req.TimeoutSecs = 120
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeoutSecs)*time.Second+30*time.Second)
	defer cancel()
	var out ExecResult
	if _, err := u.do(ctx, u.c.stream, http.MethodPost, wsPath(id)+"/exec", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Start starts a detached process; ErrConflict when its id is taken.
func (u *User) Start(ctx context.Context, id string, req StartRequest) (*Process, error) {
	var p Process
	if _, err := u.do(ctx, u.c.http, http.MethodPost, wsPath(id)+"/processes", req, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Process returns a process; ErrNotFound when the agent does not know it.
func (u *User) Process(ctx context.Context, id, pid string) (*Process, error) {
	var p Process
	if _, err := u.do(ctx, u.c.http, http.MethodGet, wsPath(id)+"/processes/"+url.PathEscape(pid), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Signal sends sig (INT, TERM, KILL) to the process group.
func (u *User) Signal(ctx context.Context, id, pid, sig string) error {
	resp, err := u.do(ctx, u.c.http, http.MethodPost, wsPath(id)+"/processes/"+url.PathEscape(pid)+"/signal", map[string]string{"signal": sig}, nil)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// Delete forgets an exited process and its output.
func (u *User) Delete(ctx context.Context, id, pid string) error {
	resp, err := u.do(ctx, u.c.http, http.MethodDelete, wsPath(id)+"/processes/"+url.PathEscape(pid), nil, nil)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// Follow streams a process's output from offset until it exits (the last
// event has EOF set) or ctx ends. A stream that breaks is resumed from the
// last offset seen, so a restart of the operator costs nothing.
func (u *User) Follow(ctx context.Context, id, pid string, offset int64) iter.Seq2[OutputEvent, error] {
	return func(yield func(OutputEvent, error) bool) {
		failures := 0
		for {
			path := wsPath(id) + "/processes/" + url.PathEscape(pid) + "/output?follow=true&offset=" + strconv.FormatInt(offset, 10)
			resp, err := u.do(ctx, u.c.stream, http.MethodGet, path, nil, nil)
			if err == nil {
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(make([]byte, 0, 256<<10), 8<<20)
				for sc.Scan() {
					var ev OutputEvent
					if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
						continue
					}
					failures = 0
					if !ev.EOF {
						offset = ev.Offset + int64(len(ev.Bytes()))
					}
					if !yield(ev, nil) {
						resp.Body.Close()
						return
					}
					if ev.EOF {
						resp.Body.Close()
						return
					}
				}
				resp.Body.Close()
			} else if errors.Is(err, ErrNotFound) || ctx.Err() != nil {
				yield(OutputEvent{}, err)
				return
			}
			failures++
			if failures > 30 {
				yield(OutputEvent{}, fmt.Errorf("follow output of %s: %w", pid, err))
				return
			}
			select {
			case <-ctx.Done():
				yield(OutputEvent{}, ctx.Err())
				return
			case <-time.After(time.Duration(min(failures, 10)) * 200 * time.Millisecond):
			}
		}
	}
}
