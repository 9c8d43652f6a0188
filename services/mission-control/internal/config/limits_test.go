package config

import (
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, extra map[string]string) (*Config, error) {
	t.Helper()
	vars := map[string]string{"SORTIE_REDIS_URL": "redis://r:6379/0", "SORTIE_AUTH_DEV_MODE": "true", "SORTIE_WORKSPACES_URL": "http://ws"}
	for k, v := range extra {
		vars[k] = v
	}
	return Load(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
}

func TestLimitsDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{StreamsPerUser: 32, StreamSlotTTL: 30 * time.Second, MessageBytes: 256 << 10, QueuedPerMission: 100,
		QueuedBytesPerUser: 8 << 20, EventsPage: 1000, OutputLine: 1 << 20}
	if c.Limits != want || c.ToolOutputLimit != 64<<10 {
		t.Errorf("limits %+v (text %d), want %+v", c.Limits, c.ToolOutputLimit, want)
	}
}

// Nonsense limits are refused at start, each naming its variable.
func TestLimitsRefuseNonsense(t *testing.T) {
	tests := map[string]string{
		"SORTIE_MC_MAX_STREAMS_PER_USER":      "0",
		"SORTIE_MC_STREAM_SLOT_TTL":           "1s",
		"SORTIE_MC_MAX_MESSAGE_BYTES":         "2000000",
		"SORTIE_MC_MAX_QUEUED_PER_MISSION":    "-1",
		"SORTIE_MC_MAX_QUEUED_BYTES_PER_USER": "1000",
		"SORTIE_MC_EVENTS_PAGE_MAX":           "999",
		"SORTIE_MC_MAX_OUTPUT_LINE":           "65536",
		"SORTIE_MC_TOOL_OUTPUT_LIMIT":         "100",
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, map[string]string{name: value})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: %v", name, value, err)
			}
		})
	}
	if _, err := load(t, map[string]string{"SORTIE_MC_MAX_STREAMS_PER_USER": "lots"}); err == nil {
		t.Error("a limit that is not a number was accepted")
	}
}
