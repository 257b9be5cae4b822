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
// history beyond the last Keep lines (moved to .deploy_history.archive,
// but for the lines rollback reads: see historyNeeded), temp dirs left by
// interrupted deploys, and rotated log segments older than MaxAge. It
// works under each site's lock, so it never races a deploy, and it never
// touches a colour directory. It reports each action to out.
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

	if err := e.compactHistory(s, opt, recs, verb, out); err != nil {
		return err
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

// compactHistory moves the site's history beyond the last Keep lines to
// the archive, except the lines that rollback and recovery read (see
// historyNeeded). It holds histMu: a deploy that gave up waiting for the
// site lock appends its line without that lock, and the rewrite here
// must not drop it.
func (e *Engine) compactHistory(s Site, opt VacuumOptions, recs []Record, verb string, out io.Writer) error {
	e.histMu.Lock()
	defer e.histMu.Unlock()
	path := filepath.Join(s.Path, historyFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	h := make([]Record, len(lines))
	for i, l := range lines {
		h[i], _ = parseHistoryLine(l)
	}
	running := map[string]bool{}
	for _, r := range recs {
		if r.State == StateRunning {
			running[r.ID] = true
		}
	}
	need := historyNeeded(h, running)
	var kept, moved [][]byte
	extraKept := 0
	for i, l := range lines {
		switch {
		case i >= len(lines)-opt.Keep:
			kept = append(kept, l)
		case need[i]:
			kept = append(kept, l)
			extraKept++
		default:
			moved = append(moved, l)
		}
	}
	if len(moved) > 0 {
		if !opt.DryRun {
			apath := filepath.Join(s.Path, archiveFile)
			old, err := os.ReadFile(apath)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
				old = append(old, '\n')
			}
			// Archive first: a crash between the two writes duplicates
			// lines in the archive, it never loses one.
			if err := WriteFileAtomic(apath, append(old, bytes.Join(moved, nil)...), 0o644); err != nil {
				return err
			}
			if err := WriteFileAtomic(path, bytes.Join(kept, nil), 0o644); err != nil {
				return err
			}
		}
		also := ""
		if extraKept > 0 {
			also = fmt.Sprintf(" and %d older that rollback needs", extraKept)
		}
		fmt.Fprintf(out, "%s: %s %d history lines to %s (kept the last %d%s)\n", s.Name, strings.Replace(verb, "remove", "move", 1), len(moved), archiveFile, opt.Keep, also)
	}
	return nil
}

// historyNeeded marks the lines of a site's history h (oldest first; a
// zero Record for a line that does not parse) that vacuum must leave in
// .deploy_history whatever --keep says, because the instant rollback,
// status and the restart of an app read them there:
//
//   - for each colour, the newest line that says what the colour holds
//     (wroteInto): RollbackTarget stops at it, so it decides whether the
//     colour can be swapped back to, and the lines it passes over on the
//     way do not count;
//   - for each colour (and in-place), its newest live line: what the
//     colour serves once it is live (liveRecord);
//   - the lines of deploys whose record still says running: Recover
//     takes their outcome from the history.
//
// Both colours count, live or not: a colour directory outlives a spell of
// in-place deploys and can be swapped back to after it. Every later line
// either is kept by the same rule or changes nothing those readers see,
// so the history stays correct for them as more lines are appended. This
// keeps at most five lines beyond --keep (plus running deploys), however
// old they are.
func historyNeeded(h []Record, running map[string]bool) []bool {
	need := make([]bool, len(h))
	wrote := map[string]bool{}
	live := map[string]bool{}
	for i := len(h) - 1; i >= 0; i-- {
		r := h[i]
		if r.ID == "" {
			continue
		}
		if running[r.ID] {
			need[i] = true
		}
		for _, c := range []string{"blue", "green"} {
			if !wrote[c] && wroteInto(r, c) {
				wrote[c], need[i] = true, true
			}
		}
		if r.State == StateLive && r.Color != "" && !live[r.Color] {
			live[r.Color], need[i] = true, true
		}
	}
	return need
}
