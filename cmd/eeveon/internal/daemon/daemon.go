// Package daemon is `eeveon serve`: the one process that changes deploy
// state. New wires the parts (engine, secrets, keys, router, notifier,
// poller, HTTP server, control socket, SSH server); Run starts them in
// order, waits for SIGINT, SIGTERM or its context, and stops them in the
// order written once in stop.go.
//
//	d, err := daemon.New(daemon.Config{Data: data, Config: cfg, Log: logger})
//	if err != nil { ... }
//	err = d.Run(ctx) // returns when the daemon has stopped
//
// It lives under cmd/eeveon/internal because the eeveon command is its
// only user: the parts it wires are the API, the wiring is not.
package daemon

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/httpapi"
	"github.com/eeveon/eeveon/deployer/notify"
	"github.com/eeveon/eeveon/deployer/poll"
	"github.com/eeveon/eeveon/deployer/secrets"
	"github.com/eeveon/eeveon/keys"
	"github.com/eeveon/eeveon/sshd"
)

// Config is what a daemon is made of.
type Config struct {
	Data deployer.Data
	// Config is the loaded config with the command line applied;
	// Listen "off" leaves the embedded SSH server out.
	Config deployer.Config
	// Log is the daemon's logger; each part gets its own prefix on it.
	Log *log.Logger
	// HostKey is the host key's fingerprint, for the log.
	HostKey string
	// Exe is this binary, which the repositories' hooks run.
	Exe string
}

// Daemon is a wired server. Run it once.
type Daemon struct {
	data    deployer.Data
	cfg     deployer.Config
	log     *log.Logger
	hostKey string
	exe     string
	unlock  func() // releases the data dir

	engine   *deployer.Engine
	keys     *keys.Store
	notifier *notify.Notifier
	poller   *poll.Poller
	web      *httpapi.Server // nil without http.listen
	ctl      *control.Server
	ssh      *sshd.Server // nil with listen "off"
	jobs     *scheduler

	// What start got to, for stop.
	up struct{ web, engine, ctl, ssh bool }
	// stopCtl cancels the control requests' context.
	stopCtl context.CancelFunc
	sites   int
}

// New takes the data dir (one server per data dir: it is the only writer
// of deploy state) and wires the parts. Nothing runs yet.
func New(c Config) (_ *Daemon, err error) {
	unlock, err := Lock(c.Data)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	d := &Daemon{data: c.Data, cfg: c.Config, log: c.Log, hostKey: c.HostKey, exe: c.Exe, unlock: unlock, jobs: newScheduler()}
	d.engine = deployer.NewEngine(c.Data, c.Config, c.Log.WithPrefix("deploy"))
	// Secrets are decrypted only in memory, per deploy. A key that others
	// can read stops the server rather than deploy without secrets.
	vault, err := secrets.Open(c.Data.Dir)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	d.engine.SetSecrets(vault)
	if err := d.engine.SetRunAs(c.Config.Deploy.RunAs); err != nil {
		return nil, err
	}
	if err := d.engine.ContainCommands(); err != nil {
		// Without cgroups a build's setsid or double fork outlives it.
		d.log.Warn("site commands are not contained: what a build leaves running outlives it", "err", err)
	}
	d.wire(vault, command.NewAudit(c.Data.AuditLog()))
	return d, nil
}

// wire connects the parts around the engine.
func (d *Daemon) wire(vault *secrets.Store, audit *command.Audit) {
	// Notifications: the engine's callback only queues; webhooks are
	// posted in the background, masked with the site's secrets.
	d.notifier = notify.New(d.cfg.Notify, d.log.WithPrefix("notify"))
	d.notifier.Mask = func(site, text string) string {
		vals, err := vault.Get(site)
		if err != nil {
			return text
		}
		return secrets.Mask(text, slices.Collect(maps.Values(vals)))
	}
	d.engine.OnEvent(d.notifier.Enqueue)
	d.poller = poll.New(d.engine, d.log.WithPrefix("poll"))
	// An https poll URL may authenticate with the site's secret
	// EEVEON_POLL_TOKEN.
	d.poller.TokenFunc = func(site string) (string, error) {
		vals, err := vault.Get(site)
		return vals["EEVEON_POLL_TOKEN"], err
	}
	if d.cfg.HTTP.Listen != "" {
		d.web = &httpapi.Server{Engine: d.engine, Config: d.cfg.HTTP, Audit: audit, Log: d.log.WithPrefix("http"), Trigger: d.poller.Trigger}
		d.notifier.Links = d.web
	}
	d.keys = keys.Open(d.data.AuthorizedKeys())
	router := &command.Router{Engine: d.engine, Keys: d.keys, Secrets: vault, Audit: audit, Log: d.log.WithPrefix("cmd")}
	d.ctl = &control.Server{
		Path: d.data.Socket(), AdminGroup: d.cfg.AdminGroup, Log: d.log.WithPrefix("control"),
		Handler: router.Control,
	}
	if d.cfg.Listen != "off" {
		d.ssh = &sshd.Server{Data: d.data, Config: d.cfg.SSH, Keys: d.keys, Router: router, Log: d.log.WithPrefix("ssh")}
	}
}

// Run starts the daemon and serves until SIGINT, SIGTERM or the end of
// ctx; then it stops gracefully and releases the data dir. A start that
// fails stops what had started and returns the error.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.unlock()
	// From here on SIGTERM is a graceful stop, also while the server is
	// still starting: the recovery starts apps, and a server killed by
	// the signal's default action would leave them running on their own.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := d.start(); err != nil {
		d.stop()
		return err
	}
	d.log.Info("ready", "sites", d.sites, "socket", d.data.Socket())
	grace := d.cfg.Deploy.ShutdownTimeout.Duration
	select {
	case s := <-sig:
		d.log.Info("shutting down", "signal", s.String(), "grace", grace)
	case <-ctx.Done():
		d.log.Info("shutting down", "grace", grace)
	}
	signal.Stop(sig) // a second signal kills at once
	d.stop()
	d.log.Info("stopped")
	return nil
}
