package poll

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/eeveon/eeveon/deployer"
)

// state is what the poller remembers of a site across rounds and
// restarts, in <data>/state/NAME.poll.json. It changes only when
// something happens (a new tip, a deploy, an error), not every round.
type state struct {
	// LastSeen is the branch tip the remote listed last.
	LastSeen string `json:"last_seen,omitempty"`
	// LastDeployed is the last commit handed to the engine (live,
	// failed, superseded: it is not deployed again by the poller).
	LastDeployed string `json:"last_deployed,omitempty"`
	// DeployID is the engine's deploy of LastDeployed.
	DeployID string `json:"deploy_id,omitempty"`
	// Failures counts consecutive failed polls; it drives the backoff.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

func statePath(d deployer.Data, site string) string {
	return filepath.Join(d.StateDir(), site+".poll.json")
}

// loadState reads a site's poll state; a missing file is a fresh start.
func loadState(d deployer.Data, site string) (state, error) {
	var st state
	b, err := os.ReadFile(statePath(d, site))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read poll state of %s: %w", site, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("read poll state of %s: %w", site, err)
	}
	return st, nil
}

// saveState writes a site's poll state atomically.
func saveState(d deployer.Data, site string, st state) error {
	if err := os.MkdirAll(d.StateDir(), 0o700); err != nil {
		return fmt.Errorf("save poll state of %s: %w", site, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save poll state of %s: %w", site, err)
	}
	return deployer.WriteFileAtomic(statePath(d, site), append(b, '\n'), 0o600)
}

// persist saves e's state if it changed since the last save.
func (p *Poller) persist(site string, e *entry) error {
	if e.state == e.saved {
		return nil
	}
	if err := saveState(p.data, site, e.state); err != nil {
		return err
	}
	e.saved = e.state
	return nil
}
