package deployer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f := &RotatingFile{Path: path, Max: 100}
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit, the third rotates
	for i := 0; i < 7; i++ {
		if _, err := f.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	segs := Segments(path)
	if len(segs) != 3 {
		t.Fatalf("got %d segments %v, want 3", len(segs), segs)
	}
	total := 0
	for _, p := range append(segs, path) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 100 {
			t.Errorf("%s has %d bytes, more than the limit", p, len(b))
		}
		total += len(b)
	}
	if total != 7*len(line) {
		t.Errorf("lost lines: %d bytes in all, want %d", total, 7*len(line))
	}
	// Reopening continues the current segment.
	f = &RotatingFile{Path: path, Max: 100}
	if _, err := f.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(Segments(path)) != 3 {
		t.Error("a reopened file rotated early")
	}
}
