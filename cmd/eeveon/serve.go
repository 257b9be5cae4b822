package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

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
	if _, code := parse(fs, args, 0, 0, "serve [--data DIR] [--listen ADDR]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	if err := serve(d, *listen); err != nil {
		return fail(err)
	}
	return 0
}

func serve(d deployer.Data, listenFlag string) error {
	logger := newLogger("serve")
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
	// Pending approvals expire on time, also those found at start.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			engine.ExpirePending(time.Now())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	ctl := &control.Server{
		Path: d.Socket(), AdminGroup: cfg.AdminGroup, Log: logger.WithPrefix("control"),
		Handler: func(ctx context.Context, id keys.Identity, req control.Request, stdout, stderr io.Writer) int {
			return handleControl(ctx, router, id, req, stdout, stderr)
		},
	}
	if err := ctl.Listen(); err != nil {
		return err
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
			return err
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
	poller := poll.New(engine, logger.WithPrefix("poll"))
	// An https poll URL may authenticate with the site's secret
	// EEVEON_POLL_TOKEN.
	poller.TokenFunc = func(site string) (string, error) {
		vals, err := vault.Get(site)
		return vals["EEVEON_POLL_TOKEN"], err
	}
	poller.Start()
	logger.Info("ready", "sites", len(sites), "socket", d.Socket())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	logger.Info("shutting down", "signal", s.String(), "grace", cfg.Deploy.ShutdownTimeout.Duration)
	signal.Stop(sig) // a second signal kills at once

	grace, cancelGrace := context.WithTimeout(context.Background(), cfg.Deploy.ShutdownTimeout.Duration)
	defer cancelGrace()
	done := make(chan struct{})
	go func() {
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

// handleControl runs one control socket request: the git hook's
// post-receive or a command of the surface.
func handleControl(ctx context.Context, router *command.Router, id keys.Identity, req control.Request, stdout, stderr io.Writer) int {
	stdio := command.IO{Stdin: bytes.NewReader(req.Input), Stdout: stdout, Stderr: stderr}
	if len(req.Args) == 2 && req.Args[0] == "post-receive" {
		if _, err := router.Site(id, req.Args[1], keys.VerbPush); err != nil {
			fmt.Fprintf(stderr, "eeveon: %v\n", err)
			return 1
		}
		return router.PostReceive(ctx, id, req.Args[1], string(req.Input), stdio)
	}
	return router.Run(ctx, id, req.Args, stdio)
}
