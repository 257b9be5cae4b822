package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGitHubWebhookTriggersPoll(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	const secret = "a-webhook-secret-of-some-length"
	httpPort := freePort(t)
	e.restartWithConfig("[http]\nlisten = \"127.0.0.1:" + httpPort + "\"\ngithub_secret = \"" + secret + "\"\n")

	remote := filepath.Join(e.Dir, "remote.git")
	if r := run(t, e.Dir, nil, "", "git", "init", "-q", "--bare", remote); r.Code != 0 {
		t.Fatal(r.Out())
	}
	repo := e.NewRepo("web", map[string]string{"build.sh": buildScript})
	repo.Git("remote", "add", "origin", remote)
	repo.Git("push", "-q", "origin", "main")
	c1 := repo.Git("rev-parse", "HEAD")
	// A long interval: only the webhook makes this site poll soon.
	e.MustEeveon("site", "add", "web", "--poll", "file://"+remote, "--interval", "1h", "--build", "./build.sh")

	post := func(event, delivery, body, sig string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://127.0.0.1:"+httpPort+"/hooks/github", strings.NewReader(body))
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	sign := func(body string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	push := `{"ref":"refs/heads/main","repository":{"clone_url":"file://` + remote + `/"}}`

	if code, body := post("push", "d1", push, "sha256="+strings.Repeat("0", 64)); code != http.StatusUnauthorized {
		t.Fatalf("a bad signature: %d %s", code, body)
	}
	if code, body := post("push", "d1", push, ""); code != http.StatusUnauthorized {
		t.Fatalf("no signature: %d %s", code, body)
	}
	if code, body := post("push", "d0", strings.Replace(push, "refs/heads/main", "refs/tags/v1", 1), sign(strings.Replace(push, "refs/heads/main", "refs/tags/v1", 1))); code != http.StatusAccepted || !strings.Contains(body, "no site") {
		t.Fatalf("a tag push: %d %s", code, body)
	}
	time.Sleep(500 * time.Millisecond)
	if e.Live("web") != "" {
		t.Fatal("something deployed without a valid webhook")
	}
	if code, body := post("push", "d1", push, sign(push)); code != http.StatusAccepted || !strings.Contains(body, "polling now: web") {
		t.Fatalf("a signed push: %d %s", code, body)
	}
	pollUntil(t, 15*time.Second, "web live with "+c1[:7], func() bool {
		return strings.HasPrefix(e.ReadSite("web", "public/index.html"), "commit "+c1+" ")
	})
	// The same delivery again triggers nothing.
	if code, body := post("push", "d1", push, sign(push)); code != http.StatusOK || !strings.Contains(body, "already handled") {
		t.Fatalf("a replayed delivery: %d %s", code, body)
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	repo.Git("push", "-q", "origin", "main")
	if code, body := post("push", "d2", push, sign(push)); code != http.StatusAccepted {
		t.Fatalf("second push: %d %s", code, body)
	}
	pollUntil(t, 15*time.Second, "web live with "+c2[:7], func() bool {
		return strings.HasPrefix(e.ReadSite("web", "public/index.html"), "commit "+c2+" ")
	})
}

func TestGitHubWebhookOffWithoutSecret(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	httpPort := freePort(t)
	e.restartWithConfig("[http]\nlisten = \"127.0.0.1:" + httpPort + "\"\n")
	resp, err := http.Post("http://127.0.0.1:"+httpPort+"/hooks/github", "application/json", strings.NewReader(`{"ref":"refs/heads/main"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("webhook without a configured secret: %d, want 403", resp.StatusCode)
	}
}
