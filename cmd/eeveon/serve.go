package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/log"
	"github.com/eeveon/eeveon/deployer/secrets"

	"golang.org/x/sys/unix"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/httpapi"
	"github.com/eeveon/eeveon/deployer/notify"
	"github.com/eeveon/eeveon/deployer/poll"
	"github.com/eeveon/eeveon/keys"
	"github.com/eeveon/eeveon/sshd"
)

func runServe(args []string) int {
	fs, data := flagSet("serve")
	listen := fs.String("listen", "", "SSH listen address (default: config listen, then "+deployer.DefaultListen+"; \"off\" disables SSH)")
	var opt logOptions
	fs.StringVar(&opt.format, "log-format", "text", "text, json or logfmt")
	fs.StringVar(&opt.level, "log-level", "info", "debug, info, warn or error")
	if _, code := parse(fs, args, 0, 0, "serve [--data DIR] [--listen ADDR] [--log-format text|json|logfmt] [--log-level LEVEL]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	if err := serve(d, *listen, opt); err != nil {
		return fail(err)
	}
	return 0
}

// logOptions are the server log's format and level flags.
type logOptions struct{ format, level string }

// serverLogger makes the server's logger: to stderr, or to the rotated
// log_file of the config.
func serverLogger(opt logOptions, cfg deployer.Config) (*log.Logger, func(), error) {
	o := log.Options{ReportTimestamp: true, Prefix: "serve"}
	switch opt.format {
	case "text":
		o.Formatter = log.TextFormatter
	case "json":
		o.Formatter = log.JSONFormatter
	case "logfmt":
		o.Formatter = log.LogfmtFormatter
	default:
		return nil, nil, fmt.Errorf("unknown log format %q (use text, json or logfmt)", opt.format)
	}
	lvl, err := log.ParseLevel(opt.level)
	if err != nil {
		return nil, nil, fmt.Errorf("unknown log level %q (use debug, info, warn or error)", opt.level)
	}
	o.Level = lvl
	if cfg.LogFile == "" {
		return log.NewWithOptions(os.Stderr, o), func() {}, nil
	}
	f := &deployer.RotatingFile{Path: cfg.LogFile, Max: cfg.LogMaxSize}
	return log.NewWithOptions(f, o), func() { f.Close() }, nil
}

