package command

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/eeveon/eeveon/deployer/secrets"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

// Router runs verbs on behalf of an identity.
type Router struct {
	Engine  Engine
	Keys    *keys.Store
	Secrets *secrets.Store
	Audit   *Audit
	Log     *log.Logger
}

// IO is a command's streams.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// usageError is printed with a pointer to help and exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// verb describes one command of the surface.
type verb struct {
	// usage is empty for a hidden verb: not in the help text, and no
	// command line reaches it, only a request of the control socket
	// (Router.Control).
	usage string
	help  string
	run   func(rt *Router, c *call) error
}

// call is one command being run.
type call struct {
	ctx  context.Context
	id   keys.Identity
	args []string
	io   IO
	push *control.Push // the update the hidden verb push deploys

	// What a verb tells about its end, beyond its error.
	site     string // for the audit log
	command  string // for the audit log, if not the command line
	outcome  string // for the audit log, if not "ok" or the error
	reason   string // control.Result.Reason: why a push did not go live
	reported bool   // the error was already shown (by the deploy's output)
}

var verbs map[string]verb

// verbOrder is the order of the help text.
var verbOrder = []string{"help", "whoami", "sites", "status", "history", "logs", "deploy", "rollback", "approve", "reject", "secrets", "keys", "vacuum"}

func init() {
	verbs = map[string]verb{
		"help":     {"help", "this text", (*Router).help},
		"whoami":   {"whoami", "who this key is: user, role, sites", (*Router).whoami},
		"sites":    {"sites", "the sites this key may see", (*Router).sites},
		"status":   {"status [SITE]", "live colour and commit, deploys in progress", (*Router).status},
		"history":  {"history SITE [-n N]", "the last N deploys (default 20)", (*Router).history},
		"logs":     {"logs SITE [DEPLOY_ID] | logs SITE --app [-n N]", "the log of a deploy (default: the latest), or the last N lines of an app's output", (*Router).logs},
		"deploy":   {"deploy SITE [--ref REF] [--strategy blue-green|in-place]", "redeploy the branch tip (admins: any ref)", (*Router).deploy},
		"rollback": {"rollback SITE [--to DEPLOY_ID]", "swap back to the previous colour, or redeploy an older deploy (admins)", (*Router).rollback},
		"approve":  {"approve SITE [DEPLOY_ID]", "put the deploy waiting for approval live (admins)", (*Router).approve},
		"reject":   {"reject SITE [DEPLOY_ID]", "discard the deploy waiting for approval (admins)", (*Router).reject},
		"secrets":  {"secrets set SITE KEY [VALUE] | list | rm | encrypt | decrypt | rotate", "manage a site's encrypted secrets (admins; VALUE from stdin if left out)", (*Router).secrets},
		"vacuum":   {"vacuum [--keep N] [--max-age DUR] [--dry-run]", "remove old deploy logs, archive old history, clean leftovers (admins)", (*Router).vacuum},
		"keys":     {"keys list", "the keys and their roles (admins)", (*Router).keys},
		"push":     {run: (*Router).push}, // hidden: the proc-receive hook's Request.Push
	}
}

// surfaceVerb is the verb of a command line's first word: hidden verbs
// are none.
func surfaceVerb(name string) (verb, bool) {
	v, ok := verbs[name]
	return v, ok && v.usage != ""
}

// Run executes one command line (already split into words) for id and
// returns the exit status. Errors are written to stderr as one line.
func (rt *Router) Run(ctx context.Context, id keys.Identity, args []string, stdio IO) int {
	c := &call{ctx: ctx, id: id, io: stdio}
	name := ""
	if len(args) > 0 {
		name, c.args = args[0], args[1:]
	}
	v, ok := surfaceVerb(name)
	var err error
	switch {
	case name == "" || name == "--help" || name == "-h":
		err = rt.help(c)
	case !ok:
		_ = rt.help(&call{id: id, io: IO{Stdout: stdio.Stderr}})
		err = usagef("unknown command %q", clipArg(name))
	default:
		err = v.run(rt, c)
	}
	return rt.end(c, redact(args), err).Code
}

