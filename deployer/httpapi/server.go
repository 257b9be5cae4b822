// Package httpapi is the optional HTTP listener ([http] listen). It serves
// the one-click approval links that pending_approval notifications carry:
//
//	GET  /approve/TOKEN  shows what would go live (never approves: chat
//	                     link previews fetch it)
//	POST /approve/TOKEN  approves, once
//
// The token is the only authority. It is signed with a server secret
// (<data>/http.secret) and binds the site, the deploy id, the expiry and
// the approver the link was made for; its nonce is remembered in
// <data>/state/used-tokens.json once used, so that it works once, also
// across restarts.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
)

// Engine is what the server needs of the deploy engine.
type Engine interface {
	Data() deployer.Data
	Status(site string) (deployer.SiteStatus, error)
	Approve(ctx context.Context, site, id, user string, out io.Writer) (deployer.Record, error)
}

// Server serves approval links. Set the exported fields, then Listen,
// then Serve.
type Server struct {
	Engine Engine
	Config deployer.HTTPConfig
	// Audit receives a line for every approval tried through a link.
	Audit *command.Audit
	Log   *log.Logger
	// Trigger makes a polled site poll now (the poller's Trigger); used by
	// the GitHub webhook.
	Trigger func(site string)
	// LockWait bounds the wait for the site's lock when approving (a
	// deploy in progress holds it); zero means one minute.
	LockWait time.Duration

	data   deployer.Data
	signer signer
	used   *usedTokens
	ln     net.Listener
	srv    *http.Server
	base   string
	now    func() time.Time
	seen   deliveries
}

// SecretFile is where the token key lives in the data dir.
func SecretFile(d deployer.Data) string { return filepath.Join(d.Dir, "http.secret") }

// UsedTokensFile is where used link nonces are remembered.
func UsedTokensFile(d deployer.Data) string { return filepath.Join(d.StateDir(), "used-tokens.json") }

