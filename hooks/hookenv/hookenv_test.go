package hookenv

import (
	"reflect"
	"strings"
	"testing"

	"github.com/eeveon/eeveon/keys"
)

// env turns Encode's entries into a getenv, as the hook's process sees
// them (the last entry of a name wins, as in exec).
func env(t *testing.T, kvs []string) func(string) string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "EEVEON_HOOK_") {
			t.Fatalf("entry %q is not an EEVEON_HOOK_ variable", kv)
		}
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func TestRoundTrip(t *testing.T) {
	for _, id := range []keys.Identity{
		{User: "alice", Role: keys.RoleAdmin, Fingerprint: "SHA256:abc+/=", Remote: "127.0.0.1:2222", Source: "ssh"},
		{User: "bob", Role: keys.RoleDeployer, Sites: []string{"web"}, Source: "openssh", Remote: "openssh"},
		{User: "carol", Role: keys.RoleDeployer, Sites: []string{"web", "api", "docs-2"}, Fingerprint: "SHA256:x", Source: "ssh", Remote: "[::1]:40000"},
		{User: "dave", Role: keys.RoleDeployer}, // empty fingerprint, remote, source and sites
	} {
		got := Decode(env(t, Encode(id)))
		if got == nil || !reflect.DeepEqual(*got, id) {
			t.Errorf("round trip of %+v: got %+v", id, got)
		}
	}
}

func TestEncodeSetsEveryVariable(t *testing.T) {
	// An empty value is still set, so that a variable of the same name
	// the hook inherited from elsewhere cannot fill the gap.
	got := Encode(keys.Identity{User: "dave", Role: keys.RoleDeployer})
	want := []string{User + "=dave", Role + "=deployer", Fingerprint + "=", Remote + "=", Source + "=", Sites + "="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Encode = %q, want %q", got, want)
	}
}

func TestDecodeWithoutUserIsNoClaim(t *testing.T) {
	getenv := func(k string) string {
		if k == Role {
			return "admin" // a role alone makes no identity
		}
		return ""
	}
	if id := Decode(getenv); id != nil {
		t.Errorf("Decode without %s = %+v, want nil", User, id)
	}
}
