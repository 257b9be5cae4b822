package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer/app"
	"github.com/eeveon/eeveon/deployer/internal/cgroup"
	"github.com/eeveon/eeveon/deployer/secrets"
)

// An app site runs its start command in each colour behind one built-in
// proxy. The engine keeps, per app site, the proxy and the processes of
// its colours: the live one (supervised) and one that passed its check
// and waits for approval. These change only under the site's lock, or
// before the engine takes work, or after it stopped taking it; appsMu
// guards the maps and fields for the readers outside those (the
// supervisor's events, Shutdown).

// appRuntime is the app sites' proxies and processes: the app target's
// state, with its own locks. mu guards sites and the fields of each
// appSite; stateMu serialises the state files of live apps.
type appRuntime struct {
	e       *Engine
	mu      sync.Mutex
	sites   map[string]*appSite
	stateMu sync.Mutex
}

// appSite is the run-time state of one app site.
type appSite struct {
	proxy   *app.Proxy
	addr    string
	live    *appInst
	pending *appInst
	logf    *RotatingFile
}

// appInst is one colour's app: its process (supervised once live), the
// proxy's backend for it and what its output goes through.
type appInst struct {
	site, color, deployID string
	port                  int
	backend               *app.Backend
	spec                  app.Spec
	proc                  *app.Process
	sup                   *app.Supervisor
	out                   *lineWriter
	mask                  *secrets.MaskWriter
	recent                *limitedBuffer // the last output, for a failed check
	secretFile            *os.File       // the app's own copy of the secrets file
	cg                    *cgroup.Group  // the colour's cgroup, nil without containment
}

// current is the process running now.
func (a *appInst) current() *app.Process {
	if a.sup != nil {
		return a.sup.Current()
	}
	return a.proc
}

// stop ends the app: SIGTERM to its group, SIGKILL after grace.
func (a *appInst) stop(grace time.Duration) error {
	var err error
	if a.sup != nil {
		err = a.sup.Stop(context.Background(), grace)
	} else {
		err = a.proc.Stop(context.Background(), grace)
	}
	if a.cg != nil {
		// What the app left running (setsid, daemons) ends with it.
		if cerr := a.cg.Remove(); err == nil {
			err = cerr
		}
	}
	a.out.Flush()
	_ = a.mask.Flush()
	if a.secretFile != nil {
		a.secretFile.Close()
	}
	return err
}

// appStateRecord is <data>/state/apps/SITE.json: the live app process,
// for cleaning up after a server that died.
type appStateRecord struct {
	Color    string    `json:"color"`
	Port     int       `json:"port"`
	PID      int       `json:"pid"`
	PGID     int       `json:"pgid"`
	DeployID string    `json:"deploy_id"`
	Started  time.Time `json:"started"`
}

// appSiteFor returns the run-time state of an app site, made on first use.
func (a *appRuntime) appSiteFor(name string) *appSite {
	a.mu.Lock()
	defer a.mu.Unlock()
	as, ok := a.sites[name]
	if !ok {
		as = &appSite{logf: &RotatingFile{Path: a.e.data.AppLog(name), Max: a.e.cfg.LogMaxSize}}
		a.sites[name] = as
	}
	return as
}

// appPorts are the site's blue and green ports.
func (a *appRuntime) appPorts(site Site) (blue, green int, err error) {
	if len(site.Ports) == 2 {
		return site.Ports[0], site.Ports[1], nil
	}
	// Ports other sites take without the ports file: their fixed ports
	// and their proxies (and this site's own proxy).
	var reserved []int
	sites, _ := ListSites(a.e.data)
	for _, o := range sites {
		if !o.IsApp() {
			continue
		}
		if _, p, err := net.SplitHostPort(o.Proxy); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				reserved = append(reserved, n)
			}
		}
		if o.Name != site.Name {
			reserved = append(reserved, o.Ports...)
		}
	}
	return app.PickPorts(a.e.data.PortsFile(), site.Name, a.e.cfg.App.PortMin, a.e.cfg.App.PortMax, reserved...)
}

