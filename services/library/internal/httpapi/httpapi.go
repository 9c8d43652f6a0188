// Package httpapi serves the library's routes under /api/library.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/library/internal/items"
	"sortie.dev/services/library/internal/repo"
	"sortie.dev/services/library/internal/secrets"
)

// Error codes of this service, beside kit's and the items package's.
const (
	CodeUnknownType     = "unknown_type"
	CodeDiverged        = "diverged_history"
	CodeNoRemote        = "no_remote"
	CodeStaleLease      = "stale_lease"
	CodeRemoteFailed    = "remote_failed"
	CodeInvalidRevision = "invalid_revision"
	CodeUnknownRevision = "unknown_revision"
)

// RevisionHeader carries the library revision an answer reflects (after a
// save, the commit it made).
const RevisionHeader = "X-Library-Revision"

type fsFS = fs.FS

// Handler holds what the routes need.
type Handler struct {
	Repo   *repo.Repo
	Sealer *secrets.Sealer // nil: secrets cannot be stored
	// Remote is the remote's URL as the status shows it (no credentials).
	Remote string
	// EmailDomain makes a commit author's email from the username.
	EmailDomain string
	// Published returns the revision last written to the ConfigMap ("" when
	// publishing is off).
	Published func() string
	Log       *slog.Logger

	lists listCache
}

// Register adds the routes. Reading is open to users, admins and services
// (the workspace-operator fetches bundles); changing to users and admins,
// and every change of an item goes through mayWrite first: the types that
// run code or set the environment in other people's workspaces are
// admins' alone. The two forcing operations, which can discard commits,
// are admins'. Sync stays open to users: it only takes the remote's own
// history (fast-forward) and pushes commits already made here.
func (h *Handler) Register(r gin.IRouter, auth *authn.Authenticator) {
	read := auth.Require(authn.RoleUser, authn.RoleAdmin, authn.RoleService)
	write := auth.Require(authn.RoleUser, authn.RoleAdmin)
	admin := auth.Require(authn.RoleAdmin)
	g := r.Group("/api/library")
	g.GET("/status", read, h.status)
	g.POST("/sync", write, h.sync)
	g.POST("/force-sync", admin, h.forceSync)
	g.POST("/force-push", admin, h.forcePush)
	g.GET("/bundle", read, h.bundle)
	g.GET("/:type", read, h.list)
	g.GET("/:type/:name", read, h.get)
	g.PUT("/:type/:name", write, mayWrite, h.save)
	g.DELETE("/:type/:name", write, mayWrite, h.remove)
	g.GET("/:type/:name/history", read, h.history)
	g.GET("/:type/:name/files/*path", read, h.getFile)
	g.PUT("/:type/:name/files/*path", write, mayWrite, h.saveFile)
	g.DELETE("/:type/:name/files/*path", write, mayWrite, h.removeFile)
}

// mayWrite refuses, before anything is read or written, a change of an
// admin-only type (items.AdminOnly) by anyone but an admin: 403 forbidden.
func mayWrite(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	id, _ := authn.FromContext(c.Request.Context())
	if items.AdminOnly(k) && !id.IsAdmin() {
		apierror.Respond(c, apierror.Forbidden(fmt.Sprintf(
			"only an admin may create, change or delete %s items, because they run code or set the environment in the workspaces of everyone who uses them; your role is %s", k, roleName(id.Role))))
		return
	}
	c.Next()
}

func roleName(r authn.Role) string {
	if r == "" {
		return "unknown"
	}
	return string(r)
}

// view is how the caller sees secrets: opened for admins and services
// (the workspace-operator materialising templates and bundles), masked
// as <encrypted> for everyone else, delegated tokens included (they carry
// the user's role).
func (h *Handler) view(c *gin.Context) items.View {
	id, ok := authn.FromContext(c.Request.Context())
	open := ok && (id.IsAdmin() || id.Role == authn.RoleService)
	return items.View{Sealer: h.Sealer, Masked: !open}
}

func kind(c *gin.Context) (items.Kind, bool) {
	k, ok := items.ParseKind(c.Param("type"))
	if !ok {
		names := make([]string, 0, 8)
		for _, k := range items.Kinds() {
			names = append(names, string(k))
		}
		apierror.Abort(c, http.StatusNotFound, CodeUnknownType,
			fmt.Sprintf("unknown library type %q (known: %s)", c.Param("type"), strings.Join(names, ", ")))
		return "", false
	}
	return k, true
}

func (h *Handler) list(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	var (
		body []byte
		head string
		view = h.view(c)
		key  = listKey{k, view.Masked}
	)
	err := h.Repo.Read(func(fsys fsFS) error {
		// HEAD cannot move while the read lock is held, and the work tree
		// is always HEAD's: a list computed at one HEAD stays right until
		// the next commit.
		head = h.Repo.Head()
		if b, ok := h.lists.get(head, key); ok {
			body = b
			return nil
		}
		list, err := items.List(fsys, k, view)
		if err != nil {
			return err
		}
		if body, err = json.Marshal(list); err != nil {
			return err
		}
		h.lists.put(head, key, body)
		return nil
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, head)
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
}

// listCache keeps each type's encoded list for one HEAD, masked and not.
type listCache struct {
	mu    sync.Mutex
	head  string
	lists map[listKey][]byte
}

type listKey struct {
	kind   items.Kind
	masked bool
}

func (lc *listCache) get(head string, k listKey) ([]byte, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.head != head {
		return nil, false
	}
	b, ok := lc.lists[k]
	return b, ok
}

func (lc *listCache) put(head string, k listKey, b []byte) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.head != head {
		lc.head, lc.lists = head, map[listKey][]byte{}
	}
	lc.lists[k] = b
}

