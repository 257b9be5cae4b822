package daemon

import (
	"errors"
	"fmt"

	"github.com/gofrs/flock"

	"github.com/eeveon/eeveon/deployer"
)

// ErrRunning is Lock's error when a server holds the data dir.
var ErrRunning = errors.New("another eeveon server is running")

// Lock takes the data dir's lock, which the running server holds so that
// it is the only writer of deploy state; the offline vacuum takes it too,
// so that no server starts meanwhile. It does not wait.
func Lock(d deployer.Data) (unlock func(), err error) {
	l := flock.New(d.LockFile())
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w on %s", ErrRunning, d.Dir)
	}
	return func() { _ = l.Unlock() }, nil
}
