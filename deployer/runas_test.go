package deployer

import (
	"fmt"
	"os"
	"path/filepath"
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
		// An entry that the racer moved away is no failure; following
		// its link is.
		_ = chownTree(tree, 65534, 65534)
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