// Listen loads (or creates) the secret and the used-link store and binds
// the listener. An address without a host binds 127.0.0.1.
func (s *Server) Listen() error {
	s.data = s.Engine.Data()
	if s.Log == nil {
		s.Log = log.New(io.Discard)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.LockWait == 0 {
		s.LockWait = time.Minute
	}
	key, err := loadSecret(SecretFile(s.data))
	if err != nil {
		return err
	}
	s.signer = signer{key: key}
	if s.used, err = openUsedTokens(UsedTokensFile(s.data)); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(s.Config.Listen)
	if err != nil {
		return fmt.Errorf("http listen address %q: %w", s.Config.Listen, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	s.ln = ln
	s.base = strings.TrimRight(s.Config.PublicURL, "/")
	if s.base == "" {
		s.base = "http://" + ln.Addr().String()
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			s.Log.Warn("approval links point at an unspecified address; set http.public_url", "base", s.base)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approve/{token}", s.show)
	mux.HandleFunc("POST /approve/{token}", s.approve)
	mux.HandleFunc("POST /hooks/github", s.github)
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusNotFound, page{Title: "Not found", Message: "eeveon serves approval links here and nothing else."})
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// An approval re-runs the health check before the swap.
		WriteTimeout:   s.LockWait + 5*time.Minute,
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
	}
	s.srv.ErrorLog = s.Log.StandardLog(log.StandardLogOptions{ForceLevel: log.WarnLevel})
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// BaseURL is what links start with: public_url, or http://ADDR.
func (s *Server) BaseURL() string { return s.base }

// Handler is the server's HTTP handler (after Listen), for tests.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops taking connections and waits for requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	_ = s.ln.Close() // in case Serve never ran
	return err
}

// ApproveURL makes a one-click approval link for a pending deploy,
// recorded as approver when used; it implements notify.LinkMaker.
func (s *Server) ApproveURL(site, deployID, approver string, expires time.Time) (string, error) {
	tok, _, err := s.signer.sign(site, deployID, approver, expires)
	if err != nil {
		return "", fmt.Errorf("make approval link: %w", err)
	}
	return s.base + "/approve/" + tok, nil
}

// refusal is why a link cannot approve, as the HTTP status and page.
type refusal struct {
	status int
	title  string
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// check verifies a link and finds the deploy it names, still pending.
func (s *Server) check(token string) (Claims, deployer.SiteStatus, *refusal) {
	c, err := s.signer.verify(token, s.now())
	switch {
	case errors.Is(err, ErrExpiredToken):
		return c, deployer.SiteStatus{}, &refusal{http.StatusGone, "Link expired",
			fmt.Sprintf("This approval link for deploy %s of %s expired at %s. Nothing was changed.", c.Deploy, c.Site, c.ExpiresAt().Format(time.RFC3339))}
	case err != nil:
		return c, deployer.SiteStatus{}, &refusal{http.StatusBadRequest, "Invalid link",
			"This approval link is not valid (it may have been cut short or altered). Nothing was changed."}
	case s.used.isUsed(c.Nonce):
		return c, deployer.SiteStatus{}, usedRefusal(c)
	}
	st, err := s.Engine.Status(c.Site)
	if errors.Is(err, deployer.ErrSiteNotFound) {
		return c, st, &refusal{http.StatusNotFound, "No such site",
			fmt.Sprintf("Site %s does not exist (any more). Nothing was changed.", c.Site)}
	}
	if err != nil {
		s.Log.Error("approval link: site status", "site", c.Site, "err", err)
		return c, st, &refusal{http.StatusInternalServerError, "Error", "The server could not read the site's state. Nothing was changed."}
	}
	if st.Pending == nil || st.Pending.ID != c.Deploy {
		return c, st, s.notPending(c)
	}
	return c, st, nil
}

func usedRefusal(c Claims) *refusal {
	return &refusal{http.StatusGone, "Link already used",
		fmt.Sprintf("This approval link for deploy %s of %s was already used; a link works once. Nothing was changed.", c.Deploy, c.Site)}
}

// notPending explains why the deploy a link names cannot be approved.
func (s *Server) notPending(c Claims) *refusal {
	state := "unknown"
	if r, err := deployer.LoadRecord(s.data, c.Site, c.Deploy); err == nil {
		state = string(r.State)
	}
	return &refusal{http.StatusGone, "No longer waiting for approval",
		fmt.Sprintf("Deploy %s of %s is %s, not waiting for approval. Nothing was changed.", c.Deploy, c.Site, state)}
}

// show is GET: a confirmation page with a form that POSTs back. It never
// changes anything.
func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	c, st, ref := s.check(r.PathValue("token"))
	if ref != nil {
		render(w, ref.status, page{Title: ref.title, Message: ref.msg})
		return
	}
	p := recordPage(*st.Pending)
	p.Title, p.Confirm, p.Approver = "Approve deploy of "+c.Site+"?", true, c.Approver
	p.Message = fmt.Sprintf("%s is built and healthy on %s and waits for approval. Approving puts it live at once.", p.Short, p.Color)
	live := ""
	if st.Live != nil {
		live = st.Live.Commit
		p.LiveShort = st.Live.Short()
	}
	info, err := describe(r.Context(), s.data.Repo(c.Site), st.Pending.Commit, live)
	if err != nil {
		s.Log.Warn("approval page: describe commit", "site", c.Site, "deploy", c.Deploy, "err", err)
	}
	p.Info = info
	render(w, http.StatusOK, p)
}

// approve is POST: the same checks, then the nonce is spent (before the
// approval, so that two requests cannot both approve), then the engine
// approves as the link's approver.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	c, st, ref := s.check(r.PathValue("token"))
	if ref == nil {
		if err := s.used.use(c.Nonce, c.Expires, s.now()); errors.Is(err, ErrUsedToken) {
			ref = usedRefusal(c)
		} else if err != nil {
			s.Log.Error("approval link: remember use", "err", err)
			ref = &refusal{http.StatusInternalServerError, "Error", "The server could not record the use of this link. Nothing was changed."}
		}
	}
	if ref != nil {
		if c.Site != "" {
			s.audit(r, c, "refused: "+ref.title)
		} else {
			s.audit(r, c, "refused: invalid link")
		}
		render(w, ref.status, page{Title: ref.title, Message: ref.msg})
		return
	}
	// The approval must not depend on the browser staying connected once
	// the nonce is spent.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.LockWait)
	defer cancel()
	var out bytes.Buffer
	rec, err := s.Engine.Approve(ctx, c.Site, c.Deploy, c.Approver, &out)
	if rec.ID == "" {
		rec = *st.Pending
	}
	p := recordPage(rec)
	p.Result, p.Log = true, out.String()
	status := http.StatusOK
	switch {
	case err == nil:
		p.Title = "Approved"
		p.Message = fmt.Sprintf("Deploy %s of %s was approved by %s and is live on %s.", c.Deploy, c.Site, c.Approver, rec.Color)
		s.audit(r, c, "ok")
		s.Log.Info("approved through link", "site", c.Site, "deploy", c.Deploy, "approver", c.Approver, "remote", r.RemoteAddr)
		render(w, status, p)
		return
	case errors.Is(err, deployer.ErrNothingPending), errors.Is(err, deployer.ErrNotWaiting):
		// It stopped waiting (expired, superseded, decided over SSH)
		// between the check and the approval.
		status, p.Title = http.StatusGone, "No longer waiting for approval"
	case errors.Is(err, deployer.ErrApproval):
		// Refused by the site's rules (an approver who pushed it).
		status, p.Title = http.StatusForbidden, "Not approved"
	case isOutcomeOf(err, c.Deploy):
		// Approved, but the deploy did not go live (its health check
		// before the switch failed).
		status, p.Title = http.StatusConflict, "Approved, but not live"
	case errors.Is(err, deployer.ErrShuttingDown):
		status, p.Title = http.StatusServiceUnavailable, "Not approved"
	default:
		status, p.Title = http.StatusConflict, "Not approved"
	}
	p.Message = fmt.Sprintf("Deploy %s of %s: %v.", c.Deploy, c.Site, err)
	s.audit(r, c, "error: "+err.Error())
	s.Log.Warn("approval through link failed", "site", c.Site, "deploy", c.Deploy, "approver", c.Approver, "err", err)
	render(w, status, p)
}

func recordPage(r deployer.Record) page {
	p := page{
		Site: r.Site, DeployID: r.ID, Commit: r.Commit, Short: r.Short(), Ref: strings.TrimPrefix(r.Ref, "refs/heads/"),
		User: r.User, Color: r.Color, State: string(r.State), Error: r.Error,
	}
	if r.ExpiresAt != nil && r.State == deployer.StatePendingApproval {
		p.Expires = r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return p
}

// audit records an approval tried through a link. The token itself is
// never written anywhere.
func (s *Server) audit(r *http.Request, c Claims, outcome string) {
	cmd := "approve (invalid link)"
	if c.Site != "" {
		cmd = "approve " + c.Site + " " + c.Deploy
	}
	err := s.Audit.Log(command.Event{
		User: c.Approver, Role: "admin", Remote: r.RemoteAddr, Source: "http",
		Command: cmd, Site: c.Site, Outcome: outcome,
	})
	if err != nil {
		s.Log.Error("write audit log", "err", err)
	}
}

// isOutcomeOf reports whether err is how deploy id ended after it was
// approved (a DeployError of that deploy), not a refusal to approve it.
func isOutcomeOf(err error, id string) bool {
	de, ok := deployer.DeployOutcome(err)
	return ok && de.ID == id
}
