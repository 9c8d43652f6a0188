package events

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/mission-control/internal/event"
)

// BenchmarkAppend measures storing and publishing one event (the Lua
// script: sequence, log, user stream, pub/sub) on a local redis-server.
func BenchmarkAppend(b *testing.B) {
	rs := redistest.Start(b)
	s := NewStore(rs.Client, 64<<10, 100000)
	ctx := context.Background()
	for _, k := range []event.Kind{event.KindThinking, event.KindTextDelta} {
		b.Run(string(k), func(b *testing.B) {
			ev := event.Event{Kind: k, MissionID: "m-" + string(k), Content: "some words of a model's thinking, about sixty bytes long", Delta: "word "}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Append(ctx, ev, AppendOptions{UserID: "u", TurnID: "t"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReplay10k reads back a mission of 10,000 stored events.
func BenchmarkReplay10k(b *testing.B) {
	rs := redistest.Start(b)
	s := NewStore(rs.Client, 64<<10, 100000)
	ctx := context.Background()
	for i := range 10000 {
		ev := event.Event{Kind: event.KindThinking, MissionID: "m", Content: fmt.Sprint("thought number ", i)}
		if _, _, err := s.Append(ctx, ev, AppendOptions{UserID: "u"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		evs, err := s.Replay(ctx, "m", nil, 50000, 0)
		if err != nil || len(evs) != 10000 {
			b.Fatal(err, len(evs))
		}
	}
}

// BenchmarkRawXAdd is go-redis's bare XADD on the same server, the floor
// the append script is compared with.
func BenchmarkRawXAdd(b *testing.B) {
	rs := redistest.Start(b)
	ctx := context.Background()
	for b.Loop() {
		if err := rs.Client.XAdd(ctx, &redisXAdd{Stream: "raw", Values: []any{"e", `{"type":"thinking","content":"some words of a model's thinking"}`}}).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

type redisXAdd = redis.XAddArgs
