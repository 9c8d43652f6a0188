package agent_test

import (
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func TestStats(t *testing.T) {
	h := startAgent(t, nil)
	s, err := h.client.Stats(testwait.Context(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	switch s.Source {
	case agentapi.StatsSourceCgroupV1, agentapi.StatsSourceCgroupV2, agentapi.StatsSourceProc:
	default:
		t.Errorf("source %q", s.Source)
	}
	if s.CPU.UsageSeconds <= 0 || (s.CPU.Cores != nil && *s.CPU.Cores <= 0) {
		t.Errorf("cpu %+v", s.CPU)
	}
	if s.Memory.UsedBytes <= 0 || (s.Memory.LimitBytes != nil && *s.Memory.LimitBytes <= 0) {
		t.Errorf("memory %+v", s.Memory)
	}
	if s.Disk.Path != h.cfg.Workdir || s.Disk.TotalBytes <= 0 || s.Disk.UsedBytes < 0 || s.Disk.UsedBytes > s.Disk.TotalBytes {
		t.Errorf("disk %+v", s.Disk)
	}
	t.Logf("stats: %+v", s)
}
