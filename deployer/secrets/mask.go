package secrets

import (
	"cmp"
	"io"
	"slices"
	"strings"
	"sync"
)

// MinMaskLen is the shortest value that masking replaces. Shorter values
// are left alone: masking every "1" or "yes" in a log would make it
// unreadable and would itself tell which short strings are secrets.
const MinMaskLen = 4

// MaskToken replaces each masked stretch of output.
const MaskToken = "***"

// MaskWriter replaces every secret value of at least MinMaskLen (4) bytes
// with "***" in what passes through it; shorter values are not masked.
//
// It streams: after each Write it passes on everything except the
// longest tail of the input that is the start of some value (that tail
// could still become a secret), so output without secrets appears at
// once. Values are found wherever they occur, split across any number of
// Writes, across lines, and overlapping one another; every byte that
// belongs to an occurrence of some value is hidden, and each unbroken
// stretch of such bytes becomes one "***". A value that contains another
// is therefore hidden whole.
//
// Flush writes out the held-back tail as it is; call it when the stream
// ends (a value that continues after a Flush is not recognised). A
// MaskWriter is safe for concurrent use; after an error from the
// underlying writer every call returns that error.
type MaskWriter struct {
	mu sync.Mutex
	w  io.Writer
	m  *matcher

	pending []byte // input not yet written out
	covered []bool // covered[i]: pending[i] is part of a value
	base    int64  // input offset of pending[0]
	prevCov bool   // the last byte written out was covered
	out     []byte // scratch for one write to w
	err     error
}

// NewMaskWriter returns a MaskWriter that writes to w with values masked.
// The values are copied.
func NewMaskWriter(w io.Writer, values []string) *MaskWriter {
	return &MaskWriter{w: w, m: newMatcher(values)}
}

// Write masks p into the underlying writer. It reports len(p) when all
// output due so far was written.
func (mw *MaskWriter) Write(p []byte) (int, error) {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if mw.err != nil {
		return 0, mw.err
	}
	if len(mw.m.vals) == 0 {
		if _, err := mw.w.Write(p); err != nil {
			mw.err = err
			return 0, err
		}
		return len(p), nil
	}
	for _, c := range p {
		mw.pending = append(mw.pending, c)
		mw.covered = append(mw.covered, false)
		end := mw.base + int64(len(mw.pending))
		mw.m.step(c, end, func(from, to int64) {
			for i := from; i < to; i++ {
				mw.covered[i-mw.base] = true
			}
		})
	}
	if err := mw.emit(len(mw.pending) - mw.m.held()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out whatever is held back.
func (mw *MaskWriter) Flush() error {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if mw.err != nil {
		return mw.err
	}
	mw.m.reset()
	return mw.emit(len(mw.pending))
}

// emit writes out the first n pending bytes.
func (mw *MaskWriter) emit(n int) error {
	if n <= 0 {
		return nil
	}
	out := mw.out[:0]
	prev := mw.prevCov
	for i := 0; i < n; i++ {
		if mw.covered[i] {
			if !prev {
				out = append(out, MaskToken...)
			}
			prev = true
			continue
		}
		out = append(out, mw.pending[i])
		prev = false
	}
	mw.prevCov = prev
	mw.pending = mw.pending[n:]
	mw.covered = mw.covered[n:]
	mw.base += int64(n)
	mw.out = out[:0]
	if len(out) == 0 {
		return nil
	}
	if _, err := mw.w.Write(out); err != nil {
		mw.err = err
		return err
	}
	return nil
}

// Mask returns s with every value of at least MinMaskLen bytes replaced,
// exactly as a MaskWriter would write it.
func Mask(s string, values []string) string {
	var b strings.Builder
	mw := NewMaskWriter(&b, values)
	mw.Write([]byte(s)) // a strings.Builder does not fail
	mw.Flush()
	return b.String()
}

// matcher finds every occurrence of several values in a byte stream, one
// Knuth-Morris-Pratt automaton per value. Only the automata that are part
// way through their value (active) and those whose value starts with the
// next byte do any work for it, so many values cost little.
type matcher struct {
	vals    []string
	border  [][]int    // border[v][l]: longest proper border of vals[v][:l]
	state   []int      // bytes of vals[v] matched at the end of the stream
	lastEnd []int64    // end of vals[v]'s previous occurrence
	first   [256][]int // first[c]: the values that start with c
	active  []int      // the values whose state is not 0
	next    []int      // scratch for the next active
}

func newMatcher(values []string) *matcher {
	var vals []string
	for _, v := range values {
		if len(v) >= MinMaskLen {
			vals = append(vals, v)
		}
	}
	// Longest first, so that the work for a value that contains another
	// is done first; the result does not depend on the order.
	slices.SortFunc(vals, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	vals = slices.Compact(vals)
	m := &matcher{
		vals:    vals,
		border:  make([][]int, len(vals)),
		state:   make([]int, len(vals)),
		lastEnd: make([]int64, len(vals)),
	}
	for i, v := range vals {
		m.first[v[0]] = append(m.first[v[0]], i)
		b := make([]int, len(v)+1)
		k := 0
		for j := 1; j < len(v); j++ {
			for k > 0 && v[j] != v[k] {
				k = b[k]
			}
			if v[j] == v[k] {
				k++
			}
			b[j+1] = k
		}
		m.border[i] = b
	}
	return m
}

// step feeds byte c, the one that ends at stream offset end, and calls
// mark with each stretch [from, to) of newly found occurrences that was
// not reported before.
func (m *matcher) step(c byte, end int64, mark func(from, to int64)) {
	next := m.next[:0]
	for _, i := range m.first[c] {
		if m.state[i] == 0 { // an active one is advanced below
			m.state[i] = 1 // values are longer than one byte
			next = append(next, i)
		}
	}
	for _, i := range m.active {
		v, s := m.vals[i], m.state[i]
		for s > 0 && v[s] != c {
			s = m.border[i][s]
		}
		if v[s] == c {
			s++
		}
		if s == len(v) {
			from := max(end-int64(len(v)), m.lastEnd[i])
			mark(from, end)
			m.lastEnd[i] = end
			s = m.border[i][s]
		}
		m.state[i] = s
		if s > 0 {
			next = append(next, i)
		}
	}
	m.next, m.active = m.active, next
}

// held is the length of the longest tail of the stream that is a proper
// prefix of some value.
func (m *matcher) held() int {
	h := 0
	for _, i := range m.active {
		h = max(h, m.state[i])
	}
	return h
}

func (m *matcher) reset() {
	clear(m.state)
	m.active = m.active[:0]
}
