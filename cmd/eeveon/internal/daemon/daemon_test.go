package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
)

// newConfig makes a data dir as eeveon init does (folders and host key)
// and a config that listens on free loopback ports.
func newConfig(t *testing.T) Config {
	t.Helper()
	d, err := deployer.NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{d.ReposDir(), d.SitesDir(), d.StateDir(), d.SitesRoot(), d.DeploysRoot()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "test host key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.HostKey(), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := deployer.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Deploy.ShutdownTimeout.Duration = 5 * time.Second
	return Config{Data: d, Config: cfg, Log: log.New(io.Discard), Exe: "eeveon"}
}

// start runs a daemon in the background until it serves its socket; the
// returned channel yields Run's error.
func start(t *testing.T, ctx context.Context, c Config) <-chan error {
	t.Helper()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(c.Data.ServerState()); err == nil {
			if conn, err := net.Dial("unix", c.Data.Socket()); err == nil {
				conn.Close()
				return done
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned at start: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not start in time")
		}
	}
}

// assertStopped checks what a stopped daemon leaves: no socket, no
// server.json, and the data dir free for the next server.
func assertStopped(t *testing.T, c Config) {
	t.Helper()
	for _, p := range []string{c.Data.Socket(), c.Data.ServerState()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (stat: %v)", p, err)
		}
	}
	unlock, err := Lock(c.Data)
	if err != nil {
		t.Fatalf("the data dir is still locked: %v", err)
	}
	unlock()
}

func TestRunServesUntilContextEnds(t *testing.T) {
	c := newConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(t, ctx, c)

	var st State
	b, err := os.ReadFile(c.Data.ServerState())
	if err != nil || json.Unmarshal(b, &st) != nil || st.PID != os.Getpid() || len(st.Addrs) != 2 {
		t.Fatalf("server.json = %s (%v); want this pid and the ssh and http addresses", b, err)
	}
	for _, a := range st.Addrs {
		kind, addr, _ := strings.Cut(a, " ")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		conn.Close()
	}
	if _, err := New(c); !errors.Is(err, ErrRunning) {
		t.Errorf("a second daemon on the data dir: %v, want ErrRunning", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after the context ended", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	assertStopped(t, c)
	for _, a := range st.Addrs {
		if _, addr, _ := strings.Cut(a, " "); addr != "" {
			if conn, err := net.Dial("tcp", addr); err == nil {
				conn.Close()
				t.Errorf("%s still accepts after Run returned", a)
			}
		}
	}
}

// A start that fails (here: the SSH address is taken) stops what had
// started and leaves nothing behind.
func TestRunFailsToStartAndCleansUp(t *testing.T) {
	c := newConfig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.Config.Listen = ln.Addr().String()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run on a taken address = %v", err)
	}
	assertStopped(t, c)
}

func TestSchedulerStop(t *testing.T) {
	s := newScheduler()
	ran := make(chan struct{}, 10)
	release := make(chan struct{})
	s.every(0, time.Millisecond, func(ctx context.Context) {
		ran <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			<-release
		}
	})
	<-ran // the first run comes at once
	// A job that does not return in time is not waited for past ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	s.stop(ctx)
	if d := time.Since(t0); d < 50*time.Millisecond || d > 10*time.Second {
		t.Errorf("stop returned after %v; want it bounded by its context (50ms)", d)
	}
	close(release)
	s.wg.Wait()
	select {
	case <-ran:
		t.Error("the job ran again after stop")
	default:
	}
}
