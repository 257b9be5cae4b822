package deployer

import "sync"

// pushQueue orders the deploys that pushes and the poller start, per site,
// so that the last push wins: a push still waiting when a newer one
// arrives is superseded by it, whichever of the two gets the site lock
// first (the lock is not first come, first served).
type pushQueue struct {
	mu    sync.Mutex // guards sites; each site's order has its own lock
	sites map[string]*pushOrder
}

type pushOrder struct {
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]Record // queued, not yet started or superseded
	started uint64            // the newest that began deploying
	last    Record            // its record
}

func (q *pushQueue) order(site string) *pushOrder {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sites == nil {
		q.sites = map[string]*pushOrder{}
	}
	o := q.sites[site]
	if o == nil {
		o = &pushOrder{waiting: map[uint64]Record{}}
		q.sites[site] = o
	}
	return o
}

// enqueue registers a push's deploy as it arrives and returns its place,
// once accept (the push's move of the branch) succeeded: the two happen
// in one step, so the push order is the order the branch moved in.
func (q *pushQueue) enqueue(site string, r Record, accept func() error) (uint64, error) {
	o := q.order(site)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := accept(); err != nil {
		return 0, err
	}
	o.next++
	o.waiting[o.next] = r
	return o.next, nil
}

// take is called with the site lock held. It returns the newest push that
// arrived after seq (waiting or begun), which supersedes it; otherwise seq
// begins and ok is false.
func (q *pushQueue) take(site string, seq uint64) (newer Record, superseded bool) {
	o := q.order(site)
	o.mu.Lock()
	defer o.mu.Unlock()
	mine := o.waiting[seq]
	delete(o.waiting, seq)
	best := uint64(0)
	if o.started > seq {
		best, newer = o.started, o.last
	}
	for s, r := range o.waiting {
		if s > seq && s > best {
			best, newer = s, r
		}
	}
	if best > 0 {
		return newer, true
	}
	o.started, o.last = seq, mine
	return Record{}, false
}

// drop forgets a push that never got the site lock (its client went
// away, or the server stops): it supersedes nothing.
func (q *pushQueue) drop(site string, seq uint64) {
	o := q.order(site)
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.waiting, seq)
}

// waitingAfter reports whether a push that arrived after seq (0: any)
// still waits for the site.
func (q *pushQueue) waitingAfter(site string, seq uint64) bool {
	o := q.order(site)
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range o.waiting {
		if s > seq {
			return true
		}
	}
	return false
}
