package backend

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWatchdog runs each case in a synctest bubble, where time is virtual:
// the sleeps below are the agent's timing under test, not waits, and a
// timer fires at exactly its time however loaded the machine is, so the
// bounds are exact and the test takes no real time.
func TestWatchdog(t *testing.T) {
	const unit = 40 * time.Millisecond
	tests := []struct {
		name          string
		startup, idle time.Duration
		// beats are the times of Activity calls after the start.
		beats []time.Duration
		stop  time.Duration // Stop at this time (0: never)
		want  error
		// by is the latest time the verdict may come (nil: none before
		// 12 units).
		by time.Duration
	}{
		{name: "silent from the start", startup: 3 * unit, idle: 100 * unit, want: ErrStartupTimeout, by: 8 * unit},
		{name: "silent after a line", startup: 3 * unit, idle: 3 * unit, beats: []time.Duration{unit}, want: ErrIdleTimeout, by: 9 * unit},
		{name: "regular activity", startup: 3 * unit, idle: 3 * unit, beats: []time.Duration{unit, 2 * unit, 4 * unit, 6 * unit, 8 * unit, 10 * unit}, stop: 11 * unit},
		{name: "stopped in time", startup: 3 * unit, idle: 3 * unit, stop: unit},
		{name: "no startup limit", idle: 3 * unit, stop: 12 * unit},
		{name: "no idle limit", startup: 3 * unit, beats: []time.Duration{unit}, stop: 12 * unit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				got := make(chan error, 2)
				start := time.Now()
				w := NewWatchdog(tc.startup, tc.idle, func(err error) { got <- err })
				for _, b := range tc.beats {
					time.Sleep(time.Until(start.Add(b)))
					w.Activity()
				}
				if tc.stop > 0 {
					time.Sleep(time.Until(start.Add(tc.stop)))
					w.Stop()
				}
				if tc.want == nil {
					select {
					case err := <-got:
						t.Fatalf("fired %v after %v", err, time.Since(start))
					case <-time.After(time.Until(start.Add(14 * unit))):
					}
					return
				}
				select {
				case err := <-got:
					if !errors.Is(err, tc.want) {
						t.Errorf("fired %v, want %v", err, tc.want)
					}
				case <-time.After(time.Until(start.Add(tc.by))):
					t.Fatalf("did not fire within %v", tc.by)
				}
				w.Stop()
				select {
				case err := <-got:
					t.Errorf("fired twice (%v)", err)
				case <-time.After(5 * unit):
				}
			})
		})
	}
}
