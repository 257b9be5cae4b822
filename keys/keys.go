// Package keys reads and writes the authorized_keys file that says who may
// use EEveon, and decides what each role may do.
//
// Every line is plain OpenSSH authorized_keys syntax, so the same file serves
// the embedded SSH server and an OpenSSH forced command. A user's identity
// travels in the arguments of the line's command option:
//
//	command="eeveon shell --user alice --role deployer --sites web,api",restrict ssh-ed25519 AAAA... alice@laptop
package keys

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer/names"
)

// ErrNotFound is wrapped when a key or user to act on is not in the file.
var ErrNotFound = errors.New("no such key")

// ErrPermissionDenied is wrapped by every refusal of Authorize.
var ErrPermissionDenied = errors.New("permission denied")

// Role is what a user may do: see Authorize.
type Role string

// The roles a key can carry.
const (
	RoleAdmin    Role = "admin"
	RoleDeployer Role = "deployer"
)

// ParseRole accepts exactly "admin" or "deployer".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleDeployer:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want admin or deployer)", s)
}

// Entry is one key with the identity it carries.
type Entry struct {
	User    string
	Role    Role
	Sites   []string // nil or empty: all sites
	Key     ssh.PublicKey
	Comment string
	Line    int // 1-based line number in the file, 0 if not from a file
}

// Fingerprint is the SHA256 fingerprint of the key, as ssh-keygen -l shows it.
func (e Entry) Fingerprint() string {
	if e.Key == nil {
		return ""
	}
	return ssh.FingerprintSHA256(e.Key)
}

// Identity is the identity of a session signed in with this entry's key.
func (e Entry) Identity() Identity {
	return Identity{User: e.User, Role: e.Role, Sites: slices.Clone(e.Sites), Fingerprint: e.Fingerprint(), Source: "ssh"}
}

// Identity is who is acting, whatever the entry point.
type Identity struct {
	User        string
	Role        Role
	Sites       []string // empty: all sites
	Fingerprint string   // may be empty (local CLI)
	Remote      string   // remote address or "local"
	Source      string   // "ssh", "openssh", "local", "poll", "http"
}

// MaySee reports whether the identity may know that site exists: an admin
// sees every site, a deployer those in Sites, or all when Sites is empty.
func (id Identity) MaySee(site string) bool {
	switch id.Role {
	case RoleAdmin:
		return true
	case RoleDeployer:
		return len(id.Sites) == 0 || slices.Contains(id.Sites, site)
	}
	return false
}

// LineError is a problem with one line of the file. Line 0 stands for the
// file as a whole.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("authorized_keys: %v", e.Err)
	}
	return fmt.Sprintf("authorized_keys line %d: %v", e.Line, e.Err)
}

func (e LineError) Unwrap() error { return e.Err }

// CheckKey refuses key types that EEveon does not accept: DSA, RSA under
// 2048 bits, certificates and anything OpenSSH would not take as a user key.
func CheckKey(k ssh.PublicKey) error {
	if k == nil {
		return errors.New("no key")
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return errors.New("certificates are not supported; add the plain public key")
	}
	switch t := k.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("ssh-rsa key of unknown form")
		}
		pub, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return errors.New("ssh-rsa key of unknown form")
		}
		if n := pub.N.BitLen(); n < 2048 {
			return fmt.Errorf("ssh-rsa key has %d bits; at least 2048 are required (ssh-ed25519 is better)", n)
		}
		return nil
	case ssh.InsecureKeyAlgoDSA:
		return errDSA
	default:
		return fmt.Errorf("key type %q is not supported; use ssh-ed25519, ecdsa or ssh-rsa of 2048 bits or more", t)
	}
}

var errDSA = errors.New("ssh-dss (DSA) keys are refused as insecure; use ssh-ed25519")

// ParseLine parses one authorized_keys line into an entry. The line must
// carry a command option whose arguments include --user and --role, and
// optionally --sites (comma separated).
func ParseLine(line string) (Entry, error) {
	e, err := parseLine(line)
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// keyParseError explains why a key line did not parse: DSA keys, which
// x/crypto no longer reads, get the same refusal as CheckKey gives.
func keyParseError(line string, err error) error {
	if slices.Contains(strings.Fields(line), ssh.InsecureKeyAlgoDSA) {
		return errDSA
	}
	return fmt.Errorf("parse key: %w", err)
}

// ParsePublicKey reads one OpenSSH public key (the content of a .pub
// file) and checks that its type and size are acceptable.
func ParsePublicKey(pub []byte) (ssh.PublicKey, string, error) {
	if bytes.Contains(pub, []byte("PRIVATE KEY")) {
		return nil, "", errors.New("that is a private key; give the public key (the .pub file)")
	}
	k, comment, _, rest, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		if e := keyParseError(string(pub), err); errors.Is(e, errDSA) {
			return nil, "", e
		}
		return nil, "", errors.New("not an OpenSSH public key (expected a line like: ssh-ed25519 AAAA… comment)")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, "", errors.New("more than one key given; add one key at a time")
	}
	if err := CheckKey(k); err != nil {
		return nil, "", err
	}
	return k, comment, nil
}

