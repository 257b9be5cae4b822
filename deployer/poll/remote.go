package poll

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
	xssh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
)

func init() {
	// Like the git fetch below (ssh -F /dev/null), the ref listing does
	// not read the service user's ~/.ssh/config: a site's settings alone
	// say where and how to connect.
	gitssh.DefaultSSHConfig = nil
}

// errNoBranch is a remote that answers but lacks the branch (not pushed
// yet, or a typo). It is reported like an error but does not back off.
var errNoBranch = errors.New("branch not on the remote")

// creds are what one poll needs to reach a site's remote.
type creds struct {
	proto string // go-git's endpoint protocol: file, ssh, https, http, git
	user  string // ssh user, or https basic-auth user
	token string // https token from TokenFunc, never logged
}

func (p *Poller) creds(s deployer.Site) (creds, error) {
	ep, err := transport.NewEndpoint(s.Poll)
	if err != nil {
		return creds{}, fmt.Errorf("poll URL: %w", err)
	}
	c := creds{proto: ep.Protocol, user: ep.User}
	switch c.proto {
	case "ssh":
		if s.PollSSHKey == "" || s.PollKnownHosts == "" {
			return c, errors.New("an ssh poll URL needs poll_ssh_key and poll_known_hosts (site add --poll-ssh-key KEY --poll-known-hosts FILE)")
		}
		if c.user == "" {
			// What ssh itself would use without user@ in the URL.
			if u, err := user.Current(); err == nil {
				c.user = u.Username
			}
		}
	case "https":
		if p.TokenFunc != nil {
			tok, err := p.TokenFunc(s.Name)
			if err != nil {
				return c, fmt.Errorf("get https token: %w", err)
			}
			c.token = tok
			if c.user == "" {
				c.user = "x-access-token" // any non-empty name works with GitHub, Gitea, GitLab tokens
			}
		}
	}
	return c, nil
}

// listAuth is go-git's credentials for a ref listing.
func listAuth(s deployer.Site, c creds) (transport.AuthMethod, error) {
	switch c.proto {
	case "ssh":
		keys, err := gitssh.NewPublicKeysFromFile(c.user, s.PollSSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("read deploy key: %w", err)
		}
		if _, err := os.Stat(s.PollKnownHosts); err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		db, err := gitssh.NewKnownHostsDb(s.PollKnownHosts)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		ep, _ := transport.NewEndpoint(s.Poll)
		port := ep.Port
		if port <= 0 {
			port = gitssh.DefaultPort
		}
		keys.HostKeyCallback = db.HostKeyCallback()
		// Ask for the host key types known_hosts has for this host, so
		// that a server with several keys shows one we can check.
		keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
		return sshAuth{keys}, nil
	case "https":
		if c.token != "" {
			return &githttp.BasicAuth{Username: c.user, Password: c.token}, nil
		}
	}
	return nil, nil
}

// sshAuth bounds the ssh connect, which go-git does not tie to the
// context.
type sshAuth struct{ *gitssh.PublicKeys }

func (a sshAuth) ClientConfig() (*xssh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err == nil {
		cfg.Timeout = listTimeout
	}
	return cfg, err
}

// remoteTip asks the remote for its refs only (no objects) and returns
// the commit of the site's branch.
func (p *Poller) remoteTip(ctx context.Context, s deployer.Site, c creds) (string, error) {
	auth, err := listAuth(s, c)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.Poll}})
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return "", fmt.Errorf("%w: %s (the remote is empty)", errNoBranch, s.Branch)
	}
	if err != nil {
		return "", fmt.Errorf("list remote refs: %w", err)
	}
	want := plumbing.NewBranchReferenceName(s.Branch)
	for _, r := range refs {
		if r.Name() == want && r.Type() == plumbing.HashReference {
			return r.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("%w: %s", errNoBranch, s.Branch)
}

// fetch brings the one branch into the site's bare repo with the real
// git: git --git-dir REPO fetch --no-tags --quiet -- URL +refs/heads/B:refs/heads/B
// (it runs no hooks, so the post-receive hook does not deploy it too).
func (p *Poller) fetch(ctx context.Context, s deployer.Site, c creds) error {
	p.fetches.Add(1)
	if err := deployer.EnsureRepo(p.data, s.Name, ""); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	ref := s.Ref()
	cmd := exec.CommandContext(ctx, "git", "--git-dir", p.data.Repo(s.Name),
		"-c", "fetch.fsckObjects=true", // as receive.fsckObjects for pushes
		"fetch", "--no-tags", "--no-write-fetch-head", "--quiet", "--", s.Poll, "+"+ref+":"+ref)
	cmd.Env = fetchEnv(s, c)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("git fetch: %w", ctx.Err())
	}
	msg := strings.TrimSpace(stderr.String())
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:] // git's last line is its "fatal:" verdict
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("git fetch: %s", msg)
}

// fetchEnv is git fetch's environment: the server's, less any GIT_*
// variables, with no prompts, the usual transports only, and the site's
// credentials.
func fetchEnv(s deployer.Site, c creds) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_ALLOW_PROTOCOL=file:git:http:https:ssh")
	switch c.proto {
	case "ssh":
		env = append(env, "GIT_SSH_COMMAND="+sshCommand(s))
	case "https":
		if c.token != "" {
			// In the environment, unlike -c on the command line, the
			// token is not visible to other users in ps.
			basic := base64.StdEncoding.EncodeToString([]byte(c.user + ":" + c.token))
			env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
				"GIT_CONFIG_VALUE_0=Authorization: Basic "+basic)
		}
	}
	return env
}

// sshCommand is GIT_SSH_COMMAND for a site's deploy key and known_hosts:
// nothing from the service user's ssh config, strict host key checking.
func sshCommand(s deployer.Site) string {
	q := deployer.ShellQuote
	return strings.Join([]string{
		"ssh", "-i", q(s.PollSSHKey), "-o", "IdentitiesOnly=yes",
		"-o", q("UserKnownHostsFile=" + s.PollKnownHosts), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=" + strconv.Itoa(int(listTimeout/time.Second)), "-F", "/dev/null",
	}, " ")
}

// redactURL hides a password in a URL's user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); !ok {
		return raw
	}
	return u.Redacted()
}

// scrub removes secrets from an error message before it is logged or
// stored: a password in the poll URL and the https token.
func scrub(s deployer.Site, c creds, msg string) string {
	if r := redactURL(s.Poll); r != s.Poll {
		msg = strings.ReplaceAll(msg, s.Poll, r)
		if u, err := url.Parse(s.Poll); err == nil {
			if pw, _ := u.User.Password(); pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
	}
	if c.token != "" {
		msg = strings.ReplaceAll(msg, c.token, "xxxxx")
	}
	return msg
}

// CheckSite reports what would stop a site's poll URL from working (an
// unparsable URL, an ssh URL without its key or known_hosts file), so that
// site add and site set can refuse it up front instead of the poller
// failing later.
func CheckSite(s deployer.Site) error {
	if s.Poll == "" {
		return nil
	}
	c, err := (&Poller{}).creds(s)
	if err != nil {
		return err
	}
	if c.proto == "ssh" {
		for _, f := range []string{s.PollSSHKey, s.PollKnownHosts} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("poll: %w", err)
			}
		}
	}
	return nil
}
