package deployer

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Recover runs once when the daemon starts, before it accepts work. A
// deploy still marked running was cut short by a crash: it becomes
// interrupted, unless it had reached the swap and current already points
// at its colour, in which case it did go live. Leftover temp dirs and
// symlinks are removed. current itself is never changed here. The live
// colour of each app site is started again (see recoverApps).
func (e *Engine) Recover() {
	sites, errs := ListSites(e.data)
	for _, err := range errs {
		e.log.Warn("skipping site", "err", err)
	}
	for _, site := range sites {
		recs, err := ListRecords(e.data, site.Name)
		if err != nil {
			e.log.Warn("recover", "site", site.Name, "err", err)
		}
		// Outcomes already in history, by deploy id (the last line wins).
		outcomes := map[string]Record{}
		if h, err := History(site); err == nil {
			for _, r := range h {
				if r.State != StateRunning && r.State != StatePendingApproval {
					outcomes[r.ID] = r
				}
			}
		}
		for i := range recs {
			r := &recs[i]
			if r.State != StateRunning && r.State != StatePendingApproval {
				continue
			}
			if done, ok := outcomes[r.ID]; ok {
				// The server died after writing the outcome to history
				// and before the record (a deploy running, or one that
				// waited for approval and was decided): the record
				// catches up, and a decided deploy never waits again.
				if err := saveRecord(e.data, &done); err != nil {
					e.log.Error("recover: save record", "site", site.Name, "deploy", r.ID, "err", err)
				}
				continue
			}
			if r.State == StatePendingApproval {
				// Still waiting; the newest wins (older ones cannot exist
				// unless a crash came between two writes).
				e.waiting.note(*r)
				continue
			}
			state, why := StateInterrupted, "server stopped during "+r.Phase
			if r.Phase == PhaseSwapping && r.Strategy != InPlace && LiveColor(site.Path) == r.Color {
				state, why = StateLive, ""
			}
			r.State, r.Error, r.Phase = state, why, PhaseFinished
			r.FinishedAt = time.Now().UTC()
			if err := e.appendHistory(site, *r); err != nil {
				e.log.Error("recover: history", "site", site.Name, "err", err)
			}
			if err := saveRecord(e.data, r); err != nil {
				e.log.Error("recover: save record", "site", site.Name, "deploy", r.ID, "err", err)
				continue
			}
			e.log.Warn("recovered deploy", "site", site.Name, "deploy", r.ID, "state", state)
		}
		if p, ok := e.Pending(site.Name); ok {
			e.log.Info("deploy waiting for approval", "site", site.Name, "deploy", p.ID, "expires", p.ExpiresAt)
		}
		e.reconcileBranch(site)
		ents, _ := os.ReadDir(site.Path)
		for _, ent := range ents {
			if n := ent.Name(); strings.HasPrefix(n, tmpPrefix) || strings.HasPrefix(n, currentTmpName) {
				_ = os.RemoveAll(filepath.Join(site.Path, n))
			}
		}
	}
	// App sites: clean up after the previous server, then start the live
	// colour again behind the proxy (in the background, under the lock).
	e.apps.recoverApps(sites)
}

// SiteStatus is what status reports for one site.
type SiteStatus struct {
	Site      Site
	LiveColor string     // blue, green, in-place or "" (never deployed)
	Live      *Record    // the deploy that put the live colour live
	Running   *Record    // a deploy in progress
	Pending   *Record    // a deploy waiting for approval
	Failed    *Record    // the newest deploy after the live one that failed or was interrupted
	App       *AppStatus // an app site's proxy and live process
}

// FileStatus is the part of a site's status that its files tell, without
// a server: the live colour and its deploy, and the newest failure since.
// No deploy runs or waits for approval and an app site's app is not
// running, as far as the files know (the server keeps those in memory).
func FileStatus(d Data, name string) (SiteStatus, error) {
	site, err := LoadSite(d, name)
	if err != nil {
		return SiteStatus{}, err
	}
	st := SiteStatus{Site: site, LiveColor: LiveColor(site.Path)}
	if st.LiveColor != "" {
		if r, ok := liveRecord(site, st.LiveColor); ok {
			st.Live = &r
		}
	}
	h, _ := History(site)
	for i := len(h) - 1; i >= 0; i-- {
		if st.Live != nil && h[i].ID == st.Live.ID {
			break
		}
		if h[i].State == StateFailed || h[i].State == StateInterrupted {
			st.Failed = &h[i]
			break
		}
	}
	if site.IsApp() {
		st.App = &AppStatus{}
	}
	return st, nil
}

// Status reports a site's live colour and commit and any deploy in
// progress.
func (e *Engine) Status(name string) (SiteStatus, error) {
	st, err := FileStatus(e.data, name)
	if err != nil {
		return st, err
	}
	site := st.Site
	if r, ok := e.Running(name); ok {
		st.Running = &r
	}
	if r, ok := e.Pending(name); ok {
		st.Pending = &r
	}
	if site.IsApp() {
		st.App = e.apps.appStatus(name)
	}
	return st, nil
}

// LiveRelease is the deploy that put the site's live colour live (the
// same rule status uses).
func LiveRelease(s Site) (Record, bool) {
	c := LiveColor(s.Path)
	if c == "" {
		return Record{}, false
	}
	return liveRecord(s, c)
}
