package procs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// holeAlign is what a dropped prefix is rounded down to: filesystems free
// whole blocks only.
const holeAlign = 64 << 10

// bound keeps a process's output within Options.MaxOutput while it runs
// (wait trims it once more at the end).
func (m *Manager) bound(p *proc) {
	tick := time.NewTicker(m.opts.TrimEvery)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		if err := m.trim(p); err != nil {
			// A filesystem that cannot punch holes: the bound cannot hold
			// here, and trying again every second would not help.
			m.opts.Log.Warn("bound process output; its output is no longer bounded", "id", p.id(), "err", err)
			<-p.done
			return
		}
	}
}

// trim drops the output before the last MaxOutput bytes. The new start is
// recorded before the hole is punched, so a reader that could see the
// hole's zeros sees the new start first (Output.Stream looks after each
// read).
func (m *Manager) trim(p *proc) error {
	p.trimming.Lock()
	defer p.trimming.Unlock()
	path := filepath.Join(p.dir, outputFile)
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	start := p.outputStart()
	keepFrom := (fi.Size() - m.opts.MaxOutput) / holeAlign * holeAlign
	if keepFrom <= start {
		return nil
	}
	p.mu.Lock()
	p.meta.OutputStart = keepFrom
	md := p.meta
	p.mu.Unlock()
	if err := writeMeta(p.dir, md); err != nil {
		m.opts.Log.Warn("record dropped output", "id", md.ID, "err", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, keepFrom-start)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return fmt.Errorf("the filesystem cannot drop old output: %w", err)
	}
	if err != nil {
		return fmt.Errorf("punch a hole in the output: %w", err)
	}
	return nil
}

func (p *proc) id() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.ID
}
