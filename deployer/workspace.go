package deployer

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/eeveon/eeveon/deployer/internal/cgroup"
	"github.com/eeveon/eeveon/deployer/secrets"
)

// workspace is where a deploy's commit becomes files and where the site's
// commands run: the checkout into a colour (or in place) and the
// environment and Unix user of the build, health, release and app
// commands (run_as). Every kind of target checks out and runs through it,
// so what confines site code lives here, in one place.
type workspace struct {
	data    Data
	hard    context.Context // cancelled when a shutdown's grace period ends
	runAs   *runAs
	cgroups *cgroup.Manager // nil: commands are not contained beyond their process group
}

// checkoutInPlace materialises the commit into current itself, a real
// directory.
func (w *workspace) checkoutInPlace(ctx context.Context, site Site, r *Record) (string, error) {
	dir := filepath.Join(site.Path, currentLink)
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		// Switching from blue-green: current is a symlink. Replace it
		// with a real directory holding a copy of the commit.
		if err := os.Remove(dir); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.MkdirAll(w.data.StateDir(), 0o700); err != nil {
		return "", err
	}
	idx := colourIndex(w.data, site.Name, colorInPlace)
	_, err := git(ctx, []string{"GIT_INDEX_FILE=" + idx}, "--git-dir", w.data.Repo(site.Name), "--work-tree", dir, "read-tree", "-u", "--reset", r.Commit)
	return dir, err
}

// checkoutColour materialises the commit into the inactive colour dir:
// exactly the commit, nothing stale, no .git.
func (w *workspace) checkoutColour(ctx context.Context, site Site, r *Record) (string, error) {
	repo := w.data.Repo(site.Name)
	dir := filepath.Join(site.Path, r.Color)
	if LiveColor(site.Path) == r.Color {
		return "", fmt.Errorf("refusing to overwrite the live colour %s", r.Color)
	}
	if err := os.MkdirAll(w.data.StateDir(), 0o700); err != nil {
		return "", err
	}
	// The colour is this deploy's from now on, whatever happens next: a
	// deploy that waited for approval in it can no longer be approved.
	if err := WriteFileAtomic(colourOwner(w.data, site.Name, r.Color), []byte(r.ID+"\n"), 0o600); err != nil {
		return "", err
	}
	// Each colour keeps the index of what was checked out into it, so the
	// next checkout there writes only what changed: read-tree updates the
	// files that differ between the two commits, checkout-index restores
	// tracked files a build modified (it skips those whose stat matches),
	// and clean removes everything else (build output, stray files), so the
	// colour holds exactly the commit. Without a usable index, start afresh.
	idx := colourIndex(w.data, site.Name, r.Color)
	env := []string{"GIT_INDEX_FILE=" + idx}
	wt := []string{"--git-dir", repo, "--work-tree", dir}
	// A git killed mid-checkout (shutdown, kill -9) leaves its lock; no
	// other git can be at work here (we hold the site lock).
	_ = os.Remove(idx + ".lock")
	_, errIdx := os.Stat(idx)
	fi, errDir := os.Lstat(dir)
	fresh := errIdx != nil || errDir != nil || !fi.IsDir()
	for {
		if fresh {
			_ = os.Remove(idx)
			if err := forceRemoveAll(dir); err != nil {
				return "", err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", err
			}
		}
		err := func() error {
			for _, args := range [][]string{
				{"read-tree", "-u", "--reset", r.Commit},
				{"checkout-index", "--all", "--force"},
				{"clean", "-ffdxq"},
			} {
				if _, err := git(ctx, env, append(wt, args...)...); err != nil {
					return err
				}
			}
			// git never lists .git entries, so clean leaves one a build
			// made: only a fresh checkout gets rid of it.
			if p := findDotGit(dir); p != "" {
				return fmt.Errorf("a .git left in the colour (%s)", p)
			}
			return nil
		}()
		switch {
		case err == nil:
			return dir, nil
		case !fresh && ctx.Err() == nil:
			fresh = true // a damaged index or tree: once more from nothing
		default:
			_ = os.Remove(idx)
			return "", err
		}
	}
}

