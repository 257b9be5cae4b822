package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func edKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t testing.TB, c elliptic.Curve) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var rsa2048 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func rsaKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	priv, err := rsa2048()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rsaBits builds an RSA public key with a modulus of exactly bits bits. It
// is not a real key, but CheckKey only looks at the size.
func rsaBits(t testing.TB, bits int) ssh.PublicKey {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.SetBit(n, 0, 1)
	k, err := ssh.NewPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dssLine builds an ssh-dss key line by hand: x/crypto no longer makes them.
func dssLine(opts string) string {
	one := big.NewInt(1)
	blob := ssh.Marshal(struct {
		Name       string
		P, Q, G, Y *big.Int
	}{ssh.InsecureKeyAlgoDSA, new(big.Int).Lsh(one, 1023), new(big.Int).Lsh(one, 159), big.NewInt(2), big.NewInt(3)})
	return opts + " ssh-dss " + base64.StdEncoding.EncodeToString(blob) + " old@box"
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
}

func TestParseLine(t *testing.T) {
	ed, ec, rk := edKey(t), ecKey(t, elliptic.P384()), rsaKey(t)
	tests := []struct {
		name, line string
		user       string
		role       Role
		sites      []string
		comment    string
		err        string // substring of the error; "" for success
	}{
		{name: "ed25519", line: `command="/usr/local/bin/eeveon shell --data /var/lib/eeveon --user alice --role deployer --sites web,api",restrict ` + authorized(ed) + " alice@laptop",
			user: "alice", role: RoleDeployer, sites: []string{"web", "api"}, comment: "alice@laptop"},
		{name: "ecdsa", line: `restrict,command="eeveon shell --user bob --role admin" ` + authorized(ec),
			user: "bob", role: RoleAdmin},
		{name: "rsa 2048", line: `command="eeveon shell --user carol --role deployer" ` + authorized(rk) + " carol",
			user: "carol", role: RoleDeployer, comment: "carol"},
		{name: "equals form", line: `command="eeveon shell --user=alice --role=admin --sites=web" ` + authorized(ed),
			user: "alice", role: RoleAdmin, sites: []string{"web"}},
		{name: "quoted args", line: `command="'/opt/my apps/eeveon' shell --user 'alice' --role \"deployer\" --sites=\"web\"" ` + authorized(ed),
			user: "alice", role: RoleDeployer, sites: []string{"web"}},
		{name: "option name case", line: `COMMAND="eeveon --user alice --role admin" ` + authorized(ed), user: "alice", role: RoleAdmin},
		{name: "crlf", line: `command="eeveon --user alice --role admin" ` + authorized(ed) + " c\r\n", user: "alice", role: RoleAdmin, comment: "c"},

		{name: "rsa 1024", line: `command="eeveon shell --user carol --role deployer" ` + authorized(rsaBits(t, 1024)), err: "1024 bits; at least 2048"},
		{name: "rsa 2047", line: `command="eeveon shell --user carol --role deployer" ` + authorized(rsaBits(t, 2047)), err: "2047 bits"},
		{name: "dsa", line: dssLine(`command="eeveon shell --user dan --role admin"`), err: "ssh-dss (DSA) keys are refused"},
		{name: "no command", line: `restrict ` + authorized(ed), err: "no command="},
		{name: "no options", line: authorized(ed), err: "no command="},
		{name: "two commands", line: `command="e --user a --role admin",command="e --user b --role admin" ` + authorized(ed), err: "more than one command"},
		{name: "unquoted command", line: `command=eeveon ` + authorized(ed), err: "double quotes"},
		{name: "no user", line: `command="eeveon shell --role admin" ` + authorized(ed), err: "no --user"},
		{name: "no role", line: `command="eeveon shell --user alice" ` + authorized(ed), err: "no --role"},
		{name: "user without value", line: `command="eeveon shell --role admin --user" ` + authorized(ed), err: "--user needs a value"},
		{name: "user twice", line: `command="eeveon --user alice --role deployer --user root" ` + authorized(ed), err: "--user given twice"},
		{name: "role twice", line: `command="eeveon --user alice --role deployer --role admin" ` + authorized(ed), err: "--role given twice"},
		{name: "bad role", line: `command="eeveon shell --user alice --role root" ` + authorized(ed), err: `unknown role "root"`},
		{name: "bad user", line: `command="eeveon shell --user -alice --role admin" ` + authorized(ed), err: "user name"},
		{name: "bad site", line: `command="eeveon shell --user alice --role deployer --sites web,Bad_Site" ` + authorized(ed), err: "site name"},
		{name: "empty sites", line: `command="eeveon shell --user alice --role deployer --sites=" ` + authorized(ed), err: "site name"},
		{name: "unterminated quote", line: `command="eeveon 'shell --user alice --role deployer" ` + authorized(ed), err: "unterminated single quote"},
		{name: "garbage", line: "not a key at all", err: "parse key"},
		{name: "embedded newline", line: `command="eeveon --user alice --role admin" ` + authorized(ed) + "\nmore", err: "line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseLine(tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLine error = %v, want it to contain %q", err, tt.err)
				}
				if e.Key != nil || e.User != "" {
					t.Errorf("ParseLine returned a partial entry %+v with its error", e)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLine: %v", err)
			}
			if e.User != tt.user || e.Role != tt.role || !slices.Equal(e.Sites, tt.sites) || e.Comment != tt.comment {
				t.Errorf("got user %q role %q sites %q comment %q, want %q %q %q %q",
					e.User, e.Role, e.Sites, e.Comment, tt.user, tt.role, tt.sites, tt.comment)
			}
			if id := e.Identity(); id.Source != "ssh" || id.Fingerprint != e.Fingerprint() || !strings.HasPrefix(id.Fingerprint, "SHA256:") {
				t.Errorf("Identity() = %+v", id)
			}
		})
	}
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		name string
		key  ssh.PublicKey
		ok   bool
	}{
		{"ed25519", edKey(t), true},
		{"p256", ecKey(t, elliptic.P256()), true},
		{"p521", ecKey(t, elliptic.P521()), true},
		{"rsa 2048", rsaBits(t, 2048), true},
		{"rsa 4096", rsaBits(t, 4096), true},
		{"rsa 2047", rsaBits(t, 2047), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if err := CheckKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("%s: CheckKey = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestFormatLineRoundTrip(t *testing.T) {
	e := Entry{User: "alice@corp", Role: RoleDeployer, Sites: []string{"web", "api-2"}, Key: edKey(t), Comment: "alice laptop"}
	for _, cmd := range []string{
		"eeveon shell",
		"",
		`/usr/bin/eeveon shell --data /x`,
		`'/opt/my "apps"/eeveon' shell --data "/var/lib/it's here"`,
		`/opt/my\ apps/ee\"veon shell`,
	} {
		line := FormatLine(e, cmd)
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("command %q: ParseLine(%q): %v", cmd, line, err)
		}
		if got.User != e.User || got.Role != e.Role || !slices.Equal(got.Sites, e.Sites) ||
			!bytes.Equal(got.Key.Marshal(), e.Key.Marshal()) || got.Comment != e.Comment {
			t.Errorf("command %q: round trip gave %+v, want %+v", cmd, got, e)
		}
	}
	// The exact shape, for OpenSSH.
	e2 := Entry{User: "bob", Role: RoleAdmin, Key: e.Key}
	want := `command="/opt/a \"b\" shell --user bob --role admin",restrict ` + authorized(e.Key)
	if got := FormatLine(e2, `/opt/a "b" shell`); got != want {
		t.Errorf("FormatLine = %q, want %q", got, want)
	}
}

func TestParse(t *testing.T) {
	k1, k2 := edKey(t), edKey(t)
	input := strings.Join([]string{
		"# managed by eeveon",
		`command="eeveon --user alice --role admin" ` + authorized(k1),
		"",
		`command="eeveon --user bob --role boss" ` + authorized(k2),
		"   ",
		`command="eeveon --user bob --role deployer" ` + authorized(k2) + " bob",
		`command="eeveon --user mallory --role admin" ` + authorized(k1),
		"garbage",
	}, "\n")
	entries, problems := Parse(strings.NewReader(input))
	if len(entries) != 2 || entries[0].User != "alice" || entries[0].Line != 2 || entries[1].User != "bob" || entries[1].Line != 6 {
		t.Fatalf("entries = %+v", entries)
	}
	var lines []int
	for _, p := range problems {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int{4, 7, 8}) {
		t.Fatalf("problem lines = %v (%v), want [4 7 8]", lines, problems)
	}
	if msg := problems[0].Error(); !strings.HasPrefix(msg, "authorized_keys line 4: ") || !strings.Contains(msg, "boss") {
		t.Errorf("message = %q", msg)
	}
	if msg := problems[1].Error(); !strings.Contains(msg, "already on line 2") {
		t.Errorf("duplicate key message = %q", msg)
	}
}

func TestMaySee(t *testing.T) {
	tests := []struct {
		id   Identity
		site string
		want bool
	}{
		{Identity{Role: RoleAdmin, Sites: []string{"web"}}, "api", true},
		{Identity{Role: RoleDeployer}, "api", true},
		{Identity{Role: RoleDeployer, Sites: []string{"web"}}, "web", true},
		{Identity{Role: RoleDeployer, Sites: []string{"web"}}, "api", false},
		{Identity{Role: "root"}, "web", false},
		{Identity{}, "web", false},
	}
	for _, tt := range tests {
		if got := tt.id.MaySee(tt.site); got != tt.want {
			t.Errorf("%+v.MaySee(%q) = %v, want %v", tt.id, tt.site, got, tt.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for s, ok := range map[string]bool{"admin": true, "deployer": true, "Admin": false, "": false, "root": false} {
		if r, err := ParseRole(s); (err == nil) != ok || (ok && string(r) != s) {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	if !errors.Is(LineError{Line: 1, Err: ErrNotFound}, ErrNotFound) {
		t.Error("LineError does not unwrap")
	}
}

// TestFormatLineOpenSSH has ssh-keygen read formatted lines, so a quoting
// mistake that would make OpenSSH skip the option field shows up here.
func TestFormatLineOpenSSH(t *testing.T) {
	bin, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed")
	}
	var file strings.Builder
	var want []string
	for _, cmd := range []string{"eeveon shell", `'/opt/my "apps"/ee veon' shell --data "/x y"`, `/opt/a\"b\ c/eeveon shell`} {
		e := Entry{User: "alice", Role: RoleDeployer, Sites: []string{"web"}, Key: edKey(t), Comment: "alice@laptop"}
		file.WriteString(FormatLine(e, cmd) + "\n")
		want = append(want, e.Fingerprint())
	}
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-l", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			got = append(got, f[1])
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ssh-keygen saw fingerprints %v, want %v\n%s", got, want, out)
	}
}
