// Package redisconn opens the Redis connection a service depends on and
// proves it works before the service reports itself ready.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options locate a Redis server.
type Options struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	URL string
	// Password, when set, overrides the URL's password (it usually comes
	// from a Secret file, not the URL).
	Password string
	// ConnectTimeout bounds the retries of the first ping [30s]: Redis may
	// start after the service in a fresh install.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Connect parses the URL, then pings until Redis answers or the timeout
// passes. The returned client is safe for concurrent use.
func Connect(ctx context.Context, opts Options) (*redis.Client, error) {
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if opts.Password != "" {
		ro.Password = opts.Password
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	client := redis.NewClient(ro)
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = client.Ping(ctx).Err()
		if err == nil {
			opts.Logger.Info("connected to redis", "addr", ro.Addr, "db", ro.DB)
			return client, nil
		}
		if attempt == 1 || attempt%10 == 0 {
			opts.Logger.Warn("redis is not answering yet", "addr", ro.Addr, "error", err.Error())
		}
		select {
		case <-ctx.Done():
			_ = client.Close()
			return nil, fmt.Errorf("redis at %s did not answer within %s: %w", ro.Addr, opts.ConnectTimeout, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Check returns a readiness check for server.AddReadinessCheck.
func Check(client *redis.Client) func(context.Context) error {
	return func(ctx context.Context) error { return client.Ping(ctx).Err() }
}

// IsOOM reports whether err, anywhere in its chain, is Redis refusing a
// write because it has reached maxmemory (policy noeviction): "OOM command
// not allowed when used memory > 'maxmemory'". It is the same for a plain
// command and for a write inside a Lua script (where Redis 6 wraps it in
// "ERR Error running script ... -OOM ..."); for MULTI, pass the result
// through TxErr first. A script or transaction refused at its first write
// wrote nothing, so a caller can answer "storage full, retry later" (503)
// instead of treating it as a bug, while reads go on working.
func IsOOM(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "OOM ") || strings.Contains(msg, "OOM command not allowed")
}

// TxErr is the error of a MULTI/EXEC (TxPipelined): when Redis discarded the
// transaction (EXECABORT) because a queued command was refused, it returns
// that command's error, which says why (OOM, say); otherwise err.
func TxErr(cmds []redis.Cmder, err error) error {
	if err == nil || !redis.IsExecAbortError(err) {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil && !redis.IsExecAbortError(cerr) {
			return fmt.Errorf("%w (transaction discarded)", cerr)
		}
	}
	return err
}
