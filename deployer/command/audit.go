package command

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Audit appends one JSON object per line to <data>/audit.log for every
// command and push, whoever sent it and whatever came of it.
type Audit struct {
	mu   sync.Mutex
	path string
}

// NewAudit opens (lazily) the audit log at path.
func NewAudit(path string) *Audit { return &Audit{path: path} }

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
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}