// waitPortFree waits up to d for port to be free on 127.0.0.1: an app of
// a server that died may still be on its way out.
func waitPortFree(port int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !app.PortFree(port) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// startApp starts the site's app in dir on its colour's port and waits
// until it answers its health path. A colour that does not become
// healthy is stopped again.
func (a *appRuntime) startApp(j *job, dir string, pr proc) (*appInst, error) {
	site, r, p := j.site, j.r, j.p
	blue, green, err := a.appPorts(site)
	if err != nil {
		return nil, err
	}
	port := blue
	if r.Color == "green" {
		port = green
	}
	if !waitPortFree(port, 5*time.Second) {
		return nil, fmt.Errorf("port %d of %s is in use by another process", port, r.Color)
	}
	as := a.appSiteFor(site.Name)
	if err := os.MkdirAll(a.e.data.LogsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("app log: %w", err)
	}
	inst := &appInst{site: site.Name, color: r.Color, deployID: r.ID, port: port,
		backend: app.NewBackend(r.Color, port), recent: &limitedBuffer{}}
	files := pr.files
	if len(files) > 0 {
		// The job's copy is closed when the job ends; a supervised app
		// needs one for its restarts.
		if inst.secretFile, err = secrets.MemFile(secrets.FormatDotenv(j.secrets)); err != nil {
			return nil, err
		}
		files = []*os.File{inst.secretFile}
	}
	inst.mask = secrets.NewMaskWriter(io.MultiWriter(as.logf, inst.recent), slices.Collect(maps.Values(j.secrets)))
	inst.out = &lineWriter{w: inst.mask, prefix: r.Color + " | "}
	if pr.cgroups != nil {
		if inst.cg, err = pr.cgroups.New(site.Name + ".app-" + r.Color); err != nil {
			if inst.secretFile != nil {
				inst.secretFile.Close()
			}
			return nil, fmt.Errorf("contain the app: %w", err)
		}
	}
	inst.spec = app.Spec{
		Command: site.Start, Dir: dir, Out: inst.out, Files: files, Cred: pr.cred, Cgroup: inst.cg,
		Env: append(slices.Clone(pr.env), "PORT="+strconv.Itoa(port), "EEVEON_PORT="+strconv.Itoa(port)),
	}
	fmt.Fprintf(as.logf, "==> %s eeveon: starting %s %s (deploy %s) on port %d\n",
		time.Now().UTC().Format(time.RFC3339), r.Color, ShortCommit(r.Commit), r.ID, port)
	p.step("starting the app in %s on port %d: %s", r.Color, port, site.Start)
	inst.proc, err = app.Start(inst.spec)
	if err != nil {
		if inst.secretFile != nil {
			inst.secretFile.Close()
		}
		if inst.cg != nil {
			_ = inst.cg.Remove()
		}
		return nil, err
	}
	if err := a.checkAppHealth(j, inst); err != nil {
		_ = inst.stop(a.e.cfg.App.StopGrace.Duration)
		if out := inst.recent.Bytes(); len(out) > 0 {
			p.step("the app's last output:")
			lw := &lineWriter{w: j.cmdOut, prefix: "    "}
			_, _ = lw.Write(out)
			lw.Flush()
		}
		return nil, err
	}
	return inst, nil
}

// checkAppHealth waits until inst answers its health path 2xx.
func (a *appRuntime) checkAppHealth(j *job, inst *appInst) error {
	cfg := a.e.cfg.Deploy
	url := "http://127.0.0.1:" + strconv.Itoa(inst.port) + j.site.HealthPath
	j.p.step("health check of %s: GET %s", inst.color, url)
	err := app.WaitHealthy(a.e.hard, url, cfg.HealthInterval.Duration, cfg.HealthTry.Duration, cfg.HealthTimeout.Duration, inst.current().Done())
	if err != nil {
		if cur := inst.current(); isDone(cur.Done()) {
			exit := "exited with status 0"
			if werr := cur.Wait(); werr != nil {
				exit = werr.Error()
			}
			return fmt.Errorf("%w (the app %s)", err, exit)
		}
		return err
	}
	if err := inst.ownsPort(); err != nil {
		return err
	}
	j.p.step("health check passed: %s answers on port %d", inst.color, inst.port)
	return nil
}

// ownsPort checks that what answers on the colour's port is the colour's
// own app: a process of its cgroup, and nothing else beside it. Another
// site's process that bound the port first would otherwise be health-
// checked and get the traffic (without cgroups there is nothing to check
// against).
func (a *appInst) ownsPort() error {
	if a.cg == nil {
		return nil
	}
	ok, err := a.cg.OwnsPort(a.port)
	if err != nil {
		return fmt.Errorf("check who listens on port %d: %w", a.port, err)
	}
	if !ok {
		return fmt.Errorf("port %d answers, but not (only) from the %s colour's app: another process listens there; not using it", a.port, a.color)
	}
	return nil
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// checkApp is an app site's health step: the app of the new colour runs
// and answers, or the deploy fails with the live colour untouched. The
// approval of a deploy whose app kept running since its check checks
// that process again.
func (a *appRuntime) checkApp(j *job, dir string, pr proc) (*appInst, error) {
	// The proxy listens first: its address is checked before anything
	// starts, and the ports picked for the colours cannot be its own.
	if _, err := a.ensureProxy(j.site); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	as := a.appSiteFor(j.site.Name)
	a.mu.Lock()
	waiting := as.pending
	if waiting != nil && waiting.deployID == j.r.ID {
		as.pending = nil
	} else {
		waiting = nil
	}
	a.mu.Unlock()
	if waiting != nil {
		if !isDone(waiting.proc.Done()) {
			if err := a.checkAppHealth(j, waiting); err == nil {
				return waiting, nil
			}
		}
		j.p.step("the app that waited for approval is gone or unhealthy; starting it again")
		_ = waiting.stop(a.e.cfg.App.StopGrace.Duration)
	}
	inst, err := a.startApp(j, dir, pr)
	if err != nil {
		return nil, err
	}
	if j.site.HealthCmd != "" || j.site.HealthURL != "" {
		if err := a.e.healthCheck(a.e.hard, j, dir, pr); err != nil {
			_ = inst.stop(a.e.cfg.App.StopGrace.Duration)
			return nil, err
		}
	}
	return inst, nil
}

// holdForApproval keeps inst running while its deploy waits for approval.
func (a *appRuntime) holdForApproval(site string, inst *appInst) {
	as := a.appSiteFor(site)
	a.mu.Lock()
	old := as.pending
	as.pending = inst
	a.mu.Unlock()
	if old != nil {
		_ = old.stop(a.e.cfg.App.StopGrace.Duration)
	}
}

// stopPendingApp stops the app of deploy id if it waits for approval:
// the deploy was rejected, expired, superseded or failed.
func (a *appRuntime) stopPendingApp(site, id string, p progress) {
	a.mu.Lock()
	as := a.sites[site]
	var inst *appInst
	if as != nil && as.pending != nil && as.pending.deployID == id {
		inst, as.pending = as.pending, nil
	}
	a.mu.Unlock()
	if inst == nil {
		return
	}
	if err := inst.stop(a.e.cfg.App.StopGrace.Duration); err != nil {
		a.e.log.Warn("stop app", "site", site, "color", inst.color, "err", err)
	}
	if p.w != nil {
		p.step("stopped the app in %s", inst.color)
	}
}

// ensureProxy makes the site's proxy listen on its address.
func (a *appRuntime) ensureProxy(site Site) (*app.Proxy, error) {
	as := a.appSiteFor(site.Name)
	a.mu.Lock()
	px, addr := as.proxy, as.addr
	a.mu.Unlock()
	if px != nil && addr == site.Proxy {
		return px, nil
	}
	npx := app.NewProxy(a.e.log.WithPrefix("proxy").With("site", site.Name))
	if err := npx.Listen(site.Proxy); err != nil {
		return nil, err
	}
	go func() {
		if err := npx.Serve(); err != nil {
			a.e.log.Error("proxy", "site", site.Name, "err", err)
		}
	}()
	a.e.log.Info("proxy listening", "site", site.Name, "addr", npx.Addr().String())
	if px != nil {
		// The site's proxy address changed: the new proxy takes over the
		// live colour, the old one finishes its requests and closes.
		if b := px.Current(); b != nil {
			npx.Switch(b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.e.cfg.App.DrainTimeout.Duration)
		if err := px.Shutdown(ctx); err != nil {
			a.e.log.Warn("proxy shutdown", "site", site.Name, "addr", addr, "err", err)
		}
		cancel()
		a.e.log.Info("proxy moved", "site", site.Name, "from", addr, "to", site.Proxy)
	}
	a.mu.Lock()
	as.proxy, as.addr = npx, site.Proxy
	a.mu.Unlock()
	return npx, nil
}

// goLive makes inst the site's live app: supervised, recorded, and the
// proxy's backend. It returns the app it replaces, if any.
func (a *appRuntime) goLive(px *app.Proxy, inst *appInst) (old *appInst) {
	l := a.e.log.WithPrefix("app").With("site", inst.site, "color", inst.color)
	inst.sup = app.Supervise(inst.proc, inst.spec, l, app.Policy{OnEvent: func(ev app.Event) {
		if ev.Kind == app.EventRestarted {
			go a.saveAppState(inst)
		}
	}})
	as := a.appSiteFor(inst.site)
	a.mu.Lock()
	old, as.live = as.live, inst
	a.mu.Unlock()
	px.Switch(inst.backend)
	a.saveAppState(inst)
	return old
}

// retire drains the colour that was live and stops its app.
func (a *appRuntime) retire(px *app.Proxy, old *appInst, p progress) {
	ctx, cancel := context.WithTimeout(context.Background(), a.e.cfg.App.DrainTimeout.Duration)
	err := px.Drain(ctx, old.backend)
	cancel()
	if err != nil {
		p.step("warning: %v", err)
		a.e.log.Warn("drain", "site", old.site, "color", old.color, "err", err)
	}
	if err := old.stop(a.e.cfg.App.StopGrace.Duration); err != nil {
		p.step("warning: %v", err)
		a.e.log.Warn("stop app", "site", old.site, "color", old.color, "err", err)
	}
	p.step("drained and stopped the app in %s", old.color)
}

// saveAppState records the live app of a site, unless another one has
// become live meanwhile.
func (a *appRuntime) saveAppState(inst *appInst) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	a.mu.Lock()
	as := a.sites[inst.site]
	live := as != nil && as.live == inst
	a.mu.Unlock()
	if !live {
		return
	}
	p := inst.current()
	b, _ := json.Marshal(appStateRecord{Color: inst.color, Port: inst.port, PID: p.Pid(), PGID: p.Pgid(),
		DeployID: inst.deployID, Started: p.Started().UTC()})
	path := a.e.data.AppStateFile(inst.site)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		err = WriteFileAtomic(path, append(b, '\n'), 0o600)
		if err == nil {
			return
		}
	}
	a.e.log.Warn("record app state", "site", inst.site, "path", path)
}

// killLeftoverApp stops the app a previous server recorded for site, if
// it still runs: the parent-death signal stops apps with the server, but
// their shutdown may still be under way, and a pid in the file may have
// been reused by another program (then it is left alone).
func (a *appRuntime) killLeftoverApp(site string) {
	path := a.e.data.AppStateFile(site)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var st appStateRecord
	if err := json.Unmarshal(b, &st); err != nil {
		a.e.log.Warn("app state unreadable", "site", site, "path", path, "err", err)
		_ = os.Remove(path)
		return
	}
	leaderGone := errors.Is(syscall.Kill(st.PID, 0), syscall.ESRCH)
	if app.Alive(st.PID, st.PGID) || (leaderGone && len(app.GroupMembers(st.PGID)) > 0) {
		a.e.log.Warn("stopping an app left by the previous server", "site", site, "color", st.Color, "pid", st.PID, "port", st.Port)
		if err := app.KillGroup(st.PGID, a.e.cfg.App.StopGrace.Duration); err != nil {
			a.e.log.Error("stop leftover app", "site", site, "err", err)
		}
	}
	_ = os.Remove(path)
}

// recoverApps starts again, in the background, the live colour of every
// app site, after cleaning up what a previous server left.
func (a *appRuntime) recoverApps(sites []Site) {
	for _, site := range sites {
		if !site.IsApp() {
			continue
		}
		a.killLeftoverApp(site.Name)
		color := LiveColor(site.Path)
		if color != "blue" && color != "green" {
			continue
		}
		done, err := a.e.begin()
		if err != nil {
			return
		}
		go func() {
			defer done()
			a.restoreApp(site.Name, color)
		}()
	}
}

// logLines passes each line written to it to a logger.
type logLines struct{ l *log.Logger }

func (w logLines) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimPrefix(strings.TrimSpace(string(p)), "==> "))
	return len(p), nil
}

