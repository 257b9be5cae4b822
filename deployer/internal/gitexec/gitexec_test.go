package gitexec

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eeveon/eeveon/keys"
)

func bareRepo(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "web.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v: %s", err, out)
	}
	return repo
}

func TestRunFetchAdvertisesAndEnds(t *testing.T) {
	var out, errOut bytes.Buffer
	// A client that sends only a flush after the advertisement: git
	// upload-pack ends cleanly.
	res, err := Run(context.Background(), Params{
		Verb: keys.VerbFetch, Repo: bareRepo(t), Stdin: strings.NewReader("0000"), Stdout: &out, Stderr: &errOut,
	})
	if err != nil || res.Code != 0 || res.Outcome != "ok" {
		t.Fatalf("Run = %+v, %v (stderr %q)", res, err, errOut.String())
	}
	if !strings.HasSuffix(out.String(), "0000") {
		t.Errorf("stdout %q is not a pkt-line advertisement ending in a flush", out.String())
	}
}

func TestRunGitExitStatusReachesTheClient(t *testing.T) {
	var errOut bytes.Buffer
	res, err := Run(context.Background(), Params{
		Verb: keys.VerbPush, Repo: filepath.Join(t.TempDir(), "missing.git"),
		Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &errOut,
	})
	if err != nil || res.Code != 128 || !strings.HasPrefix(res.Outcome, "error: exit status 128") {
		t.Fatalf("Run on a missing repo = %+v, %v; want git's status 128", res, err)
	}
	if !strings.Contains(errOut.String(), "missing.git") {
		t.Errorf("git's own message did not reach stderr: %q", errOut.String())
	}
}

func TestRunStopsGitWhenTheClientGoesAway(t *testing.T) {
	// The client never sends its wants: git waits on stdin until the
	// session's context ends, then the whole group is killed.
	stdin, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := &notifyWriter{first: make(chan struct{})}
	done := make(chan Result, 1)
	go func() {
		res, err := Run(ctx, Params{Verb: keys.VerbFetch, Repo: bareRepo(t), Stdin: stdin, Stdout: out, Stderr: io.Discard})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	<-out.first // git is up and has advertised its refs
	cancel()
	if res := <-done; res.Code != 1 || res.Outcome != "client disconnected" {
		t.Fatalf("Run after the client left = %+v", res)
	}
}

// notifyWriter closes first on the first write.
type notifyWriter struct {
	first chan struct{}
	n     int
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	if n.n == 0 {
		close(n.first)
	}
	n.n += len(p)
	return len(p), nil
}
