// Package openai is the built-in backend: an agent loop inside
// mission-control that drives any OpenAI-compatible chat-completions
// endpoint (OpenAI, a local model server, a gateway) with streaming and tool
// calls, and runs the tools (shell, read_file, write_file) in the mission's
// workspace through the workspace-operator's exec API.
//
// It reports what happens through the same backend.Emitter as the CLI
// parsers, so its events keep the same invariants: a text_delta's content
// is the previous content plus its delta, every tool_result follows its
// tool_call, and one assistant_message ends the turn.
package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/event"
)

// Name is the backend name missions use.
const Name = "openai"

// Defaults of Config.
const (
	DefaultBaseURL      = "https://api.openai.com/v1"
	DefaultModel        = "gpt-5"
	DefaultMaxSteps     = 50
	DefaultShellTimeout = 2 * time.Minute
	DefaultOutputLimit  = 32 << 10
)

// Config configures the loop.
type Config struct {
	// BaseURL is the endpoint's base, e.g. https://api.openai.com/v1 or
	// http://localhost:8000/v1; /chat/completions is appended.
	BaseURL string
	// APIKey is sent as a bearer token; empty sends none (local servers).
	APIKey string
	// Model is used when the mission has no model_override.
	Model string
	// MaxSteps bounds the model calls of one turn; a turn that still asks
	// for tools after them fails (resumable).
	MaxSteps int
	// ShellTimeout is the default and upper time limit of the shell tool.
	ShellTimeout time.Duration
	// OutputLimit is how many bytes of a tool's output the model gets back
	// (the stored event is cut separately by the event store).
	OutputLimit int
	// Startup and Idle are the stream watchdogs: a model call that sends
	// nothing within Startup, or stops sending for Idle, fails the turn.
	// Zero disables either.
	Startup, Idle time.Duration
	// HTTPClient overrides the HTTP client (tests); nil uses the SDK's.
	HTTPClient *http.Client
	// MaxRetries is the SDK's retry count for 429/5xx before a stream
	// starts; negative uses the SDK default.
	MaxRetries int
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.MaxSteps <= 0 {
		c.MaxSteps = DefaultMaxSteps
	}
	if c.ShellTimeout <= 0 {
		c.ShellTimeout = DefaultShellTimeout
	}
	if c.OutputLimit <= 0 {
		c.OutputLimit = DefaultOutputLimit
	}
	return c
}

// Workspace runs commands in the mission's workspace.
type Workspace interface {
	Exec(ctx context.Context, req ExecRequest) (ExecResult, error)
}

// ExecRequest is one command: /bin/sh -c Command in Dir, with Stdin
// written and closed, killed after Timeout.
type ExecRequest struct {
	Command string
	Dir     string
	Env     map[string]string
	Stdin   string
	Timeout time.Duration
}

// ExecResult is how a command ended.
type ExecResult struct {
	ExitCode       int
	Stdout, Stderr string
	TimedOut       bool
	// Truncated is set when the workspace cut the output.
	Truncated bool
}

// Message is one earlier message of the mission's conversation.
type Message struct {
	Role    string // user or assistant
	Content string
}

// Turn is the input of one turn.
type Turn struct {
	Request backend.Request
	// History is the mission's conversation before this turn's prompt.
	History []Message
}

// Run is one turn of the loop. Drive it once, then Finish it.
type Run struct {
	cfg  Config
	ws   Workspace
	turn Turn
	em   *backend.Emitter
	opts backend.ParserOptions
}

// NewRun prepares a turn. opts.RunID namespaces tool call ids as for the
// CLI backends.
func NewRun(cfg Config, ws Workspace, t Turn, opts backend.ParserOptions) (*Run, error) {
	if err := t.Request.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if opts.Model = t.Request.Model; opts.Model == "" {
		opts.Model = cfg.Model
	}
	return &Run{cfg: cfg, ws: ws, turn: t, em: backend.NewEmitter(Name, opts), opts: opts}, nil
}

// Summary returns what the turn reported: model, usage, outcome.
func (r *Run) Summary() backend.Summary { return r.em.Summary() }

// Finish ends the turn after Drive returned: open tool calls get an error
// result and, unless Drive already ended it, x decides the answer
// (cancelled, or a watchdog's failure).
func (r *Run) Finish(x backend.Exit) []event.Event { return r.em.Finish(x) }

