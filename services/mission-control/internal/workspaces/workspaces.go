// Package workspaces is mission-control's client of the workspace-operator's
// REST API: workspace lookup, synchronous exec, and the detached-process API
// turns run through.
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
)

// ErrNotFound is returned when the workspace or process does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned for a 409 (e.g. a process id already in use).
var ErrConflict = errors.New("conflict")

// TokenSource supplies the bearer token for the operator; nil sends none
// (dev mode).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Client calls the workspace-operator.
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
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	WorkspaceType string            `json:"workspace_type"`
	Path          string            `json:"path"`
	Status        string            `json:"status"`
	ErrorMessage  *string           `json:"error_message"`
	EnvVars       map[string]string `json:"env_vars"`
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

func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.tokens != nil {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("service token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
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

func wsPath(id string) string { return "/api/workspaces/" + url.PathEscape(id) }

// Get returns a workspace; ErrNotFound when it does not exist.
func (c *Client) Get(ctx context.Context, id string) (*Workspace, error) {
	var ws Workspace
	if _, err := c.do(ctx, c.http, http.MethodGet, wsPath(id), nil, &ws); err != nil {
		return nil, err
	}
	return &ws, nil
}

// Ping checks that the operator answers, for /api/health.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, c.http, http.MethodGet, "/api/workspaces", nil, &json.RawMessage{})
	return err
}

// Exec runs a shell command synchronously.
func (c *Client) Exec(ctx context.Context, id, command, stdin string) (*ExecResult, error) {
	return c.ExecWith(ctx, id, ExecRequest{Command: command, Stdin: stdin})
}

// ExecWith runs a shell command synchronously with a working directory,
// environment and time limit. The call waits for the command a little
// longer than its time limit.
func (c *Client) ExecWith(ctx context.Context, id string, req ExecRequest) (*ExecResult, error) {
	if req.TimeoutSecs <= 0 {
		req.TimeoutSecs = 120
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeoutSecs)*time.Second+30*time.Second)
	defer cancel()
	var out ExecResult
	if _, err := c.do(ctx, c.stream, http.MethodPost, wsPath(id)+"/exec", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Start starts a detached process; ErrConflict when its id is taken.
func (c *Client) Start(ctx context.Context, id string, req StartRequest) (*Process, error) {
	var p Process
	if _, err := c.do(ctx, c.http, http.MethodPost, wsPath(id)+"/processes", req, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Process returns a process; ErrNotFound when the agent does not know it.
func (c *Client) Process(ctx context.Context, id, pid string) (*Process, error) {
	var p Process
	if _, err := c.do(ctx, c.http, http.MethodGet, wsPath(id)+"/processes/"+url.PathEscape(pid), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Signal sends sig (INT, TERM, KILL) to the process group.
func (c *Client) Signal(ctx context.Context, id, pid, sig string) error {
	_, err := c.do(ctx, c.http, http.MethodPost, wsPath(id)+"/processes/"+url.PathEscape(pid)+"/signal", map[string]string{"signal": sig}, nil)
	return err
}

// Delete forgets an exited process and its output.
func (c *Client) Delete(ctx context.Context, id, pid string) error {
	_, err := c.do(ctx, c.http, http.MethodDelete, wsPath(id)+"/processes/"+url.PathEscape(pid), nil, nil)
	return err
}

// Follow streams a process's output from offset until it exits (the last
// event has EOF set) or ctx ends. A stream that breaks is resumed from the
// last offset seen, so a restart of the operator costs nothing.
func (c *Client) Follow(ctx context.Context, id, pid string, offset int64) iter.Seq2[OutputEvent, error] {
	return func(yield func(OutputEvent, error) bool) {
		failures := 0
		for {
			path := wsPath(id) + "/processes/" + url.PathEscape(pid) + "/output?follow=true&offset=" + strconv.FormatInt(offset, 10)
			resp, err := c.do(ctx, c.stream, http.MethodGet, path, nil, nil)
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
