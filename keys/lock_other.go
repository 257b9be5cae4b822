//go:build !unix

package keys

// lockFile is a no-op where flock(2) does not exist; writers in one process
// are still serialised by the store's mutex.
func lockFile(string) (func(), error) { return func() {}, nil }
