package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/library/internal/repo"
)

// StatusJSON is the answer of GET /api/library/status. clean and
// modified_files are kept for the original clients: the work tree never
// holds uncommitted changes here, since every save is a commit.
type StatusJSON struct {
	Branch            string     `json:"branch"`
	Head              string     `json:"head"`
	Remote            *string    `json:"remote"`
	Clean             bool       `json:"clean"`
	ModifiedFiles     []string   `json:"modified_files"`
	Ahead             int        `json:"ahead"`
	Behind            int        `json:"behind"`
	PushPending       bool       `json:"push_pending"`
	LastPushError     *string    `json:"last_push_error"`
	LastPushErrorAt   *time.Time `json:"last_push_error_at"`
	LastPushAt        *time.Time `json:"last_push_at"`
	LastFetchAt       *time.Time `json:"last_fetch_at"`
	PublishedRevision *string    `json:"published_revision"`
	EncryptionEnabled bool       `json:"encryption_enabled"`
}

// SyncJSON is the answer of the sync operations.
type SyncJSON struct {
	Action   string `json:"action"`
	Revision string `json:"revision"`
	Previous string `json:"previous"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (h *Handler) status(c *gin.Context) {
	st, err := h.Repo.Status(c.Request.Context())
	if err != nil {
		h.fail(c, err)
		return
	}
	out := StatusJSON{
		Branch: st.Branch, Head: st.Head, Clean: true, ModifiedFiles: []string{},
		Ahead: st.Ahead, Behind: st.Behind, PushPending: st.PushPending,
		LastPushError: optString(st.LastPushError), LastPushErrorAt: optTime(st.LastPushErrAt),
		LastPushAt: optTime(st.LastPushAt), LastFetchAt: optTime(st.LastFetchAt),
		EncryptionEnabled: h.Sealer.Enabled(),
	}
	if st.Remote {
		out.Remote = optString(h.Remote)
	}
	if h.Published != nil {
		out.PublishedRevision = optString(h.Published())
	}
	c.Header(RevisionHeader, st.Head)
	c.JSON(http.StatusOK, out)
}

func (h *Handler) sync(c *gin.Context) {
	h.syncOp(c, h.Repo.Sync)
}

func (h *Handler) forceSync(c *gin.Context) {
	h.syncOp(c, h.Repo.ForceSync)
}

func (h *Handler) forcePush(c *gin.Context) {
	h.syncOp(c, h.Repo.ForcePush)
}

func (h *Handler) syncOp(c *gin.Context, op func(ctx contextT) (repo.SyncResult, error)) {
	res, err := op(withoutCancel(c))
	if err != nil {
		h.failRemote(c, err)
		return
	}
	c.Header(RevisionHeader, res.Revision)
	c.JSON(http.StatusOK, SyncJSON{Action: res.Action, Revision: res.Revision, Previous: res.Previous})
}
