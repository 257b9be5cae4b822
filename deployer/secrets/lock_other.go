//go:build !unix

package secrets

// lockDir is a no-op where flock(2) does not exist; a Store's mutex still
// serialises its own callers.
func lockDir(string, bool) (func(), error) { return func() {}, nil }
