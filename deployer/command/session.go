package command

import (
	"context"
	"fmt"
	"strings"

	"github.com/eeveon/eeveon/deployer/internal/gitexec"
	"github.com/eeveon/eeveon/keys"
)

// Session is the front end of an SSH session, the same for the embedded
// server and for eeveon shell (the OpenSSH forced command): it parses the
// command line the client sent, answers a blank one, audits what it
// refuses, runs git's transport commands in this process (so that a push
// is stored even while the daemon is down) and hands every other command
// to Run.
type Session struct {
	Router *Router
	// MaxLen bounds the command line (ssh.max_command_len).
	MaxLen int
	// Env is the client's environment; git gets only GIT_PROTOCOL from it.
	Env []string
	// Run runs a command of the surface for the identity: the embedded
	// server calls Router.Run, eeveon shell sends the command line to the
	// daemon over the control socket.
	Run func(ctx context.Context, id keys.Identity, args []string, stdio IO) int
}

// Handle runs the session's command line for id and returns its exit
// status.
func (s Session) Handle(ctx context.Context, id keys.Identity, line string, stdio IO) int {
	rt := s.Router
	if strings.TrimSpace(line) == "" {
		// No command (a shell request) or only blanks: there is no shell,
		// only the command surface.
		rt.Run(ctx, id, []string{"help"}, IO{Stdout: stdio.Stderr, Stderr: stdio.Stderr})
		fmt.Fprintln(stdio.Stderr, "eeveon: no shell here; run one of the commands above, e.g. ssh HOST status")
		rt.audit(id, "shell", "", "denied")
		return 1
	}
	args, err := Parse(line, s.MaxLen)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "eeveon: %v\n", err)
		rt.audit(id, RedactLine(line), "", "error: "+err.Error())
		return 2
	}
	if verb, path, ok := GitCommand(args); ok {
		return s.git(ctx, id, verb, path, stdio)
	}
	return s.Run(ctx, id, args, stdio)
}

// git runs a push or fetch the identity may make and audits how it ended.
func (s Session) git(ctx context.Context, id keys.Identity, verb keys.Verb, path string, stdio IO) int {
	rt := s.Router
	site, err := rt.authorizeGit(id, verb, path)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "eeveon: %v\n", err)
		return 1
	}
	res, err := gitexec.Run(ctx, gitexec.Params{
		Verb: verb, Repo: rt.Engine.Data().Repo(site), Pusher: id, ClientEnv: s.Env,
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr,
		MaxPushSize: rt.Engine.Config().Deploy.MaxPushSize,
	})
	if err != nil {
		if rt.Log != nil {
			rt.Log.Error("start git", "err", err)
		}
		fmt.Fprintln(stdio.Stderr, "eeveon: internal error starting git (see the server log)")
		return 1
	}
	rt.audit(id, string(verb), site, res.Outcome)
	return res.Code
}
