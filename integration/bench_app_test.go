package integration

// BenchmarkAppProxy is the app-site scenario of TestAppZeroDowntime at a
// higher rate and for longer: bxClients keep-alive clients send requests
// back to back for bxWindow per iteration,
//   - direct: to the live app's own port (the baseline), and
//   - proxy: through eeveon's proxy while the benchmark deploys a new
//     version every bxDeployEvery (or as soon as the previous push
//     returned, if that took longer).
//
// Both run against the same server and app (testdata/app) in the same run.
// Reported over all iterations of a run: req/s (requests / wall time of
// the load), requests, failures (transport errors and non-2xx answers),
// p50-ms and p99-ms (latency of every request), and for proxy deploys
// (pushes that went live while the load ran; every one is checked).
// make bench shows proxy next to direct (benchtable's baseline "direct").
//
//	go test -run '^$' -bench AppProxy -benchtime 3x ./integration | go run ./integration/internal/benchtable

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	bxClients     = 16
	bxWindow      = 5 * time.Second
	bxDeployEvery = 750 * time.Millisecond
)

// bxRepo is a bare client repository whose commits hold only VERSION.
type bxRepo struct {
	bnRepo
	version string // of head
	n       int
}

func bxNewRepo(tb testing.TB, dir string) *bxRepo {
	tb.Helper()
	bnMust(tb, filepath.Dir(dir), "git", "init", "-q", "--bare", dir)
	r := &bxRepo{bnRepo: bnRepo{dir: dir, probe: "VERSION"}}
	if err := r.next(); err != nil {
		tb.Fatal(err)
	}
	return r
}

// next commits the next version (v1, v2, …) on main. It does not fail the
// benchmark itself, so the deploying goroutine may call it.
func (r *bxRepo) next() error {
	r.n++
	v := "v" + strconv.Itoa(r.n)
	content := v + "\n"
	from := ""
	if r.head != "" {
		from = "from " + r.head + "\n"
	}
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter b <b@bench> %d +0000\ndata %d\n%s\n%sM 644 inline VERSION\ndata %d\n%s\n",
		1700000000+r.n, len(v), v, from, len(content), content)
	cmd := exec.Command("git", "--git-dir", r.dir, "fast-import", "--quiet")
	cmd.Stdin = strings.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fast-import: %v\n%s", err, out)
	}
	head := bnRun(r.dir, nil, "git", "--git-dir", r.dir, "rev-parse", "refs/heads/main")
	if head.Code != 0 {
		return fmt.Errorf("rev-parse: exit %d\n%s", head.Code, head.Out())
	}
	r.head, r.version = strings.TrimSpace(head.Stdout), v
	return nil
}

// deploy pushes main to site and checks that the push put it live.
func (r *bxRepo) deploy(srv *bnServer, site string) error {
	res, _ := r.push(srv.gitEnv(), srv.URL(site), "main")
	if want := "live: " + site + " " + r.head[:7] + " on "; res.Code != 0 || !strings.Contains(res.Stderr, want) {
		return fmt.Errorf("push of %s to %s: exit %d, output lacks %q:\n%s", r.version, site, res.Code, want, res.Out())
	}
	return nil
}

// bxStats is what the load saw, summed over iterations.
type bxStats struct {
	lat       []float64 // ms, one per request
	fails     int
	firstFail string
	wall      time.Duration
}

// bxLoad sends GET url from bxClients clients, each on its own keep-alive
// connection, back to back until stop is closed; it returns when the last
// request in flight has finished.
func bxLoad(url string, stop <-chan struct{}, st *bxStats) {
	type worker struct {
		lat       []float64
		fails     int
		firstFail string
	}
	workers := make([]worker, bxClients)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range workers {
		w := &workers[i]
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
		wg.Go(func() {
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
						err = errors.New(resp.Status)
					}
				}
				w.lat = append(w.lat, bnMs(time.Since(t)))
				if err != nil {
					if w.fails == 0 {
						w.firstFail = err.Error()
					}
					w.fails++
				}
			}
		})
	}
	wg.Wait()
	st.wall += time.Since(t0)
	for _, w := range workers {
		st.lat = append(st.lat, w.lat...)
		if w.fails > 0 && st.fails == 0 {
			st.firstFail = w.firstFail
		}
		st.fails += w.fails
	}
}