// Drive runs the loop, passing every event to emit as it happens. It
// returns nil when the turn ended (answered, or failed with an error the
// model endpoint gave), ctx's error when ctx ended first (then Finish
// decides), and emit's error as is.
func (r *Run) Drive(ctx context.Context, emit func(event.Event) error) error {
	send := func(evs []event.Event) error {
		for _, e := range evs {
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	}
	client := sdk.NewClient(r.clientOptions()...)
	msgs := r.messages()
	params := sdk.ChatCompletionNewParams{
		Model:         shared.ChatModel(r.opts.Model),
		Tools:         tools(),
		StreamOptions: sdk.ChatCompletionStreamOptionsParam{IncludeUsage: sdk.Bool(true)},
	}
	if e := r.turn.Request.Effort; e != backend.EffortDefault {
		params.ReasoningEffort = shared.ReasoningEffort(e)
	}
	for step := 0; step < r.cfg.MaxSteps; step++ {
		params.Messages = msgs
		res, err := r.step(ctx, &client, params, send)
		if err != nil {
			return err
		}
		if res.failed {
			return nil
		}
		if len(res.calls) == 0 {
			if res.finish == "length" {
				if err := send(r.em.Error("The model stopped at its output token limit; the answer may be cut short.", "length")); err != nil {
					return err
				}
			}
			return send(r.em.Complete(""))
		}
		msgs = append(msgs, assistantWithCalls(res.text, res.calls))
		for _, c := range res.calls {
			out, err := r.call(ctx, c, send)
			if err != nil {
				return err
			}
			msgs = append(msgs, sdk.ToolMessage(out, c.id))
		}
	}
	return send(r.em.Fail(fmt.Sprintf("Stopped after %d model calls without a final answer (the step limit). Resume the mission to continue.", r.cfg.MaxSteps), "max_steps"))
}

func (r *Run) clientOptions() []option.RequestOption {
	opts := []option.RequestOption{option.WithBaseURL(strings.TrimSuffix(r.cfg.BaseURL, "/") + "/")}
	// A local server needs no key, but the SDK sends whatever it has; an
	// explicit empty key keeps OPENAI_API_KEY of mission-control's own
	// environment out of requests to an endpoint it was not meant for.
	opts = append(opts, option.WithAPIKey(r.cfg.APIKey))
	if r.cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(r.cfg.HTTPClient))
	}
	if r.cfg.MaxRetries >= 0 {
		opts = append(opts, option.WithMaxRetries(r.cfg.MaxRetries))
	}
	return opts
}

// system is the system prompt.
func (r *Run) system() string {
	return fmt.Sprintf(`You are a coding agent working in a software workspace. Your working directory is %s; relative paths are resolved there.
Use the tools to inspect and change files and to run commands (shell runs /bin/sh -c; the workspace may have git, a compiler and other tools installed).
Work step by step, check the results of your commands, and when you are done answer with a short summary of what you did and found.`, r.turn.Request.WorkDir)
}

// messages builds the conversation: system prompt, history, the prompt.
func (r *Run) messages() []sdk.ChatCompletionMessageParamUnion {
	msgs := []sdk.ChatCompletionMessageParamUnion{sdk.SystemMessage(r.system())}
	for _, m := range r.turn.History {
		if strings.TrimSpace(m.Content) == "" {
			continue
		}
		switch m.Role {
		case "user":
			msgs = append(msgs, sdk.UserMessage(m.Content))
		case "assistant":
			msgs = append(msgs, sdk.AssistantMessage(m.Content))
		}
	}
	return append(msgs, sdk.UserMessage(r.turn.Request.Prompt))
}

// toolCall is a call the model asked for, assembled from stream fragments.
type toolCall struct {
	id, name string
	args     strings.Builder
}

// stepResult is what one model call produced.
type stepResult struct {
	text   string
	calls  []*toolCall
	finish string
	failed bool // the turn ended with an error
}

