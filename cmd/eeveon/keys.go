package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

const keysUsage = "keys add --user NAME --role admin|deployer [--sites a,b] FILE|- | keys list | keys rm USER|FINGERPRINT"

func runKeys(args []string) int {
	if len(args) == 0 {
		return usageFail("usage: eeveon %s", keysUsage)
	}
	switch args[0] {
	case "add":
		return keysAdd(args[1:])
	case "list", "ls":
		return keysList(args[1:])
	case "rm", "remove":
		return keysRm(args[1:])
	}
	return usageFail("unknown keys command %q (usage: eeveon %s)", args[0], keysUsage)
}

// shellCommand is the forced command written with each key, so that the
// same line works in OpenSSH mode.
func shellCommand(d deployer.Data) string {
	return deployer.ShellQuote(exe()) + " shell --data " + deployer.ShellQuote(d.Dir)
}

func keysAdd(args []string) int {
	fs, data := flagSet("keys add")
	user := fs.String("user", "", "user name")
	role := fs.String("role", "", "admin or deployer")
	sites := fs.String("sites", "", "comma-separated sites a deployer may use (default: all)")
	openssh := fs.Bool("openssh", false, "also write the key as a forced command into an OpenSSH authorized_keys")
	akPath := fs.String("authorized-keys", "", "the OpenSSH authorized_keys file (default: ~/.ssh/authorized_keys of the invoking user)")
	use := "keys add --user NAME --role admin|deployer [--sites a,b] [--openssh [--authorized-keys PATH]] FILE|-"
	pos, code := parse(fs, args, 1, 1, use)
	if code >= 0 {
		return code
	}
	if *user == "" || *role == "" {
		return usageFail("usage: eeveon %s", use)
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	r, err := keys.ParseRole(*role)
	if err != nil {
		return fail(err)
	}
	if err := names.User(*user); err != nil {
		return fail(err)
	}
	var siteList []string
	if *sites != "" {
		for _, s := range strings.Split(*sites, ",") {
			if err := names.Site(s); err != nil {
				return fail(err)
			}
			siteList = append(siteList, s)
		}
	}
	var in []byte
	if pos[0] == "-" {
		in, err = io.ReadAll(io.LimitReader(os.Stdin, 64*1024))
	} else {
		in, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return fail(fmt.Errorf("read public key: %w", err))
	}
	pub, comment, err := keys.ParsePublicKey(in)
	if err != nil {
		return fail(fmt.Errorf("read public key %s: %w", pos[0], err))
	}
	e := keys.Entry{User: *user, Role: r, Sites: siteList, Key: pub, Comment: comment}
	updated, err := keys.Open(d.AuthorizedKeys()).Add(e, shellCommand(d))
	if err != nil {
		return fail(err)
	}
	if *openssh {
		path, err := opensshFile(*akPath)
		if err != nil {
			return fail(err)
		}
		if _, err := keys.OpenOpenSSH(path).Add(e, shellCommand(d)); err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		fmt.Printf("wrote the forced command for %s into %s\n", *user, path)
	}
	verb := "added"
	if updated {
		verb = "updated"
	}
	scope := "all sites"
	if len(siteList) > 0 {
		scope = "sites " + strings.Join(siteList, ",")
	}
	fmt.Printf("%s key %s for %s (%s, %s)\n", verb, e.Fingerprint(), *user, r, scope)
	return 0
}

func keysList(args []string) int {
	fs, data := flagSet("keys list")
	if _, code := parse(fs, args, 0, 0, "keys list"); code >= 0 {
		return code
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	entries, problems, err := keys.Open(d.AuthorizedKeys()).List()
	if err != nil {
		return fail(err)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tROLE\tSITES\tFINGERPRINT\tCOMMENT")
	for _, e := range entries {
		sites := "*"
		if len(e.Sites) > 0 {
			sites = strings.Join(e.Sites, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.User, e.Role, sites, e.Fingerprint(), e.Comment)
	}
	w.Flush()
	for _, p := range problems {
		fmt.Fprintf(os.Stderr, "warning: %v (skipped)\n", p)
	}
	return 0
}

// opensshFile is the OpenSSH authorized_keys to edit: the given path, or
// ~/.ssh/authorized_keys of the invoking user.
func opensshFile(path string) (string, error) {
	if path != "" {
		return filepath.Abs(path)
	}
	u, err := user.Current()
	if err != nil || u.HomeDir == "" {
		return "", errors.New("cannot find your home directory; give --authorized-keys PATH")
	}
	return filepath.Join(u.HomeDir, ".ssh", "authorized_keys"), nil
}

func keysRm(args []string) int {
	fs, data := flagSet("keys rm")
	openssh := fs.Bool("openssh", false, "also remove it from an OpenSSH authorized_keys")
	akPath := fs.String("authorized-keys", "", "the OpenSSH authorized_keys file (default: ~/.ssh/authorized_keys)")
	pos, code := parse(fs, args, 1, 1, "keys rm [--openssh [--authorized-keys PATH]] USER|FINGERPRINT")
	if code >= 0 {
		return code
	}
	d, err := openData(*data)
	if err != nil {
		return fail(err)
	}
	n, err := keys.Open(d.AuthorizedKeys()).Remove(pos[0])
	if *openssh {
		path, perr := opensshFile(*akPath)
		if perr != nil {
			return fail(perr)
		}
		m, oerr := keys.OpenOpenSSH(path).Remove(pos[0])
		if oerr == nil {
			fmt.Printf("removed %d key(s) matching %s from %s\n", m, pos[0], path)
			if errors.Is(err, keys.ErrNotFound) {
				return 0
			}
		}
	}
	if err != nil {
		return fail(err)
	}
	fmt.Printf("removed %d key(s) matching %s\n", n, pos[0])
	return 0
}
