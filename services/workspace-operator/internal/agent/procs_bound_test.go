package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agent"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// A process that writes far more than SORTIE_AGENT_PROCESS_MAX_OUTPUT
// keeps only the last of it on the volume; offsets still name the same
// bytes, and a read from the start begins where the kept output does.
func TestProcessOutputBounded(t *testing.T) {
	const max = 1 << 20
	h := startAgent(t, func(c *agent.Config) { c.ProcessMaxOutput = max })
	var want bytes.Buffer
	for i := 1; i <= 3_000_000; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteByte('\n')
	}
	ctx := testwait.Context(t, 60*time.Second)
	p, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{ID: "chatty", Command: "seq 1 3000000"})
	if err != nil {
		t.Fatal(err)
	}
	final := waitExited(t, h.client, p.ID)
	if final.OutputBytes != int64(want.Len()) {
		t.Fatalf("output_bytes %d, want %d", final.OutputBytes, want.Len())
	}
	kept := final.OutputBytes - final.OutputStart
	if final.OutputStart == 0 || kept > max+64<<10 {
		t.Errorf("output_start %d of %d: %d bytes kept, want at most %d", final.OutputStart, final.OutputBytes, kept, max+64<<10)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(h.cfg.StateDir, "procs", "chatty", "output"), &st); err != nil {
		t.Fatal(err)
	}
	if disk := st.Blocks * 512; disk > 2*max {
		t.Errorf("the output takes %d bytes on disk, want at most %d", disk, 2*max)
	}

	var got bytes.Buffer
	first := int64(-1)
	eof := false
	for ev, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: 0}) {
		if err != nil {
			t.Fatal(err)
		}
		if first < 0 {
			first = ev.Offset
		}
		got.Write(ev.Bytes())
		eof = eof || ev.EOF
	}
	if first != final.OutputStart || !eof || !bytes.Equal(got.Bytes(), want.Bytes()[final.OutputStart:]) {
		t.Errorf("read from 0: started at %d (kept from %d), %d bytes, eof %v; want the kept tail exactly", first, final.OutputStart, got.Len(), eof)
	}
	// The record survives a restart of the agent.
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "procs", "chatty", "meta.json"))
	if err != nil || !bytes.Contains(b, []byte(`"output_start": `+strconv.FormatInt(final.OutputStart, 10))) {
		t.Errorf("meta.json %s, %v; want output_start %d", b, err, final.OutputStart)
	}
}
