package httpapi

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/config"
	"sortie.dev/services/library/internal/bundle"
	"sortie.dev/services/library/internal/repo"
)

// MissingHeader lists requested items (type/name) a bundle lacks.
const MissingHeader = "X-Library-Missing"

var revisionParam = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// nameList reads a comma-separated query list: absent means nil (all),
// present and empty means none.
func nameList(c *gin.Context, key string) []string {
	v, ok := c.GetQuery(key)
	if !ok {
		return nil
	}
	list := config.SplitList(v)
	if list == nil {
		list = []string{}
	}
	return list
}

// bundle answers a tar stream of the skills and tools a workspace needs at
// one revision, secrets revealed only to admins and services (anyone else
// gets <encrypted> in their place, at any revision). The files are read under the repository's read lock and
// written out after it is released, so a slow client never holds up saves.
func (h *Handler) bundle(c *gin.Context) {
	rev := c.Query("revision")
	if rev != "" && !revisionParam.MatchString(rev) {
		apierror.Abort(c, http.StatusBadRequest, CodeInvalidRevision, "revision must be a commit hash (4 to 40 lowercase hex digits)")
		return
	}
	req := bundle.Request{Skills: nameList(c, "skills"), Tools: nameList(c, "tools"), Layout: c.Query("layout")}
	var (
		b        *bundle.Bundle
		revision string
	)
	view := h.view(c)
	err := h.Repo.AtRevision(rev, func(fsys *repo.TreeFS, full string) error {
		var err error
		b, err = bundle.Build(fsys, req, view, fsys.When)
		revision = full
		return err
	})
	if errors.Is(err, repo.ErrUnknownRevision) {
		apierror.Abort(c, http.StatusNotFound, CodeUnknownRevision, "the library has no revision "+rev)
		return
	}
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, revision)
	if len(b.Missing) > 0 {
		c.Header(MissingHeader, strings.Join(b.Missing, ","))
	}
	c.Header("Content-Type", "application/x-tar")
	c.Status(http.StatusOK)
	if err := b.WriteTar(c.Writer); err != nil {
		h.Log.WarnContext(c.Request.Context(), "bundle not fully sent", "error", err.Error())
	}
}
