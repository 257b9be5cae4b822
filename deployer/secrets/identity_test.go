package secrets

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// writeKey writes a fresh identity to path and returns it.
func writeKey(t *testing.T, path string, mode os.FileMode) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, identityFile(id), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // beat the umask
		t.Fatal(err)
	}
	return id
}

func sameID(a, b *age.X25519Identity) bool {
	return a != nil && b != nil && a.Recipient().String() == b.Recipient().String()
}

func TestLoadIdentityCreates(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	if _, err := LoadIdentity(dir, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadIdentity(create=false) without a key = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "age.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("LoadIdentity(create=false) created a key")
	}
	id, err := LoadIdentity(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "age.key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("age.key mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "# created: ") ||
		lines[1] != "# public key: "+id.Recipient().String() ||
		!strings.HasPrefix(lines[2], "AGE-SECRET-KEY-1") {
		t.Errorf("age.key is not in age-keygen format (%d lines)", len(lines))
	}
	again, err := LoadIdentity(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if !sameID(id, again) {
		t.Errorf("second LoadIdentity made a new key")
	}
}

func TestLoadIdentityOrder(t *testing.T) {
	isolate(t)
	data := t.TempDir()
	ext := t.TempDir()
	creds := t.TempDir()
	dataID := writeKey(t, filepath.Join(data, "age.key"), 0o600)
	envID := writeKey(t, filepath.Join(ext, "env.key"), 0o644) // external: mode not checked
	credID := writeKey(t, filepath.Join(creds, CredentialName), 0o440)

	check := func(name string, want *age.X25519Identity, wantPath string, wantExt bool) {
		t.Helper()
		path, external := IdentityPath(data)
		if path != wantPath || external != wantExt {
			t.Errorf("%s: IdentityPath = %s, %v; want %s, %v", name, path, external, wantPath, wantExt)
		}
		id, err := LoadIdentity(data, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameID(id, want) {
			t.Errorf("%s: loaded the wrong identity", name)
		}
	}
	t.Setenv(EnvKeyFile, filepath.Join(ext, "env.key"))
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	check("env beats credentials", envID, filepath.Join(ext, "env.key"), true)
	t.Setenv(EnvKeyFile, "")
	check("credentials beat data dir", credID, filepath.Join(creds, CredentialName), true)
	t.Setenv("CREDENTIALS_DIRECTORY", t.TempDir()) // credentials, but not ours
	check("credentials dir without our key", dataID, filepath.Join(data, "age.key"), false)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	check("data dir", dataID, filepath.Join(data, "age.key"), false)
}

func TestLoadIdentityExternalMissing(t *testing.T) {
	isolate(t)
	data := t.TempDir()
	missing := filepath.Join(t.TempDir(), "nope.key")
	t.Setenv(EnvKeyFile, missing)
	_, err := LoadIdentity(data, true)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), EnvKeyFile) {
		t.Fatalf("LoadIdentity with a missing $%s = %v", EnvKeyFile, err)
	}
	for _, p := range []string{missing, filepath.Join(data, "age.key")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was created", p)
		}
	}
	if _, err := Open(data); err == nil {
		t.Errorf("Open with a missing $%s succeeded", EnvKeyFile)
	}
}

func TestLoadIdentityRefusesLooseDataKey(t *testing.T) {
	isolate(t)
	data := t.TempDir()
	path := filepath.Join(data, "age.key")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		writeKey(t, path, mode)
		_, err := LoadIdentity(data, true)
		if err == nil {
			t.Fatalf("mode %04o: LoadIdentity succeeded", mode)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "chmod 600 "+path) {
			t.Errorf("mode %04o: error %q does not name the file and the fix", mode, msg)
		}
		if _, err := Open(data); err == nil {
			t.Errorf("mode %04o: Open succeeded", mode)
		}
	}
	want := writeKey(t, path, 0o400)
	id, err := LoadIdentity(data, false)
	if err != nil || !sameID(id, want) {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadIdentityBadFiles(t *testing.T) {
	isolate(t)
	data := t.TempDir()
	path := filepath.Join(data, "age.key")
	one, _ := age.GenerateX25519Identity()
	two, _ := age.GenerateX25519Identity()
	for name, content := range map[string]string{
		"empty":    "",
		"comments": "# public key: age1xyz\n",
		"garbage":  "not a key\n",
		"two keys": one.String() + "\n" + two.String() + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadIdentity(data, true)
		if err == nil {
			t.Errorf("%s: LoadIdentity succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "AGE-SECRET-KEY-1") {
			t.Errorf("%s: error quotes key material", name)
		}
	}
}
