package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/gofrs/flock"
	"golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer/fsutil"
	"github.com/eeveon/eeveon/deployer/names"
)

// Store is an authorized_keys file. Reads come from a copy in memory that is
// refreshed whenever the file changes on disk, so hand edits take effect
// without a restart. It is safe for concurrent use.
type Store struct {
	path  string
	block bool // only the lines between blockBegin and blockEnd are eeveon's

	wmu sync.Mutex // serialises writers in this process; flock does it across processes

	mu       sync.Mutex // guards the fields below
	fi       fs.FileInfo
	loaded   bool
	entries  []Entry
	byKey    map[string]int
	problems []LineError
	err      error
}

// Open returns the store for the file at path. The file need not exist yet:
// then there are no keys.
func Open(path string) *Store { return &Store{path: path} }

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// refresh reloads the file if its inode, size or mtime changed since the
// last load. s.mu must be held.
func (s *Store) refresh() {
	fi, err := os.Stat(s.path)
	if s.loaded && err == nil && s.fi != nil && os.SameFile(fi, s.fi) &&
		fi.Size() == s.fi.Size() && fi.ModTime().Equal(s.fi.ModTime()) {
		return
	}
	if s.loaded && errors.Is(err, fs.ErrNotExist) && s.fi == nil && s.err == nil {
		return
	}
	s.loaded, s.fi, s.entries, s.byKey, s.problems, s.err = true, nil, nil, nil, nil, nil
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		defer f.Close()
		s.fi, err = f.Stat() // before reading: a change while we read shows up next time
	}
	if err != nil {
		s.fi, s.err = nil, fmt.Errorf("read authorized keys: %w", err)
		s.problems = []LineError{{Err: s.err}}
		return
	}
	if s.block {
		data, err := io.ReadAll(f)
		if err != nil {
			s.fi, s.err = nil, fmt.Errorf("read authorized keys: %w", err)
			s.problems = []LineError{{Err: s.err}}
			return
		}
		lines := splitLines(string(data))
		pre, inner, _ := splitBlock(lines)
		s.entries, s.problems = Parse(strings.NewReader(strings.Join(inner, "")))
		for i := range s.problems {
			s.problems[i].Line += len(pre) + 1
		}
		for i := range s.entries {
			s.entries[i].Line += len(pre) + 1
		}
	} else {
		s.entries, s.problems = Parse(f)
	}
	s.byKey = make(map[string]int, len(s.entries))
	for i, e := range s.entries {
		s.byKey[string(e.Key.Marshal())] = i
	}
}

