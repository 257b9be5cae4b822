package command

import (
	"flag"
	"io"
)

// ParseFlags parses args with fs, allowing flags before, between and after
// positional arguments ("site add hello --data d" and "site add --data d
// hello" both work). A lone "--" ends flag parsing. It returns the
// positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag; a "--" it consumed shows as
		// args shrinking by one more than the flags it parsed.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
