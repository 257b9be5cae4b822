package command

import (
	"flag"
	"reflect"
	"testing"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		args []string
		pos  []string
		data string
	}{
		{[]string{"hello", "--data", "d"}, []string{"hello"}, "d"},
		{[]string{"--data", "d", "hello"}, []string{"hello"}, "d"},
		{[]string{"a", "--data=d", "b"}, []string{"a", "b"}, "d"},
		{[]string{"--", "-x"}, []string{"-x"}, ""},
		{[]string{"a", "--", "--data", "x"}, []string{"a", "--data", "x"}, ""},
		{nil, nil, ""},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		data := fs.String("data", "", "")
		pos, err := ParseFlags(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *data != tc.data {
			t.Errorf("ParseFlags(%q) = %q, data=%q, %v; want %q, data=%q", tc.args, pos, *data, err, tc.pos, tc.data)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if _, err := ParseFlags(fs, []string{"a", "--nope"}); err == nil {
		t.Error("an unknown flag was accepted")
	}
}
