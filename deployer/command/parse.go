// Package command parses and runs the operations verbs (status, history,
// deploy, …) for every entry point: the embedded SSH server, the control
// socket (local CLI, git hook, OpenSSH forced command). Permissions are
// decided here, once, through keys.Authorize.
package command

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("bad command line")

// Parse splits an SSH command line into words without a shell: words are
// separated by spaces or tabs; '…' quotes literally and "…" quotes with \"
// and \\ as the only escapes. Shell metacharacters outside quotes, control
// characters and unbalanced quotes are refused, so nothing can be read as
// a pipeline, a substitution or a glob.
func Parse(line string, maxLen int) ([]string, error) {
	if maxLen > 0 && len(line) > maxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, maxLen)
	}
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c < 0x20 || c == 0x7f:
			return nil, fmt.Errorf("%w: control character", ErrSyntax)
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated quote", ErrSyntax)
			}
			seg := line[i+1 : i+1+j]
			if strings.ContainsFunc(seg, isControl) {
				return nil, fmt.Errorf("%w: control character", ErrSyntax)
			}
			cur.WriteString(seg)
			inWord = true
			i += j + 1
		case c == '"':
			i++
			closed := false
			for ; i < len(line); i++ {
				d := line[i]
				if d == '"' {
					closed = true
					break
				}
				if d == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
					i++
					d = line[i]
				}
				if d < 0x20 || d == 0x7f {
					return nil, fmt.Errorf("%w: control character", ErrSyntax)
				}
				cur.WriteByte(d)
			}
			if !closed {
				return nil, fmt.Errorf("%w: unterminated quote", ErrSyntax)
			}
			inWord = true
		case strings.IndexByte(";&|<>$`\\(){}*?[]!#~\"", c) >= 0:
			return nil, fmt.Errorf("%w: shell metacharacter %q is not allowed (there is no shell here)", ErrSyntax, c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
