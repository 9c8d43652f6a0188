package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/redistest"
)

func TestConnect(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()

	client, err := Connect(ctx, Options{URL: srv.URL, Password: "s3cret"})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer client.Close()
	if err := Check(client)(ctx); err != nil {
		t.Errorf("readiness check on a live server: %v", err)
	}

	if _, err := Connect(ctx, Options{URL: srv.URL, Password: "wrong", ConnectTimeout: 300 * time.Millisecond}); err == nil {
		t.Error("Connect with a wrong password succeeded")
	}
	if _, err := Connect(ctx, Options{URL: "http://nope"}); err == nil || !strings.Contains(err.Error(), "redis url") {
		t.Errorf("Connect with a bad URL: %v", err)
	}
}
