package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/deployer/secrets"
)

const secretsCLIUsage = "secrets set SITE KEY [VALUE] | set KEY VALUE [--site SITE] | list SITE | rm SITE KEY | encrypt SITE FILE|- [--replace] | decrypt SITE | rotate"

// runSecrets is the local CLI for secrets: a thin client of the daemon,
// which does the work. It reads what the daemon needs from this side (a
// value on stdin, a dotenv file) and sends it along.
func runSecrets(args []string) int {
	fs, data := flagSet("secrets")
	replace := fs.Bool("replace", false, "encrypt: replace all secrets instead of merging")
	siteFlag := fs.String("site", "", "the site, for the short form: secrets set KEY VALUE")
	pos, err := command.ParseFlags(fs, args)
	if err != nil || len(pos) == 0 {
		return usageFail("usage: eeveon %s", secretsCLIUsage)
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	// The v0.3.0 form, secrets set KEY VALUE, names no site: KEY is
	// upper case, a site name never is.
	if pos[0] == "set" && len(pos) == 3 && secrets.ValidKey(pos[1]) == nil && names.Site(pos[1]) != nil {
		site, err := onlySite(d, *siteFlag)
		if err != nil {
			return fail(err)
		}
		pos = []string{"set", site, pos[1], pos[2]}
	}
	var input []byte
	switch {
	case pos[0] == "set" && len(pos) == 4:
		fmt.Fprintln(os.Stderr, "warning: a value on the command line is visible to other users (ps) and in shell history; leave it out to read it from stdin")
	case pos[0] == "encrypt" && len(pos) == 3 && pos[2] != "-":
		if input, err = os.ReadFile(pos[2]); err != nil {
			return fail(fmt.Errorf("read %s: %w", pos[2], errors.Unwrap(err)))
		}
		pos[2] = "-"
	}
	req := append([]string{"secrets"}, pos...)
	if *replace {
		req = append(req, "--replace")
	}
	if input == nil && command.NeedsStdin(req) {
		if input, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20)); err != nil {
			return fail(err)
		}
	}
	code, err := control.Call(d.Socket(), control.Request{Args: req, Input: input}, os.Stdout, os.Stderr)
	if err != nil {
		return fail(err)
	}
	return code
}

// onlySite is the site for the short form: --site, or the only site.
func onlySite(d deployer.Data, flagSite string) (string, error) {
	if flagSite != "" {
		return flagSite, nil
	}
	sites, _ := deployer.ListSites(d)
	if len(sites) != 1 {
		return "", errors.New("name the site: eeveon secrets set SITE KEY [VALUE] (or --site SITE)")
	}
	return sites[0].Name, nil
}
