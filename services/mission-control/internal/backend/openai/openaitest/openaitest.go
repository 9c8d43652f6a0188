// Package openaitest is a scripted stand-in for an OpenAI-compatible chat
// completions endpoint, for the tests of the built-in backend and of the
// service that runs it.
package openaitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// Reply is what the stand-in endpoint answers to one request: SSE chunks
// (each sent as one `data:` line, then `data: [DONE]`), or an HTTP error.
type Reply struct {
	Chunks []string
	Status int    // non-zero: answer this status with body
	Body   string // error body
	// HangAfter > 0 stops sending after that many chunks and waits for the
	// client to go away; hangAfter < 0 sends nothing at all.
	HangAfter int
}

// Endpoint is a scripted OpenAI-compatible server speaking the real chat
// completions SSE wire format. Each request gets the next Reply; its base
// URL (for SORTIE_MC_OPENAI_BASE_URL) is URL.
type Endpoint struct {
	URL string

	srv     *httptest.Server
	mu      sync.Mutex
	replies []Reply
	reqs    []map[string]any
	auth    []string
}

// New starts an endpoint answering replies in order, closed when the test
// ends.
func New(t testing.TB, replies ...Reply) *Endpoint {
	e := &Endpoint{replies: replies}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	e.URL = e.srv.URL + "/v1"
	t.Cleanup(e.srv.Close)
	return e
}

// Add appends replies to the script.
func (e *Endpoint) Add(replies ...Reply) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.replies = append(e.replies, replies...)
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.reqs = append(e.reqs, body)
	e.auth = append(e.auth, r.Header.Get("Authorization"))
	if len(e.replies) == 0 {
		e.mu.Unlock()
		http.Error(w, `{"error":{"message":"script exhausted"}}`, http.StatusInternalServerError)
		return
	}
	rep := e.replies[0]
	e.replies = e.replies[1:]
	e.mu.Unlock()
	if rep.Status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.Status)
		io.WriteString(w, rep.Body)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	if rep.HangAfter < 0 {
		<-r.Context().Done()
		return
	}
	for i, c := range rep.Chunks {
		if rep.HangAfter > 0 && i == rep.HangAfter {
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "data: %s\n\n", c)
		fl.Flush()
	}
	io.WriteString(w, "data: [DONE]\n\n")
	fl.Flush()
}

// Requests returns the decoded request bodies so far.
func (e *Endpoint) Requests() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reqs)
}

// Auth returns the Authorization headers of the requests so far.
func (e *Endpoint) Auth() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.auth)
}

// Content is a chunk of assistant text.
func Content(s string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[{"index":0,"delta":{"role":"assistant","content":%q},"finish_reason":null}]}`, s)
}

// Reasoning is a chunk of reasoning in field (reasoning_content or reasoning).
func Reasoning(field, s string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[{"index":0,"delta":{%q:%q},"finish_reason":null}]}`, field, s)
}

// CallStart opens tool call index with its id and name.
func CallStart(index int, id, name string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]},"finish_reason":null}]}`, index, id, name)
}

// CallArgs is a fragment of tool call index's arguments.
func CallArgs(index int, frag string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":%q}}]},"finish_reason":null}]}`, index, frag)
}

// Finish ends the choice with reason (stop, tool_calls, length, ...).
func Finish(reason string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[{"index":0,"delta":{},"finish_reason":%q}]}`, reason)
}

// Usage is the final usage chunk (no choices).
func Usage(in, out, cached, reasoning int) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"test-model","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d},"completion_tokens_details":{"reasoning_tokens":%d}}}`, in, out, in+out, cached, reasoning)
}
