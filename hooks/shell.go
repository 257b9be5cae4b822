package hooks

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/keys"
)

// Shell is `eeveon shell`, the OpenSSH forced command. sshd runs it for a
// key whose authorized_keys line names the identity (user, role, sites);
// the command the client asked for is in SSH_ORIGINAL_COMMAND. It accepts
// exactly the embedded server's command surface: the same parser, the same
// permission table and audit log. git pushes and fetches run the real git
// here (so a push is stored even while the daemon is down); every other
// command is sent to the daemon, which runs it for the identity.
func Shell(ctx context.Context, d deployer.Data, id keys.Identity, original string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		return 1
	}
	logger := log.NewWithOptions(stderr, log.Options{Level: log.ErrorLevel, Prefix: "eeveon"})
	rt := &command.Router{Engine: deployer.NewEngine(d, cfg, logger), Audit: command.NewAudit(d.AuditLog()), Log: logger}
	if strings.TrimSpace(original) == "" {
		rt.Run(ctx, id, []string{"help"}, command.IO{Stdout: stderr, Stderr: stderr})
		fmt.Fprintln(stderr, "eeveon: no shell here; run one of the commands above, e.g. ssh HOST status")
		rt.AuditEvent(id, "shell", "", "denied")
		return 1
	}
	args, err := command.Parse(original, cfg.SSH.MaxCommandLen)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		rt.AuditEvent(id, command.RedactLine(original), "", "error: "+err.Error())
		return 2
	}
	if verb, path, ok := command.GitCommand(args); ok {
		site, err := rt.AuthorizeGit(id, verb, path)
		if err != nil {
			fmt.Fprintf(stderr, "eeveon: %v\n", err)
			return 1
		}
		return rt.RunGit(ctx, id, verb, site, os.Environ(), stdin, stdout, stderr)
	}
	req := control.Request{Args: args, Claim: &id}
	if command.NeedsStdin(args) {
		if req.Input, err = io.ReadAll(io.LimitReader(stdin, 1<<20)); err != nil {
			fmt.Fprintf(stderr, "eeveon: read input: %v\n", err)
			return 1
		}
	}
	code, err := control.Call(d.Socket(), req, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		return 1
	}
	return code
}

// RemoteFromEnv is the client address sshd puts in SSH_CONNECTION.
func RemoteFromEnv() string {
	f := strings.Fields(os.Getenv("SSH_CONNECTION"))
	if len(f) < 2 {
		return "openssh"
	}
	return net.JoinHostPort(f[0], f[1])
}
