package deployer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChownTreeFollowsNoLink: the build user owns the tree and may swap a
// directory for a link to a root-only place while root hands the tree
// over (issue 13, attack 1: with /etc as the target, that is root). The
// walk changes links themselves, never what they point at, however the
// race falls.
func TestChownTreeFollowsNoLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	tree := filepath.Join(base, "tree")
	for _, d := range []string{outside, tree} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret")
	writeFile(t, secret, "root only")
	for i := range 200 {
		writeFile(t, filepath.Join(tree, fmt.Sprintf("a%03d", i), "f"), "x")
	}
	zzz := filepath.Join(tree, "zzz")
	writeFile(t, filepath.Join(zzz, "keep"), "x")
	// The racer swaps zzz between a real directory and a link outside.
	var stop atomic.Bool
	done := make(chan struct{})
	t.Cleanup(func() { stop.Store(true); <-done })
	// zzl is a link outside; exchanging it with zzz (renameat2
	// RENAME_EXCHANGE, atomic) flips zzz between a directory and the link.
	zzl := filepath.Join(tree, "zzl")
	if err := os.Symlink(outside, zzl); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, zzz, unix.AT_FDCWD, zzl, unix.RENAME_EXCHANGE)
		}
	}()
	for range 300 {
		if err := chownTree(tree, 65534, 65534); err != nil {
			t.Fatalf("chownTree: %v", err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(secret, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 {
			t.Fatalf("the walk followed the link: %s now belongs to uid %d", secret, st.Uid)
		}
		if err := syscall.Stat(outside, &st); err == nil && st.Uid != 0 {
			t.Fatalf("the walk followed the link: %s now belongs to uid %d", outside, st.Uid)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(tree, "a000", "f"), &st); err != nil || st.Uid != 65534 {
		t.Errorf("the tree was not handed over: %v uid %d", err, st.Uid)
	}
}

// TestForceRemoveAllFollowsNoLink: the chmod that lets root empty a
// build's read-only directories never goes through a link.
func TestForceRemoveAllFollowsNoLink(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	tree := filepath.Join(base, "tree")
	if err := os.MkdirAll(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, "ro", "f"), "x")
	if err := os.Symlink(outside, filepath.Join(tree, "ro", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	// As root the removal needs no chmod; the chmod pass is what a
	// server that is not root runs, so it is checked on its own too.
	if err := openDirs(tree); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the chmod went through the link: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(tree, "ro")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the read-only directory was not opened: %v %v", fi.Mode(), err)
	}
	if err := forceRemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Errorf("tree left: %v", err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the link's target changed: %v %v", fi.Mode(), err)
	}
}

// TestWalkRefusesADeepTree: a tree deeper than maxTreeDepth is refused
// rather than costing the server a descriptor per level.
func TestWalkRefusesADeepTree(t *testing.T) {
	deep := func(levels int) string {
		root := t.TempDir()
		p := root
		for range levels {
			p = filepath.Join(p, "d")
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return root
	}
	if err := walkNoFollow(deep(maxTreeDepth), nil, nil); err != nil {
		t.Errorf("a tree of %d levels: %v", maxTreeDepth, err)
	}
	if err := walkNoFollow(deep(maxTreeDepth+2), nil, nil); err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Errorf("a tree deeper than %d levels: %v", maxTreeDepth, err)
	}
}
