package secrets

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
)

// naiveMask is the reference for Mask: mark every byte inside any
// occurrence of any value of 4 bytes or more, then write each run of
// marked bytes as one "***".
func naiveMask(s string, values []string) string {
	cov := make([]bool, len(s))
	for _, v := range values {
		if len(v) < MinMaskLen {
			continue
		}
		for i := 0; i+len(v) <= len(s); i++ {
			if s[i:i+len(v)] == v {
				for j := i; j < i+len(v); j++ {
					cov[j] = true
				}
			}
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if !cov[i] {
			b.WriteByte(s[i])
		} else if i == 0 || !cov[i-1] {
			b.WriteString(MaskToken)
		}
	}
	return b.String()
}

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		values []string
		want   string
	}{
		{"no values", "hello hunter2", nil, "hello hunter2"},
		{"simple", "pw=hunter2!", []string{"hunter2"}, "pw=***!"},
		{"every occurrence", "hunter2 hunter2", []string{"hunter2"}, "*** ***"},
		{"short values are not masked", "id=abc ok", []string{"abc", "ok"}, "id=abc ok"},
		{"exactly four bytes", "pin 1234.", []string{"1234"}, "pin ***."},
		{"empty value ignored", "abc", []string{""}, "abc"},
		{"multi-line", "key:\n-----BEGIN-----\nAAA\n-----END-----\nok", []string{"-----BEGIN-----\nAAA\n-----END-----"}, "key:\n***\nok"},
		{"longer before shorter it contains", "x secretlonger y secret", []string{"secret", "secretlonger"}, "x *** y ***"},
		{"shorter listed first", "x secretlonger y", []string{"secretlonger", "secret"}, "x *** y"},
		{"overlapping values hide the union", "abcdefg", []string{"abcd", "cdefg"}, "***"},
		{"adjacent values form one run", "xabcdwxyzx", []string{"abcd", "wxyz"}, "x***x"},
		{"self-overlapping", "aaaaaaa", []string{"aaaa"}, "***"},
		{"partial is kept", "hunter hunter2", []string{"hunter2"}, "hunter ***"},
		{"duplicates", "abcd", []string{"abcd", "abcd"}, "***"},
		{"binary", "\x00\xffab\xfe\x00", []string{"\xffab\xfe"}, "\x00***\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mask(tc.in, tc.values); got != tc.want {
				t.Errorf("Mask = %q, want %q", got, tc.want)
			}
			if got := naiveMask(tc.in, tc.values); got != tc.want {
				t.Errorf("reference = %q, want %q (bad table entry)", got, tc.want)
			}
		})
	}
}

// recorder remembers what reached it after each write.
type recorder struct{ bytes.Buffer }

func TestMaskWriterStreams(t *testing.T) {
	var out recorder
	mw := NewMaskWriter(&out, []string{"hunter2", "s3cr3t-token"})
	step := func(in, want string) {
		t.Helper()
		if n, err := mw.Write([]byte(in)); err != nil || n != len(in) {
			t.Fatalf("Write(%q) = %d, %v", in, n, err)
		}
		if out.String() != want {
			t.Fatalf("after Write(%q): output %q, want %q", in, out.String(), want)
		}
	}
	step("plain line\n", "plain line\n") // nothing held back
	step("pw: hun", "plain line\npw: ")  // "hun" may start hunter2
	step("t", "plain line\npw: ")
	step("er2 and s3", "plain line\npw: *** and ") // "s3" may start s3cr3t-token
	step("x", "plain line\npw: *** and s3x")       // it did not
	step("s3cr", "plain line\npw: *** and s3x")
	step("3t-token\n", "plain line\npw: *** and s3x***\n")
	step("hunt", "plain line\npw: *** and s3x***\n")
	if err := mw.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "plain line\npw: *** and s3x***\nhunt"; out.String() != want {
		t.Fatalf("after Flush: %q, want %q", out.String(), want)
	}
}

func TestMaskWriterByteByByte(t *testing.T) {
	values := []string{"multi\nline\nsecret", "line", "abcabcabd", "zzzz"}
	in := "a multi\nline\nsecret, a line, abcabcabcabd, zzzzzzz and abcab"
	var out bytes.Buffer
	mw := NewMaskWriter(&out, values)
	for i := 0; i < len(in); i++ {
		mw.Write([]byte{in[i]})
	}
	mw.Flush()
	want := naiveMask(in, values)
	if out.String() != want || Mask(in, values) != want {
		t.Fatalf("byte by byte: %q\nMask: %q\nwant %q", out.String(), Mask(in, values), want)
	}
	if want != "a ***, a ***, abc***, *** and abcab" {
		t.Fatalf("reference = %q", want)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestMaskWriterError(t *testing.T) {
	fw := &failWriter{}
	mw := NewMaskWriter(fw, []string{"secret"})
	if _, err := mw.Write([]byte("hello")); err == nil {
		t.Fatal("Write through a failing writer succeeded")
	}
	if _, err := mw.Write([]byte("more")); err == nil || fw.n != 1 {
		t.Errorf("second Write = %v after %d underlying writes; want the sticky error", err, fw.n)
	}
	if err := mw.Flush(); err == nil {
		t.Error("Flush after an error succeeded")
	}
}

// lockedBuffer is a bytes.Buffer that the race detector accepts.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestMaskWriterConcurrent(t *testing.T) {
	const secret = "concurrent-secret-value"
	var out lockedBuffer
	mw := NewMaskWriter(&out, []string{secret})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				mw.Write([]byte("log line with " + secret + " inside\n"))
			}
		}()
	}
	wg.Wait()
	mw.Flush()
	got := out.b.String()
	if strings.Contains(got, secret) {
		t.Fatal("a secret got through")
	}
	if n := strings.Count(got, "log line with *** inside\n"); n != 8*200 {
		t.Fatalf("%d masked lines, want %d", n, 8*200)
	}
}

// FuzzMask: any split of the input through a MaskWriter gives what Mask
// gives for the whole input, which is what the naive reference gives,
// and no value of 4 bytes or more is left in the output.
func FuzzMask(f *testing.F) {
	f.Add("pw=hunter2 ok", "hunter2", "", "", []byte{3, 1, 1})
	f.Add("abcdefg", "abcd", "cdefg", "xyz", []byte{1})
	f.Fuzz(func(t *testing.T, in, v1, v2, v3 string, cuts []byte) {
		values := []string{v1, v2, v3}
		want := Mask(in, values)
		if ref := naiveMask(in, values); want != ref {
			t.Fatalf("Mask disagrees with the reference: %s vs %s", fp(want), fp(ref))
		}
		var out bytes.Buffer
		mw := NewMaskWriter(&out, values)
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(int(cuts[i%len(cuts)])%8+1, len(rest))
			}
			if _, err := mw.Write([]byte(rest[:n])); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := mw.Flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Fatalf("split writes give %s, Mask gives %s", fp(out.String()), fp(want))
		}
		for _, v := range values {
			// A value that contains '*' can be formed by the mask itself.
			if len(v) >= MinMaskLen && !strings.Contains(v, "*") && strings.Contains(want, v) {
				t.Fatalf("output still contains value %s", fp(v))
			}
		}
	})
}