// Control runs one request of the control socket for id (the socket's
// peer, or the identity it may claim): a push handed over by a
// repository's proc-receive hook, which the control server accepts only
// from the service user, root or an admin, runs the hidden verb push;
// anything else is a command line for Run.
func (rt *Router) Control(ctx context.Context, id keys.Identity, req control.Request, stdout, stderr io.Writer) control.Result {
	stdio := IO{Stdin: bytes.NewReader(req.Input), Stdout: stdout, Stderr: stderr}
	if req.Push == nil {
		return control.Result{Code: rt.Run(ctx, id, req.Args, stdio)}
	}
	c := &call{ctx: ctx, id: id, io: stdio, push: req.Push}
	return rt.end(c, "push", verbs["push"].run(rt, c))
}

// end reports how a verb ended: its error as one line on stderr, the
// audit log line, the exit status (2 for a usage error).
func (rt *Router) end(c *call, command string, err error) control.Result {
	res, outcome := control.Result{Reason: c.reason}, "ok"
	if err != nil {
		res.Code, outcome = 1, "error: "+err.Error()
		var ue usageError
		if errors.As(err, &ue) {
			res.Code = 2
		}
		if errors.Is(err, keys.ErrPermissionDenied) {
			outcome = "denied"
		}
		if !c.reported {
			fmt.Fprintf(c.io.Stderr, "eeveon: %s\n", err)
		}
	}
	if c.outcome != "" {
		outcome = c.outcome
	}
	if c.command != "" {
		command = c.command
	}
	rt.audit(c.id, command, c.site, outcome)
	return res
}

func (rt *Router) audit(id keys.Identity, command, site, outcome string) {
	err := rt.Audit.Log(Event{
		User: id.User, Role: string(id.Role), Fingerprint: id.Fingerprint, Remote: id.Remote,
		Source: id.Source, Command: clipArg(command), Site: site, Outcome: outcome,
	})
	if err != nil && rt.Log != nil {
		rt.Log.Error("write audit log", "err", err)
	}
}

func clipArg(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// Site resolves a site name for id: a site the identity may not see is
// reported exactly like one that does not exist. Then it checks the verb.
func (rt *Router) Site(id keys.Identity, name string, v keys.Verb) (deployer.Site, error) {
	if err := names.Site(name); err != nil {
		return deployer.Site{}, err
	}
	if !id.MaySee(name) {
		return deployer.Site{}, fmt.Errorf("%w: %s", deployer.ErrSiteNotFound, name)
	}
	s, err := deployer.LoadSite(rt.Engine.Data(), name)
	if err != nil {
		return s, err
	}
	return s, keys.Authorize(id, v, name)
}

func (c *call) flags(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ContinueOnError)
}

func (c *call) parse(fs *flag.FlagSet, min, max int) ([]string, error) {
	pos, err := ParseFlags(fs, c.args)
	if err != nil {
		return nil, usagef("%s: %v (usage: %s)", fs.Name(), err, verbs[fs.Name()].usage)
	}
	if len(pos) < min || len(pos) > max {
		return nil, usagef("usage: %s", verbs[fs.Name()].usage)
	}
	return pos, nil
}

func (rt *Router) help(c *call) error {
	w := bufio.NewWriter(c.io.Stdout)
	fmt.Fprintln(w, "eeveon: push to deploy. There is no shell here; these commands are:")
	for _, n := range verbOrder {
		fmt.Fprintf(w, "  %-60s %s\n", verbs[n].usage, verbs[n].help)
	}
	fmt.Fprintln(w, "Deploy with: git push <remote> <branch>, remote URL ssh://HOST:PORT/SITE")
	return w.Flush()
}

func (rt *Router) whoami(c *call) error {
	if _, err := c.parse(c.flags("whoami"), 0, 0); err != nil {
		return err
	}
	sites := "all sites"
	if c.id.Role == keys.RoleDeployer && len(c.id.Sites) > 0 {
		sites = strings.Join(c.id.Sites, ",")
	}
	fmt.Fprintf(c.io.Stdout, "user %s, role %s, sites %s", c.id.User, c.id.Role, sites)
	if c.id.Fingerprint != "" {
		fmt.Fprintf(c.io.Stdout, ", key %s", c.id.Fingerprint)
	}
	fmt.Fprintln(c.io.Stdout)
	return nil
}

