// Package deployer is the deploy engine: sites, the blue-green pipeline,
// deploy records and history, and crash recovery. The daemon owns one
// Engine; every entry point reaches it through the same calls.
package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eeveon/eeveon/deployer/secrets"

	"github.com/charmbracelet/log"
)

// Triggers of the two kinds of rollback: the instant swap back, which
// never writes into a colour, and the redeploy of an older commit through
// the pipeline, which does.
const (
	TriggerRollback   = "rollback"
	TriggerRollbackTo = "rollback-to"
)

// ErrShuttingDown is returned for work offered while the server stops.
var ErrShuttingDown = errors.New("server is shutting down")

// Request asks for one deploy.
type Request struct {
	Site        string
	Ref         string // full ref or revision to deploy; default the site's branch
	Commit      string // exact commit (from a push); resolved from Ref when empty
	Strategy    Strategy
	Trigger     string // push, cli, ssh, poll, rollback
	User        string
	Fingerprint string
	// FromPush marks a deploy started by a push (or the poller): if a
	// newer one for the site arrived before this deploy got the site lock,
	// it is superseded by the newer one instead of deploying an old
	// commit over a newer one.
	FromPush bool
	// Old is the branch's commit the push was made against (all zeros:
	// the branch did not exist), git's old-oid: the push moves the branch
	// from Old to Commit as it arrives, or is refused if the branch is no
	// longer at Old, as git itself would. Empty: not a push of the branch.
	Old string
}

// Engine runs deploys. One per data dir, owned by the daemon.
type Engine struct {
	data Data
	cfg  Config
	log  *log.Logger

	mu      sync.Mutex
	locks   map[string]chan struct{}
	running map[string]Record
	waiting waiting   // deploys waiting for approval
	pushes  pushQueue // the order of deploys started by pushes and the poller
	closing bool
	wg      sync.WaitGroup

	events  func(Event)
	secrets *secrets.Store
	// histMu serialises history appends (read, add a line, rewrite): a
	// deploy that gave up waiting for its site lock still appends.
	histMu sync.Mutex
	ws     *workspace // checkouts and the commands' environment

	// hard is cancelled when a shutdown's grace period ends: builds are
	// killed and their deploys recorded as interrupted.
	hard       context.Context
	hardCancel context.CancelFunc

	// apps are the app sites' proxies and processes (see apps.go).
	apps *appRuntime
}

// NewEngine makes the engine for a data dir.
func NewEngine(d Data, cfg Config, logger *log.Logger) *Engine {
	hard, cancel := context.WithCancel(context.Background())
	e := &Engine{
		data: d, cfg: cfg, log: logger,
		locks: map[string]chan struct{}{}, running: map[string]Record{},
		hard: hard, hardCancel: cancel,
	}
	e.apps = &appRuntime{e: e, sites: map[string]*appSite{}}
	e.ws = &workspace{data: d, hard: hard}
	return e
}

// Event is something that happened to a deploy, for notifications.
type Event struct {
	// Kind is one of deploy_started, live, failed, pending_approval,
	// approved, rejected, expired, rolled_back, superseded.
	Kind   EventKind
	Record Record
	Site   Site
}

// OnEvent sets the function that receives deploy events. It is called
// synchronously and must not block (queue the work). Set it before use.
func (e *Engine) OnEvent(f func(Event)) { e.events = f }

func (e *Engine) emit(kind EventKind, j *job) {
	if e.events != nil {
		e.events(Event{Kind: kind, Record: *j.r, Site: j.site})
	}
}

// Data is the engine's data dir.
func (e *Engine) Data() Data { return e.data }

// Config is the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Shutdown refuses new deploys and waits for running ones until ctx ends;
// then it kills what is left (recorded as interrupted) and waits for that.
// Last, it stops the apps of app sites and their proxies.
func (e *Engine) Shutdown(ctx context.Context) {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("grace period over, interrupting deploys")
		e.hardCancel()
		<-done
	}
	e.hardCancel()
	e.apps.stopApps()
	if e.ws.cgroups != nil {
		if err := e.ws.cgroups.Close(); err != nil {
			e.log.Warn("end the site commands' cgroups", "err", err)
		}
	}
}

