//go:build !linux

package secrets

import (
	"errors"
	"os"
)

// MemFile needs memfd_create(2), which only Linux has.
func MemFile(dotenv []byte) (*os.File, error) {
	return nil, errors.New("create in-memory env file: not supported on this system (needs Linux memfd)")
}
