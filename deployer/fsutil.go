package deployer

import (
	"os"

	"github.com/eeveon/eeveon/deployer/fsutil"
)

// WriteFileAtomic writes data to path through a temp file in the same
// directory: write, fsync, rename, fsync the directory (see fsutil).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return fsutil.WriteFileAtomic(path, data, mode)
}

// SyncDir fsyncs a directory so that a rename in it is durable.
func SyncDir(dir string) error { return fsutil.SyncDir(dir) }