func (e *Engine) lock(ctx context.Context, site string) (unlock func(), err error) {
	e.mu.Lock()
	ch, ok := e.locks[site]
	if !ok {
		ch = make(chan struct{}, 1)
		e.locks[site] = ch
	}
	e.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Running returns the deploy in progress on a site, if any.
func (e *Engine) Running(site string) (Record, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.running[site]
	return r, ok
}

func (e *Engine) setRunning(r *Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.State == StateRunning {
		e.running[r.Site] = *r
	} else if cur, ok := e.running[r.Site]; ok && cur.ID == r.ID {
		delete(e.running, r.Site)
	}
}

// progress writes the pipeline's own lines.
type progress struct{ w io.Writer }

func (p progress) step(format string, args ...any) {
	_, _ = fmt.Fprintf(p.w, "==> "+format+"\n", args...)
}

// Deploy runs the pipeline for one request and streams its progress to
// out. The deploy does not depend on ctx beyond the wait for the site lock:
// once started it finishes even if the client goes away (its log keeps the
// output); only a server shutdown past its grace period interrupts it.
// The returned error is non-nil when the deploy did not go live.
func (e *Engine) Deploy(ctx context.Context, req Request, out io.Writer) (Record, error) {
	return e.run(ctx, req, out, e.pipeline)
}

// Rollback swaps current back to the other colour without a rebuild,
// after checking its health again (see RollbackTarget).
func (e *Engine) Rollback(ctx context.Context, req Request, out io.Writer) (Record, error) {
	req.Trigger = TriggerRollback
	return e.run(ctx, req, out, e.instantRollback)
}

// job is one deploy being run: its site, record and output.
type job struct {
	site Site
	r    *Record
	out  io.Writer // the client and the deploy log
	// cmdOut is out for what the site's commands print: bounded by
	// max_log_size, past which it is dropped with a note.
	cmdOut io.Writer
	p      progress
	l      *log.Logger
	// approved is set when an admin's approval is being carried out.
	approved bool
	// pushSeq is the place of a push's deploy in the site's push order
	// (0: not a push).
	pushSeq uint64
	// target is how this site puts the deploy live (target.go).
	target target
	// secrets are the site's secrets, decrypted for this job only; every
	// byte of output passes a masker that hides their values.
	secrets    map[string]string
	secretsErr error
	secretFile *os.File // the secrets as a sealed in-memory dotenv, when the site wants a file
}

// newJob prepares a job for record r: its log (appended to), the site's
// secrets and the masked output to the log and to out.
func (e *Engine) newJob(site Site, r *Record, out io.Writer) (*job, func(), error) {
	logf, err := os.OpenFile(LogPath(e.data, site.Name, r.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open deploy log: %w", err)
	}
	j := &job{site: site, r: r, l: e.log.With("site", site.Name, "deploy", r.ID), target: e.targetFor(site, r.Strategy)}
	if e.secrets != nil {
		j.secrets, j.secretsErr = e.secrets.Get(site.Name)
	}
	mw := secrets.NewMaskWriter(&teeWriter{log: logf, client: out}, slices.Collect(maps.Values(j.secrets)))
	j.out, j.p = mw, progress{mw}
	j.cmdOut = &capWriter{w: mw, max: e.cfg.Deploy.MaxLogSize}
	return j, func() {
		_ = mw.Flush()
		logf.Close()
		if j.secretFile != nil {
			j.secretFile.Close()
		}
	}, nil
}

// mask hides the job's secret values in s.
func (j *job) mask(s string) string {
	if len(j.secrets) == 0 {
		return s
	}
	return secrets.Mask(s, slices.Collect(maps.Values(j.secrets)))
}

// SetSecrets gives the engine the secrets store; without one, deploys
// get no secrets.
func (e *Engine) SetSecrets(s *secrets.Store) { e.secrets = s }

// begin registers work with the engine unless it is shutting down.
func (e *Engine) begin() (done func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return nil, ErrShuttingDown
	}
	e.wg.Add(1)
	return e.wg.Done, nil
}

// run does what every deploy shares: the record, the log, the site lock,
// then body under the lock.
func (e *Engine) run(ctx context.Context, req Request, out io.Writer, body func(*job) error) (Record, error) {
	done, err := e.begin()
	if err != nil {
		return Record{}, err
	}
	defer done()

	site, err := LoadSite(e.data, req.Site)
	if err != nil {
		return Record{}, err
	}
	strategy := site.Strategy
	if req.Strategy != "" {
		strategy = req.Strategy
	}
	ref := req.Ref
	if ref == "" {
		ref = site.Ref()
	}
	now := time.Now().UTC()
	r := &Record{
		ID: newDeployID(now), Site: site.Name, Ref: ref, Commit: req.Commit, Strategy: strategy,
		State: StateRunning, Phase: PhaseQueued, User: req.User, Fingerprint: req.Fingerprint,
		Trigger: req.Trigger, StartedAt: now,
	}
	var seq uint64
	if req.FromPush {
		// A push moves the branch as it arrives, as git would (the outcome
		// of its deploy may move it back, see branch.go), and takes its
		// place in the site's push order in the same step. A push git would
		// refuse is no deploy: nothing is recorded.
		accept := func() error { return nil }
		if req.Old != "" {
			accept = func() error { return e.acceptPush(ctx, site, req.Old, req.Commit) }
		}
		if seq, err = e.pushes.enqueue(site.Name, *r, accept); err != nil {
			return Record{}, &DeployError{Step: "push", State: StateFailed, msg: err.Error(), Err: err}
		}
		defer e.pushes.drop(site.Name, seq)
	}
	if err := os.MkdirAll(e.data.DeploysDir(site.Name), 0o700); err != nil {
		return *r, fmt.Errorf("prepare deploy: %w", err)
	}
	j, closeJob, err := e.newJob(site, r, out)
	if err != nil {
		return *r, err
	}
	defer closeJob()
	j.pushSeq = seq
	if err := saveRecord(e.data, r); err != nil {
		return *r, err
	}
	j.l.Info("deploy queued", "ref", ref, "user", r.User, "trigger", r.Trigger)

	unlock, err := e.lockWithNotice(ctx, site.Name, j.p)
	if err != nil {
		e.finish(j, StateInterrupted, "gave up waiting for the site lock: "+err.Error())
		return *r, fmt.Errorf("deploy %s: %w", r.ID, err)
	}
	defer unlock()

	e.setRunning(r)
	e.emit(EventDeployStarted, j)
	if j.secretsErr != nil {
		return *r, e.fail(j, StateFailed, "secrets: "+j.secretsErr.Error())
	}
	if err := body(j); err != nil && !errors.Is(err, errSuperseded) {
		return *r, err
	}
	return *r, nil
}

// lockWithNotice takes a deploy's site lock, telling the client when it
// waits. The wait may be abandoned by the client (ctx) or a shutdown.
func (e *Engine) lockWithNotice(ctx context.Context, site string, p progress) (func(), error) {
	e.mu.Lock()
	busy, ok := e.running[site]
	e.mu.Unlock()
	if ok {
		p.step("waiting: deploy %s (%s) is in progress on %s", busy.ID, busy.Short(), site)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-e.hard.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	return e.lock(ctx, site)
}

var errSuperseded = errors.New("superseded")

// fail ends the job with state and reason and returns the outcome as a
// *DeployError wrapping cause (which may be nil).
func (e *Engine) fail(j *job, state State, why string) error {
	return e.failStep(j, "", state, why, nil)
}

func (e *Engine) failStep(j *job, step string, state State, why string, cause error) error {
	why = j.mask(why)
	e.finish(j, state, why)
	return &DeployError{ID: j.r.ID, Step: step, State: state, msg: why, Err: cause}
}

// failed ends the job after a step failed: interrupted when the server is
// stopping, failed otherwise. Step "" has the cause's message stand alone.
func (e *Engine) failed(j *job, step string, err error) error {
	prefix := ""
	if step != "" {
		prefix = step + ": "
	}
	if e.hard.Err() != nil {
		return e.failStep(j, step, StateInterrupted, prefix+"interrupted by server shutdown", err)
	}
	return e.failStep(j, step, StateFailed, prefix+err.Error(), err)
}

func (e *Engine) phase(j *job, phase string) {
	j.r.Phase = phase
	if err := saveRecord(e.data, j.r); err != nil {
		j.l.Error("save deploy record", "err", err)
	}
	e.setRunning(j.r)
}

func (e *Engine) pipeline(j *job) error {
	ctx, site, r, p := e.hard, j.site, j.r, j.p
	if j.pushSeq > 0 {
		if newer, ok := e.pushes.take(site.Name, j.pushSeq); ok {
			why := fmt.Sprintf("deploy %s (%s) arrived after this one and deploys in its place", newer.ID, newer.Short())
			e.finish(j, StateSuperseded, why)
			return errSuperseded
		}
	}
	if r.Commit == "" {
		c, err := ResolveCommit(ctx, e.data, site.Name, r.Ref)
		if err != nil {
			return e.failed(j, "resolve", err)
		}
		r.Commit = c
	}
	if err := j.target.admit(j); err != nil {
		return e.failStep(j, "", StateFailed, err.Error(), err)
	}
	// The new build goes into the inactive colour, where a deploy waiting
	// for approval sits: that deploy can no longer be approved.
	e.supersedePending(j)
	live := LiveColor(site.Path)
	r.Color, r.PrevColor = j.target.colour(live), live
	p.step("site %s, commit %s (%s), deploy %s by %s", site.Name, r.Short(), strings.TrimPrefix(r.Ref, "refs/heads/"), r.ID, firstNonEmpty(r.User, "unknown"))

	if err := os.MkdirAll(site.Path, 0o755); err != nil {
		return e.failed(j, "prepare site path", err)
	}
	e.phase(j, PhaseCheckout)
	dir, err := j.target.checkout(ctx, j)
	if err != nil {
		return e.failed(j, "checkout", err)
	}

	pr, err := e.ws.env(j, dir)
	if err != nil {
		return e.failed(j, "prepare build", err)
	}
	e.phase(j, PhaseBuilding)
	if site.Build == "" {
		p.step("no build command; %s holds the commit as is", r.Color)
	} else {
		p.step("building %s: %s", r.Color, site.Build)
		lw := &lineWriter{w: j.cmdOut, prefix: "    "}
		err := runShell(ctx, dir, site.Build, pr, lw, e.cfg.Deploy.BuildTimeout.Duration)
		lw.Flush()
		if err != nil {
			return e.failed(j, "build", err)
		}
	}
	return e.checkAndSwap(j, dir, pr)
}

// checkAndSwap health-checks the colour in dir and, only if it passes,
// makes it live (or has it wait for approval).
func (e *Engine) checkAndSwap(j *job, dir string, pr proc) error {
	site, r := j.site, j.r
	e.phase(j, PhaseChecking)
	c, err := j.target.check(j, dir, pr)
	if err != nil {
		return e.failed(j, "health check", err)
	}
	if e.hard.Err() != nil {
		c.discard()
		return e.fail(j, StateInterrupted, "interrupted by server shutdown before going live")
	}
	// Approval is a property of what goes live, not of the path that asks
	// for it: everything but the instant rollback waits for it (rollback
	// --to builds a commit anew, like any deploy). The instant rollback
	// swaps back to a release that was approved when it went live.
	if site.Approval && !j.approved && r.Trigger != TriggerRollback {
		c.hold(j)
		return e.awaitApproval(j)
	}
	e.phase(j, PhaseSwapping)
	sw, err := c.switchLive(j)
	if err != nil {
		var se *stepError
		if errors.As(err, &se) {
			return e.failed(j, se.step, se.err)
		}
		return e.failed(j, "switch", err)
	}
	j.p.step("live: %s %s on %s%s", site.Name, r.Short(), r.Color, sw.note)
	e.onSwap(j, dir, sw.port)
	e.finish(j, StateLive, "")
	if sw.retire != nil {
		sw.retire()
	}
	return nil
}

// onSwap runs the site's on_swap command after a switch, for web servers
// in front that need telling (rewrite an upstream, reload). It is the
// admin's configuration, not pushed code, so it runs as the server's user,
// in the site path. The switch has happened: a failure is reported, and
// the deploy stays live. port is the live app's port (0: not an app).
func (e *Engine) onSwap(j *job, dir string, port int) {
	if j.site.OnSwap == "" {
		return
	}
	r := j.r
	portVar := ""
	if port > 0 {
		portVar = strconv.Itoa(port)
	}
	env := commandEnv(map[string]string{
		"EEVEON_SITE": r.Site, "EEVEON_COMMIT": r.Commit, "EEVEON_COLOR": r.Color,
		"EEVEON_DEPLOY_ID": r.ID, "EEVEON_PATH": dir, "EEVEON_PORT": portVar,
	})
	j.p.step("on_swap: %s", j.site.OnSwap)
	lw := &lineWriter{w: j.cmdOut, prefix: "    "}
	err := runShell(e.hard, j.site.Path, j.site.OnSwap, proc{env: env}, lw, e.cfg.Deploy.HealthTimeout.Duration)
	lw.Flush()
	if err != nil {
		j.p.step("warning: on_swap %v; %s is live on %s all the same", err, r.Site, r.Color)
		j.l.Warn("on_swap failed", "err", err)
	}
}

// ErrNoRollback is returned when the other colour cannot be swapped back.
var ErrNoRollback = errors.New("cannot roll back")

// RollbackTarget finds what an instant rollback would put live: the
// release the inactive colour still holds. It fails when the site is not
// blue-green, has never swapped, or a later deploy failed or was
// interrupted in that colour (its files are no longer that release).
func RollbackTarget(site Site) (Record, error) {
	live := LiveColor(site.Path)
	if live != "blue" && live != "green" {
		return Record{}, fmt.Errorf("%w: %s has no previous colour to swap back to (live: %s)", ErrNoRollback, site.Name, firstNonEmpty(live, "nothing"))
	}
	target := otherColor(live)
	h, err := History(site)
	if err != nil {
		return Record{}, err
	}
	for i := len(h) - 1; i >= 0; i-- {
		r := h[i]
		// Records that never wrote into a colour dir do not count.
		if !wroteInto(r, target) {
			continue
		}
		if r.State != StateLive {
			return Record{}, fmt.Errorf("%w: %s no longer holds a good release (deploy %s %s there); redeploy an older one with rollback --to DEPLOY_ID", ErrNoRollback, target, r.ID, r.State)
		}
		if _, err := os.Stat(filepath.Join(site.Path, target)); err != nil {
			return Record{}, fmt.Errorf("%w: %s is gone from %s", ErrNoRollback, target, site.Path)
		}
		return r, nil
	}
	return Record{}, fmt.Errorf("%w: %s has never held a release of %s", ErrNoRollback, target, site.Name)
}

func (e *Engine) instantRollback(j *job) error {
	prev, err := RollbackTarget(j.site)
	if err != nil {
		return e.failStep(j, "rollback", StateFailed, err.Error(), err)
	}
	r := j.r
	r.Commit, r.Ref, r.Color, r.PrevColor, r.Strategy = prev.Commit, prev.Ref, prev.Color, otherColor(prev.Color), BlueGreen
	j.target = e.targetFor(j.site, BlueGreen)
	j.p.step("rollback of %s: back to %s %s (deploy %s), by %s", j.site.Name, r.Color, r.Short(), prev.ID, firstNonEmpty(r.User, "unknown"))
	if j.site.Approval {
		r.Note = fmt.Sprintf("no new approval: %s holds deploy %s, which went live before", r.Color, prev.ID)
		if prev.ApprovedBy != "" {
			r.Note += " (approved by " + prev.ApprovedBy + ")"
		}
		j.p.step("%s", r.Note)
	}
	dir := filepath.Join(j.site.Path, r.Color)
	pr, err := e.ws.env(j, dir)
	if err != nil {
		return e.failed(j, "prepare health check", err)
	}
	return e.checkAndSwap(j, dir, pr)
}

// finish records the outcome: the deploy record, the site history, the
// server log and the last lines the client sees.
func (e *Engine) finish(j *job, state State, why string) {
	site, r, l := j.site, j.r, j.l
	why = j.mask(why) // it may quote a command or URL holding a secret
	if err := r.transition(state); err != nil {
		l.Error("deploy state", "err", err) // a bug: recorded all the same
		r.State = state
	}
	r.Error, r.Phase = why, PhaseFinished
	r.FinishedAt = time.Now().UTC()
	// History first: should the server die between the two writes, the
	// record still says running and Recover finds the outcome in history.
	if err := os.MkdirAll(site.Path, 0o755); err == nil {
		if err := e.appendHistory(site, *r); err != nil {
			l.Error("append history", "err", err)
		}
	}
	if err := saveRecord(e.data, r); err != nil {
		l.Error("save deploy record", "err", err)
	}
	e.setRunning(r)
	j.target.ended(j, state)
	e.waiting.note(*r)
	if state == StateLive {
		e.keepRelease(j)
	}
	e.settleBranch(j, state)
	e.emit(eventOf(*r), j)
	e.announce(j)
}

// LiveColor reports what <path>/current is: "blue" or "green" for a
// symlink, "in-place" for a real directory, "" when there is none.
func LiveColor(sitePath string) string {
	cur := filepath.Join(sitePath, currentLink)
	fi, err := os.Lstat(cur)
	if err != nil {
		return ""
	}
	if fi.IsDir() {
		return colorInPlace
	}
	target, err := os.Readlink(cur)
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

func otherColor(c string) string {
	if c == "blue" {
		return "green"
	}
	return "blue"
}

// swapCurrent points <path>/current at color with one rename(2) of a fresh
// symlink over it, then makes the rename durable.
func swapCurrent(sitePath, color, id string) error {
	tmp := filepath.Join(sitePath, currentTmpName+id)
	_ = os.Remove(tmp)
	if err := os.Symlink(color, tmp); err != nil {
		return err
	}
	cur := filepath.Join(sitePath, currentLink)
	aside := ""
	if fi, err := os.Lstat(cur); err == nil && fi.IsDir() {
		// current is a real directory from an in-place deploy; rename(2)
		// cannot put a symlink over a directory, so move it aside first
		// (and back, should the swap fail).
		aside = filepath.Join(sitePath, tmpPrefix+id+"-in-place")
		if err := os.Rename(cur, aside); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, cur); err != nil {
		_ = os.Remove(tmp)
		if aside != "" {
			_ = os.Rename(aside, cur)
		}
		return err
	}
	if aside != "" {
		_ = os.RemoveAll(aside)
	}
	return SyncDir(sitePath)
}

// healthCheck checks the new colour until it passes or the deadline ends,
// retrying with doubling backoff.
func (e *Engine) healthCheck(ctx context.Context, j *job, dir string, pr proc) error {
	site, r, p := j.site, j.r, j.p
	if site.HealthCmd == "" && site.HealthURL == "" {
		p.step("no health check configured")
		return nil
	}
	cfg := e.cfg.Deploy
	url := strings.NewReplacer("{color}", r.Color, "{path}", dir).Replace(site.HealthURL)
	what := site.HealthCmd
	if what == "" {
		what = url
	} else if url != "" {
		what += " and GET " + url
	}
	p.step("health check of %s: %s", r.Color, what)
	deadline := time.Now().Add(cfg.HealthTimeout.Duration)
	wait := cfg.HealthInterval.Duration
	var last error
	var lastOut []byte
	for try := 1; ; try++ {
		var buf limitedBuffer
		last = nil
		if site.HealthCmd != "" {
			last = runShell(ctx, dir, site.HealthCmd, pr, &buf, cfg.HealthTry.Duration)
		}
		if last == nil && url != "" {
			last = checkURL(ctx, url, cfg.HealthTry.Duration)
		}
		if last == nil {
			p.step("health check passed (try %d)", try)
			return nil
		}
		lastOut = buf.Bytes()
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			break
		}
		p.step("health check try %d: %v; retrying in %s", try, last, wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	if len(lastOut) > 0 {
		lw := &lineWriter{w: j.cmdOut, prefix: "    "}
		_, _ = lw.Write(lastOut)
		lw.Flush()
	}
	return fmt.Errorf("%v (gave up after %s)", last, cfg.HealthTimeout.Duration)
}

func checkURL(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "eeveon-health-check")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", url, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// limitedBuffer keeps the last 8 KiB written to it, from a line start.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 8192; over > 0 {
		b.buf = b.buf[over:]
		// Start at a line: the masker matches a secret's lines whole, and
		// the cut may have fallen inside one.
		if i := bytes.IndexByte(b.buf, '\n'); i >= 0 {
			b.buf = b.buf[i+1:]
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// liveRecord finds the newest history entry that put color live.
func liveRecord(site Site, color string) (Record, bool) {
	h, _ := History(site)
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].State == StateLive && h[i].Color == color {
			return h[i], true
		}
	}
	return Record{}, false
}

// appendHistory adds a line to a site's history, one writer at a time.
func (e *Engine) appendHistory(site Site, r Record) error {
	e.histMu.Lock()
	defer e.histMu.Unlock()
	return appendHistory(site, r)
}
