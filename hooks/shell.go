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
	rt := &command.Router{Engine: command.Offline(d, cfg), Audit: command.NewAudit(d.AuditLog()), Log: logger}
	fe := command.Session{Router: rt, MaxLen: cfg.SSH.MaxCommandLen, Env: os.Environ(), Run: daemon(d.Socket()).run}
	return fe.Handle(ctx, id, original, command.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// daemon is the daemon's control socket.
type daemon string

// run sends a command line to the daemon, to run for id, with its
// standard input when it reads one.
func (sock daemon) run(_ context.Context, id keys.Identity, args []string, stdio command.IO) int {
	req := control.Request{Args: args, Claim: &id}
	if command.NeedsStdin(args) {
		var err error
		if req.Input, err = io.ReadAll(io.LimitReader(stdio.Stdin, 1<<20)); err != nil {
			fmt.Fprintf(stdio.Stderr, "eeveon: read input: %v\n", err)
			return 1
		}
	}
	code, err := control.Call(string(sock), req, stdio.Stdout, stdio.Stderr)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "eeveon: %v\n", err)
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