// restoreApp starts the live colour of an app site at server start and
// puts it behind the proxy. Until it is healthy the proxy answers 503.
func (a *appRuntime) restoreApp(name, color string) {
	l := a.e.log.With("site", name, "color", color)
	unlock, err := a.e.lock(a.e.hard, name)
	if err != nil {
		return
	}
	defer unlock()
	site, err := LoadSite(a.e.data, name)
	if err != nil || !site.IsApp() || LiveColor(site.Path) != color {
		return
	}
	px, err := a.ensureProxy(site)
	if err != nil {
		l.Error("app site: the proxy cannot listen; the app is not started", "proxy", site.Proxy, "err", err)
		return
	}
	rec, ok := liveRecord(site, color)
	if !ok {
		rec = Record{Site: name, Color: color}
	}
	rec.Color = color
	out := &lineWriter{w: logLines{l}}
	defer out.Flush()
	j := &job{site: site, r: &rec, out: out, cmdOut: out, p: progress{out}, l: l}
	if a.e.secrets != nil {
		if j.secrets, err = a.e.secrets.Get(name); err != nil {
			l.Error("app site: its secrets cannot be read; the app is not started, the proxy answers 503 until the next deploy", "err", err)
			return
		}
	}
	defer func() {
		if j.secretFile != nil {
			j.secretFile.Close()
		}
	}()
	dir := filepath.Join(site.Path, color)
	pr, err := a.e.ws.env(j, dir)
	if err == nil {
		var inst *appInst
		if inst, err = a.startApp(j, dir, pr); err == nil {
			a.goLive(px, inst)
			l.Info("app live again after the server start", "port", inst.port, "deploy", rec.ID)
			return
		}
	}
	l.Error("app site: the live colour could not be started again; the proxy answers 503 until a deploy or rollback succeeds", "err", err)
}

