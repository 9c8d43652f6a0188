package config

import (
	"fmt"
	"time"

	"sortie.dev/services/kit/config"
)

// Limits bound what one user, or one agent, can make mission-control hold
// in memory or in Redis, so that nobody can take the platform down (issue
// 14). What happens at each is documented on its field.
type Limits struct {
	// StreamsPerUser is how many SSE streams one user may have open
	// across every replica; past it a stream is refused with 429
	// too_many_streams and Retry-After. StreamSlotTTL is how long a slot
	// outlives its replica: each open stream renews its slot in Redis, so
	// the slots of a replica that crashed come back after it.
	StreamsPerUser int
	StreamSlotTTL  time.Duration
	// MessageBytes is the largest user message (its content, in bytes);
	// a longer one is refused with 413 message_too_large.
	MessageBytes int
	// QueuedPerMission is how many messages may wait in one mission's
	// queue, QueuedBytesPerUser how many bytes of content in all of a
	// user's queues; a message past either is refused with 429 queue_full
	// (nothing stored).
	QueuedPerMission   int
	QueuedBytesPerUser int
	// EventsPage is the most events one GET …/events returns, and what it
	// returns when no limit is given; a larger limit is clamped to it
	// (page with offset). At least 1000: the original dashboard asks for
	// pages of 1000 and stops at the first shorter one.
	EventsPage int
	// OutputLine is the longest line of agent output held whole; a longer
	// JSON line is kept with its strings cut to ToolOutputLimit, any other
	// is dropped with an error event, and the run goes on.
	OutputLine int
}

// bodyLimit is the kit server's request body limit (1 MiB): a message must
// fit in it with its JSON escaping.
const bodyLimit = 1 << 20

// The missions list's paging, fixed since the seed: its default and the
// most it returns (a larger limit is clamped).
const (
	MissionsPageDefault = 50
	MissionsPageMax     = 500
)

// bindLimits binds the limits; the returned function checks them after
// Parse, against the text limit they depend on.
func (c *Config) bindLimits(b *config.Binder) func(p *config.Problems) {
	l := &c.Limits
	b.Int(&l.StreamsPerUser, "max-streams-per-user", "SORTIE_MC_MAX_STREAMS_PER_USER", 32,
		"SSE streams one user may have open across all replicas; more are refused with 429")
	b.Duration(&l.StreamSlotTTL, "stream-slot-ttl", "SORTIE_MC_STREAM_SLOT_TTL", 30*time.Second,
		"how long an open stream's slot lasts in Redis without renewal (the slots of a crashed replica return after it)")
	b.Int(&l.MessageBytes, "max-message-bytes", "SORTIE_MC_MAX_MESSAGE_BYTES", 256<<10,
		"largest user message in bytes; longer ones are refused with 413")
	b.Int(&l.QueuedPerMission, "max-queued-per-mission", "SORTIE_MC_MAX_QUEUED_PER_MISSION", 100,
		"messages that may wait in one mission's queue; more are refused with 429")
	b.Int(&l.QueuedBytesPerUser, "max-queued-bytes-per-user", "SORTIE_MC_MAX_QUEUED_BYTES_PER_USER", 8<<20,
		"bytes of message content that may wait in all of one user's queues; more are refused with 429")
	b.Int(&l.EventsPage, "events-page-max", "SORTIE_MC_EVENTS_PAGE_MAX", 1000,
		"most events one GET /missions/:id/events returns (and its default); a larger limit is clamped")
	b.Int(&l.OutputLine, "max-output-line", "SORTIE_MC_MAX_OUTPUT_LINE", 1<<20,
		"longest line of agent output held whole; longer JSON lines are kept with their strings cut, others dropped with an error event")
	return func(p *config.Problems) {
		p.Check(l.StreamsPerUser >= 1 && l.StreamsPerUser <= 10000, "SORTIE_MC_MAX_STREAMS_PER_USER must be between 1 and 10000")
		p.Check(l.StreamSlotTTL >= 3*time.Second && l.StreamSlotTTL <= time.Hour, "SORTIE_MC_STREAM_SLOT_TTL must be between 3s and 1h")
		p.Check(l.MessageBytes >= 1024 && l.MessageBytes <= bodyLimit*3/4,
			fmt.Sprintf("SORTIE_MC_MAX_MESSAGE_BYTES must be between 1024 and %d (requests are limited to %d bytes)", bodyLimit*3/4, bodyLimit))
		p.Check(l.QueuedPerMission >= 1 && l.QueuedPerMission <= 100000, "SORTIE_MC_MAX_QUEUED_PER_MISSION must be between 1 and 100000")
		p.Check(l.QueuedBytesPerUser >= l.MessageBytes,
			"SORTIE_MC_MAX_QUEUED_BYTES_PER_USER must be at least SORTIE_MC_MAX_MESSAGE_BYTES (one message must fit)")
		p.Check(l.EventsPage >= 1000 && l.EventsPage <= 50000, "SORTIE_MC_EVENTS_PAGE_MAX must be between 1000 (the dashboard's page) and 50000")
		p.Check(l.OutputLine >= 2*c.ToolOutputLimit+4096 && l.OutputLine <= 256<<20,
			"SORTIE_MC_MAX_OUTPUT_LINE must be at least twice SORTIE_MC_TOOL_OUTPUT_LIMIT plus 4096 bytes (a cut line must fit) and at most 256 MiB")
	}
}
