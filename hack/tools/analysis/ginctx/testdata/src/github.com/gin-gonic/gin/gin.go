// Package gin is the part of github.com/gin-gonic/gin's API the analyzer's
// tests need: a Context that satisfies context.Context.
package gin

import (
	"context"
	"net/http"
	"time"
)

type Context struct {
	Request *http.Request
}

func (c *Context) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *Context) Done() <-chan struct{}       { return nil }
func (c *Context) Err() error                  { return nil }
func (c *Context) Value(any) any               { return nil }
func (c *Context) Copy() *Context              { return c }

var _ context.Context = (*Context)(nil)
