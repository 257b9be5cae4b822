package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eeveon/eeveon/deployer/app"
)

// TestMain lets the test binary play an app: with EEVEON_TEST_APP=1 it
// serves ./VERSION on GET / and 200 on GET /up at 127.0.0.1:$PORT.
func TestMain(m *testing.M) {
	if os.Getenv("EEVEON_TEST_APP") == "1" {
		testAppMain()
		return
	}
	os.Exit(m.Run())
}

func testAppMain() {
	b, err := os.ReadFile("VERSION")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	version := strings.TrimSpace(string(b))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, version) })
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	fmt.Println("serving", version, "secret", os.Getenv("TOKEN"))
	_ = srv.ListenAndServe()
}

func testFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestAppSiteLifecycle drives an app site through the engine: deploys,
// a failed one, a rollback, an approval that is rejected and one that is
// approved, a crash of the live app, and the shutdown.
func TestAppSiteLifecycle(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t, func(c *Config) {
		c.Deploy.HealthTimeout = Duration{5 * time.Second}
		c.App.StopGrace = Duration{2 * time.Second}
		c.App.DrainTimeout = Duration{2 * time.Second}
	})
	proxy := "127.0.0.1:" + strconv.Itoa(testFreePort(t))
	blue, green := testFreePort(t), testFreePort(t)
	site := addSite(t, e, Site{Name: "api", Start: "EEVEON_TEST_APP=1 exec " + exe, Proxy: proxy, Ports: []int{blue, green},
		OnSwap: `echo "$EEVEON_COLOR $EEVEON_PORT" > on_swap.txt`})
	w := newWorktree(t, e, site.Name)
	want := func(version string) {
		t.Helper()
		if code, body := httpGet("http://" + proxy + "/"); code != 200 || body != version {
			t.Fatalf("proxy answers %d %q, want %s", code, body, version)
		}
	}

	w.commit(map[string]string{"VERSION": "v1"})
	r1 := mustDeploy(t, e, Request{Site: "api"})
	want("v1")
	if got := readFile(t, site.Path+"/on_swap.txt"); got != "blue "+strconv.Itoa(blue)+"\n" {
		t.Errorf("on_swap saw %q, want the live colour and its port", got)
	}
	w.commit(map[string]string{"VERSION": "v2"})
	mustDeploy(t, e, Request{Site: "api"})
	want("v2")
	if code, _ := httpGet("http://127.0.0.1:" + strconv.Itoa(blue) + "/"); code != 0 {
		t.Errorf("the old colour's app still answers (%d) after the switch", code)
	}
	var st appStateRecord
	b, err := os.ReadFile(e.Data().AppStateFile("api"))
	if err != nil || json.Unmarshal(b, &st) != nil || st.Color != "green" || st.Port != green || !app.Alive(st.PID, st.PGID) {
		t.Fatalf("app state %s (%v): %+v", b, err, st)
	}

	// A deploy whose app exits at once fails; v2 keeps serving.
	w.commit(map[string]string{"VERSION": "v3"})
	updateSite(t, e, func() Site { s := site; s.Start = "exit 7"; return s }())
	if r, out, err := deploy(t, e, Request{Site: "api"}); err == nil || r.State != StateFailed || !strings.Contains(out, "app exited") {
		t.Fatalf("deploy of a crashing app: %v %s\n%s", err, r.State, out)
	}
	want("v2")
	site = updateSite(t, e, site)

	// Rollback: blue holds v1 (the failed deploy went to blue, so roll
	// back to a redeploy of v1 instead).
	var out bytes.Buffer
	if r, err := e.Rollback(context.Background(), Request{Site: "api", User: "alice"}, &out); err == nil {
		t.Fatalf("instant rollback over a failed colour went %s:\n%s", r.State, out.String())
	}
	mustDeploy(t, e, Request{Site: "api", Ref: r1.Commit, Trigger: TriggerRollbackTo})
	want("v1")
	out.Reset()
	if r, err := e.Rollback(context.Background(), Request{Site: "api", User: "alice"}, &out); err != nil || r.State != StateLive {
		t.Fatalf("rollback: %v %s\n%s", err, r.State, out.String())
	}
	want("v2")

	// Approval: the new colour's app runs, off the proxy, until the decision.
	site.Approval = true
	site = updateSite(t, e, site)
	w.commit(map[string]string{"VERSION": "v4"})
	r4, out4, _ := deploy(t, e, Request{Site: "api"})
	if r4.State != StatePendingApproval {
		t.Fatalf("deploy with approval: %s\n%s", r4.State, out4)
	}
	want("v2")
	pendingPort := blue
	if r4.Color == "green" {
		pendingPort = green
	}
	if code, body := httpGet("http://127.0.0.1:" + strconv.Itoa(pendingPort) + "/"); code != 200 || body != "v4" {
		t.Fatalf("the app waiting for approval answers %d %q", code, body)
	}
	if _, err := e.Reject(context.Background(), "api", "", "bob", io.Discard); err != nil {
		t.Fatal(err)
	}
	if code, _ := httpGet("http://127.0.0.1:" + strconv.Itoa(pendingPort) + "/"); code != 0 {
		t.Errorf("the rejected deploy's app still answers (%d)", code)
	}
	w.commit(map[string]string{"VERSION": "v5"})
	if r, out, _ := deploy(t, e, Request{Site: "api"}); r.State != StatePendingApproval {
		t.Fatalf("deploy with approval: %s\n%s", r.State, out)
	}
	out.Reset()
	if r, err := e.Approve(context.Background(), "api", "", "bob", &out); err != nil || r.State != StateLive {
		t.Fatalf("approve: %v %s\n%s", err, r.State, out.String())
	}
	want("v5")

	// A crash of the live app: the supervisor starts it again.
	b, _ = os.ReadFile(e.Data().AppStateFile("api"))
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if err := app.KillGroup(st.PGID, time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, body := httpGet("http://" + proxy + "/"); code == 200 && body == "v5" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashed app was not restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var st2 appStateRecord
	deadline = time.Now().Add(5 * time.Second)
	for st2.PID == 0 || st2.PID == st.PID {
		if time.Now().After(deadline) {
			t.Fatalf("app state not updated after the restart: %+v", st2)
		}
		time.Sleep(20 * time.Millisecond)
		b, _ = os.ReadFile(e.Data().AppStateFile("api"))
		_ = json.Unmarshal(b, &st2)
	}
	logs, _ := os.ReadFile(e.Data().AppLog("api"))
	if !strings.Contains(string(logs), "serving v5") {
		t.Errorf("app log:\n%s", logs)
	}

	// A new proxy address: the next deploy moves the proxy.
	oldProxy := proxy
	proxy = "127.0.0.1:" + strconv.Itoa(testFreePort(t))
	site.Approval, site.ApprovalTimeout, site.Proxy = false, Duration{}, proxy
	site = updateSite(t, e, site)
	w.commit(map[string]string{"VERSION": "v6"})
	mustDeploy(t, e, Request{Site: "api"})
	want("v6")
	if code, _ := httpGet("http://" + oldProxy + "/"); code != 0 {
		t.Errorf("the old proxy address still answers (%d)", code)
	}
	b, _ = os.ReadFile(e.Data().AppStateFile("api"))
	if err := json.Unmarshal(b, &st2); err != nil || !app.Alive(st2.PID, st2.PGID) {
		t.Fatalf("app state after v6: %v %s", err, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.Shutdown(ctx)
	if app.Alive(st2.PID, st2.PGID) || len(app.GroupMembers(st2.PGID)) > 0 {
		t.Error("the app survived the engine's shutdown")
	}
	if code, _ := httpGet("http://" + proxy + "/"); code != 0 {
		t.Errorf("the proxy still answers (%d) after the shutdown", code)
	}
}
