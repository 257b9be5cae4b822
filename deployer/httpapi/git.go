package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

// commitRe is a full commit id (SHA-1 or SHA-256): only such ids, never
// anything git could read as an option, reach the command line.
var commitRe = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// maxGitOutput bounds what the confirmation page shows of git's output.
const maxGitOutput = 32 * 1024

// commitInfo is what the confirmation page tells about a commit.
type commitInfo struct {
	Author   string
	Subject  string
	DiffStat string
	// Against is the live commit the diffstat compares with; "" when
	// nothing is live and the stat is of the commit itself.
	Against string
}

// describe reads author, subject and the diffstat against live (if any)
// from the site's bare repo. Failures leave fields empty: the page still
// shows the site, deploy and commit, which come from the deploy record.
func describe(ctx context.Context, repo, commit, live string) (commitInfo, error) {
	var info commitInfo
	if !commitRe.MatchString(commit) {
		return info, fmt.Errorf("not a commit id: %q", commit)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := gitOut(ctx, repo, "log", "-1", "--no-color", "--no-show-signature", "--format=%an <%ae>%x00%s", commit, "--")
	if err != nil {
		return info, err
	}
	info.Author, info.Subject, _ = strings.Cut(strings.TrimRight(out, "\n"), "\x00")
	if commitRe.MatchString(live) && live != commit {
		info.Against = live
		out, err = gitOut(ctx, repo, "diff", "--no-color", "--no-ext-diff", "--stat=100", live, commit, "--")
	} else {
		out, err = gitOut(ctx, repo, "show", "--no-color", "--no-ext-diff", "--stat=100", "--format=", commit, "--")
	}
	if err != nil {
		return info, err
	}
	info.DiffStat = strings.Trim(out, "\n")
	return info, nil
}

func gitOut(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir", repo}, args...)...)
	cmd.Env = append(os.Environ(), deployer.NoReplaceObjects)
	var stdout limited
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	s := stdout.String()
	if stdout.cut {
		s += "\n…"
	}
	return s, nil
}

// limited keeps the first maxGitOutput bytes written to it.
type limited struct {
	bytes.Buffer
	cut bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := maxGitOutput - l.Len(); len(p) > room {
		l.cut = true
		l.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return l.Buffer.Write(p)
}
