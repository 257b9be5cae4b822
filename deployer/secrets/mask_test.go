package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

// naiveMask is the reference for Mask: mark every byte inside any
// occurrence of any form of any value, then write each run of marked
// bytes as one "***".
func naiveMask(s string, values []string) string {
	cov := make([]bool, len(s))
	var forms []string
	for _, v := range values {
		forms = append(forms, maskForms(v)...)
	}
	for _, v := range forms {
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

// testPEM is a multi-line secret with a line shorter than MinFragmentLen.
const testPEM = "-----BEGIN TEST PRIVATE KEY-----\n" +
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7Vb4Yx2Kp3mQ9\n" +
	"Zr8fT1wLs0JdN6uHcE4aVgXyB2nPqR5tKmW9oLjD3sFhG7iUeA1bC0vYxZ8kNwQp\n" +
	"q7Wc\n" +
	"-----END TEST PRIVATE KEY-----"

// prefixLines puts prefix before every line of s, as the deploy output
// does after the command printed it.
func prefixLines(prefix, s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

// wrap breaks s into lines of width characters, as base64(1) does.
func wrap(s string, width int) string {
	var b strings.Builder
	for len(s) > width {
		b.WriteString(s[:width] + "\n")
		s = s[width:]
	}
	return b.String() + s + "\n"
}

// A multi-line value is masked line by line once its lines are indented
// or prefixed; lines shorter than MinFragmentLen stay.
func TestMaskMultiLinePrefixed(t *testing.T) {
	values := []string{testPEM}
	if got := Mask("key: "+testPEM+"\n", values); got != "key: ***\n" {
		t.Errorf("unbroken value: %q", got)
	}
	want := "    ***\n    ***\n    ***\n    q7Wc\n    ***\n"
	if got := Mask(prefixLines("    ", testPEM), values); got != want {
		t.Errorf("indented:\n%s\nwant\n%s", got, want)
	}
	want = strings.ReplaceAll(want, "    ", "blue | > ")
	if got := Mask(prefixLines("blue | > ", testPEM), values); got != want {
		t.Errorf("prefixed:\n%s\nwant\n%s", got, want)
	}
	// Blanks around a line and CRLF line ends do not hide it from the mask.
	crlf := strings.ReplaceAll("  "+strings.ReplaceAll(testPEM, "\n", "\n  "), "\n", "\r\n")
	if got := Mask(prefixLines("| ", strings.ReplaceAll(crlf, "\r\n", "\n")), []string{crlf}); got != strings.ReplaceAll(want, "blue | > ", "|   ") {
		t.Errorf("CRLF value with indented lines:\n%s", got)
	}
}

// Short lines of a multi-line value are structure, not secret: an empty
// line, "{", "true," or a line of 7 bytes is not masked on its own, a
// line of 8 is; a value of 4 bytes or more is still masked whole.
func TestMaskShortLinesOfAValue(t *testing.T) {
	v := "{\n\n  \"a\": 1,\n  1234567\n  12345678\n}"
	in := "{ a true, 1234567 \"a\": 1, 12345678 }\n"
	if got, want := Mask(in, []string{v}), "{ a true, 1234567 \"a\": 1, *** }\n"; got != want {
		t.Errorf("Mask = %q, want %q", got, want)
	}
	if got := Mask("x "+v+" y", []string{v}); got != "x *** y" {
		t.Errorf("whole value: %q", got)
	}
	if got := Mask("pin 1234\n", []string{"1234\n"}); got != "pin ***" {
		t.Errorf("a short value with a trailing newline: %q", got)
	}
	if f := maskForms("a\nb"); f != nil {
		t.Errorf("a value under MinMaskLen has forms: %q", f)
	}
}

// The encodings a build is likely to print: base64 (one line, wrapped at
// 76 by base64(1) or 64 by openssl, of the value or of the value and a
// newline, at any offset), JSON string escapes and the dotenv form.
func TestMaskEncodedForms(t *testing.T) {
	v := testPEM
	values := []string{v}
	b64 := base64.StdEncoding.EncodeToString
	jsonOf := func(s string, html bool) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if err := enc.Encode(map[string]string{"key": s}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	// masked is what a text of n lines, each prefix and a value's piece,
	// becomes.
	masked := func(prefix, text string) string {
		return strings.Repeat(prefix+MaskToken+"\n", strings.Count(text, "\n"))
	}
	wrapped76 := wrap(b64([]byte(v+"\n")), 76)
	wrapped64 := wrap(b64([]byte(v)), 64)
	for _, tc := range []struct{ name, in, want string }{
		{"base64 -w0", "b64: " + b64([]byte(v)) + "\n", "b64: ***\n"},
		{"echo | base64 -w0", "b64: " + b64([]byte(v+"\n")) + "\n", "b64: ***\n"},
		{"echo | base64, indented", prefixLines("    ", wrapped76), masked("    ", wrapped76)},
		{"openssl base64, prefixed", prefixLines("green | ", wrapped64), masked("green | ", wrapped64)},
		{"json", jsonOf(v, false), `{"key":"***"}` + "\n"},
		{"json with a trailing newline", jsonOf(v+"\n", false), `{"key":"***\n"}` + "\n"},
		{"dotenv", string(FormatDotenv(map[string]string{"PEM": v})), "PEM=\"***\"\n"},
	} {
		if strings.Count(tc.want, "\n") < 1 || strings.Count(wrapped76, "\n") < 3 {
			t.Fatalf("%s: bad table entry", tc.name)
		}
		if got := Mask(tc.in, values); got != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}

	// At any offset in an encoded stream, only the characters that
	// also depend on the bytes around the value are left.
	for _, prefix := range []string{"", "K", "K=", "KEY="} {
		enc := b64([]byte(prefix + v + "\n"))
		got := Mask(enc, values)
		before, after, ok := strings.Cut(got, MaskToken)
		if !ok || strings.Contains(after, MaskToken) || len(before) > 4*((len(prefix)+2)/3) || len(after) > 4 {
			t.Errorf("base64 of %q+value+newline: %q", prefix, got)
		}
	}

	// JSON and dotenv escapes of other characters.
	odd := "pa\"ss\\word<&>$\t\x01x"
	for _, in := range []string{jsonOf(odd, false), jsonOf(odd, true), string(FormatDotenv(map[string]string{"K": odd}))} {
		if got := Mask(in, []string{odd}); strings.Contains(got, "ss") || !strings.Contains(got, MaskToken) {
			t.Errorf("escaped %q: %q", in, got)
		}
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
			// Nor, once the input is indented line by line, a line of a
			// value of MinFragmentLen bytes or more.
			indented := Mask(prefixLines("  ", in), values)
			for _, line := range strings.Split(v, "\n") {
				line = strings.TrimSpace(line)
				if len(v) >= MinMaskLen && len(line) >= MinFragmentLen && !strings.Contains(line, "*") && strings.Contains(indented, line) {
					t.Fatalf("indented output still contains line %s of a value", fp(line))
				}
			}
		}
	})
}

// BenchmarkMaskWriter: ordinary build output through the masker of a
// site with twenty secrets and a PEM key (about 140 forms to look for).
func BenchmarkMaskWriter(b *testing.B) {
	var values []string
	for i := range 20 {
		values = append(values, "secret-value-number-"+strings.Repeat("x", i)+"-end")
	}
	values = append(values, testPEM)
	chunk := []byte(strings.Repeat("npm WARN deprecated some-package@1.2.3: this is ordinary build output\n", 100))
	mw := NewMaskWriter(io.Discard, values)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if _, err := mw.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}