// env is the environment of the build and health commands: the
// server's base variables, the site's secrets, and eeveon's own variables
// (which a secret cannot override). With secrets_file set, the secrets
// are also readable as a dotenv file at that path in dir: a symlink to
// /dev/fd/3, where the commands find a sealed in-memory copy, so no
// plaintext ever lands on disk.
func (w *workspace) env(j *job, dir string) (proc, error) {
	r := j.r
	pr := proc{cgroups: w.cgroups, scope: r.Site + "." + r.ID}
	vars := map[string]string{}
	if w.runAs != nil {
		if err := w.handOver(dir); err != nil {
			return pr, err
		}
		// The chown changed every file's ctime: refresh the colour's index
		// so that the next checkout there still writes only what changed.
		_, _ = git(w.hard, []string{"GIT_INDEX_FILE=" + colourIndex(w.data, r.Site, r.Color)},
			"--git-dir", w.data.Repo(r.Site), "--work-tree", dir, "update-index", "-q", "--refresh")
		pr.cred = &syscall.Credential{Uid: w.runAs.uid, Gid: w.runAs.gid, Groups: []uint32{}}
		vars["HOME"], vars["USER"], vars["LOGNAME"] = w.runAs.home, w.runAs.name, w.runAs.name
	}
	for k, v := range j.secrets {
		vars[k] = v
	}
	for k, v := range map[string]string{
		"EEVEON_SITE": r.Site, "EEVEON_COMMIT": r.Commit, "EEVEON_COLOR": r.Color,
		"EEVEON_DEPLOY_ID": r.ID, "EEVEON_REF": r.Ref, "EEVEON_PATH": dir,
	} {
		vars[k] = v
	}
	if j.site.SecretsFile == "" {
		pr.env = commandEnv(vars)
		return pr, nil
	}
	if j.secretFile == nil {
		f, err := secrets.MemFile(secrets.FormatDotenv(j.secrets))
		if err != nil {
			return pr, err
		}
		j.secretFile = f
	}
	// The commit decides what is in dir, symlinks included: every step
	// goes through an os.Root so that none can lead outside it.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return pr, err
	}
	defer root.Close()
	link := j.site.SecretsFile
	if err := root.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return pr, fmt.Errorf("secrets_file %s: %w", link, err)
	}
	if fi, err := root.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		j.p.step("warning: the commit has a file at %s; it is replaced by the secrets file", link)
	}
	if err := root.RemoveAll(link); err != nil {
		return pr, fmt.Errorf("secrets_file %s: %w", link, err)
	}
	if err := root.Symlink("/dev/fd/3", link); err != nil {
		return pr, fmt.Errorf("secrets_file %s: %w", link, err)
	}
	vars["EEVEON_SECRETS_FILE"] = "/dev/fd/3"
	pr.env, pr.files = commandEnv(vars), []*os.File{j.secretFile}
	return pr, nil
}

// colourOwner names the deploy that last checked out into a colour.
func colourOwner(d Data, site, color string) string {
	return filepath.Join(d.StateDir(), site+"."+color+".deploy")
}

// holds reports whether colour still holds what deploy id built there
// (true too when no deploy is on file, as before this was recorded).
func (w *workspace) holds(site, color, id string) bool {
	b, err := os.ReadFile(colourOwner(w.data, site, color))
	return err != nil || strings.TrimSpace(string(b)) == id
}

// colourIndex is the git index of what was last checked out into a colour.
func colourIndex(d Data, site, color string) string {
	return filepath.Join(d.StateDir(), site+"."+color+".index")
}

// findDotGit returns the first .git entry under dir, or "".
func findDotGit(dir string) string {
	found := ""
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir && d.Name() == ".git" {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// forceRemoveAll removes dir even where a build left read-only
// directories (a Go module cache, say), which os.RemoveAll cannot empty.
func forceRemoveAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	// The tree may belong to the site's user, who may swap a directory for
	// a link meanwhile: chmod by descriptor, never by a path (a chmod
	// through a link would change what it points at, as root).
	_ = openDirs(dir)
	return os.RemoveAll(dir)
}

// openDirs makes every directory of the tree at dir writable (0755), by
// descriptor.
func openDirs(dir string) error {
	return walkNoFollow(dir, func(fd int) error { return unix.Fchmod(fd, 0o755) }, nil)
}
