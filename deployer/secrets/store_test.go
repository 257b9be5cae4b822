package secrets

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
)

// fp describes a secret in a test message without showing it.
func fp(s string) string {
	h := sha256.Sum256([]byte(s))
	return fmt.Sprintf("<%d bytes, sha256 %s>", len(s), hex.EncodeToString(h[:6]))
}

// fpMap describes a secret map by names and value fingerprints.
func fpMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%s ", k, fp(m[k]))
	}
	return b.String()
}

// isolate clears the identity environment so that only the data dir
// counts.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv(EnvKeyFile, "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	isolate(t)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func mustGet(t *testing.T, s *Store, site string) map[string]string {
	t.Helper()
	m, err := s.Get(site)
	if err != nil {
		t.Fatalf("Get(%s): %v", site, err)
	}
	return m
}

func TestStoreRoundTrip(t *testing.T) {
	s, dir := newStore(t)
	if m := mustGet(t, s, "hello"); m == nil || len(m) != 0 {
		t.Fatalf("Get of a site without secrets = %d entries (nil %v), want an empty map", len(m), m == nil)
	}
	want := map[string]string{
		"DATABASE_URL": "postgres://u:p@db/app",
		"API_TOKEN":    "tok-3f9a",
		"EMPTY":        "",
	}
	for k, v := range want {
		if err := s.Set("hello", k, v); err != nil {
			t.Fatalf("Set %s: %v", k, err)
		}
	}
	if err := s.Set("other", "API_TOKEN", "other-site-token"); err != nil {
		t.Fatal(err)
	}

	// A second Store on the same directory sees the same data.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s2, "hello"); !maps.Equal(got, want) {
		t.Fatalf("Get = %s, want %s", fpMap(got), fpMap(want))
	}
	names, err := s2.Names("hello")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"API_TOKEN", "DATABASE_URL", "EMPTY"}) {
		t.Fatalf("Names = %v", names)
	}

	if err := s2.Set("hello", "API_TOKEN", "tok-new"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Remove("hello", "EMPTY"); err != nil {
		t.Fatal(err)
	}
	err = s.Remove("hello", "EMPTY")
	if !errors.Is(err, ErrNoSecret) {
		t.Fatalf("second Remove = %v, want ErrNoSecret", err)
	}
	got := mustGet(t, s, "hello")
	want = map[string]string{"DATABASE_URL": "postgres://u:p@db/app", "API_TOKEN": "tok-new"}
	if !maps.Equal(got, want) {
		t.Fatalf("after Set and Remove: Get = %s, want %s", fpMap(got), fpMap(want))
	}
	if got := mustGet(t, s, "other"); !maps.Equal(got, map[string]string{"API_TOKEN": "other-site-token"}) {
		t.Fatalf("other site = %s", fpMap(got))
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	s, dir := newStore(t)
	for _, site := range []string{"", "../x", "Hello", "a/b"} {
		if err := s.Set(site, "K_1", "v"); err == nil {
			t.Errorf("Set on site %q succeeded", site)
		}
		if _, err := s.Get(site); err == nil {
			t.Errorf("Get on site %q succeeded", site)
		}
	}
	if err := s.Set("hello", "lower", "v"); err == nil {
		t.Error("Set with a lower-case name succeeded")
	}
	if err := s.Set("hello", "K", "a\x00b"); err == nil {
		t.Error("Set with a NUL in the value succeeded")
	}
	if err := s.Remove("hello", "1BAD"); err == nil || errors.Is(err, ErrNoSecret) {
		t.Errorf("Remove with an invalid name = %v, want a validation error", err)
	}
	files, _ := storeFiles(filepath.Join(dir, "secrets"))
	if len(files) != 0 {
		t.Errorf("rejected input wrote %v", files)
	}
}

// TestNoPlaintextOnDisk scans every byte under the data dir for the name
// and the value of a secret, in the forms they could leak in.
func TestNoPlaintextOnDisk(t *testing.T) {
	s, dir := newStore(t)
	const key = "CANARY_KEY_QX7Z9W"
	const value = "canary-value-Jq81vP3kT0zR7mNs"
	multi := "line one Hk2Lw9\nline two Zp4Rt6"
	if err := s.Set("hello", key, value); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("hello", "MULTI_QX7Z9W", multi); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import("other", []byte(key+"="+value+"\n"), false); err != nil {
		t.Fatal(err)
	}
	needles := map[string][]byte{
		"key":          []byte(key),
		"value":        []byte(value),
		"value base64": []byte(base64.StdEncoding.EncodeToString([]byte(value))),
		"multi part":   []byte("Hk2Lw9"),
	}
	scanned := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s: contains the secret's %s in plaintext", path, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// age.key, secrets/.lock, hello.age and other.age at least.
	if scanned < 4 {
		t.Fatalf("scanned only %d files", scanned)
	}
	// The store is an age file.
	b, err := os.ReadFile(filepath.Join(dir, "secrets", "hello.age"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
		t.Errorf("hello.age does not start with the age header")
	}
}

func TestFileModes(t *testing.T) {
	s, dir := newStore(t)
	if err := s.Set("hello", "K", "value"); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{
		filepath.Join(dir, "age.key"):              0o600,
		filepath.Join(dir, "secrets"):              fs.ModeDir | 0o700,
		filepath.Join(dir, "secrets", "hello.age"): 0o600,
		filepath.Join(dir, "secrets", ".lock"):     0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	// No temp files are left behind.
	ents, err := os.ReadDir(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != ".lock" && e.Name() != "hello.age" {
			t.Errorf("stray file %s", e.Name())
		}
	}
}

func TestOpenTightensLooseSecretsDir(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("secrets dir mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestOpenRefusesNewKeyOverExistingStores(t *testing.T) {
	s, dir := newStore(t)
	if err := s.Set("hello", "K", "value"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "age.key")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Open with stores but no key = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "age.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created a new key over existing stores")
	}
	// An existing Store does not create one either.
	if err := s.Set("hello", "K2", "v"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Set without a key = %v, want fs.ErrNotExist", err)
	}
}

func TestWrongKeyNeverOverwrites(t *testing.T) {
	s, dir := newStore(t)
	if err := s.Set("hello", "K", "value"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "secrets", "hello.age"))
	other, _ := age.GenerateX25519Identity()
	if err := os.WriteFile(filepath.Join(dir, "age.key"), identityFile(other), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("hello"); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Errorf("Get with another key = %v, want a decrypt error", err)
	}
	if err := s.Set("hello", "K2", "v"); err == nil {
		t.Errorf("Set with another key succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(dir, "secrets", "hello.age"))
	if !bytes.Equal(before, after) {
		t.Errorf("store changed although it could not be decrypted")
	}
}

func TestConcurrentSets(t *testing.T) {
	s, dir := newStore(t)
	s2, err := Open(dir) // a second Store: only the flock serialises them
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			if err := st.Set("hello", fmt.Sprintf("K_%02d", i), fmt.Sprintf("value-%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := mustGet(t, s, "hello"); len(got) != 16 {
		t.Fatalf("after 16 concurrent Sets: %d secrets (%s); a write was lost", len(got), fpMap(got))
	}
}

func TestValidKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"A", true},
		{"_", true},
		{"DATABASE_URL", true},
		{"_PRIVATE_2", true},
		{"A1", true},
		{strings.Repeat("K", 128), true},
		{"", false},
		{strings.Repeat("K", 129), false},
		{"1A", false},
		{"lower", false},
		{"Mixed_Case", false},
		{"WITH-DASH", false},
		{"WITH SPACE", false},
		{"DOT.TED", false},
		{"K=V", false},
		{"ÄPFEL", false},
		{"K\n", false},
	} {
		err := ValidKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "invalid name: secret name") {
			t.Errorf("ValidKey(%q) message %q lacks the 'secret name' context", tc.key, err)
		}
	}
	// A name mixed up with NAME=value must not echo the value.
	const value = "hunter2-Zq9"
	for _, k := range []string{"PASSWORD=" + value, "pw " + value} {
		if err := ValidKey(k); err == nil || strings.Contains(err.Error(), value) {
			t.Errorf("ValidKey of a name holding a value: err=%v, echoes the value=%v", err != nil, err != nil && strings.Contains(err.Error(), value))
		}
	}
	if err := ValidKey("db_url"); err == nil || !strings.Contains(err.Error(), "DB_URL") {
		t.Errorf("ValidKey(db_url) = %v, want a hint at DB_URL", err)
	}
}

func TestValidValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    string
		ok   bool
	}{
		{"empty", "", true},
		{"plain", "value", true},
		{"newlines and quotes", "a\nb\r\n\"c\" 'd' $E \\", true},
		{"unicode", "päss wörd ✓", true},
		{"invalid utf-8", "\xff\xfe\x80", true},
		{"control bytes", "\x01\x1b[31m", true},
		{"64 KiB", strings.Repeat("x", 64<<10), true},
		{"64 KiB + 1", strings.Repeat("x", 64<<10+1), false},
		{"NUL", "a\x00b", false},
		{"only NUL", "\x00", false},
	} {
		err := ValidValue(tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("%s: ValidValue(%s) = %v, want ok=%v", tc.name, fp(tc.v), err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.v) {
			t.Errorf("%s: error quotes the value", tc.name)
		}
	}
}

// TestStoreKeepsArbitraryBytes covers values that a JSON string would
// not carry unchanged.
func TestStoreKeepsArbitraryBytes(t *testing.T) {
	s, dir := newStore(t)
	v := "\xff\xfe raw \x80 bytes \u2028 \x7f"
	if err := s.Set("hello", "RAW", v); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dir)
	if got := mustGet(t, s2, "hello")["RAW"]; got != v {
		t.Fatalf("RAW = %s, want %s", fp(got), fp(v))
	}
}
