// Package secrets keeps per-site secrets encrypted at rest with age
// (filippo.io/age) to the server's X25519 identity, and decrypts them only
// in memory.
//
// Layout in the data directory:
//
//	age.key            the identity, unless one comes from outside (see IdentityPath)
//	secrets/           0700
//	secrets/.lock      flock(2): shared by readers, exclusive for writers
//	secrets/SITE.age   0600, the site's whole set of secrets, age-encrypted
//
// A store file is the age encryption of a small JSON document that holds
// both the names and the values, so neither appears on disk in plaintext.
// Every write goes through a temp file, fsync, rename and a directory
// fsync.
//
// The identity is read again, under the lock, at every operation, so a
// Store that lives in a long-running daemon follows a Rotate made by
// another process.
package secrets

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eeveon/eeveon/deployer/names"
)

// ErrNoSecret is wrapped by Remove when the site has no secret of that
// name.
var ErrNoSecret = errors.New("no such secret")

const (
	// MaxKeyLen is the longest secret name ValidKey accepts.
	MaxKeyLen = 128
	// MaxValueLen is the largest secret value ValidValue accepts.
	MaxValueLen = 64 << 10
)

// ValidKey checks a secret name: [A-Z_][A-Z0-9_]*, at most 128 characters.
// The error wraps names.ErrInvalid. It quotes the name only when the name
// looks like one, because a caller that mixed up arguments may have passed
// a value (or NAME=value) where the name belongs.
func ValidKey(k string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{names.ErrInvalid}, a...)...)
	}
	switch {
	case k == "":
		return bad("secret name is empty")
	case len(k) > MaxKeyLen:
		return bad("secret name is longer than %d characters", MaxKeyLen)
	case strings.Contains(k, "="):
		return bad("secret name contains '=' (give the name and the value separately)")
	}
	lower := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'A' && c <= 'Z', c == '_', c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z':
			lower = true
		default:
			return bad("secret name must match [A-Z_][A-Z0-9_]* and contains another character (the name is not shown in case it holds a value)")
		}
	}
	if lower {
		return bad("secret name %q must be upper case: [A-Z_][A-Z0-9_]* (try %q)", k, strings.ToUpper(k))
	}
	if k[0] >= '0' && k[0] <= '9' {
		return bad("secret name %q must not start with a digit: [A-Z_][A-Z0-9_]*", k)
	}
	return nil
}

// ValidValue checks a secret value: any bytes except NUL, at most 64 KiB.
// The error never contains the value.
func ValidValue(v string) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("secret value is %d bytes; the limit is %d (64 KiB)", len(v), MaxValueLen)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return errors.New("secret value contains a NUL byte, which environment variables cannot carry")
	}
	return nil
}

// wipe overwrites a buffer that held plaintext. It is best effort: Go may
// have copied the bytes elsewhere, and strings cannot be wiped at all.
func wipe(b []byte) { clear(b) }
