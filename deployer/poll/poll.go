// Package poll watches the remotes of sites that cannot push (site add
// --poll URL) and deploys when their branch moves.
//
// Each round asks the remote only for its refs (go-git, in process for
// https and ssh); nothing is fetched while the branch stands still. When
// refs/heads/BRANCH differs from the last commit the poller handed to the
// engine, that one branch is fetched into the site's bare repo with the
// real git and the exact commit the remote listed is deployed through the
// same engine call a push uses (approval included). A fetch runs no hooks,
// so the post-receive hook never deploys it a second time.
//
// Per-site state (<data>/state/NAME.poll.json) records the last commit
// seen and the last one handed to the engine: a commit that was deployed,
// or attempted and failed, is never deployed again by the poller, across
// restarts too. A deploy cut short by a shutdown does not count as an
// attempt; one cut short by a crash does (at most once).
package poll

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// DefaultMaxConcurrent bounds the remote checks and fetches in flight
// across all sites.
const DefaultMaxConcurrent = 4

const (
	// reloadEvery is how often the sites directory is checked for
	// changes, so that site add --poll and site rm take effect without a
	// restart. The check is a readdir and an lstat per file; the site files
	// are read only when one changed.
	reloadEvery = time.Second
	// listTimeout and fetchTimeout bound one remote check and one fetch.
	listTimeout  = 30 * time.Second
	fetchTimeout = 10 * time.Minute
	// maxBackoff caps the wait after errors (unless the interval itself
	// is longer); so does 10 times the interval.
	maxBackoff = time.Hour
)

// Poller polls every site that has a poll URL. The daemon owns one.
type Poller struct {
	// TokenFunc, when set, returns the token sent (as HTTP basic auth
	// password) to an https:// poll URL of a site; "" sends none. It is
	// the hook for the secrets store. A token is never logged; it reaches
	// git fetch through the environment, not the command line.
	TokenFunc func(site string) (string, error)
	// MaxConcurrent bounds remote checks and fetches in flight across all
	// sites (deploys themselves are not counted). Set before Start.
	MaxConcurrent int

	engine *deployer.Engine
	data   deployer.Data
	log    *log.Logger

	mu        sync.Mutex
	triggered map[string]bool
	cancel    context.CancelFunc
	done      chan struct{}

	wake    chan struct{}
	results chan result
	sem     chan struct{}
	wg      sync.WaitGroup

	// Owned by the loop goroutine (or a test driving the poller by hand).
	sites     map[string]*entry
	sig       string
	firstLoad bool

	// fetches counts git fetch runs (tests and the benchmark read it).
	fetches atomic.Int64
	// beforeList, when set (tests), runs inside the concurrency limit
	// just before a remote is asked for its refs.
	beforeList func(site string)
}

// entry is one polled site.
type entry struct {
	// Scheduling, owned by the loop.
	site      deployer.Site
	next      time.Time
	running   bool
	triggered bool
	removed   bool

	// Owned by whoever runs the site's poll (one at a time).
	state     state
	saved     state
	logged    string // the error last logged, "" when healthy
	announced string // the tip last logged as "moved to"
}

type result struct {
	e     *entry
	delay time.Duration
}

// New makes a poller for the engine's data dir. logger should carry the
// prefix "poll".
func New(engine *deployer.Engine, logger *log.Logger) *Poller {
	return &Poller{
		MaxConcurrent: DefaultMaxConcurrent,
		engine:        engine,
		data:          engine.Data(),
		log:           logger,
		triggered:     map[string]bool{},
		wake:          make(chan struct{}, 1),
		results:       make(chan result),
		sem:           make(chan struct{}, DefaultMaxConcurrent),
		sites:         map[string]*entry{},
		firstLoad:     true,
	}
}

// Start loads the polled sites and starts polling them in the background.
// Each site's first poll comes at a random point within its first interval.
func (p *Poller) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return
	}
	if p.MaxConcurrent != cap(p.sem) {
		p.sem = make(chan struct{}, max(p.MaxConcurrent, 1))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	p.reload(time.Now(), true)
	if n := len(p.sites); n > 0 {
		p.log.Info("polling", "sites", n)
	}
	go p.loop(ctx)
}

// Stop cancels every poll (a fetch in progress is killed; a deploy that
// started finishes, see Engine.Deploy) and waits for them until ctx ends.
func (p *Poller) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop poller: %w", ctx.Err())
	}
}

