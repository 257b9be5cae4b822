package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
)

const configTemplate = `# eeveon server configuration (TOML). Every setting is optional: the
# values shown commented out are the defaults. Unknown keys are refused.
# Sites live in sites.d/NAME.toml (manage them with: eeveon site add|rm).

# Address of the embedded SSH server. "eeveon serve --listen" overrides it.
# listen = "127.0.0.1:2222"

# Host (and port) users push to, used in the hints eeveon prints.
# Defaults to the listen address.
# public_host = "deploy.example.com:2222"

# Unix group whose members may run admin verbs (approve, rollback, ...)
# with the local CLI. root always may.
# admin_group = "eeveon-admin"

# Server log: stderr unless log_file is set (relative to the data dir);
# the file starts a new segment at log_max_size bytes.
# log_file = "eeveon.log"
# log_max_size = 10485760

[vacuum]
# interval = "24h"   # how often the server cleans up ("0s": never)
# keep = 100         # history lines kept per site (plus those a rollback needs); older ones go to .deploy_history.archive
# max_age = "720h"   # deploy logs and log segments older than this are removed

[deploy]
# run_as = "eeveon-build"    # run builds and health checks as this user (server runs as root);
#                            # it cannot read the data dir, so pushed code cannot become admin.
#                            # Sites then need a path outside the data dir.
# build_timeout = "10m"      # the build command is killed after this
# health_timeout = "60s"     # give up health checks after this long
# health_interval = "500ms"  # first wait between health checks (doubles, max 5s)
# health_try_timeout = "10s" # one health check try
# shutdown_timeout = "60s"   # on SIGTERM, wait this long for running deploys
# max_push_size = 268435456  # bytes a push over SSH may send (git receive.maxInputSize); 0: no bound
# max_log_size = 16777216   # bytes the commands of one deploy may write to its log; past it their output is dropped

[app]
# port_min = 20000           # app sites without ports of their own get two from this range
# port_max = 29999
# drain_timeout = "30s"      # after a switch, wait this long for requests on the old colour
# stop_grace = "10s"         # between SIGTERM and SIGKILL when an app is stopped

[ssh]
# max_sessions = 64                # concurrent SSH sessions
# idle_timeout = "10m"             # close connections idle this long
# max_command_length = 4096        # bytes in an SSH command line
# auth_failures_per_minute = 20    # failed logins per source address before refusing it

# [http] serves one-click approval links (off unless listen is set). A
# pending_approval notification of a [[notify]] block with an approver
# carries a signed link that works once, until the approval expires.
# GET shows the commit and its diffstat; only the button on that page
# approves. The signing key is http.secret in the data dir.
# [http]
# listen = "127.0.0.1:8080"                      # no host means 127.0.0.1
# public_url = "https://deploy.example.com"      # base of links; default http://<listen>

# Webhooks for deploy events, one [[notify]] block each. kind is
# "webhook" (generic JSON), "slack" or "discord". events filters:
# deploy_started, live, failed, pending_approval, approved, rejected,
# expired, rolled_back, superseded (empty = all). Delivery is in the
# background and never holds up a deploy.
# [[notify]]
# kind = "slack"
# url = "https://hooks.slack.com/services/..."   # a secret: keep this file 0600
# events = ["live", "failed", "pending_approval"]
# approver = "alice"     # approvals through this block's links are recorded as alice
# timeout = "5s"         # per try
# retries = 3            # more tries after a failure (waits 0.5s, 1s, 2s, ...)
`

// subdirs are the folders of a data dir.
var subdirs = []func(deployer.Data) string{
	deployer.Data.ReposDir, deployer.Data.SitesDir, deployer.Data.StateDir,
	deployer.Data.SitesRoot, deployer.Data.DeploysRoot,
}

// initData creates what is missing in the data dir and leaves what is
// there alone. It returns the host key's fingerprint.
func initData(d deployer.Data, out io.Writer) (string, error) {
	created := false
	if _, err := os.Stat(d.Dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	if created {
		fmt.Fprintf(out, "created data dir %s\n", d.Dir)
	} else if fi, err := os.Stat(d.Dir); err == nil && fi.Mode().Perm()&0o027 != 0 {
		fmt.Fprintf(out, "warning: data dir %s has mode %o; 0700 (or 0750 for the admin group) is expected (chmod 700 %s)\n", d.Dir, fi.Mode().Perm(), d.Dir)
	}
	for _, sub := range subdirs {
		if err := os.MkdirAll(sub(d), 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", sub(d), err)
		}
	}
	if _, err := os.Stat(d.ConfigFile()); errors.Is(err, os.ErrNotExist) {
		if err := deployer.WriteFileAtomic(d.ConfigFile(), []byte(configTemplate), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(out, "wrote %s\n", d.ConfigFile())
	}
	if _, err := os.Stat(d.AuthorizedKeys()); errors.Is(err, os.ErrNotExist) {
		if err := deployer.WriteFileAtomic(d.AuthorizedKeys(), []byte("# eeveon keys: add with eeveon keys add\n"), 0o600); err != nil {
			return "", err
		}
	}
	signer, err := ensureHostKey(d, out)
	if err != nil {
		return "", err
	}
	return gossh.FingerprintSHA256(signer.PublicKey()), nil
}

func ensureHostKey(d deployer.Data, out io.Writer) (gossh.Signer, error) {
	if b, err := os.ReadFile(d.HostKey()); err == nil {
		s, err := gossh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("parse host key %s: %w", d.HostKey(), err)
		}
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "eeveon host key")
	if err != nil {
		return nil, err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	if err := deployer.WriteFileAtomic(d.HostKey(), pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	if err := deployer.WriteFileAtomic(d.HostKey()+".pub", gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "generated host key %s\n", d.HostKey())
	return signer, nil
}

func runInit(args []string) int {
	fs, data := flagSet("init")
	if _, code := parse(fs, args, 0, 0, "init [--data DIR]"); code >= 0 {
		return code
	}
	d, err := deployer.NewData(*data)
	if err != nil {
		return fail(err)
	}
	fp, err := initData(d, os.Stdout)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("data dir %s is ready; host key %s\n", d.Dir, fp)
	return 0
}
