package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/keys"
)

// echo answers with who asked, the arguments on stdout and the input on
// stderr; "exit N" exits N, "big N" writes N bytes to stdout, "wait"
// blocks until the request's context ends and reports that on done.
func echo(done chan<- string) Handler {
	return func(ctx context.Context, id keys.Identity, req Request, stdout, stderr io.Writer) Result {
		fmt.Fprintf(stdout, "id %s %s %s %s\n", id.User, id.Role, id.Source, id.Fingerprint)
		fmt.Fprintf(stdout, "args %q\n", req.Args)
		if len(req.Input) > 0 {
			fmt.Fprintf(stderr, "input %s", req.Input)
		}
		if len(req.Args) == 2 {
			n, _ := strconv.Atoi(req.Args[1])
			switch req.Args[0] {
			case "exit":
				return Result{Code: n, Reason: "asked to exit " + req.Args[1]}
			case "big":
				_, _ = stdout.Write(bytes.Repeat([]byte("x"), n))
			}
		}
		if len(req.Args) == 1 && req.Args[0] == "wait" {
			select {
			case <-ctx.Done():
				done <- "cancelled"
			case <-time.After(5 * time.Second):
				done <- "not cancelled"
			}
		}
		return Result{}
	}
}

// socketDir is a short directory (socket paths are limited to 108
// bytes) that other users may enter.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startServer(t *testing.T, h Handler) *Server {
	t.Helper()
	s := &Server{Path: filepath.Join(socketDir(t), "eeveon.sock"), AdminGroup: "eeveon-admin", Handler: h, Log: log.New(io.Discard)}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve after Close = %v", err)
		}
	})
	return s
}

func TestCallRoundTrip(t *testing.T) {
	s := startServer(t, echo(nil))
	fi, err := os.Stat(s.Path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %v, %v; want a socket with mode 0660", fi, err)
	}
	var stdout, stderr bytes.Buffer
	res, err := CallResult(s.Path, Request{Args: []string{"exit", "3"}, Input: []byte("old new refs/heads/main\n")}, &stdout, &stderr)
	if err != nil || res.Code != 3 || res.Reason != "asked to exit 3" {
		t.Fatalf("Call = %+v, %v; want exit 3 with its reason", res, err)
	}
	me, _ := user.Current()
	wantID := LocalIdentity(uint32(os.Getuid()), uint32(os.Getgid()), "eeveon-admin")
	if want := fmt.Sprintf("id %s %s local \nargs [\"exit\" \"3\"]\n", wantID.User, wantID.Role); stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
	if me != nil && wantID.User != me.Username {
		t.Errorf("local identity user %q, want %q", wantID.User, me.Username)
	}
	if want := "input old new refs/heads/main\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}

	// Arguments with spaces, quotes, newlines and non-ASCII survive as is.
	stdout.Reset()
	args := []string{"deploy", "a b", `"q'`, "line\nbreak", "é", ""}
	if code, err := Call(s.Path, Request{Args: args}, &stdout, &stderr); err != nil || code != 0 {
		t.Fatalf("Call = %d, %v", code, err)
	}
	if want := fmt.Sprintf("args %q\n", args); !strings.HasSuffix(stdout.String(), want) {
		t.Errorf("stdout = %q, want it to end in %q", stdout.String(), want)
	}

	// Binary input and large output in many frames.
	stdout.Reset()
	stderr.Reset()
	in := []byte{0, 1, 2, 0xff, '\n'}
	code, err := Call(s.Path, Request{Args: []string{"big", "300000"}, Input: in}, &stdout, &stderr)
	if err != nil || code != 0 {
		t.Fatalf("Call big = %d, %v", code, err)
	}
	if n := strings.Count(stdout.String(), "x"); n != 300000 {
		t.Errorf("got %d bytes of output, want 300000", n)
	}
	if !bytes.Equal(stderr.Bytes(), append([]byte("input "), in...)) {
		t.Errorf("stderr = %q", stderr.Bytes())
	}
}

