package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VacuumOptions say what vacuum keeps.
type VacuumOptions struct {
	Keep   int           // history lines kept in .deploy_history (the rest is archived)
	MaxAge time.Duration // deploy logs and log segments older than this go
	DryRun bool          // report, change nothing
}

// archiveFile holds history lines compacted out of .deploy_history.
const archiveFile = ".deploy_history.archive"

// Vacuum removes what a server accumulates: deploy records and logs older
// than MaxAge (never those of the live release, the rollback release, a
// deploy in progress or waiting for approval, nor a site's newest),
// history beyond the last Keep lines (moved to .deploy_history.archive),
// temp dirs left by interrupted deploys, and rotated log segments older
// than MaxAge. It works under each site's lock, so it never races a
// deploy, and it never touches a colour directory. It reports each action
// to out.
func (e *Engine) Vacuum(ctx context.Context, opt VacuumOptions, out io.Writer) error {
	if opt.Keep < 1 || opt.MaxAge <= 0 {
		return errors.New("vacuum: --keep must be at least 1 and --max-age positive")
	}
	done, err := e.begin()
	if err != nil {
		return err
	}
	defer done()
	verb := "removed"
	if opt.DryRun {
		verb = "would remove"
	}
	cutoff := time.Now().Add(-opt.MaxAge)
	sites, errs := ListSites(e.data)
	for _, err := range errs {
		fmt.Fprintf(out, "skipped: %v\n", err)
	}
	for _, s := range sites {
		unlock, err := e.lock(ctx, s.Name)
		if err != nil {
			return err
		}
		err = e.vacuumSite(s, opt, cutoff, verb, out)
		unlock()
		if err != nil {
			return fmt.Errorf("vacuum %s: %w", s.Name, err)
		}
	}
	logs := []string{e.data.AuditLog()}
	if e.cfg.LogFile != "" {
		logs = append(logs, e.cfg.LogFile)
	}
	for _, log := range logs {
		for _, seg := range Segments(log) {
			if fi, err := os.Stat(seg); err == nil && fi.ModTime().Before(cutoff) {
				if !opt.DryRun {
					if err := os.Remove(seg); err != nil {
						return err
					}
				}
				fmt.Fprintf(out, "%s log segment %s\n", verb, filepath.Base(seg))
			}
		}
	}
	return nil
}

func (e *Engine) vacuumSite(s Site, opt VacuumOptions, cutoff time.Time, verb string, out io.Writer) error {
	// Deploy records and logs.
	recs, err := ListRecords(e.data, s.Name)
	if err != nil {
		return err
	}
	protect := map[string]bool{}
	if len(recs) > 0 {
		protect[recs[len(recs)-1].ID] = true
	}
	if live := LiveColor(s.Path); live != "" {
		if r, ok := liveRecord(s, live); ok {
			protect[r.ID] = true
		}
	}
	if r, err := RollbackTarget(s); err == nil {
		protect[r.ID] = true
	}
	removed, bytesFreed := 0, int64(0)
	for _, r := range recs {
		if protect[r.ID] || r.State == StateRunning || r.State == StatePendingApproval || !r.StartedAt.Before(cutoff) {
			continue
		}
		for _, p := range []string{recordPath(e.data, s.Name, r.ID), LogPath(e.data, s.Name, r.ID)} {
			if fi, err := os.Stat(p); err == nil {
				bytesFreed += fi.Size()
				if !opt.DryRun {
					if err := os.Remove(p); err != nil {
						return err
					}
				}
			}
		}
		removed++
	}
	if removed > 0 {
		fmt.Fprintf(out, "%s: %s %d deploy records and logs (%d KiB) older than %s\n", s.Name, verb, removed, bytesFreed/1024, opt.MaxAge)
	}

	// History beyond the last Keep lines goes to the archive.
	path := filepath.Join(s.Path, historyFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	if extra := len(lines) - opt.Keep; extra > 0 {
		if !opt.DryRun {
			apath := filepath.Join(s.Path, archiveFile)
			old, err := os.ReadFile(apath)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			// Archive first: a crash between the two writes duplicates
			// lines in the archive, it never loses one.
			if err := WriteFileAtomic(apath, append(old, bytes.Join(lines[:extra], nil)...), 0o644); err != nil {
				return err
			}
			if err := WriteFileAtomic(path, bytes.Join(lines[extra:], nil), 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "%s: %s %d history lines to %s (kept the last %d)\n", s.Name, strings.Replace(verb, "remove", "move", 1), extra, archiveFile, opt.Keep)
	}

	// Temp dirs of interrupted deploys (no deploy runs: we hold the lock).
	ents, _ := os.ReadDir(s.Path)
	for _, ent := range ents {
		if n := ent.Name(); strings.HasPrefix(n, tmpPrefix) || strings.HasPrefix(n, currentTmpName) {
			if !opt.DryRun {
				if err := os.RemoveAll(filepath.Join(s.Path, n)); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "%s: %s leftover %s\n", s.Name, verb, n)
		}
	}
	return nil
}
