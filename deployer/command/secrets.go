package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/eeveon/eeveon/deployer/names"

	"github.com/eeveon/eeveon/deployer/secrets"
	"github.com/eeveon/eeveon/keys"
)

const secretsUsage = "secrets set SITE KEY [VALUE] | list SITE | rm SITE KEY | encrypt SITE [--replace] - | decrypt SITE | rotate"

// NeedsStdin reports whether a command line reads its standard input, so
// that thin clients (the local CLI, the OpenSSH forced command) send it
// to the daemon; for every other command stdin is left alone.
func NeedsStdin(args []string) bool {
	pos := positional(args)
	if len(pos) < 2 || pos[0] != "secrets" {
		return false
	}
	switch pos[1] {
	case "set":
		return len(pos) == 4 // secrets set SITE KEY: the value comes on stdin
	case "encrypt":
		return len(pos) == 4 && pos[3] == "-"
	}
	return false
}

// positional drops flags (words starting with -, except a lone -).
func positional(args []string) []string {
	var pos []string
	for _, a := range args {
		if a == "-" || !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
		}
	}
	return pos
}

// redact hides secret values in a command line before it is logged. For
// `secrets set`, only a site name in third place and a key name after it
// are kept; every other word may be a value and becomes ***, whatever the
// shape of the line (`secrets set KEY VALUE` included).
func redact(args []string) string {
	if len(args) < 2 || args[0] != "secrets" || args[1] != "set" {
		return strings.Join(args, " ")
	}
	out := []string{"secrets", "set"}
	for i, w := range args[2:] {
		switch {
		case i == 0 && names.Site(w) == nil,
			i == 1 && names.Site(args[2]) == nil && secrets.ValidKey(w) == nil:
			out = append(out, w)
		default:
			out = append(out, "***")
		}
	}
	return strings.Join(out, " ")
}

// RedactLine is what the audit log records of a command line that did not
// parse: the first word only, if it is a verb, since the rest may hold a
// secret value (values often contain shell metacharacters).
func RedactLine(line string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	if _, ok := surfaceVerb(first); ok || first == "git-receive-pack" || first == "git-upload-pack" {
		return first + " … (not parsed)"
	}
	return "(not parsed)"
}

// maxSecretInput bounds what a secrets command reads from stdin.
const maxSecretInput = 1 << 20

// secretsRotate is secrets rotate: a new identity for every store.
func (rt *Router) secretsRotate(c *call, rest []string) error {
	if err := keys.Authorize(c.id, keys.VerbSecrets, ""); err != nil {
		return err
	}
	if len(rest) != 0 {
		return usagef("usage: secrets rotate")
	}
	recipient, err := secrets.Rotate(rt.Engine.Data().Dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.io.Stdout, "rotated the secrets identity; every store is now encrypted to %s\n", recipient)
	return nil
}

// secretSet is secrets set SITE KEY [VALUE]: the value from the command
// line or stdin.
func secretSet(c *call, store *secrets.Store, site string, args []string) error {
	key := args[0]
	if err := secrets.ValidKey(key); err != nil {
		return err
	}
	var value string
	if len(args) == 2 {
		value = args[1]
	} else {
		b, err := readInput(c.io.Stdin)
		if err != nil {
			return err
		}
		value = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if err := secrets.ValidValue(value); err != nil {
		return err
	}
	if err := store.Set(site, key, value); err != nil {
		return err
	}
	fmt.Fprintf(c.io.Stdout, "set %s of %s (%d bytes); it reaches the next deploy\n", key, site, len(value))
	return nil
}

func (rt *Router) secrets(c *call) error {
	if len(c.args) == 0 {
		return usagef("usage: %s", secretsUsage)
	}
	sub, rest := c.args[0], c.args[1:]
	c.args = rest
	if sub == "rotate" {
		return rt.secretsRotate(c, rest)
	}
	fs := c.flags("secrets")
	replace := fs.Bool("replace", false, "")
	pos, err := ParseFlags(fs, rest)
	if err != nil || len(pos) == 0 {
		return usagef("usage: %s", secretsUsage)
	}
	c.site = pos[0]
	s, err := rt.Site(c.id, pos[0], keys.VerbSecrets)
	if err != nil {
		return err
	}
	store := rt.Secrets
	if store == nil {
		return errors.New("the secrets store is not available on this server (see the server log)")
	}
	switch {
	case sub == "set" && (len(pos) == 2 || len(pos) == 3):
		return secretSet(c, store, s.Name, pos[1:])
	case sub == "list" && len(pos) == 1:
		names, err := store.Names(s.Name)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(c.io.Stdout, n)
		}
	case sub == "rm" && len(pos) == 2:
		if err := store.Remove(s.Name, pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.io.Stdout, "removed %s of %s\n", pos[1], s.Name)
	case sub == "encrypt" && len(pos) == 2 && pos[1] == "-":
		b, err := readInput(c.io.Stdin)
		if err != nil {
			return err
		}
		n, err := store.Import(s.Name, b, *replace)
		if err != nil {
			return err
		}
		how := "merged into"
		if *replace {
			how = "replaced"
		}
		fmt.Fprintf(c.io.Stdout, "imported %d secrets: %s the secrets of %s\n", n, how, s.Name)
	case sub == "decrypt" && len(pos) == 1:
		b, err := store.Export(s.Name)
		if err != nil {
			return err
		}
		_, err = c.io.Stdout.Write(b)
		return err
	default:
		return usagef("usage: %s", secretsUsage)
	}
	return nil
}

func readInput(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, errors.New("no input: give the value on standard input")
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, maxSecretInput+1))
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	if n > maxSecretInput {
		return nil, fmt.Errorf("input larger than %d bytes", maxSecretInput)
	}
	return buf.Bytes(), nil
}
