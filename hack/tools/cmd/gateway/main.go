// Command gateway is the local front door of `make run`: it listens on one
// port and proxies each /api request to its service by Sortie's route
// table, as the Ingress does in a cluster.
//
//	gateway -listen :8080 -upstream auth=http://127.0.0.1:8181 -upstream library=...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"sortie.dev/hack/tools/gateway"
)

type upstreamFlag map[string]string

func (u upstreamFlag) String() string { return fmt.Sprint(map[string]string(u)) }

func (u upstreamFlag) Set(v string) error {
	svc, url, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q is not service=url", v)
	}
	u[svc] = url
	return nil
}

func main() {
	ups := upstreamFlag{}
	listen := flag.String("listen", ":8080", "address to listen on")
	flag.Var(ups, "upstream", "service=base URL, once per service")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*listen, ups, log); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(listen string, ups map[string]string, log *slog.Logger) error {
	g, err := gateway.New(ups, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: listen, Handler: g, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("gateway listening", "addr", listen, "upstreams", ups)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Streams never end by themselves: give requests a moment, then close.
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
