// Package testwait is how Sortie's tests wait. Every bound a test waits
// within goes through Scaled, so that a slow or loaded machine raises one
// factor, SORTIE_TEST_SCALE, instead of a test's constants; and Eventually
// is the one polling loop, so no test sleeps to wait for a condition.
//
// The constants a test passes are what the condition takes on an idle
// two-core machine with a generous margin: a timeout is a bound on a
// failure, never a measurement (benchmarks measure).
package testwait

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// ScaleEnv names the variable holding the factor every wait is multiplied
// by: a number of at least 1 (default 1).
const ScaleEnv = "SORTIE_TEST_SCALE"

// Scale returns the factor of SORTIE_TEST_SCALE. A value that is not a
// number of at least 1 panics: a typo must not silently shorten waits.
func Scale() float64 {
	v := os.Getenv(ScaleEnv)
	if v == "" {
		return 1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 {
		panic(fmt.Sprintf("%s=%q: want a number of at least 1", ScaleEnv, v))
	}
	return f
}

// Scaled returns d multiplied by the scale factor.
func Scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Scale())
}

// Context returns a context that ends Scaled(d) from now, or when the test
// ends.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), Scaled(d))
	tb.Cleanup(cancel)
	return ctx
}

// After is time.After(Scaled(d)), for a select that bounds a wait on a
// channel.
func After(d time.Duration) <-chan time.Time {
	return time.After(Scaled(d))
}

// Poll intervals: the first checks come quickly, so a condition that holds
// at once costs microseconds, and then back off to a steady pace that does
// not load the machine the condition is waiting on.
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 250 * time.Millisecond
)

// Eventually calls cond until it reports done, and fails the test with
// what and cond's last status if that does not happen within Scaled(within).
// The status says what was seen instead ("phase building"), so a timeout
// explains itself.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() (done bool, status string)) {
	tb.Helper()
	if err := Until(tb.Context(), within, cond); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// For calls get until it reports ok and returns that value, failing the
// test as Eventually does.
func For[T any](tb testing.TB, within time.Duration, what string, get func() (T, bool)) T {
	tb.Helper()
	var v T
	Eventually(tb, within, what, func() (bool, string) {
		var ok bool
		v, ok = get()
		return ok, fmt.Sprintf("%+v", v)
	})
	return v
}

// True is Eventually for a condition without a status to report.
func True(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, within, what, func() (bool, string) { return cond(), "" })
}

// Until is the loop of Eventually for code without a testing.TB (TestMain,
// a harness starting processes): it returns nil once cond is done, or an
// error naming the bound and the last status.
func Until(ctx context.Context, within time.Duration, cond func() (done bool, status string)) error {
	bound := Scaled(within)
	timer := time.NewTimer(bound)
	defer timer.Stop()
	interval := firstInterval
	for {
		done, status := cond()
		if done {
			return nil
		}
		select {
		case <-timer.C:
			if status == "" {
				return fmt.Errorf("not within %v", bound)
			}
			return fmt.Errorf("not within %v; last seen: %s", bound, status)
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting: %w", ctx.Err())
		case <-time.After(interval):
		}
		interval = min(interval*2, maxInterval)
	}
}
