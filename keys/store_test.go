package keys

import (
	"crypto/elliptic"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStoreMissingFile(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "authorized_keys"))
	if _, ok := s.Lookup(edKey(t)); ok {
		t.Fatal("Lookup found a key in a missing file")
	}
	entries, problems, err := s.List()
	if len(entries) != 0 || len(problems) != 0 || err != nil {
		t.Fatalf("List = %v, %v, %v", entries, problems, err)
	}
}

func TestStoreAddUpdatesInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "authorized_keys")
	s := Open(path)
	k := edKey(t)
	updated, err := s.Add(Entry{User: "alice", Role: RoleDeployer, Sites: []string{"web"}, Key: k, Comment: "laptop"}, "eeveon shell")
	if err != nil || updated {
		t.Fatalf("first Add = %v, %v", updated, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode after Add: %v, %v", fi.Mode(), err)
	}
	updated, err = s.Add(Entry{User: "alice", Role: RoleAdmin, Key: k}, "eeveon shell")
	if err != nil || !updated {
		t.Fatalf("second Add = %v, %v", updated, err)
	}
	want := FormatLine(Entry{User: "alice", Role: RoleAdmin, Key: k}, "eeveon shell") + "\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
	e, ok := s.Lookup(k)
	if !ok || e.Role != RoleAdmin || len(e.Sites) != 0 || e.Line != 1 {
		t.Fatalf("Lookup = %+v, %v", e, ok)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode after update: %v, %v", fi.Mode(), err)
	}
}

func TestStoreAddKeepsOtherLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	kb, kc := edKey(t), ecKey(t, elliptic.P256())
	head := "# hand written, keep me\n" +
		"command=\"eeveon --user bob   --role deployer\" " + authorized(kb) + "  bob\r\n" +
		"this line is broken\n" +
		"\n"
	tail := "command=\"eeveon --user nobody --role root\" " + authorized(edKey(t)) + "\n" +
		"   # indented comment\n"
	mid := `command="eeveon --user carol --role deployer" ` + authorized(kc) + "\n"
	if err := os.WriteFile(path, []byte(head+mid+tail), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Open(path)

	ka := edKey(t)
	if _, err := s.Add(Entry{User: "alice", Role: RoleAdmin, Key: ka}, "eeveon shell"); err != nil {
		t.Fatal(err)
	}
	newLine := FormatLine(Entry{User: "alice", Role: RoleAdmin, Key: ka}, "eeveon shell") + "\n"
	if got, want := readFile(t, path), head+mid+tail+newLine; got != want {
		t.Fatalf("after append:\n got %q\nwant %q", got, want)
	}

	// Replace carol's line in the middle: everything around it stays.
	updated, err := s.Add(Entry{User: "carol", Role: RoleAdmin, Key: kc, Comment: "new"}, "eeveon shell")
	if err != nil || !updated {
		t.Fatalf("Add = %v, %v", updated, err)
	}
	mid2 := FormatLine(Entry{User: "carol", Role: RoleAdmin, Key: kc, Comment: "new"}, "eeveon shell") + "\n"
	if got, want := readFile(t, path), head+mid2+tail+newLine; got != want {
		t.Fatalf("after update:\n got %q\nwant %q", got, want)
	}
	if e, ok := s.Lookup(kc); !ok || e.Role != RoleAdmin || e.Line != 5 {
		t.Fatalf("Lookup(carol) = %+v, %v", e, ok)
	}
	if p := s.Problems(); len(p) != 2 || p[0].Line != 3 || p[1].Line != 6 {
		t.Fatalf("Problems = %v, want lines 3 and 6", p)
	}
}

func TestStoreAddRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	s := Open(path)
	k := edKey(t)
	tests := []struct {
		name string
		e    Entry
		cmd  string
	}{
		{"no key", Entry{User: "alice", Role: RoleAdmin}, "eeveon"},
		{"small rsa", Entry{User: "alice", Role: RoleAdmin, Key: rsaBits(t, 1024)}, "eeveon"},
		{"bad user", Entry{User: "al ice", Role: RoleAdmin, Key: k}, "eeveon"},
		{"bad role", Entry{User: "alice", Role: "root", Key: k}, "eeveon"},
		{"bad site", Entry{User: "alice", Role: RoleDeployer, Sites: []string{"../x"}, Key: k}, "eeveon"},
		{"comment newline", Entry{User: "alice", Role: RoleAdmin, Key: k, Comment: "a\nb"}, "eeveon"},
		{"command newline", Entry{User: "alice", Role: RoleDeployer, Key: k}, "eeveon\nshell"},
		{"command sets role", Entry{User: "alice", Role: RoleDeployer, Key: k}, "eeveon --role admin"},
		{"command opens quote", Entry{User: "alice", Role: RoleDeployer, Key: k}, "eeveon 'shell"},
	}
	for _, tt := range tests {
		if _, err := s.Add(tt.e, tt.cmd); err == nil {
			t.Errorf("%s: Add succeeded", tt.name)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused Adds wrote the file: %v", err)
	}
}

func TestStoreRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	s := Open(path)
	a1, a2, b := edKey(t), edKey(t), edKey(t)
	for _, e := range []Entry{{User: "alice", Role: RoleAdmin, Key: a1}, {User: "bob", Role: RoleDeployer, Key: b}, {User: "alice", Role: RoleDeployer, Key: a2}} {
		if _, err := s.Add(e, "eeveon shell"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Remove("alice"); n != 2 || err != nil {
		t.Fatalf("Remove(alice) = %d, %v", n, err)
	}
	if _, ok := s.Lookup(a1); ok {
		t.Fatal("alice's key still found")
	}
	if _, err := s.Remove("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove(alice) = %v, want ErrNotFound", err)
	}
	fp := Entry{Key: b}.Fingerprint()
	if n, err := s.Remove(strings.TrimPrefix(fp, "SHA256:")); n != 1 || err != nil {
		t.Fatalf("Remove(fingerprint without prefix) = %d, %v", n, err)
	}
	if got := readFile(t, path); got != "" {
		t.Fatalf("file = %q, want empty", got)
	}

	// A broken line can still be removed by its fingerprint; a comment stays.
	broken := `command="eeveon --user carol --role root" ` + authorized(b) + "\n"
	if err := os.WriteFile(path, []byte("# keep\n"+broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Remove(fp); n != 1 || err != nil {
		t.Fatalf("Remove(fingerprint) = %d, %v", n, err)
	}
	if got := readFile(t, path); got != "# keep\n" {
		t.Fatalf("file = %q", got)
	}
}

func TestStoreLookupSeesHandEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	k := edKey(t)
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write(`command="eeveon --user alice --role admin" `+authorized(k)+"\n", base)
	s := Open(path)
	if e, ok := s.Lookup(k); !ok || e.Role != RoleAdmin {
		t.Fatalf("Lookup = %+v, %v", e, ok)
	}

	// In place, different size and mtime.
	write(`command="eeveon --user alice --role deployer" `+authorized(k)+"\n", base.Add(time.Second))
	if e, ok := s.Lookup(k); !ok || e.Role != RoleDeployer {
		t.Fatalf("after edit Lookup = %+v, %v", e, ok)
	}
	// In place, same size, only the mtime differs.
	write(`command="eeveon --user bobby --role deployer" `+authorized(k)+"\n", base.Add(2*time.Second))
	if e, ok := s.Lookup(k); !ok || e.User != "bobby" {
		t.Fatalf("after same-size edit Lookup = %+v, %v", e, ok)
	}
	// A broken line: the key is gone and the problem is kept.
	write(`command="eeveon --user bobby --role god" `+authorized(k)+"\n", base.Add(3*time.Second))
	if _, ok := s.Lookup(k); ok {
		t.Fatal("Lookup still finds a key whose line is now broken")
	}
	if p := s.Problems(); len(p) != 1 || p[0].Line != 1 || !strings.Contains(p[0].Error(), `unknown role "god"`) {
		t.Fatalf("Problems = %v", p)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(k); ok {
		t.Fatal("Lookup finds a key in a deleted file")
	}
}

func TestStoreConcurrentAdd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	// Two stores on one file stand for two processes: only flock keeps them apart.
	stores := []*Store{Open(path), Open(path)}
	const n = 24
	keys := make([]Entry, n)
	for i := range keys {
		keys[i] = Entry{User: "user" + string(rune('a'+i)), Role: RoleDeployer, Key: edKey(t)}
	}
	var wg sync.WaitGroup
	for i, e := range keys {
		wg.Go(func() {
			if _, err := stores[i%2].Add(e, "eeveon shell"); err != nil {
				t.Error(err)
			}
			stores[(i+1)%2].Lookup(e.Key)
		})
	}
	wg.Wait()
	entries, problems, err := stores[0].List()
	if err != nil || len(problems) != 0 || len(entries) != n {
		t.Fatalf("List = %d entries, %v, %v; want %d", len(entries), problems, err, n)
	}
	for _, e := range keys {
		if got, ok := stores[1].Lookup(e.Key); !ok || got.User != e.User {
			t.Errorf("Lookup(%s) = %+v, %v", e.User, got, ok)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".authorized_keys.tmp-*")); len(m) != 0 {
		t.Errorf("temp files left behind: %v", m)
	}
}
