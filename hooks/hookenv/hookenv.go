// Package hookenv is the contract between the process that runs git
// receive-pack for a pusher (the embedded SSH server, eeveon shell) and
// the repository's proc-receive hook that git starts: the pusher's
// identity travels in EEVEON_HOOK_* variables of git's environment. Both
// sides use this package, so the names and the encoding live in one place.
package hookenv

import (
	"strings"

	"github.com/eeveon/eeveon/keys"
)

// The variables, one per field of keys.Identity.
const (
	User        = "EEVEON_HOOK_USER"
	Role        = "EEVEON_HOOK_ROLE"
	Fingerprint = "EEVEON_HOOK_FINGERPRINT"
	Remote      = "EEVEON_HOOK_REMOTE"
	Source      = "EEVEON_HOOK_SOURCE"
	Sites       = "EEVEON_HOOK_SITES" // comma-separated; empty: all sites
)

// Encode is id as NAME=VALUE entries for a child's environment. Site names
// never contain a comma (names.Site), so the list is joined with commas.
func Encode(id keys.Identity) []string {
	return []string{
		User + "=" + id.User, Role + "=" + string(id.Role),
		Fingerprint + "=" + id.Fingerprint, Remote + "=" + id.Remote,
		Source + "=" + id.Source, Sites + "=" + strings.Join(id.Sites, ","),
	}
}

// Decode reads the identity back with getenv (os.Getenv in the hook). It
// returns nil when no user is set: a local push, made without eeveon in
// between, for which the daemon goes by the Unix account.
func Decode(getenv func(string) string) *keys.Identity {
	user := getenv(User)
	if user == "" {
		return nil
	}
	id := &keys.Identity{
		User: user, Role: keys.Role(getenv(Role)), Fingerprint: getenv(Fingerprint),
		Remote: getenv(Remote), Source: getenv(Source),
	}
	if s := getenv(Sites); s != "" {
		id.Sites = strings.Split(s, ",")
	}
	return id
}