func TestClaimFromSameUser(t *testing.T) {
	s := startServer(t, echo(nil))
	var stdout, stderr bytes.Buffer
	claim := &keys.Identity{User: "alice", Role: keys.RoleDeployer, Fingerprint: "SHA256:abc", Source: "ssh", Remote: "10.0.0.1"}
	code, err := Call(s.Path, Request{Args: []string{"status"}, Claim: claim}, &stdout, &stderr)
	if err != nil || code != 0 {
		t.Fatalf("Call = %d, %v (%s)", code, err, stderr.String())
	}
	if want := "id alice deployer ssh SHA256:abc\n"; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("stdout = %q, want the claimed identity %q", stdout.String(), want)
	}

	for _, bad := range []*keys.Identity{{Role: keys.RoleAdmin}, {User: "alice", Role: "root"}, {User: "alice"}} {
		stdout.Reset()
		stderr.Reset()
		code, err := Call(s.Path, Request{Args: []string{"status"}, Claim: bad}, &stdout, &stderr)
		if err != nil || code != 1 || !strings.Contains(stderr.String(), "incomplete identity") || stdout.Len() != 0 {
			t.Errorf("claim %+v: %d, %v, stdout %q, stderr %q; want refused", bad, code, err, stdout.String(), stderr.String())
		}
	}
}

func TestBadRequests(t *testing.T) {
	s := startServer(t, echo(nil))
	send := func(line []byte) (string, int) {
		t.Helper()
		conn, err := net.Dial("unix", s.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() { _, _ = conn.Write(line) }()
		var stderr strings.Builder
		dec := json.NewDecoder(bufio.NewReader(conn))
		for {
			var f Frame
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("no exit frame: %v", err)
			}
			if f.Exit != nil {
				return stderr.String(), *f.Exit
			}
			if f.Stream != 2 {
				t.Errorf("unexpected stdout frame %q", f.Data)
			}
			stderr.Write(f.Data)
		}
	}
	if msg, code := send([]byte("not json\n")); code != 2 || !strings.Contains(msg, "bad request") {
		t.Errorf("garbage: %d %q", code, msg)
	}
	big := append([]byte(`{"args":["x"],"input":"`), bytes.Repeat([]byte("A"), 2<<20)...)
	big = append(big, "\"}\n"...)
	if msg, code := send(big); code != 2 || !strings.Contains(msg, "too large") {
		t.Errorf("2 MiB request: %d %q", code, msg)
	}
}

func TestClientHangupCancels(t *testing.T) {
	done := make(chan string, 1)
	s := startServer(t, echo(done))
	conn, err := net.Dial("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(`{"args":["wait"]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	// Read the first frame so the handler is known to run, then hang up.
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := <-done; got != "cancelled" {
		t.Errorf("handler context after the client hung up: %s", got)
	}
}

func TestListen(t *testing.T) {
	s := startServer(t, echo(nil))
	other := &Server{Path: s.Path, Handler: echo(nil), Log: log.New(io.Discard)}
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), "another eeveon server") {
		t.Errorf("second Listen on a live socket = %v", err)
	}
	// The first server still answers.
	if code, err := Call(s.Path, Request{Args: []string{"exit", "4"}}, io.Discard, io.Discard); code != 4 || err != nil {
		t.Errorf("first server after a refused Listen: %d, %v", code, err)
	}

	// A stale socket file (no one listening) is replaced.
	stale := filepath.Join(socketDir(t), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	s2 := &Server{Path: stale, Handler: echo(nil), Log: log.New(io.Discard)}
	if err := s2.Listen(); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	go func() { _ = s2.Serve(context.Background()) }()
	defer s2.Close()
	if code, err := Call(stale, Request{Args: []string{"exit", "5"}}, io.Discard, io.Discard); code != 5 || err != nil {
		t.Errorf("Call on the replaced socket = %d, %v", code, err)
	}
}

func TestCallNoServer(t *testing.T) {
	code, err := Call(filepath.Join(socketDir(t), "none.sock"), Request{Args: []string{"status"}}, io.Discard, io.Discard)
	if !errors.Is(err, ErrNoServer) || code == 0 {
		t.Errorf("Call without a server = %d, %v; want ErrNoServer", code, err)
	}
}

func TestLocalIdentity(t *testing.T) {
	id := LocalIdentity(0, 0, "x")
	if id.Role != keys.RoleAdmin || id.User != "root" || id.Source != "local" || id.Remote != "local" {
		t.Errorf("LocalIdentity(0, 0) = %+v, want root admin", id)
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skip("no user 65534 on this system")
	}
	grp, err := user.LookupGroupId("65534")
	if err != nil {
		t.Skip("no group 65534 on this system")
	}
	if id := LocalIdentity(65534, 65534, "no-such-group-eeveon"); id.Role != keys.RoleDeployer || id.User != nobody.Username {
		t.Errorf("LocalIdentity(65534) = %+v, want deployer %s", id, nobody.Username)
	}
	// Primary group named as the admin group: admin.
	if id := LocalIdentity(65534, 65534, grp.Name); id.Role != keys.RoleAdmin {
		t.Errorf("LocalIdentity(65534, admin group %s) = %+v, want admin", grp.Name, id)
	}
	// An unknown uid keeps its number as the name and stays a deployer.
	if id := LocalIdentity(4242421, 4242421, "x"); id.User != "4242421" || id.Role != keys.RoleDeployer {
		t.Errorf("LocalIdentity(unknown) = %+v", id)
	}
}

