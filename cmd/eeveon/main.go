// Command eeveon is a push-to-deploy server: an embedded SSH server that
// takes git pushes and deploys them blue-green, and the CLI around it.
package main

import (
	"fmt"
	"os"
)

// commands maps each subcommand to its implementation. Each returns the
// process exit status.
var commands = map[string]func(args []string) int{
	"init":     runInit,
	"check":    runCheck,
	"serve":    runServe,
	"keys":     runKeys,
	"site":     runSite,
	"hook":     runHook,
	"hooks":    runHooks,
	"shell":    runShellCmd,
	"deploy":   runVerb("deploy"),
	"status":   runVerb("status"),
	"history":  runVerb("history"),
	"logs":     runVerb("logs"),
	"rollback": runVerb("rollback"),
	"approve":  runVerb("approve"),
	"reject":   runVerb("reject"),
	"secrets":  runSecrets,
	"vacuum":   runVacuum,
	"whoami":   runVerb("whoami"),
	"sites":    runVerb("sites"),
}

const usage = `eeveon: push-to-deploy server

usage: eeveon COMMAND [flags]

server
  init [--data DIR]                       create the data dir, config and host key
  serve [--data DIR] [--listen ADDR]      run the server (SSH on 127.0.0.1:2222 by default)
configuration (works without a running server)
  keys add --user NAME --role admin|deployer [--sites a,b] FILE|-
  keys list | keys rm USER|FINGERPRINT
  site add NAME [--branch main] [--path DIR] [--build CMD] [--health-cmd CMD]
                [--health-url URL] [--strategy blue-green|in-place]
  site list | site show NAME | site rm NAME
maintenance
  check [--json]                          verify tools, permissions, config, sites, ports, disk, clock
  vacuum [--keep N] [--max-age DUR] [--dry-run]   remove old logs, archive old history (the server also runs it daily)
operations (through the running server)
  deploy SITE [--ref REF] [--strategy blue-green|in-place]
  rollback SITE [--to DEPLOY_ID]          swap back to the previous colour (admin)
  approve SITE [DEPLOY_ID] | reject SITE [DEPLOY_ID]   decide a deploy waiting for approval (admin)
  secrets set SITE KEY [VALUE] | list SITE | rm SITE KEY | encrypt SITE FILE|- [--replace]
          | decrypt SITE | rotate          encrypted secrets (admin; VALUE from stdin if left out)
  status [SITE] | history SITE [-n N] | logs SITE [DEPLOY_ID] | logs SITE --app [-n N] | sites | whoami

Every command takes --data DIR (default $EEVEON_DATA, then ./eeveon-data).
`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "--help" || os.Args[1] == "-h" {
		fmt.Print(usage)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "eeveon: unknown command %q (see eeveon help)\n", os.Args[1])
		os.Exit(2)
	}
	os.Exit(run(os.Args[2:]))
}
