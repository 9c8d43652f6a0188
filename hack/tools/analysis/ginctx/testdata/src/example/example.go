package example

import (
	"context"

	"github.com/gin-gonic/gin"
	"sigs.k8s.io/client"
)

// logger has the shape of slog's InfoContext.
type logger interface {
	InfoContext(ctx context.Context, msg string, args ...any)
}

type handler struct {
	c   client.Client
	log logger
}

func println(args ...any) {}

func (h *handler) get(c *gin.Context) {
	var obj struct{}
	_ = h.c.Get(c, client.ObjectKey{Name: "x"}, &obj) // want `\*gin.Context used as a context.Context`
	_ = h.c.Get(c.Request.Context(), client.ObjectKey{Name: "x"}, &obj)
	h.log.InfoContext(c, "hello") // want `\*gin.Context used as a context.Context`
	h.log.InfoContext(c.Request.Context(), "hello")
	ctx, cancel := context.WithCancel(c) // want `\*gin.Context used as a context.Context`
	defer cancel()
	_ = ctx
	var a context.Context = c // want `\*gin.Context used as a context.Context`
	a = c.Copy()              // want `\*gin.Context used as a context.Context`
	_ = a
	_ = context.Context(c)   // want `\*gin.Context used as a context.Context`
	_ = holder{ctx: c}       // want `\*gin.Context used as a context.Context`
	_ = []context.Context{c} // want `\*gin.Context used as a context.Context`
	variadic(c)              // want `\*gin.Context used as a context.Context`
	println(c)               // any is not a context: not reported
	go func() context.Context {
		return c // want `\*gin.Context used as a context.Context`
	}()
}

func fromGin(c *gin.Context) context.Context {
	return c // want `\*gin.Context used as a context.Context`
}

func fine(c *gin.Context) *gin.Context { return c }

type holder struct{ ctx context.Context }

func variadic(ctxs ...context.Context) {}
