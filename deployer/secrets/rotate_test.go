package secrets

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// canDecrypt reports whether id decrypts every store file in dataDir.
func decryptsAll(t *testing.T, dataDir string, id *age.X25519Identity) bool {
	t.Helper()
	files, err := storeFiles(filepath.Join(dataDir, "secrets"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no store files: %v", err)
	}
	for _, f := range files {
		if _, err := decryptFile(f, id); err != nil {
			return false
		}
	}
	return true
}

// decryptsNone reports whether id fails on every store file, each time
// because it is not a recipient.
func decryptsNone(t *testing.T, dataDir string, id *age.X25519Identity) bool {
	t.Helper()
	files, _ := storeFiles(filepath.Join(dataDir, "secrets"))
	for _, f := range files {
		_, err := decryptFile(f, id)
		var nomatch *age.NoIdentityMatchError
		if !errors.As(err, &nomatch) {
			return false
		}
	}
	return len(files) > 0
}

func rotateFixture(t *testing.T) (*Store, string, map[string]map[string]string, *age.X25519Identity) {
	t.Helper()
	s, dir := newStore(t)
	want := map[string]map[string]string{
		"alpha": {"A": "alpha-value-1", "B": "multi\nline"},
		"beta":  {"TOKEN": "beta-token-xyz"},
	}
	for site, m := range want {
		if _, err := s.Import(site, FormatDotenv(m), true); err != nil {
			t.Fatal(err)
		}
	}
	old, err := LoadIdentity(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir, want, old
}

func checkValues(t *testing.T, s *Store, want map[string]map[string]string) {
	t.Helper()
	for site, m := range want {
		if got := mustGet(t, s, site); !maps.Equal(got, m) {
			t.Errorf("%s: %s, want %s", site, fpMap(got), fpMap(m))
		}
	}
}

func TestRotate(t *testing.T) {
	s, dir, want, old := rotateFixture(t)
	recipient, err := Rotate(dir)
	if err != nil {
		t.Fatal(err)
	}
	next, err := LoadIdentity(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if recipient != next.Recipient().String() || sameID(old, next) {
		t.Fatalf("Rotate returned %s; age.key now holds %s (old %s)", recipient, next.Recipient(), old.Recipient())
	}
	if !decryptsNone(t, dir, old) {
		t.Errorf("the old identity still decrypts a store")
	}
	if !decryptsAll(t, dir, next) {
		t.Errorf("the new identity does not decrypt every store")
	}
	// The Store opened before the rotation follows it.
	checkValues(t, s, want)
	if err := s.Set("gamma", "NEW", "after-rotation"); err != nil {
		t.Fatal(err)
	}
	if _, err := decryptFile(filepath.Join(dir, "secrets", "gamma.age"), next); err != nil {
		t.Errorf("a store written after rotation is not encrypted to the new key: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "age.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("age.key after rotation: %v, %v", fi, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "age.key") && e.Name() != "age.key" || strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("stray file %s after rotation", e.Name())
		}
	}
}

var errCrash = errors.New("simulated crash")

func crashAfter(t *testing.T, step int, next **age.X25519Identity) {
	t.Helper()
	testHookRotate = func(s int, id *age.X25519Identity) error {
		*next = id
		if s == step {
			return errCrash
		}
		return nil
	}
	t.Cleanup(func() { testHookRotate = nil })
}

func TestRotateCrashAfterStep1(t *testing.T) {
	s, dir, want, old := rotateFixture(t)
	var next *age.X25519Identity
	crashAfter(t, 1, &next)
	if _, err := Rotate(dir); !errors.Is(err, errCrash) {
		t.Fatalf("Rotate = %v, want the simulated crash", err)
	}
	inPlace, err := LoadIdentity(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !sameID(inPlace, old) {
		t.Fatalf("age.key changed before step 2")
	}
	if !decryptsAll(t, dir, old) || !decryptsAll(t, dir, next) {
		t.Fatalf("after step 1 both keys must decrypt every store (old %v, new %v)",
			decryptsAll(t, dir, old), decryptsAll(t, dir, next))
	}
	checkValues(t, s, want)

	// A later Rotate finishes the job.
	testHookRotate = nil
	if _, err := Rotate(dir); err != nil {
		t.Fatal(err)
	}
	final, _ := LoadIdentity(dir, false)
	if !decryptsNone(t, dir, old) || !decryptsNone(t, dir, next) || !decryptsAll(t, dir, final) {
		t.Errorf("after a full Rotate only the final key may decrypt")
	}
	checkValues(t, s, want)
}

func TestRotateCrashAfterStep2(t *testing.T) {
	s, dir, want, old := rotateFixture(t)
	var next *age.X25519Identity
	crashAfter(t, 2, &next)
	if _, err := Rotate(dir); !errors.Is(err, errCrash) {
		t.Fatalf("Rotate = %v, want the simulated crash", err)
	}
	inPlace, err := LoadIdentity(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !sameID(inPlace, next) {
		t.Fatalf("age.key does not hold the new key after step 2")
	}
	if !decryptsAll(t, dir, old) || !decryptsAll(t, dir, next) {
		t.Fatalf("after step 2 both keys must decrypt every store")
	}
	checkValues(t, s, want)
}

func TestRotateRefusesExternalKey(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := filepath.Join(t.TempDir(), "ext.key")
	writeKey(t, key, 0o600)
	t.Setenv(EnvKeyFile, key)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("hello", "K", "value"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(key)
	_, err = Rotate(dir)
	if err == nil {
		t.Fatal("Rotate of an external key succeeded")
	}
	for _, want := range []string{EnvKeyFile, key, "age-keygen", "age -d -i"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	after, _ := os.ReadFile(key)
	if string(before) != string(after) {
		t.Errorf("Rotate changed the external key")
	}
	if _, err := os.Stat(filepath.Join(dir, "age.key")); err == nil {
		t.Errorf("Rotate created a data-dir key")
	}

	t.Setenv(EnvKeyFile, "")
	creds := t.TempDir()
	writeKey(t, filepath.Join(creds, CredentialName), 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if _, err := Rotate(dir); err == nil || !strings.Contains(err.Error(), "systemd credential") {
		t.Errorf("Rotate of a credential key = %v", err)
	}
}

func TestRotateWithoutStores(t *testing.T) {
	_, dir := newStore(t)
	if _, err := Rotate(dir); err != nil {
		t.Fatal(err)
	}
}