func (h *Handler) get(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	item, err := h.read(k, c.Param("name"), h.view(c))
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, h.Repo.Head())
	c.JSON(http.StatusOK, item)
}

func (h *Handler) read(k items.Kind, name string, view items.View) (any, error) {
	var item any
	err := h.Repo.Read(func(fsys fsFS) error {
		var err error
		item, err = items.Get(fsys, k, name, view)
		return err
	})
	return item, err
}

func (h *Handler) save(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	name := c.Param("name")
	if err := items.ValidName(name); err != nil {
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
		verb := "Update"
		if !items.Exists(tx.FS(), k, name) {
			verb = "Add"
		}
		ch, err := items.Prepare(tx.FS(), k, name, body, view)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s %s", verb, k, name), apply(tx, ch)
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	item, err := h.read(k, name, view)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, commit.Revision)
	c.JSON(http.StatusOK, item)
}

func (h *Handler) remove(c *gin.Context) {
	k, ok := kind(c)
	if !ok {
		return
	}
	name := c.Param("name")
	commit, err := h.change(c, func(tx *repo.Tx) (string, error) {
		ch, err := items.Delete(tx.FS(), k, name)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Delete %s %s", k, name), apply(tx, ch)
	})
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header(RevisionHeader, commit.Revision)
	c.Status(http.StatusNoContent)
}

// change runs one change as the calling user. fn returns the commit
// message. The push that follows is not tied to the request: a client that
// hangs up must not abort it halfway.
func (h *Handler) change(c *gin.Context, fn func(tx *repo.Tx) (string, error)) (repo.Commit, error) {
	ctx := context.WithoutCancel(c.Request.Context())
	return h.Repo.ChangeMessage(ctx, h.author(c.Request.Context()), fn)
}

// author is the calling user as a commit author.
func (h *Handler) author(ctx context.Context) repo.Signature {
	id, _ := authn.FromContext(ctx)
	name := id.Username
	if name == "" {
		name = id.UserID
	}
	local := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	if local == "" {
		local = "unknown"
	}
	return repo.Signature{Name: name, Email: local + "@" + h.EmailDomain}
}

func apply(tx *repo.Tx, ch items.Change) error {
	for _, p := range ch.Removes {
		if err := tx.RemoveAll(p); err != nil {
			return err
		}
	}
	for _, w := range ch.Writes {
		if err := tx.WriteFile(w.Path, w.Data); err != nil {
			return err
		}
	}
	return nil
}

// fail answers err with the right status and code.
func (h *Handler) fail(c *gin.Context, err error) {
	var invalid *items.Error
	switch {
	case errors.As(err, &invalid):
		status := http.StatusBadRequest
		switch invalid.Code {
		case items.CodeInvalidStoredItem:
			status = http.StatusConflict
		case items.CodeForbidden:
			status = http.StatusForbidden
		}
		apierror.Abort(c, status, invalid.Code, invalid.Msg)
	case errors.Is(err, items.ErrNotFound):
		apierror.Respond(c, apierror.NotFound("no such item"))
	case errors.Is(err, repo.ErrDiverged):
		apierror.Abort(c, http.StatusConflict, CodeDiverged,
			"the library and its remote have diverged: nothing was changed here; choose force-sync (take the remote's history, dropping local commits) or force-push (replace the remote's history with the library's)")
	case errors.Is(err, repo.ErrNoRemote):
		apierror.Abort(c, http.StatusConflict, CodeNoRemote, "the library has no remote to sync with (SORTIE_LIBRARY_REMOTE)")
	case errors.Is(err, repo.ErrStaleLease):
		apierror.Abort(c, http.StatusConflict, CodeStaleLease, "the remote changed since the library last fetched it; sync first, then decide again")
	case errors.Is(err, repo.ErrUnknownRevision):
		apierror.Abort(c, http.StatusNotFound, CodeUnknownRevision, err.Error())
	case errors.Is(err, secrets.ErrNoKey):
		apierror.Abort(c, http.StatusBadRequest, items.CodeEncryptionDisabled, err.Error())
	default:
		apierror.Respond(c, err)
	}
}

// failRemote answers errors of operations that talk to the remote: what
// is not one of the known outcomes is the remote failing, not a bug here.
func (h *Handler) failRemote(c *gin.Context, err error) {
	switch {
	case errors.Is(err, repo.ErrDiverged), errors.Is(err, repo.ErrNoRemote), errors.Is(err, repo.ErrStaleLease), errors.Is(err, repo.ErrUnknownRevision):
		h.fail(c, err)
	default:
		h.Log.WarnContext(c.Request.Context(), "library remote operation failed", "error", err.Error())
		apierror.Abort(c, http.StatusBadGateway, CodeRemoteFailed, "the remote did not answer as expected: "+err.Error())
	}
}