func serve(d deployer.Data, listenFlag string, opt logOptions) error {
	// Until the config is read, log to stderr in the chosen format.
	logger, _, err := serverLogger(opt, deployer.Default())
	if err != nil {
		return err
	}
	var initOut bytes.Buffer
	fp, err := initData(d, &initOut)
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(bytes.TrimSpace(initOut.Bytes()), []byte("\n")) {
		if len(line) > 0 {
			logger.Info(string(line))
		}
	}
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		return err
	}
	if listenFlag != "" {
		cfg.Listen = listenFlag
	}
	if cfg.LogFile != "" {
		logger.Info("logging to " + cfg.LogFile)
		var closeLog func()
		if logger, closeLog, err = serverLogger(opt, cfg); err != nil {
			return err
		}
		defer closeLog()
	}

	// One server per data dir: it is the only writer of deploy state.
	lock, err := os.OpenFile(d.LockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another eeveon server is running on %s", d.Dir)
	}

	engine := deployer.NewEngine(d, cfg, logger.WithPrefix("deploy"))
	// Secrets are decrypted only in memory, per deploy. A key that others
	// can read stops the server rather than deploy without secrets.
	vault, err := secrets.Open(d.Dir)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	engine.SetSecrets(vault)
	if err := engine.SetRunAs(cfg.Deploy.RunAs); err != nil {
		return err
	}
	audit := command.NewAudit(d.AuditLog())
	// Notifications: the engine's callback only queues; webhooks are
	// posted in the background. (notifier.Mask is the hook for masking
	// site secrets in payloads.)
	notifier := notify.New(cfg.Notify, logger.WithPrefix("notify"))
	notifier.Mask = func(site, text string) string {
		vals, err := vault.Get(site)
		if err != nil {
			return text
		}
		return secrets.Mask(text, slices.Collect(maps.Values(vals)))
	}
	engine.OnEvent(notifier.Enqueue)
	var web *httpapi.Server
	if cfg.HTTP.Listen != "" {
		web = &httpapi.Server{Engine: engine, Config: cfg.HTTP, Audit: audit, Log: logger.WithPrefix("http")}
		if err := web.Listen(); err != nil {
			return err
		}
		notifier.Links = web
	}
	notifier.Start()
	// From here on SIGTERM is a graceful stop, also while the server is
	// still starting: the recovery starts apps, and a server killed by
	// the signal's default action would leave them running on their own.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	engine.Recover()
	sites, errs := deployer.ListSites(d)
	for _, err := range errs {
		logger.Warn("site definition skipped", "err", err)
	}
	for _, s := range sites {
		if err := deployer.PrepareRepo(d, s, exe()); err != nil {
			logger.Error("prepare repository", "site", s.Name, "err", err)
		}
	}
	store := keys.Open(d.AuthorizedKeys())
	router := &command.Router{Engine: engine, Keys: store, Secrets: vault, Audit: audit, Log: logger.WithPrefix("cmd")}
	if _, problems, err := store.List(); err != nil {
		logger.Warn("read keys", "err", err)
	} else {
		for _, p := range problems {
			logger.Warn("authorized_keys line skipped", "err", p)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Pending approvals expire on time, also those found at start, and
	// app sites that were removed lose their apps. Stopped before the
	// engine shuts down, so that it never races the shutdown.
	tickCtx, stopTick := context.WithCancel(ctx)
	defer stopTick()
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			engine.ExpirePending(time.Now())
			engine.ReconcileApps()
			select {
			case <-tickCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// A start that fails from here on stops what the recovery started
	// before it returns.
	abort := func(err error) error {
		stopTick()
		<-tickDone
		grace, cancel := context.WithTimeout(context.Background(), cfg.Deploy.ShutdownTimeout.Duration)
		defer cancel()
		engine.Shutdown(grace)
		return err
	}
	ctl := &control.Server{
		Path: d.Socket(), AdminGroup: cfg.AdminGroup, Log: logger.WithPrefix("control"),
		Handler: router.Control,
	}
	if err := ctl.Listen(); err != nil {
		return abort(err)
	}
	go func() {
		if err := ctl.Serve(ctx); err != nil {
			logger.Error("control socket", "err", err)
		}
	}()

	var ssh *sshd.Server
	if cfg.Listen != "off" {
		ssh = &sshd.Server{Data: d, Config: cfg.SSH, Keys: store, Router: router, Log: logger.WithPrefix("ssh")}
		if err := ssh.Listen(cfg.Listen); err != nil {
			ctl.Close()
			return abort(err)
		}
		go func() {
			if err := ssh.Serve(); err != nil {
				logger.Error("ssh server", "err", err)
			}
		}()
		logger.Info("listening", "ssh", ssh.Addr().String(), "hostkey", fp, "data", d.Dir)
	} else {
		logger.Info("embedded SSH server off", "data", d.Dir)
	}
	poller := poll.New(engine, logger.WithPrefix("poll"))
	if web != nil {
		web.Trigger = poller.Trigger
	}
	// An https poll URL may authenticate with the site's secret
	// EEVEON_POLL_TOKEN.
	poller.TokenFunc = func(site string) (string, error) {
		vals, err := vault.Get(site)
		return vals["EEVEON_POLL_TOKEN"], err
	}
	if web != nil {
		go func() {
			if err := web.Serve(); err != nil {
				logger.Error("http server", "err", err)
			}
		}()
		logger.Info("listening", "http", web.Addr().String(), "links", web.BaseURL())
	}
	// The poller deploys through the engine, after recovery, once the
	// listeners are up (a site may poll this server's own SSH).
	poller.Start()
	if iv := cfg.Vacuum.Interval.Duration; iv > 0 {
		go scheduledVacuum(ctx, engine, cfg.Vacuum, logger.WithPrefix("vacuum"))
	}
	st := serverState{PID: os.Getpid(), Started: time.Now().UTC()}
	if ssh != nil {
		st.Addrs = append(st.Addrs, "ssh "+ssh.Addr().String())
	}
	if web != nil {
		st.Addrs = append(st.Addrs, "http "+web.Addr().String())
	}
	if b, err := json.Marshal(st); err == nil {
		if err := deployer.WriteFileAtomic(d.ServerState(), b, 0o600); err != nil {
			logger.Warn("write server state", "err", err)
		}
	}
	defer os.Remove(d.ServerState())
	logger.Info("ready", "sites", len(sites), "socket", d.Socket())

	s := <-sig
	logger.Info("shutting down", "signal", s.String(), "grace", cfg.Deploy.ShutdownTimeout.Duration)
	signal.Stop(sig) // a second signal kills at once

	grace, cancelGrace := context.WithTimeout(context.Background(), cfg.Deploy.ShutdownTimeout.Duration)
	defer cancelGrace()
	done := make(chan struct{})
	go func() {
		stopTick()
		<-tickDone
		if err := poller.Stop(grace); err != nil {
			logger.Warn("poller shutdown", "err", err)
		}
		engine.Shutdown(grace)
		close(done)
	}()
	if ssh != nil {
		if err := ssh.Shutdown(grace); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			logger.Warn("ssh shutdown", "err", err)
		}
	}
	if web != nil {
		if err := web.Shutdown(grace); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			logger.Warn("http shutdown", "err", err)
		}
	}
	<-done
	// Deliver what the last deploys said, for a few seconds at most.
	drain, cancelDrain := context.WithTimeout(context.Background(), 3*time.Second)
	if err := notifier.Stop(drain); err != nil {
		logger.Warn("notifications left undelivered at shutdown")
	}
	cancelDrain()
	cancel()
	ctl.Close()
	_ = os.Remove(d.Socket())
	logger.Info("stopped")
	return nil
}

// scheduledVacuum runs vacuum a minute after start (or the interval, if
// shorter) and then every interval, logging what it did.
func scheduledVacuum(ctx context.Context, engine *deployer.Engine, cfg deployer.VacuumConfig, l *log.Logger) {
	wait := min(time.Minute, cfg.Interval.Duration)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = cfg.Interval.Duration
		var out bytes.Buffer
		err := engine.Vacuum(ctx, deployer.VacuumOptions{Keep: cfg.Keep, MaxAge: cfg.MaxAge.Duration}, &out)
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if line != "" {
				l.Info(line)
			}
		}
		if err != nil && !errors.Is(err, deployer.ErrShuttingDown) {
			l.Warn("vacuum failed", "err", err)
		}
	}
}

// serverState is <data>/state/server.json, for eeveon check.
type serverState struct {
	PID     int       `json:"pid"`
	Addrs   []string  `json:"addrs"`
	Started time.Time `json:"started"`
}
