package testwait

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestScale(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
		bad  bool
	}{
		{env: "", want: time.Second},
		{env: "1", want: time.Second},
		{env: "2.5", want: 2500 * time.Millisecond},
		{env: "0.5", bad: true}, // would shorten every wait
		{env: "fast", bad: true},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(ScaleEnv, tc.env)
			defer func() {
				if r := recover(); (r != nil) != tc.bad {
					t.Fatalf("panic %v, want one: %v", r, tc.bad)
				}
			}()
			if got := Scaled(time.Second); got != tc.want {
				t.Fatalf("Scaled(1s) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUntil(t *testing.T) {
	t.Setenv(ScaleEnv, "")
	calls := 0
	if err := Until(context.Background(), time.Second, func() (bool, string) { calls++; return calls == 3, "" }); err != nil {
		t.Fatalf("a condition that comes true: %v", err)
	}
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3 (it stops once done)", calls)
	}
	err := Until(context.Background(), 30*time.Millisecond, func() (bool, string) { return false, "phase building" })
	if err == nil || !strings.Contains(err.Error(), "phase building") || !strings.Contains(err.Error(), "30ms") {
		t.Fatalf("a condition that never comes true: %v, want the bound and the last status", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Until(ctx, time.Hour, func() (bool, string) { return false, "" }); err == nil {
		t.Fatal("a cancelled wait must stop")
	}
}

func TestScaleRaisesTheBound(t *testing.T) {
	t.Setenv(ScaleEnv, "4")
	start := time.Now()
	_ = Until(context.Background(), 20*time.Millisecond, func() (bool, string) { return false, "" })
	if waited := time.Since(start); waited < 80*time.Millisecond {
		t.Fatalf("waited %v with scale 4 and a 20ms bound, want at least 80ms", waited)
	}
}

func TestFor(t *testing.T) {
	n := 0
	got := For(t, time.Second, "the third value", func() (int, bool) { n++; return n * 10, n == 3 })
	if got != 30 {
		t.Fatalf("For returned %d, want the value that was ok (30)", got)
	}
}