// step streams one model call.
func (r *Run) step(ctx context.Context, client *sdk.Client, params sdk.ChatCompletionNewParams, send func([]event.Event) error) (stepResult, error) {
	var res stepResult
	reqCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	wd := backend.NewWatchdog(r.cfg.Startup, r.cfg.Idle, func(err error) { stop(err) })
	defer wd.Stop()

	stream := client.Chat.Completions.NewStreaming(reqCtx, params)
	defer stream.Close()
	var (
		text     strings.Builder
		byIndex  = map[int64]*toolCall{}
		thinking bool
	)
	for stream.Next() {
		wd.Activity()
		chunk := stream.Current()
		if chunk.Model != "" {
			r.em.SetModel(chunk.Model)
		}
		if chunk.JSON.Usage.Valid() {
			u := chunk.Usage
			r.em.AddUsage(event.Usage{
				InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens,
				CacheReadTokens: u.PromptTokensDetails.CachedTokens, ReasoningTokens: u.CompletionTokensDetails.ReasoningTokens,
			})
		}
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			d := ch.Delta
			if rs := reasoning(d); rs != "" {
				thinking = true
				if err := send(r.em.ThinkingDelta(rs)); err != nil {
					return res, err
				}
			}
			if d.Content != "" {
				if thinking {
					thinking = false
					if err := send(r.em.ThinkingDone("")); err != nil {
						return res, err
					}
				}
				text.WriteString(d.Content)
				if err := send(r.em.TextDelta(d.Content)); err != nil {
					return res, err
				}
			}
			for _, tc := range d.ToolCalls {
				c := byIndex[tc.Index]
				if c == nil {
					c = &toolCall{}
					byIndex[tc.Index] = c
					res.calls = append(res.calls, c)
				}
				if tc.ID != "" {
					c.id = tc.ID
				}
				if tc.Function.Name != "" {
					c.name = tc.Function.Name
				}
				c.args.WriteString(tc.Function.Arguments)
			}
			if ch.FinishReason != "" {
				res.finish = ch.FinishReason
			}
		}
	}
	res.text = text.String()
	r.em.EndText(res.text)
	if thinking {
		if err := send(r.em.ThinkingDone("")); err != nil {
			return res, err
		}
	}
	if err := stream.Err(); err != nil {
		cause := context.Cause(reqCtx)
		switch {
		case errors.Is(cause, backend.ErrStartupTimeout):
			res.failed = true
			return res, send(r.em.Fail(fmt.Sprintf("The model endpoint sent nothing within %v (startup timeout); the call was stopped. Resume the mission to retry.", r.cfg.Startup), "startup_timeout"))
		case errors.Is(cause, backend.ErrIdleTimeout):
			res.failed = true
			return res, send(r.em.Fail(fmt.Sprintf("The model endpoint went silent for %v (idle timeout); the call was stopped. Resume the mission to retry.", r.cfg.Idle), "idle_timeout"))
		case ctx.Err() != nil:
			return res, ctx.Err()
		}
		res.failed = true
		return res, send(r.em.Fail("The model endpoint failed: "+errorMessage(err), "llm_error"))
	}
	if res.finish == "content_filter" && len(res.calls) == 0 {
		res.failed = true
		return res, send(r.em.Fail("The model endpoint stopped the answer (content filter).", "content_filter"))
	}
	for i, c := range res.calls {
		if c.id == "" {
			c.id = fmt.Sprintf("call_%d", i)
		}
	}
	return res, nil
}

// reasoning returns the reasoning text of a delta: compatible servers send
// it as reasoning_content (DeepSeek, vLLM) or reasoning (OpenRouter and
// others); OpenAI itself streams none.
func reasoning(d sdk.ChatCompletionChunkChoiceDelta) string {
	for _, k := range []string{"reasoning_content", "reasoning"} {
		// Extra fields are never Valid (the SDK knows no type for them);
		// their raw JSON is what counts.
		f, ok := d.JSON.ExtraFields[k]
		if !ok || f.Raw() == "" {
			continue
		}
		var s string
		if json.Unmarshal([]byte(f.Raw()), &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// errorMessage shortens the SDK's errors for users.
func errorMessage(err error) string {
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.StatusCode)
		}
		return fmt.Sprintf("%d %s", apiErr.StatusCode, msg)
	}
	return err.Error()
}

// assistantWithCalls is the assistant message that asked for calls, sent
// back before their results.
func assistantWithCalls(text string, calls []*toolCall) sdk.ChatCompletionMessageParamUnion {
	var a sdk.ChatCompletionAssistantMessageParam
	if text != "" {
		a.Content.OfString = sdk.String(text)
	}
	for _, c := range calls {
		a.ToolCalls = append(a.ToolCalls, sdk.ChatCompletionMessageToolCallUnionParam{
			OfFunction: &sdk.ChatCompletionMessageFunctionToolCallParam{
				ID:       c.id,
				Function: sdk.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.name, Arguments: c.args.String()},
			},
		})
	}
	return sdk.ChatCompletionMessageParamUnion{OfAssistant: &a}
}