// Lookup finds the entry for a key. An unreadable file has no keys.
func (s *Store) Lookup(k ssh.PublicKey) (Entry, bool) {
	if k == nil {
		return Entry{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	i, ok := s.byKey[string(k.Marshal())]
	if !ok {
		return Entry{}, false
	}
	e := s.entries[i]
	e.Sites = slices.Clone(e.Sites)
	return e, true
}

// List returns the valid entries in file order and the problems with the
// other lines. The error is set when the file cannot be read at all.
func (s *Store) List() ([]Entry, []LineError, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	entries := make([]Entry, len(s.entries))
	for i, e := range s.entries {
		e.Sites = slices.Clone(e.Sites)
		entries[i] = e
	}
	return entries, slices.Clone(s.problems), s.err
}

// Problems returns the problems found the last time the file was loaded.
func (s *Store) Problems() []LineError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// Add validates e and writes it as a line running command (see FormatLine).
// If the key is already in the file, its line is replaced in place and
// updated is true; any later lines with the same key are dropped. All other
// lines, comments and broken lines included, are kept byte for byte.
func (s *Store) Add(e Entry, command string) (updated bool, err error) {
	if err := CheckKey(e.Key); err != nil {
		return false, fmt.Errorf("add key: %w", err)
	}
	if err := names.User(e.User); err != nil {
		return false, fmt.Errorf("add key: %w", err)
	}
	if _, err := ParseRole(string(e.Role)); err != nil {
		return false, fmt.Errorf("add key: %w", err)
	}
	for _, site := range e.Sites {
		if err := names.Site(site); err != nil {
			return false, fmt.Errorf("add key: %w", err)
		}
	}
	if strings.ContainsAny(e.Comment, "\r\n") {
		return false, errors.New("add key: comment contains a line break")
	}
	e.Comment = strings.TrimSpace(e.Comment)
	line := FormatLine(e, command)
	// Refuse to write a line that would be read back as someone else.
	got, err := ParseLine(line)
	if err != nil || got.User != e.User || got.Role != e.Role || !slices.Equal(got.Sites, e.Sites) ||
		!bytes.Equal(got.Key.Marshal(), e.Key.Marshal()) || got.Comment != e.Comment {
		return false, fmt.Errorf("add key: command %q does not make a line that reads back as this entry", command)
	}
	want := e.Key.Marshal()
	err = s.rewrite(func(lines []string) []string {
		out := lines[:0:0]
		for _, l := range lines {
			if k := lineKey(l); k == nil || !bytes.Equal(k.Marshal(), want) {
				out = append(out, l)
			} else if !updated {
				updated = true
				out = append(out, line+"\n")
			}
		}
		if !updated {
			out = append(out, line+"\n")
		}
		return out
	})
	if err != nil {
		return false, fmt.Errorf("add key: %w", err)
	}
	return updated, nil
}

// Remove deletes every line whose user is userOrFP or whose key has that
// SHA256 fingerprint (with or without the "SHA256:" prefix). A line with a
// readable key but a broken identity can still be removed by fingerprint.
func (s *Store) Remove(userOrFP string) (int, error) {
	if userOrFP == "" {
		return 0, fmt.Errorf("remove key: empty user or fingerprint: %w", ErrNotFound)
	}
	fp := userOrFP
	if !strings.HasPrefix(fp, "SHA256:") {
		fp = "SHA256:" + fp
	}
	n := 0
	err := s.rewrite(func(lines []string) []string {
		out := lines[:0:0]
		for _, l := range lines {
			e, _ := parseLine(l)
			if e.Key != nil && (e.User == userOrFP || e.Fingerprint() == fp) {
				n++
				continue
			}
			out = append(out, l)
		}
		return out
	})
	if err != nil {
		return 0, fmt.Errorf("remove key %q: %w", userOrFP, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("remove key %q: %w", userOrFP, ErrNotFound)
	}
	return n, nil
}

// lineKey returns the key on a line, or nil for blank, comment and
// unreadable lines.
func lineKey(line string) ssh.PublicKey {
	if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
		return nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil
	}
	return k
}

// rewrite locks the file, hands its lines (each with its own line ending)
// to edit and atomically replaces the file with the result. If edit changes
// nothing the file is left alone.
func (s *Store) rewrite(edit func(lines []string) []string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Other processes (eeveon keys add, a second server) write the file
	// too; flock(2) on a file beside it serialises them.
	lock := flock.New(s.path + ".lock")
	if err := lock.Lock(); err != nil {
		return err
	}
	defer lock.Unlock()

	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lines := splitLines(string(data))
	var out string
	if s.block {
		pre, inner, post := splitBlock(lines)
		inner = edit(slices.Clone(inner))
		if len(inner) > 0 {
			inner = append(append([]string{blockBegin}, inner...), blockEnd)
		}
		out = strings.Join(slices.Concat(pre, inner, post), "")
	} else {
		out = strings.Join(edit(slices.Clone(lines)), "")
	}
	if out == strings.Join(lines, "") {
		return nil
	}
	return fsutil.WriteFileAtomic(s.path, []byte(out), 0o600)
}

// splitLines splits file content into lines that keep their "\n"; a last
// line without one gets one, so that an appended line starts on its own.
func splitLines(data string) []string {
	lines := strings.SplitAfter(data, "\n")
	if lines[len(lines)-1] == "" {
		return lines[:len(lines)-1]
	}
	lines[len(lines)-1] += "\n"
	return lines
}
