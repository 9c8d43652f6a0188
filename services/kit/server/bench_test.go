package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/logging"
)

// BenchmarkMiddleware is what kit adds to every request: request id,
// metrics, the access log line (JSON, discarded), recovery and the body
// limit, around a handler that writes a small JSON object.
func BenchmarkMiddleware(b *testing.B) {
	srv, err := New(Options{Logger: logging.New(io.Discard, "bench", slog.LevelInfo)})
	if err != nil {
		b.Fatal(err)
	}
	srv.Engine.GET("/missions/:id", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": c.Param("id")}) })
	req := httptest.NewRequest(http.MethodGet, "/missions/42", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.Engine.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
