package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// ParseDotenv reads a dotenv file into a map; a name given twice keeps its
// last value. It accepts:
//
//   - blank lines and lines whose first non-blank character is '#';
//   - NAME=value, optionally after "export ", with blanks around '=';
//   - unquoted values: the rest of the line, trimmed of blanks (a '#' in
//     it is part of the value, not a comment);
//   - 'single-quoted' values, taken literally;
//   - "double-quoted" values with the escapes \\ \" \n \r \t and \$ (any
//     other backslash sequence is an error).
//
// Quoted values may span lines; after the closing quote only blanks and
// a # comment may follow. There is no ${VAR} expansion. Names must pass
// ValidKey and values ValidValue. Errors give the line number and never
// quote a value.
func ParseDotenv(b []byte) (map[string]string, error) {
	p := dotenvParser{b: b, line: 1}
	m := map[string]string{}
	for p.i < len(p.b) {
		if err := p.entry(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type dotenvParser struct {
	b    []byte
	i    int // next byte
	line int // line of b[i]
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' }

// restOfLine returns b[i:] up to (not including) the next newline and
// moves past that newline.
func (p *dotenvParser) restOfLine() []byte {
	end := bytes.IndexByte(p.b[p.i:], '\n')
	var s []byte
	if end < 0 {
		s, p.i = p.b[p.i:], len(p.b)
	} else {
		s, p.i = p.b[p.i:p.i+end], p.i+end+1
		p.line++
	}
	return s
}

func (p *dotenvParser) skipBlanks() {
	for p.i < len(p.b) && isBlank(p.b[p.i]) {
		p.i++
	}
}

// entry reads one line, or one entry that may span lines, into m.
func (p *dotenvParser) entry(m map[string]string) error {
	start := p.line
	fail := func(format string, a ...any) error {
		return fmt.Errorf("line %d: "+format, append([]any{start}, a...)...)
	}
	p.skipBlanks()
	if p.i == len(p.b) {
		return nil
	}
	if c := p.b[p.i]; c == '\n' || c == '#' {
		p.restOfLine()
		return nil
	}
	if rest := p.b[p.i:]; bytes.HasPrefix(rest, []byte("export")) && len(rest) > 6 && (rest[6] == ' ' || rest[6] == '\t') {
		p.i += 6
		p.skipBlanks()
	}
	nameEnd := p.i
	for nameEnd < len(p.b) && p.b[nameEnd] != '=' && p.b[nameEnd] != '\n' {
		nameEnd++
	}
	if nameEnd == len(p.b) || p.b[nameEnd] != '=' {
		return fail("expected NAME=value")
	}
	key := string(bytes.TrimRight(p.b[p.i:nameEnd], " \t\r\f\v"))
	if err := ValidKey(key); err != nil {
		return fail("%w", err)
	}
	p.i = nameEnd + 1
	p.skipBlanks()

	var value []byte
	var err error
	quoted := p.i < len(p.b) && (p.b[p.i] == '"' || p.b[p.i] == '\'')
	switch {
	case !quoted:
		value = bytes.Trim(p.restOfLine(), " \t\r\f\v") // the caller's bytes
	case p.b[p.i] == '"':
		value, err = p.doubleQuoted()
	default:
		value, err = p.singleQuoted()
	}
	if err != nil {
		return fail("secret %s: %w", key, err)
	}
	v := string(value)
	if quoted {
		wipe(value) // our own copy
	}
	if err := ValidValue(v); err != nil {
		return fail("secret %s: %w", key, err)
	}
	m[key] = v
	return nil
}

// afterQuote checks that the rest of the line after a closing quote is
// blank or a comment, and moves past it.
func (p *dotenvParser) afterQuote() error {
	rest := bytes.TrimLeft(p.restOfLine(), " \t\r\f\v")
	if len(rest) > 0 && rest[0] != '#' {
		return errors.New("unexpected text after the closing quote")
	}
	return nil
}

func (p *dotenvParser) singleQuoted() ([]byte, error) {
	p.i++ // opening quote
	end := bytes.IndexByte(p.b[p.i:], '\'')
	if end < 0 {
		return nil, errors.New("unterminated single-quoted value")
	}
	v := bytes.Clone(p.b[p.i : p.i+end])
	p.line += bytes.Count(v, []byte("\n"))
	p.i += end + 1
	return v, p.afterQuote()
}

func (p *dotenvParser) doubleQuoted() ([]byte, error) {
	p.i++ // opening quote
	var v []byte
	for {
		if p.i >= len(p.b) {
			wipe(v)
			return nil, errors.New("unterminated double-quoted value")
		}
		c := p.b[p.i]
		p.i++
		switch c {
		case '"':
			return v, p.afterQuote()
		case '\n':
			p.line++
		case '\\':
			if p.i >= len(p.b) {
				continue // reported as unterminated
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '\\', '"', '$':
				c = e
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				wipe(v)
				return nil, errors.New(`unsupported escape in double-quoted value (use \\, \", \n, \r, \t or \$)`)
			}
		}
		v = append(v, c)
	}
}

// dotenvBare holds the bytes a value may consist of to be written without
// quotes.
var dotenvBare = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@+-") {
		t[c] = true
	}
	return t
}()

// FormatDotenv renders m as NAME=value lines sorted by name. A value made
// only of [A-Za-z0-9_./:@+-] (or empty) is written as it is; any other is
// double-quoted with \\ \" \n \r \t and \$ escaped and every other byte
// literal. ParseDotenv reads the result back to m exactly.
func FormatDotenv(m map[string]string) []byte {
	size := 0
	for k, v := range m {
		size += len(k) + 2*len(v) + 4
	}
	b := make([]byte, 0, size) // no regrowth: no stray copies of values
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = append(b, k...)
		b = append(b, '=')
		b = appendDotenvValue(b, m[k])
		b = append(b, '\n')
	}
	return b
}

func appendDotenvValue(b []byte, v string) []byte {
	bare := true
	for i := 0; i < len(v); i++ {
		if !dotenvBare[v[i]] {
			bare = false
			break
		}
	}
	if bare {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '"', '$':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
