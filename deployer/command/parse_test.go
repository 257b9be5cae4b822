package command

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	ok := []struct {
		in   string
		want []string
	}{
		{"status", []string{"status"}},
		{"  status   hello ", []string{"status", "hello"}},
		{"git-receive-pack '/hello.git'", []string{"git-receive-pack", "/hello.git"}},
		{`history "hello" -n 5`, []string{"history", "hello", "-n", "5"}},
		{`x "a \"b\" \\ c"`, []string{"x", `a "b" \ c`}},
		{`x 'semi;colon $HOME'`, []string{"x", "semi;colon $HOME"}},
		{`x ''`, []string{"x", ""}},
		{"", nil},
	}
	for _, tc := range ok {
		got, err := Parse(tc.in, 100)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []string{
		"status; rm -rf /", "status && id", "status | cat", "status $(id)", "status `id`",
		"status > /tmp/x", "status 'unterminated", `status "unterminated`, "status\nid",
		"status hel*", "status {a,b}", "status \x00", `status a\ b`, "x 'a\nb'",
	}
	for _, in := range bad {
		if got, err := Parse(in, 100); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %q, %v; want a syntax error", in, got, err)
		}
	}
	if _, err := Parse("status aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 20); !errors.Is(err, ErrSyntax) {
		t.Errorf("an over-long command was accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"status hello", "git-receive-pack '/a.git'", `a "b\"c"`, "a;b", "'", "x 'y z'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := Parse(s, 4096)
		if err != nil {
			return
		}
		for _, w := range words {
			for _, c := range []byte(w) {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("Parse(%q) let a control character through: %q", s, words)
				}
			}
		}
	})
}
