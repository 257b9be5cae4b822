package keys

import "fmt"

// Verb is an action a user asks for, as Authorize knows it.
type Verb string

// The verbs of the permission table.
const (
	VerbPush      Verb = "push"
	VerbFetch     Verb = "fetch"
	VerbHelp      Verb = "help"
	VerbWhoami    Verb = "whoami"
	VerbSites     Verb = "sites"
	VerbStatus    Verb = "status"
	VerbHistory   Verb = "history"
	VerbLogs      Verb = "logs"
	VerbDeploy    Verb = "deploy"
	VerbDeployRef Verb = "deploy --ref"
	// VerbDeployStrategy is a deploy with a strategy other than the site's.
	VerbDeployStrategy Verb = "deploy --strategy"
	VerbRollback       Verb = "rollback"
	VerbApprove        Verb = "approve"
	VerbReject         Verb = "reject"
	VerbSecrets        Verb = "secrets"
	VerbKeys           Verb = "keys"
	VerbVacuum         Verb = "vacuum"
)

// deployerMay is what a deployer may do: always, only on sites it may see,
// or (absent from the map) never.
var deployerMay = map[Verb]scope{
	VerbHelp:    anySite,
	VerbWhoami:  anySite,
	VerbSites:   anySite,
	VerbPush:    seenSite,
	VerbFetch:   seenSite,
	VerbStatus:  seenSite,
	VerbHistory: seenSite,
	VerbLogs:    seenSite,
	VerbDeploy:  seenSite,
}

type scope int

const (
	anySite scope = iota + 1
	seenSite
)

var knownVerbs = map[Verb]bool{
	VerbPush: true, VerbFetch: true, VerbHelp: true, VerbWhoami: true, VerbSites: true,
	VerbStatus: true, VerbHistory: true, VerbLogs: true, VerbDeploy: true, VerbDeployRef: true, VerbDeployStrategy: true,
	VerbRollback: true, VerbApprove: true, VerbReject: true, VerbSecrets: true, VerbKeys: true, VerbVacuum: true,
}

// Authorize is the one place that decides who may do what. An admin may do
// everything; a deployer may always ask for help, whoami and sites, may push,
// fetch, see status, history and logs, and deploy on the sites it may see
// (Identity.MaySee), and may never deploy a chosen ref, roll back, approve,
// reject, or manage secrets or keys. Unknown roles and verbs are refused.
//
// The error wraps ErrPermissionDenied and reads
// "permission denied: <role> may not <verb> <site>" (without the site when
// site is ""). Callers should report a site a deployer may not see as not
// existing, rather than pass on this error.
func Authorize(id Identity, v Verb, site string) error {
	ok := false
	switch id.Role {
	case RoleAdmin:
		ok = knownVerbs[v]
	case RoleDeployer:
		switch deployerMay[v] {
		case anySite:
			ok = true
		case seenSite:
			ok = id.MaySee(site)
		}
	}
	if ok {
		return nil
	}
	if site == "" {
		return fmt.Errorf("%w: %s may not %s", ErrPermissionDenied, id.Role, v)
	}
	return fmt.Errorf("%w: %s may not %s %s", ErrPermissionDenied, id.Role, v, site)
}