// parseLine is ParseLine, except that on error it returns the fields it did
// understand (the key first, then the user), so that Store.Remove can still
// act on a line that is otherwise broken.
func parseLine(line string) (Entry, error) {
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if strings.ContainsAny(line, "\r\n") {
		return Entry{}, errors.New("line contains a line break")
	}
	k, comment, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Entry{}, keyParseError(line, err)
	}
	e := Entry{Key: k, Comment: comment}
	if err := CheckKey(k); err != nil {
		return e, err
	}
	cmd, err := commandOption(opts)
	if err != nil {
		return e, err
	}
	args, err := splitArgs(cmd)
	if err != nil {
		return e, fmt.Errorf("command option: %w", err)
	}
	if e.User, e.Role, e.Sites, err = IdentityArgs(args); err != nil {
		return e, err
	}
	return e, nil
}

// commandOption finds the one command="..." option and unquotes its value
// as OpenSSH does: inside the quotes only \" is an escape.
func commandOption(opts []string) (string, error) {
	var cmd string
	found := false
	for _, o := range opts {
		name, val, _ := strings.Cut(o, "=")
		if !strings.EqualFold(name, "command") {
			continue
		}
		if found {
			return "", errors.New("more than one command option")
		}
		found = true
		if len(val) < 2 || val[0] != '"' {
			return "", errors.New("command option value must be in double quotes")
		}
		var b strings.Builder
		i := 1
		for ; i < len(val) && val[i] != '"'; i++ {
			if val[i] == '\\' && i+1 < len(val) && val[i+1] == '"' {
				i++
			}
			b.WriteByte(val[i])
		}
		if i != len(val)-1 {
			return "", errors.New("command option has a stray quote")
		}
		cmd = b.String()
	}
	if !found {
		return "", errors.New(`no command="... --user NAME --role ROLE" option`)
	}
	return cmd, nil
}

// splitArgs splits a command into words at spaces and tabs. Single quotes
// keep everything up to the next single quote; within double quotes a
// backslash escapes " and \; elsewhere a backslash escapes the next byte.
// Nothing is expanded.
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("unterminated double quote")
			}
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
		default:
			cur.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// Parse reads a whole authorized_keys file. Blank lines and # comments are
// skipped; a line that does not parse, or repeats a key already seen (OpenSSH
// would use the first), is reported and left out.
func Parse(r io.Reader) ([]Entry, []LineError) {
	var entries []Entry
	var problems []LineError
	seen := map[string]int{}
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if line != "" {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				e, perr := ParseLine(line)
				if perr == nil {
					k := string(e.Key.Marshal())
					if first, dup := seen[k]; dup {
						perr = fmt.Errorf("key %s already on line %d", e.Fingerprint(), first)
					} else {
						seen[k] = n
						e.Line = n
						entries = append(entries, e)
					}
				}
				if perr != nil {
					problems = append(problems, LineError{Line: n, Err: perr})
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				problems = append(problems, LineError{Line: n, Err: fmt.Errorf("read: %w", err)})
			}
			return entries, problems
		}
	}
}

// FormatLine renders e as an authorized_keys line whose command option runs
// command (taken as is, e.g. "/usr/bin/eeveon shell --data /x") followed by
// the identity flags. The option is quoted for OpenSSH: " becomes \".
func FormatLine(e Entry, command string) string {
	var cmd strings.Builder
	if c := strings.TrimSpace(command); c != "" {
		cmd.WriteString(c)
		cmd.WriteByte(' ')
	}
	fmt.Fprintf(&cmd, "--user %s --role %s", e.User, e.Role)
	if len(e.Sites) > 0 {
		fmt.Fprintf(&cmd, " --sites %s", strings.Join(e.Sites, ","))
	}
	var b strings.Builder
	b.WriteString(`command="`)
	b.WriteString(strings.ReplaceAll(cmd.String(), `"`, `\"`))
	b.WriteString(`",restrict `)
	if e.Key != nil {
		b.WriteString(strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(e.Key)), "\n"))
	}
	if e.Comment != "" {
		b.WriteByte(' ')
		b.WriteString(e.Comment)
	}
	return b.String()
}

// IdentityArgs reads the identity from the arguments of a forced command
// (--user NAME --role ROLE [--sites a,b], also as --flag=value; anything
// else is ignored; a flag given twice is an error). The embedded server
// reads authorized_keys lines with it, and eeveon shell its own arguments,
// so both read one line the same way.
func IdentityArgs(args []string) (user string, role Role, sites []string, err error) {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(args[i], "=")
		if name != "--user" && name != "--role" && name != "--sites" {
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return "", "", nil, fmt.Errorf("command option: %s needs a value", name)
			}
			i++
			val = args[i]
		}
		if _, dup := flags[name]; dup {
			return "", "", nil, fmt.Errorf("command option: %s given twice", name)
		}
		flags[name] = val
	}
	user, ok := flags["--user"]
	if !ok {
		return "", "", nil, errors.New("command option has no --user NAME")
	}
	if err := names.User(user); err != nil {
		return "", "", nil, err
	}
	r, ok := flags["--role"]
	if !ok {
		return "", "", nil, errors.New("command option has no --role admin|deployer")
	}
	if role, err = ParseRole(r); err != nil {
		return "", "", nil, err
	}
	if list, ok := flags["--sites"]; ok {
		sites = strings.Split(list, ",")
		for _, s := range sites {
			if err := names.Site(s); err != nil {
				return "", "", nil, fmt.Errorf("--sites: %w", err)
			}
		}
	}
	return user, role, sites, nil
}
