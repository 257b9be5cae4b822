package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startProxy runs a proxy on a free port until the test ends.
func startProxy(t *testing.T, trust bool) (*Proxy, string) {
	t.Helper()
	p := NewProxy(nil)
	p.TrustForwarded = trust
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return p, "http://" + p.Addr().String()
}

func TestProxyWithoutBackend(t *testing.T) {
	_, url := startProxy(t, false)
	code, body := get(t, http.DefaultClient, url+"/")
	if code != http.StatusServiceUnavailable || body != "no app is live yet" {
		t.Fatalf("got %d %q, want 503 no app is live yet", code, body)
	}
}

func TestProxyForwardedHeaders(t *testing.T) {
	_, b, _ := startApp(t, "A")
	for _, tc := range []struct {
		trust bool
		want  string
	}{
		{false, "host=example.test xff=127.0.0.1 xfp=http xfh=example.test"},
		{true, "host=example.test xff=203.0.113.9, 127.0.0.1 xfp=https xfh=front.test"},
	} {
		t.Run(fmt.Sprint("trust=", tc.trust), func(t *testing.T) {
			px, url := startProxy(t, tc.trust)
			px.Switch(b)
			req, _ := http.NewRequest("GET", url+"/headers", nil)
			req.Host = "example.test"
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "front.test")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			if got := strings.TrimSpace(line); got != tc.want {
				t.Fatalf("app saw %q, want %q", got, tc.want)
			}
		})
	}
}

// A keep-alive connection from a client is not pinned to a backend.
func TestProxyRoutesEachRequestOnAKeepAliveConnection(t *testing.T) {
	_, a, _ := startApp(t, "A")
	_, b, _ := startApp(t, "B")
	px, url := startProxy(t, false)
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	do := func() (string, bool) {
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return strings.TrimSpace(line), reused
	}
	var got []string
	for i, be := range []*Backend{a, b, a} {
		px.Switch(be)
		v, reused := do()
		if i > 0 && !reused {
			t.Fatalf("request %d did not reuse the client connection", i+1)
		}
		got = append(got, v)
	}
	if strings.Join(got, ",") != "A,B,A" {
		t.Fatalf("versions over one connection: %v, want A,B,A", got)
	}
}

