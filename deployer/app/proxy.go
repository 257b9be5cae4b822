package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/charmbracelet/log"
)

// Backend is one upstream of the proxy: an app listening on 127.0.0.1,
// named after its colour. It counts the requests the proxy has in flight
// on it. A Backend stays valid across restarts of its app on the same
// port, and may be switched to again after a drain.
type Backend struct {
	name     string
	port     int
	url      *url.URL
	inflight atomic.Int64
	served   atomic.Int64
	idle     chan struct{} // a token when inflight drops to zero
}

// NewBackend describes the app of colour name listening on
// 127.0.0.1:port.
func NewBackend(name string, port int) *Backend {
	return &Backend{
		name: name,
		port: port,
		url:  &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))},
		idle: make(chan struct{}, 1),
	}
}

// Name is the backend's colour.
func (b *Backend) Name() string { return b.name }

// Port is the port the backend's app listens on.
func (b *Backend) Port() int { return b.port }

// URL is the backend's base URL, http://127.0.0.1:PORT.
func (b *Backend) URL() string { return b.url.String() }

// InFlight is the number of requests the proxy is forwarding to the
// backend right now, upgraded connections included.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Served is the number of requests the proxy has routed to the backend.
func (b *Backend) Served() int64 { return b.served.Load() }

func (b *Backend) String() string {
	if b == nil {
		return "none"
	}
	return b.name + " (" + b.url.Host + ")"
}

func (b *Backend) release() {
	if b.inflight.Add(-1) == 0 {
		select {
		case b.idle <- struct{}{}:
		default:
		}
	}
}

// ErrLive is returned by Drain for the backend that is currently live.
var ErrLive = errors.New("backend is live")

// Proxy is the reverse proxy in front of one app site. Every request goes
// to the backend that is current when the request arrives, and stays
// there to the end, also when Switch is called meanwhile; a keep-alive
// client connection is routed again on each request. With no backend the
// proxy answers 503.
//
// The request to the app keeps the client's Host header and gets
// X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto. By default
// these describe the client of the proxy only (headers of that name from
// the client are dropped); with TrustForwarded, for a proxy that sits
// behind nginx or Caddy on the same host, X-Forwarded-For is appended to
// and X-Forwarded-Proto and -Host are passed through.
type Proxy struct {
	// TrustForwarded keeps the X-Forwarded-* headers the client sent.
	// Set it before Serve.
	TrustForwarded bool

	log       *log.Logger
	cur       atomic.Pointer[Backend]
	transport *http.Transport
	rp        *httputil.ReverseProxy

	mu       sync.Mutex
	upgrades map[*flight]struct{} // requests whose connection was upgraded
	ln       net.Listener
	srv      *http.Server
}

// flight is one request on its way through the proxy.
type flight struct {
	b      *Backend
	cancel context.CancelFunc
}

type flightKey struct{}

// ConnectPatience is how long a request waits for an app that refuses
// connections (it crashed and its supervisor is starting it again) before
// the proxy answers 502. A refused connection never reached the app, so
// trying again is safe for every method.
var ConnectPatience = 10 * time.Second

// patientDial retries a refused connection every 50 ms for up to patience
// or until the request ends.
func patientDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), patience time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		deadline := time.Now().Add(patience)
		for {
			c, err := dial(ctx, network, addr)
			if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
				return c, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// NewProxy makes a proxy with no backend. logger receives switches and
// errors talking to the apps; nil discards them.
func NewProxy(logger *log.Logger) *Proxy {
	if logger == nil {
		logger = log.New(io.Discard)
	}
	p := &Proxy{log: logger, upgrades: map[*flight]struct{}{}}
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		Proxy:               nil, // never an HTTP_PROXY from the environment
		DialContext:         patientDial(dialer.DialContext, ConnectPatience),
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		// Shorter than the keep-alive timeout of common app servers
		// (Node 5s, gunicorn 2s), so the proxy drops an idle connection
		// before the app does and never sends a request into one the app
		// is closing. A fresh connection on loopback costs next to nothing.
		IdleConnTimeout:       time.Second,
		ExpectContinueTimeout: time.Second,
		// Pass bodies through as they are; do not ask the app for gzip.
		DisableCompression: true,
		// No ResponseHeaderTimeout: long polls and slow reports are the
		// app's business; a client that goes away cancels its request.
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       logger.StandardLog(log.StandardLogOptions{ForceLevel: log.WarnLevel}),
	}
	return p
}

// Current is the backend new requests go to, or nil.
func (p *Proxy) Current() *Backend { return p.cur.Load() }

// Switch makes b the backend for new requests and returns the previous
// one (nil at first). Requests already under way finish where they are;
// Drain waits for them. Switch(nil) takes the site offline (503).
func (p *Proxy) Switch(b *Backend) (old *Backend) {
	old = p.cur.Swap(b)
	p.log.Info("switched", "from", old.String(), "to", b.String())
	return old
}

