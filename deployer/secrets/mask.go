package secrets

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"sync"
)

// MinMaskLen is the shortest value that masking replaces. Shorter values
// are left alone: masking every "1" or "yes" in a log would make it
// unreadable and would itself tell which short strings are secrets.
const MinMaskLen = 4

// MinFragmentLen is the shortest fragment of a value that is masked on its
// own: a line of a multi-line value, or a piece of its base64 encoding.
// A value's lines are masked one by one because output is rewritten line
// by line (indented, prefixed with the colour); but a PEM's "-----" or a
// JSON file's "{", "}" or "true," is structure, not secret, and masking
// it alone would hide ordinary text everywhere. Lines shorter than this
// (after trimming blanks) are shown where they stand alone; the value as
// a whole is masked wherever it appears unbroken.
const MinFragmentLen = 8

// MaskToken replaces each masked stretch of output.
const MaskToken = "***"

// MaskWriter replaces every secret value of at least MinMaskLen (4) bytes,
// and the forms of it that output commonly holds (see maskForms), with
// "***" in what passes through it; shorter values are not masked.
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

// Mask returns s with every value of at least MinMaskLen bytes, and its
// forms, replaced, exactly as a MaskWriter would write it.
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
// next byte do any work for it, so a value's many forms cost little.
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
		vals = append(vals, maskForms(v)...) // none shorter than MinMaskLen
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

// maskForms returns the strings that masking hides for the value v: none
// when v is shorter than MinMaskLen, else
//
//   - v itself, and v trimmed of surrounding blanks and newlines;
//   - when v has several lines, each line (trimmed of blanks) of at least
//     MinFragmentLen bytes, so that a value is still hidden when its lines
//     are indented or prefixed after it was printed;
//   - its standard base64 encoding, and that of v and a newline (what
//     "echo $V | base64" encodes), whole and as base64(1) and openssl wrap
//     them in lines of 76 and of 64 characters, each piece of at least
//     MinFragmentLen; and, for each of the three alignments v can have in
//     an encoded stream, the characters that depend on v's bytes alone,
//     so that v amid other bytes ("echo K=$V | base64") is hidden but for
//     the one or two characters at each end that it shares with them;
//   - its JSON string escapes (without the quotes; with and without the
//     HTML escapes of encoding/json) and its dotenv double-quoted form as
//     FormatDotenv writes it (without the quotes), where they differ
//     from v.
//
// Other encodings (URL-safe base64, hex, shell quoting, other tools' JSON
// escapes of non-ASCII text) are not masked.
func maskForms(v string) []string {
	if len(v) < MinMaskLen {
		return nil
	}
	forms := []string{v}
	add := func(s string, least int) {
		if len(s) >= least {
			forms = append(forms, s)
		}
	}
	const blanks = " \t\r\n\f\v"
	add(strings.Trim(v, blanks), MinMaskLen)
	if strings.Contains(v, "\n") {
		for _, line := range strings.Split(v, "\n") {
			add(strings.Trim(line, blanks), MinFragmentLen)
		}
	}

	b64 := base64.StdEncoding
	n := len(v)
	starts := []string{b64.EncodeToString([]byte(v)), b64.EncodeToString([]byte(v + "\n"))}
	for k := range 3 {
		// v at offset k of a 3-byte group: its bits run from 8k to
		// 8(k+n) of the encoding of the k bytes before it and v;
		// character i holds bits 6i to 6i+6.
		enc := b64.EncodeToString(append(make([]byte, k), v...))
		core := enc[(8*k+5)/6 : 8*(k+n)/6]
		add(core, MinFragmentLen)
		if k == 0 {
			starts = append(starts, core)
		}
	}
	for _, enc := range starts {
		add(enc, MinFragmentLen)
		for _, width := range []int{76, 64} {
			for s := enc; len(enc) > width && len(s) > 0; {
				line := s[:min(width, len(s))]
				add(line, MinFragmentLen)
				s = s[len(line):]
			}
		}
	}

	for _, html := range []bool{false, true} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) == nil {
			if s := strings.TrimSuffix(buf.String(), "\n"); len(s) >= 2 && s[1:len(s)-1] != v {
				forms = append(forms, s[1:len(s)-1])
			}
		}
	}
	if d := string(appendDotenvValue(nil, v)); d != v {
		forms = append(forms, d[1:len(d)-1])
	}
	return forms
}
