package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"unicode/utf8"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// The init log lives on the workspace's volume, where the workload can
// write to it: it may be any size, sparse, binary. So it is served one
// bounded page at a time, and read no further than the page (and, for a
// log of at most agentapi.MaxInitLogCount, one pass to count its lines).

// ParseInitLogQuery reads the query of GET /v1/init/log: offset and limit
// (a page from offset), or tail_lines and limit (the last lines), limit
// defaulting to agentapi.MaxInitLogPage.
func ParseInitLogQuery(v url.Values) (agentapi.InitLogQuery, error) {
	q := agentapi.InitLogQuery{Limit: agentapi.MaxInitLogPage}
	num := func(key string, max int64) (int64, bool, error) {
		s := v.Get(key)
		if s == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > max {
			return 0, false, fmt.Errorf("%w: %s must be a whole number from 0 to %d", errBadRequest, key, max)
		}
		return n, true, nil
	}
	off, hasOff, err := num("offset", 1<<62)
	if err != nil {
		return q, err
	}
	lim, hasLim, err := num("limit", agentapi.MaxInitLogPage)
	if err != nil {
		return q, err
	}
	tail, hasTail, err := num("tail_lines", agentapi.MaxInitLogTailLines)
	if err != nil {
		return q, err
	}
	switch {
	case hasLim && lim == 0:
		return q, fmt.Errorf("%w: limit must be at least 1", errBadRequest)
	case hasTail && tail == 0:
		return q, fmt.Errorf("%w: tail_lines must be at least 1", errBadRequest)
	case hasTail && hasOff:
		return q, fmt.Errorf("%w: give offset or tail_lines, not both", errBadRequest)
	}
	if hasLim {
		q.Limit = lim
	}
	q.Offset, q.TailLines = off, int(tail)
	return q, nil
}

// initLog serves one page of the log. An offset at the end gives an empty
// page; past the end, 416.
func (a *Agent) initLog(w http.ResponseWriter, r *http.Request) {
	q, err := ParseInitLogQuery(r.URL.Query())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := os.Open(filepath.Join(a.cfg.StateDir, "init.log"))
	var size int64
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No run has written anything yet: an empty log.
		f, err = nil, nil
	case err != nil:
		a.fail(w, r, err)
		return
	default:
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if !fi.Mode().IsRegular() {
			// A fifo or a device the workload put there would block or
			// never end.
			a.fail(w, r, fmt.Errorf("%w: the init log is not a regular file", errBadRequest))
			return
		}
		size = fi.Size()
	}
	var page logPage
	switch {
	case q.TailLines == 0 && q.Offset > size:
		err = fmt.Errorf("%w: offset %d, log size %d", errOffset, q.Offset, size)
	case f == nil:
	case q.TailLines > 0:
		page, err = tailPage(f, size, q.TailLines, q.Limit)
	default:
		page, err = rangePage(f, size, q.Offset, q.Limit)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	lines := int64(-1)
	if f != nil && size <= agentapi.MaxInitLogCount {
		if lines, err = countLines(r.Context(), f, size); err != nil {
			a.fail(w, r, err)
			return
		}
	} else if f == nil {
		lines = 0
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set(agentapi.HeaderLogSize, strconv.FormatInt(size, 10))
	hd.Set(agentapi.HeaderLogOffset, strconv.FormatInt(page.start, 10))
	hd.Set(agentapi.HeaderLogNextOffset, strconv.FormatInt(page.end, 10))
	if lines >= 0 {
		hd.Set(agentapi.HeaderLogLines, strconv.FormatInt(lines, 10))
	}
	hd.Set("Content-Length", strconv.FormatInt(page.end-page.start, 10))
	w.WriteHeader(http.StatusOK)
	switch {
	case page.data != nil:
		_, _ = w.Write(page.data)
	case page.end > page.start:
		_, _ = io.Copy(w, io.NewSectionReader(f, page.start, page.end-page.start))
	}
}

// logPage is the bytes [start, end) of the log; data holds them when they
// have been read already.
type logPage struct {
	start, end int64
	data       []byte
}

// rangePage is up to limit bytes from offset. A page cut by the limit
// inside a UTF-8 sequence ends before it (unless that would leave it
// empty), so that pages read one after another join up into valid text.
func rangePage(f io.ReaderAt, size, offset, limit int64) (logPage, error) {
	end := min(size, offset+limit)
	if end == size || end-offset < utf8.UTFMax {
		return logPage{start: offset, end: end}, nil
	}
	var last [utf8.UTFMax]byte
	if _, err := f.ReadAt(last[:], end-utf8.UTFMax); err != nil {
		return logPage{}, fmt.Errorf("read init log: %w", err)
	}
	return logPage{start: offset, end: end - int64(agentapi.PartialRune(last[:]))}, nil
}

// tailPage is the last n lines of the log within its last limit bytes,
// without the line breaks at its end, as the REST API shows it.
func tailPage(f io.ReaderAt, size int64, lines int, limit int64) (logPage, error) {
	from := max(0, size-limit)
	buf := make([]byte, size-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return logPage{}, fmt.Errorf("read init log: %w", err)
	}
	buf = bytes.TrimRight(buf[:n], "\n")
	start := 0
	rest := buf
	for range lines {
		i := bytes.LastIndexByte(rest, '\n')
		if i < 0 {
			rest = nil
			break
		}
		start, rest = i+1, rest[:i]
	}
	if rest == nil {
		start = 0
		// A window that begins inside a rune begins after it.
		for start < len(buf) && start < utf8.UTFMax-1 && from > 0 && !utf8.RuneStart(buf[start]) {
			start++
		}
	}
	return logPage{start: from + int64(start), end: from + int64(len(buf)), data: buf[start:]}, nil
}

// countLines counts the lines of the first size bytes of f as the REST
// API shows them: line breaks at the end do not start more lines.
func countLines(ctx context.Context, f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 256<<10)
	var breaks, trailing int64
	text := false
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		chunk := buf[:n]
		breaks += int64(bytes.Count(chunk, []byte{'\n'}))
		if i := lastNot(chunk, '\n'); i >= 0 {
			text, trailing = true, int64(len(chunk)-i-1)
		} else {
			trailing += int64(n)
		}
		off += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break // shorter than it was: count what there is
			}
			return 0, fmt.Errorf("read init log: %w", err)
		}
	}
	if !text {
		return 0, nil
	}
	return breaks - trailing + 1, nil
}

func lastNot(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != c {
			return i
		}
	}
	return -1
}