// stopApps stops every app and proxy: the proxies stop taking requests
// and finish those in flight, then the apps get SIGTERM (SIGKILL after
// the grace period). Nothing the engine started is left running.
func (a *appRuntime) stopApps() {
	a.mu.Lock()
	sites := maps.Clone(a.sites)
	a.mu.Unlock()
	done := make(chan struct{})
	n := 0
	for name, as := range sites {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			a.stopAppSite(name, as)
		}()
	}
	for ; n > 0; n-- {
		<-done
	}
}

// stopAppSite shuts one app site down: its proxy stops taking requests
// and finishes those in flight, then its apps get SIGTERM (SIGKILL after
// the grace period).
func (a *appRuntime) stopAppSite(name string, as *appSite) {
	a.mu.Lock()
	px, live, pending := as.proxy, as.live, as.pending
	as.live, as.pending = nil, nil
	a.mu.Unlock()
	if px != nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(a.e.cfg.App.DrainTimeout.Duration, 10*time.Second))
		if err := px.Shutdown(ctx); err != nil {
			a.e.log.Warn("proxy shutdown", "site", name, "err", err)
		}
		cancel()
	}
	for _, inst := range []*appInst{live, pending} {
		if inst == nil {
			continue
		}
		if err := inst.stop(a.e.cfg.App.StopGrace.Duration); err != nil {
			a.e.log.Warn("stop app", "site", name, "color", inst.color, "err", err)
		} else {
			a.e.log.Info("app stopped", "site", name, "color", inst.color)
		}
	}
	if live != nil {
		_ = os.Remove(a.e.data.AppStateFile(name))
	}
	as.logf.Close()
}

