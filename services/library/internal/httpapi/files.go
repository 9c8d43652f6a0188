package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/library/internal/items"
	"sortie.dev/services/library/internal/repo"
)

type contextT = context.Context

// withoutCancel detaches an operation on the repository from the request:
// a client that hangs up must not abort a push or fetch halfway.
func withoutCancel(c *gin.Context) context.Context {
	return context.WithoutCancel(c.Request.Context())
}

// skillOnly answers the file routes for types that have no extra files.
func skillOnly(c *gin.Context) bool {
	k, ok := kind(c)
	if !ok {
		return false
	}
	if k != items.Skill {
		apierror.Abort(c, http.StatusBadRequest, items.CodeUnsupportedOperation, "only skills have extra files")
		return false
	}
	return true
}

func filePath(c *gin.Context) string { return strings.TrimPrefix(c.Param("path"), "/") }

func (h *Handler) getFile(c *gin.Context) {
	if !skillOnly(c) {
		return
	}
	var f items.SkillFileItem
	err := h.Repo.Read(func(fsys fsFS) error {
		var err error
		f, err = items.SkillFile(fsys, c.Param("name"), filePath(c), h.view(c))
		return err
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, f)
}

func (h *Handler) saveFile(c *gin.Context) {
	if !skillOnly(c) {
		return
	}
	name, file := c.Param("name"), filePath(c)
	if err := items.ValidName(name); err != nil {
		h.fail(c, err)
		return
	}
	if err := items.ValidFilePath(file); err != nil {
		h.fail(c, err)
		return
	}
	var body json.RawMessage
	if err := apierror.DecodeJSON(c.Request, &body); err != nil {
		apierror.Respond(c, err)
		return
	}
	view := h.view(c)
	commit, err := h.change(c, func(tx *repo.Tx) (string, error) {
		ch, err := items.PrepareSkillFile(tx.FS(), name, file, body, view)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Update skill %s: %s", name, file), apply(tx, ch)
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	var f items.SkillFileItem
	err = h.Repo.Read(func(fsys fsFS) error {
		var err error
		f, err = items.SkillFile(fsys, name, file, view)
		return err
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, commit.Revision)
	c.JSON(http.StatusOK, f)
}

func (h *Handler) removeFile(c *gin.Context) {
	if !skillOnly(c) {
		return
	}
	name, file := c.Param("name"), filePath(c)
	commit, err := h.change(c, func(tx *repo.Tx) (string, error) {
		ch, err := items.DeleteSkillFile(tx.FS(), name, file)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Delete skill %s: %s", name, file), apply(tx, ch)
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, commit.Revision)
	c.Status(http.StatusNoContent)
}

// CommitJSON is one entry of an item's history.
type CommitJSON struct {
	Revision string     `json:"revision"`
	Message  string     `json:"message"`
	Author   AuthorJSON `json:"author"`
	Time     time.Time  `json:"time"`
}

// AuthorJSON is a commit's author.
type AuthorJSON struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

const (
	defaultHistory = 50
	maxHistory     = 500
)

func (h *Handler) history(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	name := c.Param("name")
	if err := items.ValidName(name); err != nil {
		h.fail(c, err)
		return
	}
	limit := defaultHistory
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHistory {
			apierror.Respond(c, apierror.BadRequest("limit must be a whole number from 1 to %d", maxHistory))
			return
		}
		limit = n
	}
	commits, err := h.Repo.History(c.Request.Context(), items.Root(k, name), limit)
	if err != nil {
		h.fail(c, err)
		return
	}
	// Messages come from whoever committed to the remote too: a secret in
	// one is shown as the view shows secrets.
	view := h.view(c)
	out := make([]CommitJSON, 0, len(commits))
	for _, cm := range commits {
		out = append(out, CommitJSON{Revision: cm.Revision, Message: view.Text(cm.Message),
			Author: AuthorJSON{Name: cm.AuthorName, Email: cm.AuthorEmail}, Time: cm.Time.UTC()})
	}
	c.JSON(http.StatusOK, out)
}
