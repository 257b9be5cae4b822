package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/eeveon/eeveon/integration
BenchmarkPush/small/openssh-git-2         	       3	 292465654 ns/op	       200.0 med-ms/push
BenchmarkPush/small/embedded-live-2       	       3	 116941884 ns/op	       100.0 med-ms/push	        15.50 peak-RSS-MB
BenchmarkPush/small/openssh-git-2         	       3	 292465654 ns/op	       400.0 med-ms/push
BenchmarkPush/small/openssh-git-2         	       3	 292465654 ns/op	       250.0 med-ms/push
--- SKIP: BenchmarkSSHRoundTrip/openssh-true
    bench_test.go:681: OpenSSH sshd is not installed
BenchmarkSSHRoundTrip/embedded-status-2   	       3	 646163364 ns/op	        52.11 med-ms/call
BenchmarkPollRound/poller-2         	       3	  60497104 ns/op	        60.73 child-cpu-ms/round	        78.74 cpu-ms/round
BenchmarkPollRound/git-ls-remote-2  	       3	 173862426 ns/op	       166.6 child-cpu-ms/round	       182.4 cpu-ms/round
BenchmarkPlain-2  	       3	 1000 ns/op
PASS
ok  	github.com/eeveon/eeveon/integration	17.516s
`

func TestTable(t *testing.T) {
	var echo, out bytes.Buffer
	res, err := read(strings.NewReader(sample), &echo)
	if err != nil {
		t.Fatal(err)
	}
	if echo.String() != sample {
		t.Errorf("the input was not passed through unchanged:\n%s", echo.String())
	}
	if res.failed {
		t.Error("a passing run counted as failed")
	}
	write(&out, res, []string{"openssh-git", "git-ls-remote"})
	fields := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 {
			fields[f[0]+" "+f[1]] = f[2:]
		}
	}
	for _, c := range []struct{ row, want string }{
		{"Push/small/openssh-git med-ms/push", "250 (baseline) -"}, // median of 200, 400, 250
		{"Push/small/embedded-live med-ms/push", "100 openssh-git 0.40x"},
		{"Push/small/embedded-live peak-RSS-MB", "15.5 - -"},
		{"SSHRoundTrip/embedded-status med-ms/call", "52.1 - -"},
		{"PollRound/poller cpu-ms/round", "78.7 git-ls-remote 0.43x"},
		{"PollRound/git-ls-remote child-cpu-ms/round", "167 (baseline) -"},
		{"Plain ns/op", "1000 - -"},
	} {
		if got := strings.Join(fields[c.row], " "); got != c.want {
			t.Errorf("row %q = %q, want %q\n%s", c.row, got, c.want, out.String())
		}
	}
	if _, ok := fields["Push/small/embedded-live ns/op"]; ok {
		t.Error("ns/op shown for a benchmark with its own metrics")
	}
	if !strings.Contains(out.String(), "skipped SSHRoundTrip/openssh-true: OpenSSH sshd is not installed\n") {
		t.Errorf("the skip and its reason are not listed:\n%s", out.String())
	}
}

func TestFailure(t *testing.T) {
	for _, in := range []string{
		"--- FAIL: BenchmarkPush/small/embedded-live\nFAIL\n",
		"panic: boom\n",
		"FAIL\tgithub.com/eeveon/eeveon/integration [build failed]\n",
	} {
		res, err := read(strings.NewReader(in), &bytes.Buffer{})
		if err != nil || !res.failed {
			t.Errorf("%q: failed = %v, err %v", in, res.failed, err)
		}
	}
}
