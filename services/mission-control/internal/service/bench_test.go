package service

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
)

// BenchmarkSSEFanOut stores events for one mission and measures their
// delivery to 100 SSE clients of the same user over real HTTP: events per
// second out of one run, and the latency from store to client (p50, p99).
func BenchmarkSSEFanOut(b *testing.B) {
	const clients = 100
	e := start(b, options{})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(b, &m)
	st := events.NewStore(e.redis.Client, 64<<10, 1<<20)

	var (
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	ready := make(chan struct{}, clients)
	want := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	for range clients {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/control/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(resp.Body)
			got, target := 0, -1
			var local []time.Duration
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"type":"status"`) {
					ready <- struct{}{}
					continue
				}
				if !strings.HasPrefix(line, "data: ") {
					continue
				}
				var ev struct{ Timestamp time.Time }
				_ = json.Unmarshal([]byte(line[6:]), &ev)
				local = append(local, time.Since(ev.Timestamp))
				got++
				if target < 0 {
					select {
					case target = <-want:
						want <- target
					default:
					}
				}
				if target >= 0 && got >= target {
					break
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	for range clients {
		<-ready
	}
	ev := event.Event{Kind: event.KindThinking, MissionID: m.ID, Content: "a line of the model's reasoning, streamed to every client"}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := st.Append(ctx, ev, events.AppendOptions{UserID: "dev"}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	want <- n
	wg.Wait()
	b.StopTimer()
	slices.Sort(latencies)
	if len(latencies) > 0 {
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(n*clients)/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	}
}
