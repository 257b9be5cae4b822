package keys

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer/names"
)

// fixedKey is an ed25519 key from a constant seed, so seeds stay valid.
func fixedKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	k, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sameIdentity(a, b Entry) bool {
	return a.User == b.User && a.Role == b.Role && slices.Equal(a.Sites, b.Sites) &&
		bytes.Equal(a.Key.Marshal(), b.Key.Marshal()) && a.Comment == b.Comment
}

func FuzzParseLine(f *testing.F) {
	k := authorized(fixedKey(f))
	for _, s := range []string{
		`command="eeveon shell --user alice --role deployer --sites web,api",restrict ` + k + " alice@laptop",
		`command="eeveon --user=bob --role=admin" ` + k,
		`command="'/opt/my apps/eeveon' --user \"carol\" --role deployer --sites=web",no-pty ` + k + " c d",
		`command="a\\\"b --user x --role admin" ` + k,
		`command="eeveon --user alice --role root" ` + k,
		`restrict ` + k,
		"# comment",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		for _, cmd := range []string{"eeveon shell", `/opt/my "x"\ dir/eeveon shell --data '/var/lib/e'`} {
			out := FormatLine(e, cmd)
			got, err := ParseLine(out)
			if err != nil {
				t.Fatalf("ParseLine(%q) accepted, but its FormatLine %q fails: %v", line, out, err)
			}
			if !sameIdentity(got, e) {
				t.Fatalf("round trip of %q through %q: got %+v, want %+v", line, out, got, e)
			}
		}
	})
}

// FuzzFormatLine checks that whatever command prefix is configured, a line
// that parses back never names another user, role or set of sites.
func FuzzFormatLine(f *testing.F) {
	f.Add("eeveon shell", "web,api")
	f.Add(`/opt/a "b"/eeveon shell --role admin`, "")
	f.Add(`x '`, "web")
	f.Add(`x \`, "web")
	f.Add(`"`, "")
	key := fixedKey(f)
	f.Fuzz(func(t *testing.T, cmd, sites string) {
		e := Entry{User: "alice", Role: RoleDeployer, Key: key, Comment: "c"}
		if sites != "" {
			e.Sites = strings.Split(sites, ",")
		}
		for _, s := range e.Sites {
			if names.Site(s) != nil {
				return // Add refuses these before formatting
			}
		}
		out := FormatLine(e, cmd)
		if got, err := ParseLine(out); err == nil && !sameIdentity(got, e) {
			t.Fatalf("FormatLine with command %q gave %q, which reads back as %+v", cmd, out, got)
		}
	})
}
