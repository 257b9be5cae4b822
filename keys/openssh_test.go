package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func newEd25519(t *testing.T) ssh.PublicKey {
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

func TestOpenSSHBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	other := newEd25519(t)
	userLines := "# my own keys\n" + `from="10.0.0.0/8",no-pty ` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))) + " me@laptop\n" + "garbage line that is not a key"
	if err := os.WriteFile(path, []byte(userLines), 0o600); err != nil {
		t.Fatal(err)
	}
	s := OpenOpenSSH(path)
	k1, k2 := newEd25519(t), newEd25519(t)
	if _, err := s.Add(Entry{User: "alice", Role: RoleAdmin, Key: k1}, "/usr/bin/eeveon shell"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Entry{User: "bob", Role: RoleDeployer, Sites: []string{"web"}, Key: k2}, "/usr/bin/eeveon shell"); err != nil {
		t.Fatal(err)
	}
	updated, err := s.Add(Entry{User: "bob", Role: RoleAdmin, Key: k2}, "/usr/bin/eeveon shell")
	if err != nil || !updated {
		t.Fatalf("re-adding bob: updated=%v err=%v", updated, err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if !strings.HasPrefix(got, userLines+"\n") {
		t.Fatalf("the user's lines were changed:\n%s", got)
	}
	block := got[len(userLines)+1:]
	if !strings.HasPrefix(block, "# BEGIN eeveon") || !strings.HasSuffix(block, "# END eeveon\n") || strings.Count(block, "ssh-ed25519") != 2 {
		t.Fatalf("block:\n%s", block)
	}
	entries, problems, err := s.List()
	if err != nil || len(entries) != 2 || len(problems) != 0 {
		t.Fatalf("List: %d entries, problems %v, %v", len(entries), problems, err)
	}
	if e, ok := s.Lookup(k2); !ok || e.Role != RoleAdmin {
		t.Fatalf("bob after update: %+v %v", e, ok)
	}
	if _, ok := s.Lookup(other); ok {
		t.Fatal("a key outside the block was taken as eeveon's")
	}
	if n, err := s.Remove("alice"); n != 1 || err != nil {
		t.Fatalf("remove alice: %d %v", n, err)
	}
	if n, err := s.Remove("bob"); n != 1 || err != nil {
		t.Fatalf("remove bob: %d %v", n, err)
	}
	b, _ = os.ReadFile(path)
	if string(b) != userLines+"\n" {
		t.Fatalf("after removing every entry the file should be the user's lines again:\n%q", b)
	}
}
