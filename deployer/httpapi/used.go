package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

// usedTokens remembers the nonces of approval links that were used, on
// disk, so that a link replayed after a restart is refused too. An entry
// is kept for a day after its token expires (the expiry refuses it from
// then on; the day covers a clock set back).
// keepUsed is how long past its expiry a used nonce is remembered.
const keepUsed = 24 * time.Hour

type usedTokens struct {
	path string

	mu   sync.Mutex
	used map[string]int64 // nonce -> token expiry (Unix seconds)
}

// openUsedTokens loads the store. A file that does not parse is an error:
// forgetting which links were used would let them be replayed.
func openUsedTokens(path string) (*usedTokens, error) {
	u := &usedTokens{path: path, used: map[string]int64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read used approval links: %w", err)
	}
	if err := json.Unmarshal(b, &u.used); err != nil {
		return nil, fmt.Errorf("read used approval links %s: %w", path, err)
	}
	if u.used == nil {
		u.used = map[string]int64{}
	}
	return u, nil
}

// isUsed reports whether the nonce was used.
func (u *usedTokens) isUsed(nonce string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.used[nonce]
	return ok
}

// use marks the nonce used and saves the store before returning; it
// fails with ErrUsedToken if it already was. Expired entries are pruned.
func (u *usedTokens) use(nonce string, expires int64, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.used[nonce]; ok {
		return ErrUsedToken
	}
	next := make(map[string]int64, len(u.used)+1)
	for n, exp := range u.used {
		if exp+int64(keepUsed/time.Second) > now.Unix() {
			next[n] = exp
		}
	}
	next[nonce] = expires
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(u.path), 0o700); err != nil {
		return fmt.Errorf("save used approval links: %w", err)
	}
	if err := deployer.WriteFileAtomic(u.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save used approval links: %w", err)
	}
	u.used = next
	return nil
}
