// Package names validates the identifiers that come from outside: site
// names, user names, deploy ids and git refs. Every entry point calls these
// so that one rule decides what is acceptable.
package names

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid name")

var (
	siteRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	userRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	deployRe = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$`)
	commitRe = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)
)

// Site checks a site name: [a-z0-9][a-z0-9-]{0,62}.
func Site(name string) error {
	if !siteRe.MatchString(name) {
		return fmt.Errorf("%w: site name %q must match [a-z0-9][a-z0-9-]{0,62}", ErrInvalid, clip(name))
	}
	return nil
}

// User checks a user name as stored with a key.
func User(name string) error {
	if !userRe.MatchString(name) {
		return fmt.Errorf("%w: user name %q must match [A-Za-z0-9][A-Za-z0-9._@-]{0,63}", ErrInvalid, clip(name))
	}
	return nil
}

// DeployID checks a deploy id as made by the deployer (YYYYMMDD-HHMMSS-xxxx).
func DeployID(id string) error {
	if !deployRe.MatchString(id) {
		return fmt.Errorf("%w: deploy id %q must look like 20260102-150405-ab12", ErrInvalid, clip(id))
	}
	return nil
}

// Commit checks a full commit id as git prints it (SHA-1 or SHA-256).
func Commit(id string) error {
	if !commitRe.MatchString(id) {
		return fmt.Errorf("%w: commit %q must be a full hex object id", ErrInvalid, clip(id))
	}
	return nil
}

// Ref checks a git ref or revision given by a user (a branch, a tag, a full
// ref or a hex commit). It refuses anything git would take as an option or
// a revision expression, so the value can be passed to git as an argument.
func Ref(ref string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: ref %q %s", ErrInvalid, clip(ref), why)
	}
	switch {
	case ref == "":
		return bad("is empty")
	case len(ref) > 255:
		return bad("is longer than 255 bytes")
	case strings.HasPrefix(ref, "-"):
		return bad("must not start with '-'")
	case strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.HasSuffix(ref, "."):
		return bad("must not start or end with '/' or end with '.'")
	case strings.Contains(ref, "..") || strings.Contains(ref, "//") || strings.Contains(ref, "@{"):
		return bad("must not contain '..', '//' or '@{'")
	case strings.HasSuffix(ref, ".lock"):
		return bad("must not end with .lock")
	}
	for _, r := range ref {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || strings.ContainsRune(`~^:?*[\`, r) {
			return bad("contains a character git does not allow in refs")
		}
	}
	for _, part := range strings.Split(ref, "/") {
		if strings.HasPrefix(part, ".") {
			return bad("has a component starting with '.'")
		}
	}
	return nil
}

// RepoPath resolves the path of a push URL (hello, /hello, hello.git,
// /hello.git) to a site name. Nothing else resolves.
func RepoPath(p string) (string, error) {
	name := strings.TrimPrefix(p, "/")
	name = strings.TrimSuffix(name, ".git")
	if err := Site(name); err != nil {
		return "", fmt.Errorf("%w: repository path %q does not name a site (use NAME or NAME.git)", ErrInvalid, clip(p))
	}
	return name, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
