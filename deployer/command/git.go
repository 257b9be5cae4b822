package command

import (
	"errors"
	"fmt"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

// GitCommand recognises git's transport commands in either spelling
// ("git-receive-pack 'x'" or "git receive-pack 'x'") and returns the verb
// and the repository path.
func GitCommand(args []string) (keys.Verb, string, bool) {
	if len(args) == 3 && args[0] == "git" {
		args = []string{"git-" + args[1], args[2]}
	}
	if len(args) != 2 {
		return "", "", false
	}
	switch args[0] {
	case "git-receive-pack":
		return keys.VerbPush, args[1], true
	case "git-upload-pack":
		return keys.VerbFetch, args[1], true
	}
	return "", "", false
}

// authorizeGit resolves the repository path of a push or fetch to a site
// the identity may use. A refusal is audited and returned as one line.
func (rt *Router) authorizeGit(id keys.Identity, verb keys.Verb, path string) (string, error) {
	site, err := names.RepoPath(path)
	if err == nil {
		_, err = rt.Site(id, site, verb)
	}
	if err != nil {
		if errors.Is(err, names.ErrInvalid) {
			err = fmt.Errorf("%w: repository %q (use ssh://HOST:PORT/SITE)", deployer.ErrSiteNotFound, clipArg(path))
		}
		outcome := "error: " + err.Error()
		if errors.Is(err, keys.ErrPermissionDenied) {
			outcome = "denied"
		}
		rt.audit(id, string(verb)+" "+clipArg(path), site, outcome)
		return "", err
	}
	return site, nil
}
