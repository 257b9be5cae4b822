package deployer

import "testing"

// TestPushQueueLastWins: whichever order the pushes get the site lock in,
// the newest one deploys and every older one still waiting is superseded
// by it; a push that gave up waiting supersedes nothing.
func TestPushQueueLastWins(t *testing.T) {
	accept := func() error { return nil }
	for _, tc := range []struct {
		name  string
		order []int // the pushes (1-based, in arrival order) in the order they take the lock
		want  []int // for each push in order: the push that supersedes it, 0 if it deploys
	}{
		{"in arrival order", []int{1, 2, 3}, []int{3, 3, 0}},
		{"newest first", []int{3, 2, 1}, []int{0, 3, 3}},
		{"middle first", []int{2, 3, 1}, []int{3, 0, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q pushQueue
			seqs := make([]uint64, 4)
			for i := 1; i <= 3; i++ {
				seqs[i], _ = q.enqueue("web", Record{ID: string(rune('0' + i))}, accept)
			}
			for k, i := range tc.order {
				newer, sup := q.take("web", seqs[i])
				got := 0
				if sup {
					got = int(newer.ID[0] - '0')
				}
				if got != tc.want[k] {
					t.Errorf("push %d taking the lock %d.: superseded by %d, want %d", i, k+1, got, tc.want[k])
				}
			}
		})
	}
	// A newer push that gave up waiting supersedes nothing.
	var q pushQueue
	a, _ := q.enqueue("web", Record{ID: "a"}, accept)
	b, _ := q.enqueue("web", Record{ID: "b"}, accept)
	q.drop("web", b)
	if newer, sup := q.take("web", a); sup {
		t.Errorf("a was superseded by %s, which gave up", newer.ID)
	}
	// Sites are apart.
	c, _ := q.enqueue("api", Record{ID: "c"}, accept)
	q.enqueue("web", Record{ID: "d"}, accept)
	// A push that is refused takes no place.
	if _, err := q.enqueue("web", Record{ID: "e"}, func() error { return ErrStalePush }); err == nil {
		t.Error("a refused push was queued")
	}
	if newer, sup := q.take("web", a); !sup || newer.ID != "d" {
		t.Errorf("a superseded by %q, %v; want d", newer.ID, sup)
	}
	if _, sup := q.take("api", c); sup {
		t.Error("a push to web superseded one to api")
	}
}
