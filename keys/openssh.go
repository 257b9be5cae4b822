package keys

import "strings"

// The markers around the lines eeveon manages in a Unix user's
// ~/.ssh/authorized_keys. Everything outside them is the user's and is
// never changed.
const (
	blockBegin = "# BEGIN eeveon (managed by eeveon keys add --openssh; edits between these markers are replaced)\n"
	blockEnd   = "# END eeveon\n"
)

// OpenOpenSSH returns a store for an OpenSSH authorized_keys file (e.g.
// ~/.ssh/authorized_keys of the service user) in which eeveon reads and
// edits only its own marked block. Add creates the block at the end of
// the file when it is missing; lines and options outside it stay byte for
// byte, and writes are atomic like every other store write.
func OpenOpenSSH(path string) *Store { return &Store{path: path, block: true} }

// splitBlock cuts lines into those before eeveon's block, the block's
// inner lines, and those after. With no block, everything is "before".
func splitBlock(lines []string) (pre, inner, post []string) {
	begin, end := -1, -1
	for i, l := range lines {
		switch {
		case begin < 0 && strings.HasPrefix(l, "# BEGIN eeveon"):
			begin = i
		case begin >= 0 && strings.HasPrefix(l, "# END eeveon"):
			end = i
		}
		if end >= 0 {
			break
		}
	}
	if begin < 0 {
		return lines, nil, nil
	}
	if end < 0 { // an unterminated block runs to the end of the file
		return lines[:begin], lines[begin+1:], nil
	}
	return lines[:begin], lines[begin+1 : end], lines[end+1:]
}