// Drain waits until b, a backend that is no longer current, has no
// request in flight; then it closes the proxy's idle connections to it
// and returns nil. When ctx ends first, it closes b's upgraded
// connections (websockets), waits a moment for them to unwind and returns
// an error that wraps ctx.Err() and says what was cut; plain requests
// still running are left to the app's own shutdown. Drain returns ErrLive
// if b is, or becomes again, the current backend.
func (p *Proxy) Drain(ctx context.Context, b *Backend) error {
	tick := time.NewTicker(100 * time.Millisecond) // a safety net; idle wakes us
	defer tick.Stop()
	for {
		if p.cur.Load() == b {
			return fmt.Errorf("drain %s: %w", b, ErrLive)
		}
		if b.inflight.Load() == 0 {
			p.transport.CloseIdleConnections()
			return nil
		}
		select {
		case <-b.idle:
		case <-tick.C:
		case <-ctx.Done():
			closed := p.closeUpgrades(b)
			waitIdle(b, time.Second) // let the cut connections unwind
			p.transport.CloseIdleConnections()
			return fmt.Errorf("drain %s: %w: closed %d upgraded connections, %d requests still running",
				b, ctx.Err(), closed, b.inflight.Load())
		}
	}
}

// waitIdle waits up to d for b to have no request in flight.
func waitIdle(b *Backend, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for b.inflight.Load() > 0 {
		select {
		case <-b.idle:
		case <-tick.C:
		case <-deadline.C:
			return
		}
	}
}

// closeUpgrades ends the upgraded connections on b (all of them for nil)
// and reports how many there were.
func (p *Proxy) closeUpgrades(b *Backend) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for f := range p.upgrades {
		if b == nil || f.b == b {
			f.cancel()
			delete(p.upgrades, f)
			n++
		}
	}
	return n
}

// acquire counts a request on the current backend. The second look at
// the current backend closes the race with Switch and Drain: a request
// that counted itself on a backend that is no longer current goes to the
// new one instead, so once Drain has seen zero nothing new arrives.
func (p *Proxy) acquire() *Backend {
	for {
		b := p.cur.Load()
		if b == nil {
			return nil
		}
		b.inflight.Add(1)
		if p.cur.Load() == b {
			b.served.Add(1)
			return b
		}
		b.release()
	}
}

// ServeHTTP forwards r to the current backend.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.acquire()
	if b == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "no app is live yet", http.StatusServiceUnavailable)
		return
	}
	defer b.release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	f := &flight{b: b, cancel: cancel}
	defer func() {
		p.mu.Lock()
		delete(p.upgrades, f)
		p.mu.Unlock()
	}()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, flightKey{}, f)))
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(flightKey{}).(*flight)
	if p.TrustForwarded {
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetURL(f.b.url)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if p.TrustForwarded {
		for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	}
}

// modifyResponse registers a connection the app switched to another
// protocol, so that Drain and Shutdown can close it.
func (p *Proxy) modifyResponse(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		if f, ok := res.Request.Context().Value(flightKey{}).(*flight); ok {
			p.mu.Lock()
			p.upgrades[f] = struct{}{}
			p.mu.Unlock()
		}
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(flightKey{}).(*flight)
	if errors.Is(err, context.Canceled) {
		// The client went away, or Drain or Shutdown cut the request.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	backend := "?"
	if f != nil {
		backend = f.b.String()
	}
	p.log.Warn("proxy error", "backend", backend, "method", r.Method, "path", r.URL.Path, "err", err)
	http.Error(w, "bad gateway: the app did not answer", http.StatusBadGateway)
}

// Listen binds addr (host:port; port 0 picks a free one) so that Addr is
// known before Serve runs.
func (p *Proxy) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		ln.Close()
		return fmt.Errorf("listen on %s: proxy already listening on %s", addr, p.ln.Addr())
	}
	p.ln = ln
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          p.log.StandardLog(log.StandardLogOptions{ForceLevel: log.WarnLevel}),
	}
	return nil
}

// Addr is the address Listen bound, or nil before Listen.
func (p *Proxy) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

// Serve accepts connections on the listener from Listen until Shutdown;
// then it returns nil.
func (p *Proxy) Serve() error {
	p.mu.Lock()
	srv, ln := p.srv, p.ln
	p.mu.Unlock()
	if srv == nil {
		return errors.New("serve: call Listen first")
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve proxy: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits until ctx ends for the
// requests in flight. Upgraded connections cannot finish that way: they
// are closed once the plain requests are done or ctx ends, and whatever
// is still open then is closed too.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	p.closeUpgrades(nil)
	if err != nil {
		_ = srv.Close()
	}
	p.transport.CloseIdleConnections()
	return err
}
