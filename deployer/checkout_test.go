package deployer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIncrementalCheckoutIsClean: a colour reused for a later deploy holds
// exactly the new commit: files removed from the commit are gone, build
// output is gone, tracked files the build changed are restored.
func TestIncrementalCheckoutIsClean(t *testing.T) {
	e := testEngine(t)
	s := addSite(t, e, Site{Name: "hello", Build: "echo junk > build-output.txt && echo changed > keep.txt && mkdir -p node_modules/x && echo 1 > node_modules/x/y"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"keep.txt": "keep\n", "gone.txt": "old\n", "sub/deep.txt": "d\n"})
	mustDeploy(t, e, Request{}) // blue
	w.commit(map[string]string{"other.txt": "o\n"})
	mustDeploy(t, e, Request{}) // green
	w.commit(map[string]string{"keep.txt": "keep\n"}, "gone.txt")
	// The build of the third deploy must start from a clean blue: make it
	// record what it found before it writes.
	s.Build = "ls -A > ../seen-before-build && cat keep.txt > ../keep-before-build && " + s.Build
	updateSite(t, e, s)
	mustDeploy(t, e, Request{}) // blue again, incrementally
	blue := filepath.Join(s.Path, "blue")
	seen, err := os.ReadFile(filepath.Join(s.Path, "seen-before-build"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(seen), "keep.txt\nother.txt\nsub\n"; got != want {
		t.Errorf("blue before the build held %q, want %q (no removed file, no old build output)", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Path, "keep-before-build")); string(b) != "keep\n" {
		t.Errorf("a tracked file the last build changed was not restored: %q", b)
	}
	if _, err := os.Stat(filepath.Join(blue, "gone.txt")); !os.IsNotExist(err) {
		t.Error("a file removed from the commit is still in the colour")
	}
	if _, err := os.Stat(filepath.Join(blue, ".git")); !os.IsNotExist(err) {
		t.Error("the colour has a .git")
	}
	// Break the colour's index: the next checkout there starts afresh.
	if err := os.WriteFile(filepath.Join(e.Data().StateDir(), "hello.green.index"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Build = ""
	updateSite(t, e, s)
	mustDeploy(t, e, Request{}) // green, with a broken index
	green := filepath.Join(s.Path, "green")
	if b, err := os.ReadFile(filepath.Join(green, "keep.txt")); err != nil || string(b) != "keep\n" {
		t.Errorf("green after a broken index: keep.txt = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(green, "build-output.txt")); !os.IsNotExist(err) {
		t.Error("old build output survived in green")
	}
}

// TestCheckoutSurvivesLeftovers: a .git a build made and an index lock a
// killed git left do not survive, or block, the next checkout there.
func TestCheckoutSurvivesLeftovers(t *testing.T) {
	e := testEngine(t)
	s := addSite(t, e, Site{Name: "hello", Build: "mkdir -p sub/.git && echo leak > sub/.git/config && chmod 555 sub"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"sub/a.txt": "a\n"})
	mustDeploy(t, e, Request{}) // blue, with a build-made sub/.git and a read-only sub
	s.Build = ""
	updateSite(t, e, s)
	w.commit(map[string]string{"b.txt": "b\n"})
	mustDeploy(t, e, Request{}) // green
	lock := colourIndex(e.Data(), "hello", "blue") + ".lock"
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.commit(map[string]string{"c.txt": "c\n"})
	mustDeploy(t, e, Request{}) // blue again
	blue := filepath.Join(s.Path, "blue")
	if _, err := os.Stat(filepath.Join(blue, "sub", ".git")); !os.IsNotExist(err) {
		t.Error("a .git made by a build survived the next checkout")
	}
	if b, err := os.ReadFile(filepath.Join(blue, "sub", "a.txt")); err != nil || string(b) != "a\n" {
		t.Errorf("sub/a.txt = %q, %v", b, err)
	}
}