// ReconcileApps stops the apps and the proxy of sites that were removed or
// are no longer app sites (site rm and site set edit files; the daemon
// notices here) and gives their ports back. The daemon calls it on a
// timer; a site busy with a deploy is left for the next round.
func (e *Engine) ReconcileApps() { e.apps.reconcile() }

func (a *appRuntime) reconcile() {
	a.mu.Lock()
	sites := maps.Clone(a.sites)
	a.mu.Unlock()
	for name, as := range sites {
		s, err := LoadSite(a.e.data, name)
		if err == nil && s.IsApp() {
			continue
		}
		if err != nil && !errors.Is(err, ErrSiteNotFound) {
			continue // a broken site file: keep serving, check says why
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		unlock, lerr := a.e.lock(ctx, name)
		cancel()
		if lerr != nil {
			continue
		}
		if s, err := LoadSite(a.e.data, name); err == nil && s.IsApp() {
			unlock() // re-added meanwhile: it is an app site again
			continue
		}
		a.mu.Lock()
		delete(a.sites, name)
		a.mu.Unlock()
		a.stopAppSite(name, as)
		if err := app.ReleasePorts(a.e.data.PortsFile(), name); err != nil {
			a.e.log.Warn("release ports", "site", name, "err", err)
		}
		unlock()
		a.e.log.Info("app site gone: stopped its app and proxy", "site", name)
	}
}

// AppStatus is what status reports about an app site's processes.
type AppStatus struct {
	Proxy    string // the address the proxy listens on; "" if it does not
	Color    string // the colour behind the proxy; "" if none
	Port     int
	PID      int
	Restarts int
	Running  bool
}

// appStatus describes the app of site name as this engine runs it.
func (a *appRuntime) appStatus(name string) *AppStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := &AppStatus{}
	as := a.sites[name]
	if as == nil {
		return st
	}
	if as.proxy != nil {
		st.Proxy = as.addr
	}
	if inst := as.live; inst != nil {
		p := inst.current()
		st.Color, st.Port, st.PID, st.Running = inst.color, inst.port, p.Pid(), !isDone(p.Done())
		if inst.sup != nil {
			st.Restarts = inst.sup.Restarts()
		}
	}
	return st
}