// report reports the load's metrics; a failed request is logged, not
// fatal (the failures are the measurement).
func (st *bxStats) report(b *testing.B) {
	if st.fails > 0 {
		b.Logf("%d of %d requests failed, the first: %s", st.fails, len(st.lat), st.firstFail)
	}
	slices.Sort(st.lat)
	b.ReportMetric(float64(len(st.lat))/st.wall.Seconds(), "req/s")
	b.ReportMetric(float64(len(st.lat)), "requests")
	b.ReportMetric(float64(st.fails), "failures")
	b.ReportMetric(bxPercentile(st.lat, 50), "p50-ms")
	b.ReportMetric(bxPercentile(st.lat, 99), "p99-ms")
}

// bxPercentile is the p-th percentile (nearest rank) of sorted xs.
func bxPercentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// bxGet is one request on a new connection: status and trimmed body.
func bxGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}

// bxLivePort is the port of the site's live app, from the state the
// server records for it.
func bxLivePort(b *testing.B, srv *bnServer, site string) int {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(srv.Data, "state", "apps", site+".json"))
	if err != nil {
		b.Fatalf("live app state of %s: %v", site, err)
	}
	var st struct {
		Port int `json:"port"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Port == 0 {
		b.Fatalf("live app state of %s: %v %s", site, err, raw)
	}
	return st.Port
}

func BenchmarkAppProxy(b *testing.B) {
	appBin := testAppBinary(b)
	srv := bnNewServer(b)
	dir := srv.Dir
	// As newAppEnv: checks every 50ms and a short grace, so that a deploy
	// takes a fraction of a second.
	srv.restartWithConfig("[deploy]\nhealth_interval = \"50ms\"\nhealth_timeout = \"3s\"\nhealth_try_timeout = \"1s\"\n" +
		"[app]\ndrain_timeout = \"5s\"\nstop_grace = \"3s\"\n")
	const site = "api"
	proxy := "127.0.0.1:" + freePort(b)
	srv.MustEeveon("site", "add", site, "--start", "exec "+appBin, "--proxy", proxy,
		"--ports", freePort(b)+","+freePort(b), "--health-path", "/up")
	// Registered after NewEnv's cleanup, so it runs first: stop the
	// server (SIGTERM), then nothing of the run may be left.
	b.Cleanup(func() {
		srv.Stop()
		deadline := time.Now().Add(5 * time.Second)
		for len(leftovers(dir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if left := leftovers(dir); len(left) > 0 {
			b.Errorf("processes left after the server stopped:\n%s", strings.Join(left, "\n"))
		}
	})
	repo := bxNewRepo(b, filepath.Join(dir, "client.git"))
	if err := repo.deploy(srv, site); err != nil {
		b.Fatal(err)
	}
	if code, body, err := bxGet("http://" + proxy + "/"); code != 200 || body != repo.version {
		b.Fatalf("proxy after the first deploy: %d %q %v", code, body, err)
	}

	b.Run("direct", func(b *testing.B) {
		url := "http://127.0.0.1:" + strconv.Itoa(bxLivePort(b, srv, site)) + "/"
		if code, body, err := bxGet(url); code != 200 || body != repo.version {
			b.Fatalf("live app on %s: %d %q %v", url, code, body, err)
		}
		var st bxStats
		for b.Loop() {
			stop := make(chan struct{})
			time.AfterFunc(bxWindow, func() { close(stop) })
			bxLoad(url, stop, &st)
		}
		st.report(b)
	})

	b.Run("proxy", func(b *testing.B) {
		url := "http://" + proxy + "/"
		var st bxStats
		deploys := 0
		for b.Loop() {
			stopLoad, stopDeploys := make(chan struct{}), make(chan struct{})
			loadDone := make(chan struct{})
			go func() { bxLoad(url, stopLoad, &st); close(loadDone) }()
			// Deploy until the window is over, then let the push in
			// flight finish under load before the load stops.
			var deployErr error
			deployDone := make(chan struct{})
			go func() {
				defer close(deployDone)
				for {
					select {
					case <-stopDeploys:
						return
					default:
					}
					t0 := time.Now()
					if deployErr = repo.next(); deployErr != nil {
						return
					}
					if deployErr = repo.deploy(srv, site); deployErr != nil {
						return
					}
					deploys++
					select {
					case <-stopDeploys:
						return
					case <-time.After(time.Until(t0.Add(bxDeployEvery))):
					}
				}
			}()
			select {
			case <-time.After(bxWindow):
			case <-deployDone:
			}
			close(stopDeploys)
			<-deployDone
			close(stopLoad)
			<-loadDone
			if deployErr != nil {
				b.Fatal(deployErr)
			}
			b.StopTimer()
			if code, body, err := bxGet(url); code != 200 || body != repo.version {
				b.Fatalf("proxy after deploying %s: %d %q %v", repo.version, code, body, err)
			}
			b.StartTimer()
		}
		st.report(b)
		b.ReportMetric(float64(deploys), "deploys")
	})
}
