package names

import (
	"errors"
	"strings"
	"testing"
)

func TestSite(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"hello", true},
		{"a", true},
		{"0", true},
		{"my-site-2", true},
		{"a-", true}, // the rule allows a trailing hyphen
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-x", false},
		{"Hello", false},
		{"HELLO", false},
		{"hello.git", false},
		{"a.b", false},
		{"a_b", false},
		{"a b", false},
		{"/hello", false},
		{"hello/", false},
		{"a/b", false},
		{"..", false},
		{".", false},
		{"../x", false},
		{"hello\n", false},
		{"\nhello", false},
		{"hel\x00lo", false},
		{"hello\x00", false},
		{"héllo", false},
	}
	for _, tc := range tests {
		err := Site(tc.name)
		if tc.ok && err != nil {
			t.Errorf("Site(%q) = %v, want ok", tc.name, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("Site(%q) = nil, want an error", tc.name)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("Site(%q) = %v, does not wrap ErrInvalid", tc.name, err)
			}
		}
	}
}

func TestUser(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"Alice", true},
		{"alice@example.com", true},
		{"a.b_c-d", true},
		{"0", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"-alice", false},
		{".alice", false},
		{"@alice", false},
		{"alice bob", false},
		{"alice\n", false},
		{"al\x00ice", false},
		{"a/b", false},
		{"../x", false},
		{"alice;id", false},
	}
	for _, tc := range tests {
		err := User(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("User(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("User(%q) = %v, does not wrap ErrInvalid", tc.name, err)
		}
	}
}

func TestDeployID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"20260102-150405-ab12", true},
		{"20260101-000000-abcd", true},
		{"20260102-150405-AB12", false},
		{"20260102-150405-ab1", false},
		{"20260102-150405-ab123", false},
		{"2026010-150405-ab12", false},
		{"20260102150405ab12", false},
		{"20260102-150405-ab12.json", false},
		{"../20260102-150405-ab12", false},
		{"20260102-150405-ab12\n", false},
		{"", false},
	}
	for _, tc := range tests {
		err := DeployID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("DeployID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("DeployID(%q) = %v, does not wrap ErrInvalid", tc.id, err)
		}
	}
}

func TestRef(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"main", true},
		{"feature/x", true},
		{"refs/heads/main", true},
		{"refs/tags/v1.2.3", true},
		{"v1.0", true},
		{"0123456789abcdef0123456789abcdef01234567", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{"-x", false},
		{"--upload-pack=touch /tmp/pwned", false},
		{"--end-of-options", false},
		{"..", false},
		{"a..b", false},
		{"main..evil", false},
		{"/main", false},
		{"main/", false},
		{"main.", false},
		{"a//b", false},
		{"main@{1}", false},
		{"main.lock", false},
		{"main~1", false},
		{"main^", false},
		{"main^{tree}", false},
		{":/message", false},
		{"HEAD:file", false},
		{"ma?n", false},
		{"ma*n", false},
		{"ma[n", false},
		{`ma\n`, false},
		{"ma n", false},
		{"ma\tn", false},
		{"ma\nn", false},
		{"ma\x00n", false},
		{"ma\x7fn", false},
		{".hidden", false},
		{"refs/heads/.hidden", false},
	}
	for _, tc := range tests {
		err := Ref(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("Ref(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Ref(%q) = %v, does not wrap ErrInvalid", tc.ref, err)
		}
	}
}

