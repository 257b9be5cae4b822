package keys

import (
	"errors"
	"testing"
)

func TestAuthorize(t *testing.T) {
	admin := Identity{User: "root", Role: RoleAdmin}
	granted := Identity{User: "dev", Role: RoleDeployer, Sites: []string{"api", "web"}}
	other := Identity{User: "dev", Role: RoleDeployer, Sites: []string{"api"}}
	all := Identity{User: "dev", Role: RoleDeployer}

	// Whether each identity may act on site "web".
	tests := []struct {
		verb                       Verb
		admin, granted, other, all bool
	}{
		{VerbHelp, true, true, true, true},
		{VerbWhoami, true, true, true, true},
		{VerbSites, true, true, true, true},
		{VerbPush, true, true, false, true},
		{VerbFetch, true, true, false, true},
		{VerbStatus, true, true, false, true},
		{VerbHistory, true, true, false, true},
		{VerbLogs, true, true, false, true},
		{VerbDeploy, true, true, false, true},
		{VerbDeployRef, true, false, false, false},
		{VerbDeployStrategy, true, false, false, false},
		{VerbRollback, true, false, false, false},
		{VerbApprove, true, false, false, false},
		{VerbReject, true, false, false, false},
		{VerbSecrets, true, false, false, false},
		{VerbKeys, true, false, false, false},
		{VerbVacuum, true, false, false, false},
	}
	if len(tests) != len(knownVerbs) {
		t.Fatalf("table covers %d verbs, the package knows %d", len(tests), len(knownVerbs))
	}
	for _, tt := range tests {
		for _, c := range []struct {
			name string
			id   Identity
			want bool
		}{{"admin", admin, tt.admin}, {"granted", granted, tt.granted}, {"other", other, tt.other}, {"all", all, tt.all}} {
			err := Authorize(c.id, tt.verb, "web")
			if c.want {
				if err != nil {
					t.Errorf("%s %s web: %v, want allowed", c.name, tt.verb, err)
				}
				continue
			}
			want := "permission denied: " + string(c.id.Role) + " may not " + string(tt.verb) + " web"
			if err == nil || err.Error() != want || !errors.Is(err, ErrPermissionDenied) {
				t.Errorf("%s %s web: %v, want %q", c.name, tt.verb, err, want)
			}
		}
	}
}

func TestAuthorizeMessages(t *testing.T) {
	dep := Identity{Role: RoleDeployer, Sites: []string{"api"}}
	tests := []struct {
		id   Identity
		verb Verb
		site string
		want string // "" for allowed
	}{
		{dep, VerbRollback, "", "permission denied: deployer may not rollback"},
		{dep, VerbKeys, "", "permission denied: deployer may not keys"},
		{dep, VerbDeployRef, "api", "permission denied: deployer may not deploy --ref api"},
		{dep, VerbDeploy, "", "permission denied: deployer may not deploy"},
		{dep, VerbSites, "", ""},
		{Identity{Role: RoleDeployer}, VerbStatus, "", ""},
		{Identity{Role: RoleAdmin}, Verb("shell"), "", "permission denied: admin may not shell"},
		{Identity{Role: "root"}, VerbHelp, "", "permission denied: root may not help"},
	}
	for _, tt := range tests {
		err := Authorize(tt.id, tt.verb, tt.site)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Authorize(%+v, %q, %q) = %v, want allowed", tt.id, tt.verb, tt.site, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("Authorize(%+v, %q, %q) = %v, want %q", tt.id, tt.verb, tt.site, err, tt.want)
		}
	}
}
