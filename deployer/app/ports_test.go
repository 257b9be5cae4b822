package app

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// portRange finds n consecutive free ports.
func portRange(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		lo := freePort(t)
		if lo+n > 65535 {
			continue
		}
		ok := true
		for p := lo; p < lo+n; p++ {
			ok = ok && PortFree(p)
		}
		if ok {
			return lo
		}
	}
	t.Fatal("no free port range")
	return 0
}

func TestPickPorts(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state", "ports.json")
	lo := portRange(t, 6)
	hi := lo + 5

	a, b, err := PickPorts(state, "api", lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a < lo || a > hi || b < lo || b > hi || !PortFree(a) || !PortFree(b) {
		t.Fatalf("api got %d,%d in %d-%d", a, b, lo, hi)
	}
	// Stable, even while the site's app holds one of them.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(a)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a2, b2, err := PickPorts(state, "api", lo, hi); err != nil || a2 != a || b2 != b {
		t.Fatalf("second pick for api: %d,%d %v, want %d,%d", a2, b2, err, a, b)
	}

	// Another site gets other ports, and skips one that is busy.
	busy, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(max(a, b)+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c, d, err := PickPorts(state, "web", lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{c, d} {
		if p == a || p == b || p == max(a, b)+1 || p < lo || p > hi {
			t.Fatalf("web got %d,%d; api holds %d,%d, %d is busy", c, d, a, b, max(a, b)+1)
		}
	}

	// The state survives (a restart reads the same file).
	raw, err := os.ReadFile(state)
	if err != nil || !strings.Contains(string(raw), `"api"`) || !strings.Contains(string(raw), `"web"`) {
		t.Fatalf("state file: %s %v", raw, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(state)); len(ents) != 1 {
		t.Fatalf("state dir holds %d files, want just the state (no temp files)", len(ents))
	}

	// Only one free port left for a third site: an error, and the state
	// is not changed.
	if _, _, err := PickPorts(state, "third", lo, hi); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third site: %v, want ErrNoPorts", err)
	}
	if after, _ := os.ReadFile(state); string(after) != string(raw) {
		t.Fatalf("a failed pick changed the state:\n%s", after)
	}

	// Released ports can be picked again.
	if err := ReleasePorts(state, "web"); err != nil {
		t.Fatal(err)
	}
	if e, f, err := PickPorts(state, "third", lo, hi); err != nil || e == a || e == b || f == a || f == b {
		t.Fatalf("third after web left: %d,%d %v", e, f, err)
	}

	// A new range moves the site.
	lo2 := portRange(t, 2)
	if a3, b3, err := PickPorts(state, "api", lo2, lo2+1); err != nil || a3 != lo2 || b3 != lo2+1 {
		t.Fatalf("api in a new range: %d,%d %v", a3, b3, err)
	}
}

func TestPickPortsErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := PickPorts(filepath.Join(dir, "p.json"), "api", 10, 5); err == nil {
		t.Fatal("a reversed range was accepted")
	}
	lo := portRange(t, 1)
	if _, _, err := PickPorts(filepath.Join(dir, "p.json"), "api", lo, lo); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("a one-port range: %v, want ErrNoPorts", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PickPorts(bad, "api", 1024, 65535); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("a corrupt state file: %v, want an error naming it", err)
	}
}

func TestPickPortsAvoidsReserved(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ports.json")
	lo := portRange(t, 6)
	a, b, err := PickPorts(file, "web", lo, lo+5, lo, lo+1, lo+2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{a, b} {
		if p <= lo+2 {
			t.Errorf("picked a reserved port %d (reserved %d-%d)", p, lo, lo+2)
		}
	}
}