// visibleSites lists the sites id may see.
func (rt *Router) visibleSites(id keys.Identity) []deployer.Site {
	all, errs := deployer.ListSites(rt.Engine.Data())
	for _, err := range errs {
		if rt.Log != nil {
			rt.Log.Warn("site definition", "err", err)
		}
	}
	var out []deployer.Site
	for _, s := range all {
		if id.MaySee(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

func (rt *Router) sites(c *call) error {
	if _, err := c.parse(c.flags("sites"), 0, 0); err != nil {
		return err
	}
	for _, s := range rt.visibleSites(c.id) {
		fmt.Fprintln(c.io.Stdout, s.Name)
	}
	return nil
}

func (rt *Router) status(c *call) error {
	pos, err := c.parse(c.flags("status"), 0, 1)
	if err != nil {
		return err
	}
	var list []deployer.Site
	if len(pos) == 1 {
		c.site = pos[0]
		s, err := rt.Site(c.id, pos[0], keys.VerbStatus)
		if err != nil {
			return err
		}
		list = []deployer.Site{s}
	} else {
		list = rt.visibleSites(c.id)
		if len(list) == 0 {
			fmt.Fprintln(c.io.Stdout, "no sites yet (add one with: eeveon site add NAME)")
			return nil
		}
	}
	w := bufio.NewWriter(c.io.Stdout)
	for _, s := range list {
		st, err := rt.Engine.Status(s.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", s.Name)
		switch {
		case st.LiveColor == "":
			fmt.Fprintf(w, "  live:     nothing deployed yet\n")
		case st.Live != nil:
			fmt.Fprintf(w, "  live:     %s %s (%s), deployed %s by %s, deploy %s\n", st.LiveColor, st.Live.Short(),
				strings.TrimPrefix(st.Live.Ref, "refs/heads/"), st.Live.FinishedAt.Format(time.RFC3339), st.Live.User, st.Live.ID)
		default:
			fmt.Fprintf(w, "  live:     %s (no deploy record)\n", st.LiveColor)
		}
		if st.Pending != nil {
			fmt.Fprintf(w, "  pending:  deploy %s of %s on %s by %s awaits approval until %s (approve %s %s)\n", st.Pending.ID, st.Pending.Short(),
				st.Pending.Color, st.Pending.User, st.Pending.ExpiresAt.Format(time.RFC3339), s.Name, st.Pending.ID)
		}
		if f := st.Failed; f != nil {
			fmt.Fprintf(w, "  failed:   deploy %s of %s by %s, %s %s: %s\n", f.ID, firstOr(f.Short(), "?"), f.User, f.State,
				f.FinishedAt.Format(time.RFC3339), f.Error)
		}
		if st.Running != nil {
			fmt.Fprintf(w, "  running:  deploy %s of %s, %s for %s\n", st.Running.ID, firstOr(st.Running.Short(), "?"), st.Running.Phase, st.Running.Duration())
		}
		if a := st.App; a != nil {
			switch {
			case a.Running:
				fmt.Fprintf(w, "  app:      proxy %s -> %s on port %d, pid %d, %d restarts\n", firstOr(a.Proxy, s.Proxy), a.Color, a.Port, a.PID, a.Restarts)
			case a.Color != "":
				fmt.Fprintf(w, "  app:      proxy %s -> %s on port %d, down (restarting; see logs %s --app)\n", firstOr(a.Proxy, s.Proxy), a.Color, a.Port, s.Name)
			default:
				fmt.Fprintf(w, "  app:      proxy %s, no app running (see logs %s --app)\n", s.Proxy, s.Name)
			}
		}
		fmt.Fprintf(w, "  strategy: %s, branch %s, path %s\n", s.Strategy, s.Branch, s.Path)
	}
	return w.Flush()
}

func firstOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (rt *Router) history(c *call) error {
	fs := c.flags("history")
	n := fs.Int("n", 20, "")
	pos, err := c.parse(fs, 1, 1)
	if err != nil {
		return err
	}
	c.site = pos[0]
	s, err := rt.Site(c.id, pos[0], keys.VerbHistory)
	if err != nil {
		return err
	}
	if *n < 1 {
		return usagef("history: -n must be at least 1")
	}
	h, err := deployer.History(s)
	if err != nil {
		return err
	}
	if len(h) > *n {
		h = h[len(h)-*n:]
	}
	w := bufio.NewWriter(c.io.Stdout)
	fmt.Fprintf(w, "%-20s  %-12s  %-8s  %-7s  %-10s  %-8s  %-20s  %8s  %s\n", "ID", "STATE", "COLOR", "COMMIT", "USER", "TRIGGER", "STARTED", "TOOK", "ERROR/NOTE")
	for _, r := range h {
		fmt.Fprintf(w, "%-20s  %-12s  %-8s  %-7s  %-10s  %-8s  %-20s  %8s  %s\n", r.ID, r.State, r.Color, r.Short(), r.User, r.Trigger,
			r.StartedAt.Format(time.RFC3339), r.Duration().Round(100*time.Millisecond), firstOr(r.Error, r.Note))
	}
	return w.Flush()
}

func (rt *Router) logs(c *call) error {
	fs := c.flags("logs")
	appLog := fs.Bool("app", false, "")
	lines := fs.Int("n", 200, "")
	pos, err := c.parse(fs, 1, 2)
	if err != nil {
		return err
	}
	c.site = pos[0]
	s, err := rt.Site(c.id, pos[0], keys.VerbLogs)
	if err != nil {
		return err
	}
	if *appLog {
		if len(pos) == 2 {
			return usagef("logs: --app takes no deploy id (usage: %s)", verbs["logs"].usage)
		}
		if *lines < 1 {
			return usagef("logs: -n must be at least 1")
		}
		return appLogTail(c.io.Stdout, rt.Engine.Data(), s, *lines)
	}
	id := ""
	if len(pos) == 2 {
		if err := names.DeployID(pos[1]); err != nil {
			return err
		}
		id = pos[1]
	}
	if id != "" {
		if _, err := deployer.LoadRecord(rt.Engine.Data(), s.Name, id); err != nil {
			return err
		}
	} else {
		recs, err := deployer.ListRecords(rt.Engine.Data(), s.Name)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return fmt.Errorf("%w: %s has no deploys yet", deployer.ErrDeployNotFound, s.Name)
		}
		id = recs[len(recs)-1].ID
	}
	f, err := os.Open(deployer.LogPath(rt.Engine.Data(), s.Name, id))
	if err != nil {
		return fmt.Errorf("%w: log of %s is gone", deployer.ErrDeployNotFound, id)
	}
	defer f.Close()
	_, err = io.Copy(c.io.Stdout, f)
	return err
}

// ErrNoAppLog is returned by logs --app for a site without app output.
var ErrNoAppLog = errors.New("no app log")

// appLogTail writes the last n lines of a site's app log (from its last
// MiB).
func appLogTail(w io.Writer, d deployer.Data, s deployer.Site, n int) error {
	f, err := os.Open(d.AppLog(s.Name))
	if err != nil {
		if !s.IsApp() {
			return fmt.Errorf("%w: %s is not an app site (it has no start command)", ErrNoAppLog, s.Name)
		}
		return fmt.Errorf("%w: the app of %s has not run yet", ErrNoAppLog, s.Name)
	}
	defer f.Close()
	const window = 1 << 20
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(fi.Size()-window, io.SeekStart); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, window))
	if err != nil {
		return err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	all := bytes.Split(b, []byte("\n"))
	if len(all) > n {
		all = all[len(all)-n:]
	}
	if len(b) == 0 {
		return nil
	}
	_, err = w.Write(append(bytes.Join(all, []byte("\n")), '\n'))
	return err
}

func (rt *Router) deploy(c *call) error {
	fs := c.flags("deploy")
	ref := fs.String("ref", "", "")
	strategy := fs.String("strategy", "", "")
	pos, err := c.parse(fs, 1, 1)
	if err != nil {
		return err
	}
	c.site = pos[0]
	if *ref != "" {
		if err := names.Ref(*ref); err != nil {
			return err
		}
	}
	var st deployer.Strategy
	if *strategy != "" {
		if st, err = deployer.ParseStrategy(*strategy); err != nil {
			return usagef("deploy: %v", err)
		}
	}
	s, err := rt.Site(c.id, pos[0], keys.VerbDeploy)
	if err != nil {
		return err
	}
	// Choosing a commit or a strategy other than the site's is an admin's
	// call: a ref can roll back in disguise, in-place takes the instant
	// rollback away.
	if *ref != "" {
		if err := keys.Authorize(c.id, keys.VerbDeployRef, s.Name); err != nil {
			return err
		}
	}
	if st != "" && st != s.Strategy {
		if err := keys.Authorize(c.id, keys.VerbDeployStrategy, s.Name); err != nil {
			return err
		}
	}
	req := deployer.Request{
		Site: s.Name, Ref: *ref, Strategy: st, Trigger: "cli", User: c.id.User, Fingerprint: c.id.Fingerprint,
	}
	if c.id.Source == "ssh" || c.id.Source == "openssh" {
		req.Trigger = "ssh"
	}
	_, err = rt.Engine.Deploy(c.ctx, req, c.io.Stdout)
	return err
}

// push deploys a pushed update of a site's branch: the hidden verb of a
// control request's Push, which only the repository's proc-receive hook
// sends, with the pusher's identity. Its result is the push's exit status
// and, when nothing went live, the one-line reason git shows beside the
// rejected ref. A deploy that went live, waits for approval or was
// superseded by a newer push is a success; the engine moves the branch
// (deployer/branch.go).
func (rt *Router) push(c *call) error {
	p := c.push
	if p == nil {
		return usagef("unknown command %q", "push")
	}
	c.site = p.Site
	refuse := func(outcome string, err error) error {
		c.outcome, c.reason = outcome, err.Error()
		return err
	}
	s, err := rt.Site(c.id, p.Site, keys.VerbPush)
	if err != nil {
		return refuse("error: "+err.Error(), err)
	}
	switch {
	case p.Ref != s.Ref():
		return refuse("refused", fmt.Errorf("only %s deploys %s", s.Branch, s.Name))
	case strings.Trim(p.New, "0") == "":
		return refuse("refused", fmt.Errorf("deleting %s would leave %s with nothing to deploy; it stays", s.Branch, s.Name))
	case names.Commit(p.New) != nil:
		return refuse("refused", names.Commit(p.New))
	case names.Commit(p.Old) != nil:
		// All zeros (a new branch) is a valid object id here.
		return refuse("refused", names.Commit(p.Old))
	}
	r, err := rt.Engine.Deploy(c.ctx, deployer.Request{
		Site: s.Name, Commit: p.New, Ref: s.Ref(), Trigger: "push", User: c.id.User,
		Fingerprint: c.id.Fingerprint, FromPush: true, Old: p.Old,
	}, c.io.Stdout)
	c.command, c.outcome = "push "+strconv.Quote(deployer.ShortCommit(p.New)), string(r.State)
	if err == nil {
		return nil
	}
	c.outcome, c.reason = "error: "+err.Error(), err.Error()
	if r.ID != "" {
		// It started: its output said why it did not go live.
		c.reason, c.reported = fmt.Sprintf("deploy %s %s: %v", r.ID, r.State, err), true
	}
	return err
}

func (rt *Router) rollback(c *call) error {
	fs := c.flags("rollback")
	to := fs.String("to", "", "")
	pos, err := c.parse(fs, 1, 1)
	if err != nil {
		return err
	}
	c.site = pos[0]
	s, err := rt.Site(c.id, pos[0], keys.VerbRollback)
	if err != nil {
		return err
	}
	req := deployer.Request{Site: s.Name, User: c.id.User, Fingerprint: c.id.Fingerprint}
	if *to == "" {
		_, err = rt.Engine.Rollback(c.ctx, req, c.io.Stdout)
		return err
	}
	if err := names.DeployID(*to); err != nil {
		return err
	}
	old, err := deployer.FindDeploy(rt.Engine.Data(), s, *to)
	if err != nil {
		return err
	}
	if old.Commit == "" {
		return fmt.Errorf("%w: deploy %s never resolved a commit", deployer.ErrNoRollback, old.ID)
	}
	req.Ref, req.Trigger = old.Commit, deployer.TriggerRollbackTo
	_, err = rt.Engine.Deploy(c.ctx, req, c.io.Stdout)
	return err
}

// keys lists the key store (admins only); keys are managed on the server
// with eeveon keys add|rm.
func (rt *Router) keys(c *call) error {
	pos, err := c.parse(c.flags("keys"), 1, 1)
	if err != nil {
		return err
	}
	if pos[0] != "list" {
		return usagef("usage: %s (add and remove keys on the server: eeveon keys add|rm)", verbs["keys"].usage)
	}
	if err := keys.Authorize(c.id, keys.VerbKeys, ""); err != nil {
		return err
	}
	if rt.Keys == nil {
		return errors.New("no key store")
	}
	entries, problems, err := rt.Keys.List()
	if err != nil {
		return err
	}
	w := bufio.NewWriter(c.io.Stdout)
	fmt.Fprintf(w, "%-16s  %-8s  %-20s  %-50s  %s\n", "USER", "ROLE", "SITES", "FINGERPRINT", "COMMENT")
	for _, e := range entries {
		sites := "*"
		if len(e.Sites) > 0 {
			sites = strings.Join(e.Sites, ",")
		}
		fmt.Fprintf(w, "%-16s  %-8s  %-20s  %-50s  %s\n", e.User, e.Role, sites, e.Fingerprint(), e.Comment)
	}
	for _, p := range problems {
		fmt.Fprintf(w, "warning: %v (skipped)\n", p)
	}
	return w.Flush()
}

func (rt *Router) approve(c *call) error {
	return rt.decide(c, "approve", keys.VerbApprove, rt.Engine.Approve)
}

func (rt *Router) reject(c *call) error {
	return rt.decide(c, "reject", keys.VerbReject, rt.Engine.Reject)
}

func (rt *Router) decide(c *call, name string, v keys.Verb,
	act func(ctx context.Context, site, id, user string, out io.Writer) (deployer.Record, error)) error {
	s, id, err := rt.siteAndDeploy(c, name, v)
	if err != nil {
		return err
	}
	_, err = act(c.ctx, s.Name, id, c.id.User, c.io.Stdout)
	return err
}

func (rt *Router) vacuum(c *call) error {
	cfg := rt.Engine.Config().Vacuum
	fs := c.flags("vacuum")
	keep := fs.Int("keep", cfg.Keep, "")
	maxAge := fs.Duration("max-age", cfg.MaxAge.Duration, "")
	dry := fs.Bool("dry-run", false, "")
	if _, err := c.parse(fs, 0, 0); err != nil {
		return err
	}
	if err := keys.Authorize(c.id, keys.VerbVacuum, ""); err != nil {
		return err
	}
	opt := deployer.VacuumOptions{Keep: *keep, MaxAge: *maxAge, DryRun: *dry}
	var buf bytes.Buffer
	if err := rt.Engine.Vacuum(c.ctx, opt, io.MultiWriter(c.io.Stdout, &buf)); err != nil {
		return err
	}
	if buf.Len() == 0 {
		fmt.Fprintln(c.io.Stdout, "nothing to clean up")
	}
	return nil
}

// siteAndDeploy parses the arguments SITE [DEPLOY_ID] of a verb and
// resolves the site for the caller.
func (rt *Router) siteAndDeploy(c *call, name string, v keys.Verb) (deployer.Site, string, error) {
	pos, err := c.parse(c.flags(name), 1, 2)
	if err != nil {
		return deployer.Site{}, "", err
	}
	c.site = pos[0]
	s, err := rt.Site(c.id, pos[0], v)
	if err != nil {
		return s, "", err
	}
	if len(pos) == 2 {
		if err := names.DeployID(pos[1]); err != nil {
			return s, "", err
		}
		return s, pos[1], nil
	}
	return s, "", nil
}