func TestRepoPath(t *testing.T) {
	tests := []struct {
		path string
		want string // "" for refused
	}{
		{"hello", "hello"},
		{"/hello", "hello"},
		{"hello.git", "hello"},
		{"/hello.git", "hello"},
		{"my-site", "my-site"},
		{"../x", ""},
		{"/a/b", ""},
		{"a/b.git", ""},
		{"hello/", ""},
		{"/hello/", ""},
		{"//hello", ""},
		{"..", ""},
		{"/..", ""},
		{"../hello.git", ""},
		{"x.git.git", ""},
		{".git", ""},
		{"/.git", ""},
		{"/", ""},
		{"", ""},
		{"Hello", ""},
		{"/HELLO.git", ""},
		{"hello.GIT", ""},
		{strings.Repeat("a", 64), ""},
		{"/" + strings.Repeat("a", 64) + ".git", ""},
		{"-x", ""},
		{"/-x.git", ""},
		{"hel\x00lo", ""},
		{"hello.git\x00", ""},
		{"hello\n", ""},
		{"~/hello", ""},
	}
	for _, tc := range tests {
		got, err := RepoPath(tc.path)
		if tc.want == "" {
			if err == nil {
				t.Errorf("RepoPath(%q) = %q, want an error", tc.path, got)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("RepoPath(%q) = %v, does not wrap ErrInvalid", tc.path, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("RepoPath(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

// TestErrorClipsLongInput checks that a hostile long name does not end up
// whole in an error message (which reaches logs and clients).
func TestErrorClipsLongInput(t *testing.T) {
	long := strings.Repeat("x", 10000)
	for _, err := range []error{Site(long), User(long), DeployID(long), Ref(long)} {
		if err == nil {
			t.Fatal("a 10000-byte name was accepted")
		}
		if len(err.Error()) > 300 {
			t.Errorf("error message is %d bytes long: %.100s…", len(err.Error()), err)
		}
	}
	if _, err := RepoPath(long); err == nil || len(err.Error()) > 300 {
		t.Errorf("RepoPath(long) error = %.100v (len %d)", err, len(err.Error()))
	}
}

// TestRefUnicodeControls documents that Ref accepts C1 control characters
// and Unicode spaces (git allows any byte >= 0x80 in a ref), which then
// reach clients' terminals and the logs verbatim.
func TestRefUnicodeControls(t *testing.T) {
	for _, ref := range []string{"main\u009b2J", "main\u0085x", "ma\u00a0in", "ma\u2028in"} {
		if Ref(ref) == nil {
			t.Errorf("Ref(%q) accepted a control or space character", ref)
		}
	}
}

func FuzzSite(f *testing.F) {
	for _, s := range []string{"hello", "a", "-x", "Hello", "a.b", strings.Repeat("a", 63), strings.Repeat("a", 64), "a\x00", "hello\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Site(s) != nil {
			return
		}
		if s == "" || len(s) > 63 {
			t.Fatalf("Site accepted %q of length %d", s, len(s))
		}
		if s[0] == '-' {
			t.Fatalf("Site accepted %q with a leading '-'", s)
		}
		for _, c := range []byte(s) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("Site accepted %q with byte %q", s, c)
			}
		}
		// A valid site name is also a valid repository path, both bare
		// and as /NAME.git, and resolves to itself.
		for _, p := range []string{s, "/" + s, s + ".git", "/" + s + ".git"} {
			if got, err := RepoPath(p); err != nil || got != s {
				t.Fatalf("RepoPath(%q) = %q, %v; want %q", p, got, err, s)
			}
		}
	})
}

func FuzzRef(f *testing.F) {
	for _, s := range []string{"main", "refs/heads/main", "-x", "a..b", "main@{1}", "a b", "a\x00b", ".x", "x.lock", "x/", "a\u009bb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Ref(s) != nil {
			return
		}
		if s == "" || len(s) > 255 {
			t.Fatalf("Ref accepted %q of length %d", s, len(s))
		}
		if strings.HasPrefix(s, "-") {
			t.Fatalf("Ref accepted %q with a leading '-'", s)
		}
		if strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") {
			t.Fatalf("Ref accepted a revision expression %q", s)
		}
		for _, c := range []byte(s) {
			if c <= ' ' || c == 0x7f {
				t.Fatalf("Ref accepted %q with control or space byte %#x", s, c)
			}
			if strings.IndexByte(`~^:?*[\`, c) >= 0 {
				t.Fatalf("Ref accepted %q with %q", s, c)
			}
		}
		for _, part := range strings.Split(s, "/") {
			if part == "" || strings.HasPrefix(part, ".") {
				t.Fatalf("Ref accepted %q with component %q", s, part)
			}
		}
	})
}

func FuzzRepoPath(f *testing.F) {
	for _, s := range []string{"hello", "/hello", "hello.git", "/hello.git", "../x", "/a/b", "x.git.git", "..", "", "/.git", "//hello"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, err := RepoPath(p)
		if err != nil {
			if name != "" {
				t.Fatalf("RepoPath(%q) returned %q with error %v", p, name, err)
			}
			return
		}
		if Site(name) != nil {
			t.Fatalf("RepoPath(%q) = %q, not a valid site name", p, name)
		}
		if strings.ContainsAny(name, "/.") {
			t.Fatalf("RepoPath(%q) = %q contains '/' or '.'", p, name)
		}
		// Only the four documented spellings resolve.
		switch p {
		case name, "/" + name, name + ".git", "/" + name + ".git":
		default:
			t.Fatalf("RepoPath(%q) = %q, not one of NAME, /NAME, NAME.git, /NAME.git", p, name)
		}
	})
}
