package deployer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/eeveon/eeveon/deployer/names"
)

// State is a deploy's state in its record and history. A record is
// running while the pipeline works on it; every other state is an
// outcome, reached through the transitions in states.go.
type State string

// Deploy states.
const (
	StateRunning     State = "running"
	StateLive        State = "live"
	StateFailed      State = "failed"
	StateInterrupted State = "interrupted"
	StateSuperseded  State = "superseded"
	// StatePendingApproval: built and healthy, waiting for an admin.
	StatePendingApproval State = "pending_approval"
	StateRejected        State = "rejected"
	StateExpired         State = "expired"
)

// Phases of a running deploy.
const (
	PhaseQueued    = "queued"
	PhaseCheckout  = "checkout"
	PhaseBuilding  = "building"
	PhaseChecking  = "checking"
	PhaseSwapping  = "swapping"
	PhaseFinished  = "finished"
	colorInPlace   = "in-place"
	historyFile    = ".deploy_history"
	currentLink    = "current"
	tmpPrefix      = ".eeveon-tmp-"
	currentTmpName = ".current.tmp-"
)

// Record describes one deploy. It is kept as <data>/deploys/SITE/ID.json
// while it runs and after, and appended to <site path>/.deploy_history
// when it ends.
type Record struct {
	ID          string    `json:"id"`
	Site        string    `json:"site"`
	Commit      string    `json:"commit"`
	Ref         string    `json:"ref"`
	Color       string    `json:"color"`
	PrevColor   string    `json:"prev_color,omitempty"`
	Strategy    Strategy  `json:"strategy"`
	State       State     `json:"state"`
	Phase       string    `json:"phase,omitempty"`
	User        string    `json:"user"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Trigger     string    `json:"trigger"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Error       string    `json:"error"`
	// ExpiresAt is when a pending approval lapses.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// ApprovedBy is who approved (or rejected) a deploy that needed it.
	ApprovedBy string `json:"approved_by,omitempty"`
	// Note says something about a deploy that went as it should, such as
	// why a rollback on a site that requires approval needed none.
	Note string `json:"note,omitempty"`
}

// Short is the abbreviated commit id.
func (r Record) Short() string { return ShortCommit(r.Commit) }

// ShortCommit abbreviates a commit id to 7 characters.
func ShortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

// Duration is how long the deploy took (so far).
func (r Record) Duration() time.Duration {
	end := r.FinishedAt
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(r.StartedAt).Round(10 * time.Millisecond)
}

func newDeployID(now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

func recordPath(d Data, site, id string) string {
	return filepath.Join(d.DeploysDir(site), id+".json")
}

// LogPath is the per-deploy log file.
func LogPath(d Data, site, id string) string {
	return filepath.Join(d.DeploysDir(site), id+".log")
}

func saveRecord(d Data, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(recordPath(d, r.Site, r.ID), append(b, '\n'), 0o600)
}

// LoadRecord reads one deploy record.
func LoadRecord(d Data, site, id string) (Record, error) {
	if err := names.DeployID(id); err != nil {
		return Record{}, err
	}
	b, err := os.ReadFile(recordPath(d, site, id))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, fmt.Errorf("%w: %s has no deploy %s", ErrDeployNotFound, site, id)
	}
	if err != nil {
		return Record{}, fmt.Errorf("read deploy %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("read deploy %s: %w", id, err)
	}
	return r, nil
}

// ErrDeployNotFound is returned for an unknown deploy id.
var ErrDeployNotFound = errors.New("no such deploy")

// ListRecords returns a site's deploy records, oldest first.
func ListRecords(d Data, site string) ([]Record, error) {
	ents, err := os.ReadDir(d.DeploysDir(site))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list deploys of %s: %w", site, err)
	}
	var out []Record
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || names.DeployID(id) != nil {
			continue
		}
		r, err := LoadRecord(d, site, id)
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	// Ids sort by the second they were made in; within a second the start
	// time (to the nanosecond) decides.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// History reads <site path>/.deploy_history, oldest first. Lines that do
// not parse (a hand edit, a foreign tool) are skipped.
func History(s Site) ([]Record, error) { return readHistory(s, historyFile) }

// readHistory reads a history file of the site: .deploy_history or its
// archive.
func readHistory(s Site, name string) ([]Record, error) {
	f, err := os.Open(filepath.Join(s.Path, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", s.Name, err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if r, ok := parseHistoryLine(sc.Bytes()); ok {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

func parseHistoryLine(line []byte) (Record, bool) {
	var r Record
	if json.Unmarshal(line, &r) != nil || r.ID == "" {
		return Record{}, false
	}
	return r, true
}

// wroteInto reports whether the history line r says what colour holds
// now, were it the newest such line: a deploy that checked out or built
// there, whatever its outcome, or a rollback that made it live. A
// superseded deploy or a failed rollback changed nothing in it. Both the
// instant rollback and vacuum (which must keep the line) ask this.
func wroteInto(r Record, color string) bool {
	return r.Color == color && r.State != StateSuperseded && (r.Trigger != TriggerRollback || r.State == StateLive)
}

// FindDeploy returns deploy id of site s, for rollback --to: its record,
// or, once vacuum has removed that, its last line in .deploy_history or
// .deploy_history.archive (a line holds the whole record).
func FindDeploy(d Data, s Site, id string) (Record, error) {
	r, err := LoadRecord(d, s.Name, id)
	if !errors.Is(err, ErrDeployNotFound) {
		return r, err
	}
	for _, name := range []string{historyFile, archiveFile} {
		h, err := readHistory(s, name)
		if err != nil {
			return Record{}, err
		}
		for i := len(h) - 1; i >= 0; i-- {
			if r := h[i]; r.ID == id && r.Site == s.Name {
				if r.Commit != "" && names.Commit(r.Commit) != nil {
					return Record{}, fmt.Errorf("deploy %s: %s of %s has a malformed commit %q", id, name, s.Name, r.Commit)
				}
				return r, nil
			}
		}
	}
	return Record{}, fmt.Errorf("%w: %s has no deploy %s, not even in its archived history (history %s lists its deploys)", ErrDeployNotFound, s.Name, id, s.Name)
}

// appendHistory adds one finished deploy to the site's history. The file
// is rewritten atomically so that a crash never leaves a torn line.
func appendHistory(s Site, r Record) error {
	path := filepath.Join(s.Path, historyFile)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("append history of %s: %w", s.Name, err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	r.Phase = ""
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(append(old, line...), '\n'), 0o644)
}
