package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/gofrs/flock"

	"github.com/eeveon/eeveon/deployer/fsutil"
	"github.com/eeveon/eeveon/deployer/names"
)

// Store reads and writes the secrets of every site in one data directory.
// It is safe for concurrent use, and several processes may use the same
// data directory: every operation holds flock(2) on secrets/.lock (shared
// to read, exclusive to write) and reads the identity afresh under it.
type Store struct {
	dataDir string
	dir     string
	mu      sync.RWMutex
}

// Open prepares the store of dataDir: <dataDir>/secrets (0700) and the
// identity, which it creates in <dataDir>/age.key when no identity exists
// anywhere. It refuses to create one when store files already exist,
// because a new key could not decrypt them: the old key has to be put
// back.
func Open(dataDir string) (*Store, error) {
	if dataDir == "" {
		return nil, errors.New("open secrets: no data directory")
	}
	dir := filepath.Join(dataDir, "secrets")
	if _, err := LoadIdentity(dataDir, false); errors.Is(err, fs.ErrNotExist) {
		if _, external := IdentityPath(dataDir); external {
			return nil, err
		}
		files, lerr := storeFiles(dir)
		if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("open secrets: %w", lerr)
		}
		if len(files) > 0 {
			path, _ := IdentityPath(dataDir)
			return nil, fmt.Errorf("open secrets: the age identity %s is missing but %d encrypted secret store(s) exist in %s; restore the key (or point $%s at it), a new key cannot decrypt them",
				path, len(files), dir, EnvKeyFile)
		}
		if _, err := LoadIdentity(dataDir, true); err != nil {
			return nil, fmt.Errorf("open secrets: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("open secrets: %w", err)
	}
	if err := ensurePrivateDir(dir); err != nil {
		return nil, fmt.Errorf("open secrets: %w", err)
	}
	return &Store{dataDir: dataDir, dir: dir}, nil
}

func (s *Store) file(site string) string { return filepath.Join(s.dir, site+".age") }

// lock takes the store's mutex and the directory lock; the returned
// function releases both.
func (s *Store) lock(exclusive bool) (func(), error) {
	if exclusive {
		s.mu.Lock()
	} else {
		s.mu.RLock()
	}
	unlockMu := s.mu.Unlock
	if !exclusive {
		unlockMu = s.mu.RUnlock
	}
	unlock, err := lockDir(s.dir, exclusive)
	if err != nil {
		unlockMu()
		return nil, err
	}
	return func() { unlock(); unlockMu() }, nil
}

// lockDir takes flock(2) on dir/.lock, shared or exclusive, and returns
// the function that releases it. Each call opens its own descriptor, so
// two goroutines of one process exclude each other just as two processes
// do.
func lockDir(dir string, exclusive bool) (func(), error) {
	l := flock.New(filepath.Join(dir, ".lock"))
	take := l.RLock
	if exclusive {
		take = l.Lock
	}
	if err := take(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	return func() { _ = l.Unlock() }, nil
}

// Get returns the site's secrets; a site without any yields an empty map.
func (s *Store) Get(site string) (map[string]string, error) {
	if err := names.Site(site); err != nil {
		return nil, err
	}
	unlock, err := s.lock(false)
	if err != nil {
		return nil, fmt.Errorf("read secrets of %s: %w", site, err)
	}
	defer unlock()
	return s.read(site)
}

// Names returns the names of the site's secrets, sorted.
func (s *Store) Names(site string) ([]string, error) {
	m, err := s.Get(site)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(m)), nil
}

// Set stores one secret, replacing any value it had.
func (s *Store) Set(site, key, value string) error {
	if err := names.Site(site); err != nil {
		return err
	}
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ValidValue(value); err != nil {
		return fmt.Errorf("secret %s: %w", key, err)
	}
	return s.update(site, func(m map[string]string) (bool, error) {
		m[key] = value
		return true, nil
	})
}

// Remove deletes one secret; an unknown name is an error that wraps
// ErrNoSecret.
func (s *Store) Remove(site, key string) error {
	if err := names.Site(site); err != nil {
		return err
	}
	if err := ValidKey(key); err != nil {
		return err
	}
	return s.update(site, func(m map[string]string) (bool, error) {
		if _, ok := m[key]; !ok {
			return false, fmt.Errorf("remove secret %s of site %s: %w", key, site, ErrNoSecret)
		}
		delete(m, key)
		return true, nil
	})
}

// Import reads a dotenv file (see ParseDotenv) into the site's secrets:
// merged into the existing ones, or, with replace, as the whole new set.
// n is the number of distinct names read. A malformed file is an error
// naming the line, and nothing is written.
func (s *Store) Import(site string, dotenv []byte, replace bool) (n int, err error) {
	if err := names.Site(site); err != nil {
		return 0, err
	}
	in, err := ParseDotenv(dotenv)
	if err != nil {
		return 0, fmt.Errorf("import secrets of %s: %w", site, err)
	}
	err = s.update(site, func(m map[string]string) (bool, error) {
		if replace {
			clear(m)
		} else if len(in) == 0 {
			return false, nil
		}
		maps.Copy(m, in)
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return len(in), nil
}

// Export renders the site's secrets as a dotenv file, sorted by name,
// that Import reads back to exactly the same set (see FormatDotenv).
func (s *Store) Export(site string) ([]byte, error) {
	m, err := s.Get(site)
	if err != nil {
		return nil, err
	}
	return FormatDotenv(m), nil
}

// update applies change to the site's secrets under the exclusive lock
// and writes the result when change says so.
func (s *Store) update(site string, change func(map[string]string) (bool, error)) error {
	unlock, err := s.lock(true)
	if err != nil {
		return fmt.Errorf("write secrets of %s: %w", site, err)
	}
	defer unlock()
	id, err := LoadIdentity(s.dataDir, false)
	if err != nil {
		return err
	}
	m, err := readStore(s.file(site), site, id)
	if err != nil {
		return err
	}
	write, err := change(m)
	if err != nil || !write {
		return err
	}
	return writeStore(s.file(site), site, m, id.Recipient())
}

// read decrypts a site's store; the caller holds the lock.
func (s *Store) read(site string) (map[string]string, error) {
	if _, err := os.Stat(s.file(site)); errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	id, err := LoadIdentity(s.dataDir, false)
	if err != nil {
		return nil, err
	}
	return readStore(s.file(site), site, id)
}

// payload is the plaintext of a store file. Values are []byte so that
// encoding/json keeps bytes that are not valid UTF-8 (it would replace
// them in a string).
type payload struct {
	Version int               `json:"v"`
	Secrets map[string][]byte `json:"secrets"`
}

const payloadVersion = 1

func encodePayload(m map[string]string) ([]byte, error) {
	p := payload{Version: payloadVersion, Secrets: make(map[string][]byte, len(m))}
	for k, v := range m {
		p.Secrets[k] = []byte(v)
	}
	defer func() {
		for _, b := range p.Secrets {
			wipe(b)
		}
	}()
	return json.Marshal(p)
}

func decodePayload(plain []byte) (map[string]string, error) {
	var p payload
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		// The JSON error can quote bytes of the plaintext; keep it out.
		return nil, errors.New("decrypted content is not a secret store")
	}
	if p.Version != payloadVersion {
		return nil, fmt.Errorf("store format version %d is not supported (want %d)", p.Version, payloadVersion)
	}
	m := make(map[string]string, len(p.Secrets))
	for k, v := range p.Secrets {
		if ValidKey(k) != nil {
			return nil, errors.New("store holds an invalid secret name")
		}
		m[k] = string(v)
		wipe(v)
	}
	return m, nil
}

// readStore decrypts and decodes the store at path; a missing file is an
// empty set.
func readStore(path, site string, ids ...age.Identity) (map[string]string, error) {
	plain, err := decryptFile(path, ids...)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secrets of %s: %w", site, err)
	}
	defer wipe(plain)
	m, err := decodePayload(plain)
	if err != nil {
		return nil, fmt.Errorf("read secrets of %s: %s: %w", site, path, err)
	}
	return m, nil
}

func writeStore(path, site string, m map[string]string, recipients ...age.Recipient) error {
	plain, err := encodePayload(m)
	if err != nil {
		return fmt.Errorf("write secrets of %s: %w", site, err)
	}
	defer wipe(plain)
	if err := encryptFile(path, plain, recipients...); err != nil {
		return fmt.Errorf("write secrets of %s: %w", site, err)
	}
	return nil
}

// decryptFile returns the plaintext of the age file at path. A missing
// file yields an error wrapping fs.ErrNotExist.
func decryptFile(path string, ids ...age.Identity) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := age.Decrypt(f, ids...)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return nil, fmt.Errorf("decrypt %s: the current age identity cannot decrypt it (was the key replaced?): %w", path, err)
		}
		return nil, fmt.Errorf("decrypt %s: %w", path, err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		wipe(plain)
		return nil, fmt.Errorf("decrypt %s: %w", path, err)
	}
	return plain, nil
}

// encryptFile writes plain, encrypted to recipients, atomically to path
// with mode 0600.
func encryptFile(path string, plain []byte, recipients ...age.Recipient) error {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, buf.Bytes(), 0o600)
}

// storeFiles lists the store files (*.age, not hidden) in dir, sorted.
func storeFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".age") || !e.Type().IsRegular() {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	return files, nil
}
