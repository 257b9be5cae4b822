package daemon

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

// start brings the parts up in this order. On an error the caller runs
// stop, which takes down what came up (d.up).
//
//  1. The HTTP listener, so that notifications can carry links.
//  2. The notifier.
//  3. The engine's recovery (it may start the apps of app sites), the
//     repositories' hooks, a look at the keys.
//  4. The timed jobs: approvals expire, removed app sites lose their apps.
//  5. The control socket, then the SSH server, then HTTP serving.
//  6. The poller, once the listeners are up (a site may poll this
//     server's own SSH), and the scheduled vacuum.
//  7. server.json, for eeveon check.
func (d *Daemon) start() error {
	if d.web != nil {
		if err := d.web.Listen(); err != nil {
			return err
		}
		d.up.web = true
	}
	d.notifier.Start()
	d.recover()
	// Pending approvals expire on time, also those found at start.
	d.jobs.every(0, time.Second, func(context.Context) { d.engine.ExpirePending(time.Now()) })
	// App sites that were removed lose their apps and proxies.
	d.jobs.every(0, time.Second, func(context.Context) { d.engine.ReconcileApps() })
	if err := d.listen(); err != nil {
		return err
	}
	d.poller.Start()
	if v := d.cfg.Vacuum; v.Interval.Duration > 0 {
		// A minute after start (or the interval, if shorter), then every
		// interval.
		vacuum := d.log.WithPrefix("vacuum")
		d.jobs.every(min(time.Minute, v.Interval.Duration), v.Interval.Duration, func(ctx context.Context) {
			runVacuum(ctx, d.engine, v, vacuum)
		})
	}
	d.writeState()
	return nil
}

// recover reconciles the deploy records with what is on disk (see
// Engine.Recover) and makes sure every site's repository has its hooks.
func (d *Daemon) recover() {
	d.engine.Recover()
	d.up.engine = true
	sites, errs := deployer.ListSites(d.data)
	for _, err := range errs {
		d.log.Warn("site definition skipped", "err", err)
	}
	for _, s := range sites {
		if err := deployer.PrepareRepo(d.data, s, d.exe); err != nil {
			d.log.Error("prepare repository", "site", s.Name, "err", err)
		}
	}
	d.sites = len(sites)
	if _, problems, err := d.keys.List(); err != nil {
		d.log.Warn("read keys", "err", err)
	} else {
		for _, p := range problems {
			d.log.Warn("authorized_keys line skipped", "err", p)
		}
	}
}

// listen binds the control socket and the SSH server and serves them and
// the HTTP server.
func (d *Daemon) listen() error {
	if err := d.ctl.Listen(); err != nil {
		return err
	}
	d.up.ctl = true
	var ctx context.Context
	ctx, d.stopCtl = context.WithCancel(context.Background())
	go func() {
		if err := d.ctl.Serve(ctx); err != nil {
			d.log.Error("control socket", "err", err)
		}
	}()
	if d.ssh != nil {
		if err := d.ssh.Listen(d.cfg.Listen); err != nil {
			return err
		}
		d.up.ssh = true
		go func() {
			if err := d.ssh.Serve(); err != nil {
				d.log.Error("ssh server", "err", err)
			}
		}()
		d.log.Info("listening", "ssh", d.ssh.Addr().String(), "hostkey", d.hostKey, "data", d.data.Dir)
	} else {
		d.log.Info("embedded SSH server off", "data", d.data.Dir)
	}
	if d.web != nil {
		go func() {
			if err := d.web.Serve(); err != nil {
				d.log.Error("http server", "err", err)
			}
		}()
		d.log.Info("listening", "http", d.web.Addr().String(), "links", d.web.BaseURL())
	}
	return nil
}

// State is <data>/state/server.json, written while the server runs, for
// eeveon check.
type State struct {
	PID     int       `json:"pid"`
	Addrs   []string  `json:"addrs"`
	Started time.Time `json:"started"`
}

func (d *Daemon) writeState() {
	st := State{PID: os.Getpid(), Started: time.Now().UTC()}
	if d.ssh != nil {
		st.Addrs = append(st.Addrs, "ssh "+d.ssh.Addr().String())
	}
	if d.web != nil {
		st.Addrs = append(st.Addrs, "http "+d.web.Addr().String())
	}
	if b, err := json.Marshal(st); err == nil {
		if err := deployer.WriteFileAtomic(d.data.ServerState(), b, 0o600); err != nil {
			d.log.Warn("write server state", "err", err)
		}
	}
}
