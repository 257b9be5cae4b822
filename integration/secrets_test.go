package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// sshIn runs a command over ssh with stdin.
func (e *Env) sshIn(key, stdin string, command ...string) Result {
	e.t.Helper()
	args := append(e.SSHArgs(key), "deploy@127.0.0.1")
	return run(e.t, e.Dir, nil, stdin, "ssh", append(args, command...)...)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// scanFor fails the test if any file under root contains needle.
func scanFor(t *testing.T, root, needle string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(needle)) {
			t.Errorf("plaintext secret found in %s", p)
		}
		return nil
	})
}

func TestSecretsInjectedMaskedNeverOnDisk(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	deployer := e.AddKey("bob", "deployer", "")
	secret := "postgres://app:Xq7-very-secret-9Zt@db.internal/app"
	multi := "-----BEGIN KEY-----\nline-two-of-the-secret-Kp3\n-----END KEY-----"
	// The build prints the secret (it must come out masked), proves it saw
	// the values by writing their hashes, and reads the dotenv file.
	build := "#!/bin/sh\nset -e\nmkdir -p public\necho \"connecting to $DB_URL\"\n" +
		"printf %s \"$DB_URL\" | sha256sum | cut -d' ' -f1 > public/db.sha\n" +
		"printf %s \"$PEM\" | sha256sum | cut -d' ' -f1 > public/pem.sha\n" +
		"sha256sum < .env | cut -d' ' -f1 > public/env.sha\n" +
		"test -L .env && readlink .env > public/env.link\n"
	e.MustEeveon("site", "add", "web", "--build", "./build.sh", "--secrets-file", ".env",
		"--health-cmd", "test \"$(printf %s \"$DB_URL\" | sha256sum | cut -d' ' -f1)\" = \"$(cat public/db.sha)\" && grep -q '^DB_URL=' .env")

	if r := e.sshIn(admin, secret+"\n", "secrets", "set", "web", "DB_URL"); r.Code != 0 {
		t.Fatalf("secrets set over ssh: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.sshIn(admin, "PEM=\""+strings.ReplaceAll(multi, "\n", `\n`)+"\"\n", "secrets", "encrypt", "web", "-"); r.Code != 0 {
		t.Fatalf("secrets encrypt over ssh: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.SSH(admin, "secrets", "list", "web"); r.Code != 0 || r.Stdout != "DB_URL\nPEM\n" {
		t.Fatalf("secrets list: exit %d\n%s", r.Code, r.Out())
	}
	for _, cmd := range [][]string{{"secrets", "set", "web", "X", "y"}, {"secrets", "list", "web"}, {"secrets", "decrypt", "web"}} {
		if r := e.SSH(deployer, cmd...); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied: deployer may not secrets web") {
			t.Errorf("deployer %v: exit %d\n%s", cmd, r.Code, r.Out())
		}
	}

	repo := e.NewRepo("web", map[string]string{"build.sh": build})
	r := repo.Push(admin, "web")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: web") {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Out())
	}
	if strings.Contains(r.Out(), "Xq7-very-secret") || !strings.Contains(r.Stderr, "connecting to ***") {
		t.Fatalf("push output does not mask the secret:\n%s", strings.ReplaceAll(r.Out(), secret, "<SECRET>"))
	}
	if got := e.ReadSite("web", "public/db.sha"); strings.TrimSpace(got) != sha(secret) {
		t.Errorf("the build did not see DB_URL (hash %q)", got)
	}
	if got := e.ReadSite("web", "public/pem.sha"); strings.TrimSpace(got) != sha(multi) {
		t.Errorf("the build did not see the multi-line PEM (hash %q)", got)
	}
	if got := e.ReadSite("web", "public/env.link"); strings.TrimSpace(got) != "/dev/fd/3" {
		t.Errorf(".env is not the in-memory file: %q", got)
	}
	dec := e.SSH(admin, "secrets", "decrypt", "web")
	if dec.Code != 0 || strings.TrimSpace(e.ReadSite("web", "public/env.sha")) != sha(dec.Stdout) {
		t.Errorf(".env content differs from the decrypted dotenv (exit %d)", dec.Code)
	}
	logs := e.SSH(admin, "logs", "web")
	if !strings.Contains(logs.Stdout, "connecting to ***") || strings.Contains(logs.Stdout, "Xq7") {
		t.Errorf("the deploy log does not mask the secret")
	}
	// Nothing on disk holds a value: the data dir, the site, the temp dirs.
	for _, needle := range []string{secret, "Xq7-very-secret-9Zt", "line-two-of-the-secret-Kp3"} {
		scanFor(t, e.Dir, needle)
		if strings.Contains(e.ServerLog(), needle) {
			t.Error("the server log holds a secret")
		}
	}
	audit, _ := os.ReadFile(filepath.Join(e.Data, "audit.log"))
	if !strings.Contains(string(audit), `"command":"secrets decrypt web"`) {
		t.Error("secrets decrypt is not in the audit log")
	}

	// Rotation: the old identity no longer opens the store; deploys still
	// get the secrets.
	oldKey, err := os.ReadFile(filepath.Join(e.Data, "age.key"))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.Eeveon("secrets", "rotate"); r.Code != 0 {
		t.Fatalf("rotate: exit %d\n%s", r.Code, r.Out())
	}
	ids, err := age.ParseIdentities(bytes.NewReader(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(e.Data, "secrets", "web.age"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := age.Decrypt(f, ids...); err == nil {
		t.Error("the old identity still decrypts the store after rotation")
	}
	repo.Commit("again", map[string]string{"x": "1"})
	if r := repo.Push(admin, "web"); r.Code != 0 || !strings.Contains(r.Stderr, "live: web") || strings.TrimSpace(e.ReadSite("web", "public/db.sha")) != sha(secret) {
		t.Fatalf("deploy after rotation: exit %d\n%s", r.Code, strings.ReplaceAll(r.Out(), secret, "<SECRET>"))
	}
}

func TestSecretsLocalCLI(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.MustEeveon("site", "add", "web")
	// The v0.3.0 form, with the only site.
	r := e.Eeveon("secrets", "set", "API_KEY", "k-123456")
	if r.Code != 0 || !strings.Contains(r.Stderr, "visible to other users") {
		t.Fatalf("secrets set KEY VALUE: exit %d\n%s", r.Code, r.Out())
	}
	r = run(t, e.Dir, nil, "v-from-stdin\n", bin, "secrets", "set", "web", "OTHER", "--data", e.Data)
	if r.Code != 0 || strings.Contains(r.Stderr, "visible") {
		t.Fatalf("secrets set from stdin: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.MustEeveon("secrets", "list", "web"); r.Stdout != "API_KEY\nOTHER\n" {
		t.Fatalf("list: %q", r.Stdout)
	}
	if r := e.Eeveon("secrets", "set", "web", "bad-name", "x"); r.Code == 0 {
		t.Fatalf("a bad key name was accepted:\n%s", r.Out())
	}
	audit, _ := os.ReadFile(filepath.Join(e.Data, "audit.log"))
	if strings.Contains(string(audit), "k-123456") || strings.Contains(string(audit), "v-from-stdin") {
		t.Error("the audit log holds a secret value")
	}
	if r := e.Eeveon("secrets", "rm", "web", "OTHER"); r.Code != 0 {
		t.Fatal(r.Out())
	}
	if r := e.Eeveon("secrets", "rm", "web", "OTHER"); r.Code == 0 {
		t.Fatal("removing a missing secret succeeded")
	}
}

// TestSecretsFileCannotEscapeTheSite: a pushed symlink on the way to
// secrets_file must not make the server write or delete outside the site.
func TestSecretsFileCannotEscapeTheSite(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	victim := filepath.Join(e.Dir, "victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, ".env"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustEeveon("site", "add", "web", "--secrets-file", "conf/.env")
	if r := e.sshIn(admin, "v4lue-v4lue\n", "secrets", "set", "web", "K"); r.Code != 0 {
		t.Fatal(r.Out())
	}
	repo := e.NewRepo("web", map[string]string{"index.html": "x"})
	if err := os.Symlink(victim, filepath.Join(repo.Dir, "conf")); err != nil {
		t.Fatal(err)
	}
	repo.Git("add", "conf")
	repo.Git("commit", "-q", "-m", "conf is a symlink out of the site")
	r := repo.Push(admin, "web")
	if !strings.Contains(r.Stderr, "FAILED") || e.Live("web") != "" {
		t.Fatalf("a deploy whose secrets_file path leaves the site did not fail:\n%s", r.Out())
	}
	if b, err := os.ReadFile(filepath.Join(victim, ".env")); err != nil || string(b) != "precious" {
		t.Fatalf("the file outside the site was changed: %q, %v", b, err)
	}
}

// TestSecretValuesNeverAudited: neither a refused command line nor the
// short form over SSH puts a value into the audit log.
func TestSecretValuesNeverAudited(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "web")
	e.SSH(admin, "secrets set web API_KEY sup3r$ecretXYZ")      // refused: $ outside quotes
	e.SSH(admin, "secrets", "set", "API_KEY", "hunter2hunter2") // the short form, over SSH
	e.SSH(admin, "secrets", "set", "web", "API_KEY", "'quoted-val-Q9'")
	audit, err := os.ReadFile(filepath.Join(e.Data, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"sup3r", "hunter2", "quoted-val"} {
		if strings.Contains(string(audit), v) {
			t.Errorf("the audit log holds a secret value (%s…)", v[:3])
		}
	}
	if !strings.Contains(string(audit), `"command":"secrets set web API_KEY ***"`) {
		t.Errorf("the audit log lacks the redacted command:\n%s", audit)
	}
}
