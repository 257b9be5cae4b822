package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The site's branch in its repository follows git while a push is under
// way, and the outcome of the deploy afterwards:
//
//   - a push moves it from the commit the pusher saw to the pushed one as
//     it arrives (acceptPush), as git would: a push made against a branch
//     that moved since is refused, and two pushes never both land;
//   - when a deploy goes live the branch points at its commit, so after a
//     rollback or a deploy --ref the branch is the live commit too;
//   - when a push's deploy fails, is interrupted, rejected, expires or is
//     superseded by a deploy that is not a push, the branch goes back to
//     the live commit (or away, if nothing is live), so that pushing the
//     same commit again deploys it again;
//   - a deploy going live leaves alone a branch that a newer push, still
//     waiting for the site, has moved on.
//
// Each move is a compare-and-swap on the value just read, so none of them
// ever undoes a newer push. A poll site's branch mirrors its remote and is
// left alone.

// ErrStalePush is returned for a push made against a branch that has
// moved since, or refused by receive.denyNonFastForwards.
var ErrStalePush = errors.New("push refused")

// acceptPush moves the site's branch from old (all zeros: it did not
// exist) to commit. git leaves this, and its checks, to the proc-receive
// hook.
func (e *Engine) acceptPush(ctx context.Context, site Site, old, commit string) error {
	repo := e.data.Repo(site.Name)
	if t, _ := git(ctx, nil, "--git-dir", repo, "cat-file", "-t", commit); t != "commit" {
		return fmt.Errorf("%w: %s is a %s, not a commit", ErrStalePush, ShortCommit(commit), firstNonEmpty(t, "missing object"))
	}
	if strings.Trim(old, "0") != "" && old != commit {
		if _, err := git(ctx, nil, "--git-dir", repo, "merge-base", "--is-ancestor", old, commit); err != nil {
			if v, _ := git(ctx, nil, "--git-dir", repo, "config", "--bool", "receive.denyNonFastForwards"); v == "true" {
				return fmt.Errorf("%w: %s refuses non-fast-forward pushes (receive.denyNonFastForwards)", ErrStalePush, site.Name)
			}
		}
	}
	if _, err := git(ctx, nil, "--git-dir", repo, "update-ref", "-m", "eeveon: push", site.Ref(), commit, old); err != nil {
		tip, _ := e.branchTip(site)
		return fmt.Errorf("%w: %s moved to %s since this push began; fetch and push again", ErrStalePush, site.Branch, firstNonEmpty(ShortCommit(tip), "nothing"))
	}
	return nil
}

// branchTip is the commit the site's branch points at ("" for none).
func (e *Engine) branchTip(site Site) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return git(ctx, nil, "--git-dir", e.data.Repo(site.Name), "rev-parse", "--verify", "--quiet", site.Ref())
}

// setBranch moves the site's branch from what it was (from; "" for none)
// to commit ("" removes it), unless it moved meanwhile.
func (e *Engine) setBranch(site Site, from, commit, why string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--git-dir", e.data.Repo(site.Name), "update-ref", "-m", "eeveon: " + why}
	if commit == "" {
		args = append(args, "-d", site.Ref(), from)
	} else {
		args = append(args, site.Ref(), commit, firstNonEmpty(from, strings.Repeat("0", 40)))
	}
	_, err := git(ctx, nil, args...)
	return err
}

// settleBranch moves the branch after j ended in state (see above).
func (e *Engine) settleBranch(j *job, state State) {
	site, r := j.site, j.r
	if site.Poll != "" || r.Commit == "" {
		return
	}
	tip, _ := e.branchTip(site)
	to, why := "", ""
	switch state {
	case StateLive:
		if e.pushes.waitingAfter(site.Name, j.pushSeq) {
			return // a newer push moved it on and goes live next
		}
		to, why = r.Commit, "deploy "+r.ID+" live"
	case StateFailed, StateInterrupted, StateRejected, StateExpired, StateSuperseded:
		if r.Trigger != "push" || tip != r.Commit {
			return // not moved by a push, or a newer push moved it on
		}
		if live, ok := LiveRelease(site); ok {
			to = live.Commit
		}
		why = "deploy " + r.ID + " " + string(state) + ", back to the live commit"
	default:
		return
	}
	if tip == to {
		return
	}
	if err := e.setBranch(site, tip, to, why); err != nil {
		j.l.Warn("move the branch", "to", firstNonEmpty(ShortCommit(to), "nothing"), "err", err)
	}
}

// reconcileBranch, at start, points the branch of a site that has been
// deployed at what waits for approval, else at the live commit: a crash
// may have come between a deploy's outcome and the branch's move.
func (e *Engine) reconcileBranch(site Site) {
	if site.Poll != "" {
		return
	}
	want := ""
	if p, ok := e.Pending(site.Name); ok {
		want = p.Commit
	} else if live, ok := LiveRelease(site); ok {
		want = live.Commit
	}
	tip, _ := e.branchTip(site)
	if want == "" || tip == want {
		return
	}
	if err := e.setBranch(site, tip, want, "reconciled at start"); err != nil {
		e.log.Warn("reconcile branch", "site", site.Name, "err", err)
		return
	}
	e.log.Info("branch moved to the live commit", "site", site.Name, "branch", site.Branch, "from", ShortCommit(tip), "to", ShortCommit(want))
}

// liveRefPrefix holds one ref per deploy that went live, so that every
// release rollback --to may ask for stays in the repository, though force
// pushes and rollbacks leave it on no branch (git gc would prune it).
const liveRefPrefix = "refs/eeveon/live/"

// keepRelease records r, which went live, under liveRefPrefix.
func (e *Engine) keepRelease(j *job) {
	r := j.r
	if r.Commit == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := git(ctx, nil, "--git-dir", e.data.Repo(j.site.Name), "update-ref", "-m", "eeveon: deploy "+r.ID+" live", liveRefPrefix+r.ID, r.Commit); err != nil {
		j.l.Warn("keep the release for rollback --to", "err", err)
	}
}
