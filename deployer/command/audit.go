package command

import (
	"encoding/json"

	"github.com/eeveon/eeveon/deployer"
	"time"
)

// Audit appends one JSON object per line to <data>/audit.log for every
// command and push, whoever sent it and whatever came of it.
type Audit struct {
	f *deployer.RotatingFile
}

// AuditMaxSize is the size at which the audit log starts a new segment.
const AuditMaxSize = 10 << 20

// NewAudit opens (lazily) the audit log at path.
func NewAudit(path string) *Audit {
	return &Audit{f: &deployer.RotatingFile{Path: path, Max: AuditMaxSize}}
}

// Event is one audit log line.
type Event struct {
	Time        time.Time `json:"time"`
	User        string    `json:"user"`
	Role        string    `json:"role"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Remote      string    `json:"remote"`
	Source      string    `json:"source"`
	Command     string    `json:"command"`
	Site        string    `json:"site,omitempty"`
	Outcome     string    `json:"outcome"`
	Detail      string    `json:"detail,omitempty"`
}

// Log writes an event. Failures to write are returned for the caller to
// log; they never stop the command.
func (a *Audit) Log(ev Event) error {
	if a == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = a.f.Write(append(b, '\n'))
	return err
}