// Trigger makes a site poll now (ahead of its schedule and any backoff),
// or as soon as its poll in progress ends. A site without a poll URL is
// ignored.
func (p *Poller) Trigger(site string) {
	p.mu.Lock()
	p.triggered[site] = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Poller) loop(ctx context.Context) {
	defer close(p.done)
	defer p.wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	nextReload := time.Now().Add(reloadEvery)
	for {
		now := time.Now()
		trig := p.takeTriggers()
		unknown := false
		for name := range trig {
			if _, ok := p.sites[name]; !ok {
				unknown = true
			}
		}
		if unknown || !now.Before(nextReload) {
			p.reload(now, unknown)
			nextReload = now.Add(reloadEvery)
		}
		for name := range trig {
			if e, ok := p.sites[name]; ok && !e.removed {
				e.triggered = true
			}
		}
		wake := nextReload
		for _, e := range p.sites {
			switch {
			case e.running || e.removed:
			case e.triggered || !now.Before(e.next):
				p.dispatch(ctx, e)
			case e.next.Before(wake):
				wake = e.next
			}
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
		case r := <-p.results:
			p.finished(r, time.Now())
		}
	}
}

func (p *Poller) takeTriggers() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.triggered) == 0 {
		return nil
	}
	t := p.triggered
	p.triggered = map[string]bool{}
	return t
}

// dispatch starts one poll of e in its own goroutine.
func (p *Poller) dispatch(ctx context.Context, e *entry) {
	e.running, e.triggered = true, false
	site := e.site
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		d := p.poll(ctx, site, e)
		select {
		case p.results <- result{e, d}:
		case <-ctx.Done():
		}
	}()
}

func (p *Poller) finished(r result, now time.Time) {
	e := r.e
	e.running = false
	if e.removed {
		if p.sites[e.site.Name] == e {
			delete(p.sites, e.site.Name)
		}
		return
	}
	e.next = now.Add(r.delay)
}

// reload re-reads the polled sites when the sites directory changed
// (or when forced): new sites are scheduled, removed ones dropped, edited
// ones take their new settings at their next poll.
func (p *Poller) reload(now time.Time, force bool) {
	sig := sitesSignature(p.data.SitesDir())
	if !force && sig == p.sig {
		return
	}
	p.sig = sig
	sites, errs := deployer.ListSites(p.data)
	if !p.firstLoad { // the daemon reports broken site files once at start
		for _, err := range errs {
			p.log.Warn("site definition skipped", "err", err)
		}
	}
	p.firstLoad = false
	seen := map[string]bool{}
	for _, s := range sites {
		if s.Poll == "" {
			continue
		}
		seen[s.Name] = true
		e, ok := p.sites[s.Name]
		if !ok {
			e = &entry{site: s, next: now.Add(initialOffset(s.PollInterval.Duration))}
			st, err := loadState(p.data, s.Name)
			if err != nil {
				p.log.Warn(s.Name+": poll state unreadable; starting afresh", "err", err)
			}
			e.state, e.saved = st, st
			p.sites[s.Name] = e
			p.log.Info(s.Name+": polling", "url", redactURL(s.Poll), "branch", s.Branch, "every", s.PollInterval.Duration)
			continue
		}
		if e.removed {
			e.removed = false
			p.log.Info(s.Name+": polling", "url", redactURL(s.Poll), "branch", s.Branch, "every", s.PollInterval.Duration)
		} else if e.site.Poll != s.Poll || e.site.Branch != s.Branch || e.site.PollInterval != s.PollInterval {
			p.log.Info(s.Name+": poll settings changed", "url", redactURL(s.Poll), "branch", s.Branch, "every", s.PollInterval.Duration)
			if s.PollInterval.Duration < e.site.PollInterval.Duration {
				e.next = now.Add(initialOffset(s.PollInterval.Duration))
			}
		}
		e.site = s
	}
	for name, e := range p.sites {
		if seen[name] || e.removed {
			continue
		}
		p.log.Info(name + ": no longer polled")
		if e.running {
			e.removed = true
		} else {
			delete(p.sites, name)
		}
	}
}

// sitesSignature sums up the site files' names, sizes and modification
// times: it changes when a site is added, removed or edited.
func sitesSignature(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var parts []string
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), ".toml") || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%d", de.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	sort.Strings(parts)
	return strings.Join(parts, "/")
}

// initialOffset spreads first polls over the first interval so that N
// sites do not poll in lockstep.
func initialOffset(interval time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(max(interval, 1))))
}

// jitter varies d by up to ±10%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// backoff is the wait before the next poll after failures consecutive
// errors: interval × 2^failures, capped at 10 × interval and at an hour
// (but never below the interval).
func backoff(interval time.Duration, failures int) time.Duration {
	limit := max(min(10*interval, maxBackoff), interval)
	d := interval
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (p *Poller) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Poller) release() { <-p.sem }
