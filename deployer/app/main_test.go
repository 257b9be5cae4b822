package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testApp is the binary built from testdata/app.
var testApp string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eeveon-app-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testApp = filepath.Join(dir, "testapp")
	build := exec.Command("go", "build", "-o", testApp, "./testdata/app")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test app:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a log for a test app.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort finds a port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func appSpec(port int, out io.Writer, env ...string) Spec {
	return Spec{
		Command: "exec " + testApp,
		Dir:     os.TempDir(),
		Env:     append([]string{"PATH=/usr/bin:/bin", fmt.Sprintf("PORT=%d", port)}, env...),
		Out:     out,
	}
}

// startApp runs the test app as version and waits until it is healthy.
// It is stopped when the test ends.
func startApp(t *testing.T, version string, env ...string) (*Process, *Backend, *syncBuffer) {
	t.Helper()
	port := freePort(t)
	out := &syncBuffer{}
	p, err := Start(appSpec(port, out, append([]string{"VERSION=" + version}, env...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background(), 2*time.Second) })
	b := NewBackend(version, port)
	if err := WaitHealthy(context.Background(), b.URL()+"/up", 20*time.Millisecond, time.Second, 30*time.Second, p.Done()); err != nil {
		t.Fatalf("app %s: %v\n%s", version, err, out)
	}
	return p, b, out
}

// get returns the status and the trimmed body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
