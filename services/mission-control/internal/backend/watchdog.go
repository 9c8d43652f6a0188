package backend

import (
	"errors"
	"sync"
	"time"
)

// The watchdog's verdicts.
var (
	// ErrStartupTimeout: nothing arrived within the startup timeout.
	ErrStartupTimeout = errors.New("startup timeout")
	// ErrIdleTimeout: nothing arrived for the idle timeout after the
	// first activity.
	ErrIdleTimeout = errors.New("idle timeout")
)

// Watchdog notices an agent that says nothing: it calls fire once, with
// ErrStartupTimeout when no Activity is reported within the startup
// timeout, or with ErrIdleTimeout when none is reported for the idle
// timeout after the first. A zero timeout disables that check. It is safe
// for concurrent use.
type Watchdog struct {
	startup, idle time.Duration
	fire          func(error)

	mu       sync.Mutex
	t        *time.Timer
	deadline time.Time
	seen     bool
	done     bool
}

// NewWatchdog starts a watchdog; Stop it when the agent has ended.
func NewWatchdog(startup, idle time.Duration, fire func(error)) *Watchdog {
	w := &Watchdog{startup: startup, idle: idle, fire: fire}
	if startup > 0 {
		w.mu.Lock()
		w.deadline = time.Now().Add(startup)
		w.t = time.AfterFunc(startup, w.expire)
		w.mu.Unlock()
	}
	return w
}

// Activity reports that the agent said something.
func (w *Watchdog) Activity() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.seen = true
	if w.idle <= 0 {
		if w.t != nil {
			w.t.Stop()
		}
		return
	}
	// Move the deadline only; a timer that fires early re-arms itself,
	// which keeps this cheap on every line or chunk.
	w.deadline = time.Now().Add(w.idle)
	if w.t == nil {
		w.t = time.AfterFunc(w.idle, w.expire)
	}
}

// Stop ends the watchdog: fire is not called after it (a call already
// under way may still finish).
func (w *Watchdog) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.t != nil {
		w.t.Stop()
	}
}

func (w *Watchdog) expire() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	if left := time.Until(w.deadline); left > 0 {
		w.t.Reset(left)
		w.mu.Unlock()
		return
	}
	w.done = true
	err := ErrStartupTimeout
	if w.seen {
		err = ErrIdleTimeout
	}
	w.mu.Unlock()
	w.fire(err)
}