// Under continuous load, 20 switches with drain lose no request, every
// answer comes from a backend that was current during the request, and a
// drained backend gets nothing new.
func TestProxySwitchUnderLoad(t *testing.T) {
	_, a, _ := startApp(t, "A")
	_, b, _ := startApp(t, "B")
	px, url := startProxy(t, false)
	px.Switch(a)

	// gen is odd while a switch is under way; hist[k] is the k-th live
	// backend. A request that read gen s before and e after may have met
	// hist[s/2] up to hist[(e+1)/2].
	var gen atomic.Int64
	var histMu sync.Mutex
	hist := []string{"A"}

	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		total, exact      atomic.Int64
		failMu            sync.Mutex
		failures          []string
		seenA, seenB      atomic.Int64
		keepAlive, oneOff = &http.Transport{MaxIdleConnsPerHost: 8}, &http.Transport{DisableKeepAlives: true}
	)
	defer keepAlive.CloseIdleConnections()
	fail := func(s string) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	for i := range 8 {
		c := &http.Client{Transport: keepAlive, Timeout: 5 * time.Second}
		if i%2 == 1 {
			c = &http.Client{Transport: oneOff, Timeout: 5 * time.Second}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := gen.Load()
				resp, err := c.Get(url + "/")
				if err != nil {
					fail(err.Error())
					continue
				}
				n, _ := resp.Body.Read(buf)
				resp.Body.Close()
				e := gen.Load()
				total.Add(1)
				v := strings.TrimSpace(string(buf[:n]))
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Sprintf("status %d", resp.StatusCode))
					continue
				}
				histMu.Lock()
				allowed := hist[s/2 : (e+1)/2+1]
				histMu.Unlock()
				if !strings.Contains(","+strings.Join(allowed, ",")+",", ","+v+",") {
					fail(fmt.Sprintf("got %q; live during the request: %v", v, allowed))
				}
				if s == e {
					exact.Add(1)
				}
				if v == "A" {
					seenA.Add(1)
				} else {
					seenB.Add(1)
				}
			}
		}()
	}

	direct := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	count := func(be *Backend) int {
		_, body := get(t, direct, be.URL()+"/count")
		n, err := strconv.Atoi(body)
		if err != nil {
			t.Fatalf("count: %q", body)
		}
		return n
	}
	// moreRequests waits for n more answers through the proxy: the load
	// goes on, however slow the machine.
	moreRequests := func(n int64) {
		t.Helper()
		from := total.Load()
		deadline := time.Now().Add(30 * time.Second)
		for total.Load() < from+n {
			if time.Now().After(deadline) {
				failMu.Lock()
				defer failMu.Unlock()
				t.Fatalf("%d answers in 30s, want %d; failures: %v", total.Load()-from, n, failures)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 20 {
		moreRequests(30)
		next := b
		if i%2 == 1 {
			next = a
		}
		histMu.Lock()
		hist = append(hist, next.Name())
		histMu.Unlock()
		gen.Add(1)
		old := px.Switch(next)
		gen.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := px.Drain(ctx, old)
		cancel()
		if err != nil {
			t.Fatalf("switch %d: drain: %v", i+1, err)
		}
		// Nothing reaches the drained backend while the load goes on.
		before, served := count(old), old.Served()
		moreRequests(30)
		if after := count(old); after != before || old.Served() != served {
			t.Fatalf("switch %d: drained %s got %d more requests (proxy routed %d more)", i+1, old.Name(), after-before, old.Served()-served)
		}
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed or went wrong, e.g.:\n%s", len(failures), total.Load(), strings.Join(failures, "\n"))
	}
	t.Logf("%d requests (%d A, %d B), %d without a switch during them", total.Load(), seenA.Load(), seenB.Load(), exact.Load())
	if exact.Load() < 200 || seenA.Load() < 50 || seenB.Load() < 50 {
		t.Fatalf("too little load to mean anything: %d requests, %d exact, %d A, %d B", total.Load(), exact.Load(), seenA.Load(), seenB.Load())
	}
}

// A slow request that started before a switch completes on the old
// backend, and Drain waits for it.
func TestProxyDrainWaitsForSlowRequest(t *testing.T) {
	_, a, _ := startApp(t, "A")
	_, b, _ := startApp(t, "B")
	px, url := startProxy(t, false)
	px.Switch(a)

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	started := time.Now()
	go func() {
		resp, err := http.Get(url + "/slow?ms=700")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		res <- result{code: resp.StatusCode, body: strings.TrimSpace(line)}
	}()
	if !eventually(30*time.Second, func() bool { return a.InFlight() == 1 }) {
		t.Fatal("the slow request never reached A")
	}
	if old := px.Switch(b); old != a {
		t.Fatalf("Switch returned %v, want A", old)
	}
	if _, v := get(t, http.DefaultClient, url+"/"); v != "B" {
		t.Fatalf("a new request went to %q, want B", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.Drain(ctx, a); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if took := time.Since(started); took < 700*time.Millisecond {
		t.Fatalf("Drain returned %s after the slow request started; it takes 700ms", took)
	}
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "A" {
		t.Fatalf("slow request: %d %q %v, want 200 from A", r.code, r.body, r.err)
	}
	if err := px.Drain(ctx, b); !errors.Is(err, ErrLive) {
		t.Fatalf("draining the live backend: %v, want ErrLive", err)
	}
}

// An upgraded connection on the old backend lives until the drain
// deadline and is closed then.
func TestProxyDrainClosesUpgradedConnectionAtDeadline(t *testing.T) {
	_, a, _ := startApp(t, "A")
	_, b, _ := startApp(t, "B")
	px, url := startProxy(t, false)
	px.Switch(a)

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Version") != "A" {
		t.Fatalf("upgrade: %s from %q", resp.Status, resp.Header.Get("X-Version"))
	}
	echo := func(msg string) error {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
			return err
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line != msg+"\n" {
			return fmt.Errorf("echo %q, want %q", line, msg)
		}
		return nil
	}
	if err := echo("hello"); err != nil {
		t.Fatal(err)
	}

	px.Switch(b)
	const deadline = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	type drainEnd struct {
		err  error
		took time.Duration
	}
	drained := make(chan drainEnd, 1)
	go func() {
		err := px.Drain(ctx, a)
		drained <- drainEnd{err, time.Since(start)}
	}()

	// The connection keeps working well into the drain.
	for n := 0; time.Since(start) < deadline/4; n++ {
		if err := echo(fmt.Sprintf("still here %d", n)); err != nil {
			if took := time.Since(start); took < deadline {
				t.Fatalf("%s into the drain, before its deadline: %v", took, err)
			}
			break // a machine so slow that the deadline passed meanwhile
		}
	}
	end := <-drained
	if end.took < deadline {
		t.Fatalf("Drain returned after %s, before its %s deadline: %v", end.took, deadline, end.err)
	}
	err = end.err
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed 1 upgraded") {
		t.Fatalf("drain: %v, want a deadline error that closed 1 upgraded connection", err)
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("upgraded connection after the drain deadline: read %v, want it closed", err)
	}
	if n := a.InFlight(); n != 0 {
		t.Fatalf("A still has %d in flight", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Shutdown closes upgraded connections too, and Serve returns nil.
func TestProxyShutdownClosesUpgradedConnections(t *testing.T) {
	_, a, _ := startApp(t, "A")
	px := NewProxy(nil)
	if err := px.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	px.Switch(a)
	conn, err := net.Dial("tcp", px.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := px.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("upgraded connection after shutdown: read %v, want it closed", err)
	}
	if _, err := net.DialTimeout("tcp", px.Addr().String(), time.Second); err == nil {
		t.Fatal("the proxy still accepts connections after Shutdown")
	}
}

// TestProxyWaitsForARestartingApp: while the live app's port refuses
// connections (its supervisor is starting it again), a request waits for
// it instead of failing with 502.
func TestProxyWaitsForARestartingApp(t *testing.T) {
	px, url := startProxy(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens: connections are refused
	px.Switch(NewBackend("blue", port))
	go func() {
		time.Sleep(400 * time.Millisecond)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "back") })}
		t.Cleanup(func() { srv.Close() })
		_ = srv.Serve(l)
	}()
	start := time.Now()
	code, body := get(t, http.DefaultClient, url+"/")
	if code != http.StatusOK || body != "back" {
		t.Fatalf("got %d %q after %s, want 200 back", code, body, time.Since(start))
	}
}