// TestMain doubles as a control socket client: TestClaimFromOtherUser
// runs the test binary as another user with EEVEON_TEST_CONTROL_SOCKET set.
func TestMain(m *testing.M) {
	if sock := os.Getenv("EEVEON_TEST_CONTROL_SOCKET"); sock != "" {
		var claim *keys.Identity
		if os.Getenv("EEVEON_TEST_CONTROL_CLAIM") != "" {
			claim = &keys.Identity{User: "alice", Role: keys.RoleAdmin, Source: "ssh"}
		}
		req := Request{Args: []string{"status"}, Claim: claim}
		if os.Getenv("EEVEON_TEST_CONTROL_PUSH") != "" {
			req = Request{Push: &Push{Site: "web", Ref: "refs/heads/main", Old: strings.Repeat("0", 40), New: strings.Repeat("1", 40)}}
		}
		var stdout, stderr bytes.Buffer
		code, err := Call(sock, req, &stdout, &stderr)
		fmt.Printf("uid=%d code=%d err=%v\nstdout=%q\nstderr=%q\n", os.Getuid(), code, err, stdout.String(), stderr.String())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestClaimFromOtherUser: a peer that is neither root nor the service
// user may not act for another identity, and without a claim it is a
// deployer named after its Unix account.
func TestClaimFromOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	if _, err := user.LookupId("65534"); err != nil {
		t.Skip("no user 65534")
	}
	s := startServer(t, echo(nil))
	if err := os.Chmod(s.Path, 0o666); err != nil {
		t.Fatal(err)
	}
	// The test binary may sit in a directory only we can enter.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(socketDir(t), "client")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(claim bool, extra ...string) string {
		cmd := exec.Command(bin)
		cmd.Env = append([]string{"EEVEON_TEST_CONTROL_SOCKET=" + s.Path, "PATH=/usr/bin:/bin"}, extra...)
		if claim {
			cmd.Env = append(cmd.Env, "EEVEON_TEST_CONTROL_CLAIM=1")
		}
		cmd.Dir = filepath.Dir(bin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run(true)
	t.Logf("with a claim:\n%s", out)
	if !strings.Contains(out, "code=1 ") || !strings.Contains(out, "permission denied") || strings.Contains(out, "id alice") {
		t.Errorf("claim from uid 65534 was not refused:\n%s", out)
	}
	out = run(false)
	t.Logf("without a claim:\n%s", out)
	nobody, _ := user.LookupId("65534")
	if !strings.Contains(out, "code=0 ") || !strings.Contains(out, `stdout="id `+nobody.Username+` deployer local`) {
		t.Errorf("uid 65534 without a claim:\n%s", out)
	}
	// A push is handed over only by the repository's hook: a deployer on
	// the box could otherwise deploy any commit in the repository.
	out = run(false, "EEVEON_TEST_CONTROL_PUSH=1")
	t.Logf("a push request:\n%s", out)
	if !strings.Contains(out, "code=1 ") || !strings.Contains(out, "permission denied: a push is handed over by the repository's hook") || strings.Contains(out, "stdout=\"id ") {
		t.Errorf("push request from uid 65534 was not refused:\n%s", out)
	}
}

// TestClientThatStopsReading: a client that sends its request and never
// reads the answer does not hold the handler (a deploy, the site lock):
// past clientWriteTimeout it is dropped and the handler runs to its end.
func TestClientThatStopsReading(t *testing.T) {
	defer func(d time.Duration) { clientWriteTimeout = d }(clientWriteTimeout)
	clientWriteTimeout = 200 * time.Millisecond
	finished := make(chan int, 1)
	s := startServer(t, func(ctx context.Context, id keys.Identity, req Request, stdout, stderr io.Writer) Result {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		failed := 0
		for range 200 { // 12.5 MiB, far more than the socket buffers hold
			if _, err := stdout.Write(chunk); err != nil {
				failed++
			}
		}
		finished <- failed
		return Result{}
	})
	conn, err := net.Dial("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(`{"args":["big"]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case failed := <-finished:
		if failed == 0 {
			t.Error("every write succeeded although nothing was read")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler is still blocked on a client that does not read")
	}
}
