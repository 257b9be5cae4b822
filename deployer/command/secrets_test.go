package command

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"secrets set web API_KEY hunter2hunter2", "secrets set web API_KEY ***"},
		{"secrets set API_KEY hunter2hunter2", "secrets set *** ***"},
		{"secrets set web API_KEY", "secrets set web API_KEY"},
		{"secrets set web API_KEY a b c", "secrets set web API_KEY *** *** ***"},
		{"secrets set web lowercase-value-x", "secrets set web ***"},
		{"secrets list web", "secrets list web"},
		{"status web", "status web"},
	}
	for _, tc := range cases {
		if got := redact(strings.Fields(tc.in)); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := RedactLine("secrets set web K sup3r$ecret"); strings.Contains(got, "sup3r") || !strings.HasPrefix(got, "secrets") {
		t.Errorf("RedactLine kept a value: %q", got)
	}
	if got := RedactLine("hunter2;rm -rf /"); strings.Contains(got, "hunter2") {
		t.Errorf("RedactLine kept an unknown first word: %q", got)
	}
}
