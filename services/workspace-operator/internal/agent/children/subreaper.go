package children

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes orphaned descendants of this process re-parent to it
// rather than to PID 1, so an agent that is not PID 1 (a shared process
// namespace, a test) still sees, and must reap, the orphans of its children.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}
