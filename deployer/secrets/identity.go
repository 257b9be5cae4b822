package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/eeveon/eeveon/deployer/fsutil"
)

const (
	// EnvKeyFile names an age identity file that overrides every other
	// source.
	EnvKeyFile = "EEVEON_AGE_KEY_FILE"
	// CredentialName is the systemd credential (LoadCredential=) that
	// holds the identity; systemd exposes it as
	// $CREDENTIALS_DIRECTORY/eeveon-age-key.
	CredentialName = "eeveon-age-key"
	// KeyFile is the identity's file name in the data directory.
	KeyFile = "age.key"

	maxKeyFile = 64 << 10
)

// IdentityPath says where the age identity is read from, first match
// wins:
//
//  1. $EEVEON_AGE_KEY_FILE, whenever it is set (non-empty). It is taken
//     even if the file is missing, so that a typo is an error rather than
//     a silent fall back to another key.
//  2. $CREDENTIALS_DIRECTORY/eeveon-age-key, if that file exists (systemd
//     LoadCredential=eeveon-age-key:...).
//  3. <dataDir>/age.key.
//
// external is true for the first two: eeveon never creates, checks the
// mode of, or rotates those.
func IdentityPath(dataDir string) (path string, external bool) {
	if p := os.Getenv(EnvKeyFile); p != "" {
		return p, true
	}
	if d := os.Getenv("CREDENTIALS_DIRECTORY"); d != "" {
		p := filepath.Join(d, CredentialName)
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return p, true
		}
	}
	return filepath.Join(dataDir, KeyFile), false
}

// identitySource names where an identity path came from, for messages.
func identitySource(dataDir string) string {
	path, external := IdentityPath(dataDir)
	switch {
	case !external:
		return path
	case os.Getenv(EnvKeyFile) != "":
		return fmt.Sprintf("%s (from $%s)", path, EnvKeyFile)
	default:
		return fmt.Sprintf("%s (systemd credential %s)", path, CredentialName)
	}
}

// LoadIdentity reads the server's age identity from IdentityPath. The
// file holds exactly one X25519 identity (AGE-SECRET-KEY-1…) in
// age-keygen format; blank lines and # comments are ignored.
//
// When the data-dir key is missing and create is set, a new identity is
// written to <dataDir>/age.key (0600, with age-keygen's "# created" and
// "# public key" comment lines); two processes racing to create it end up
// with the same key. External paths are never created: a missing one is
// an error. A missing key without create is an error that wraps
// fs.ErrNotExist.
//
// The data-dir key is refused when group or others have any access to
// it; the error names the file and says to chmod 600 it. External files
// are loaded as they are (systemd credentials, for one, manage their own
// modes).
func LoadIdentity(dataDir string, create bool) (*age.X25519Identity, error) {
	path, external := IdentityPath(dataDir)
	id, err := readIdentity(path, !external)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if external {
		return nil, fmt.Errorf("load age identity: %s does not exist: %w", identitySource(dataDir), fs.ErrNotExist)
	}
	if !create {
		return nil, fmt.Errorf("load age identity: %s does not exist: %w", path, fs.ErrNotExist)
	}
	return createIdentity(dataDir, path)
}

func createIdentity(dataDir, path string) (*age.X25519Identity, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create age identity: %w", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("create age identity: %w", err)
	}
	content := identityFile(id)
	defer wipe(content)
	err = fsutil.CreateFileExclusive(path, content, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readIdentity(path, true) // another process won the race
	}
	if err != nil {
		return nil, fmt.Errorf("create age identity: %w", err)
	}
	return id, nil
}

// identityFile renders id as age-keygen does.
func identityFile(id *age.X25519Identity) []byte {
	return []byte(fmt.Sprintf("# created: %s\n# public key: %s\n%s\n",
		time.Now().Format(time.RFC3339), id.Recipient(), id))
}

// readIdentity loads the one X25519 identity in path; private says the
// file must be a regular file with no group or other access.
func readIdentity(path string, private bool) (*age.X25519Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load age identity %s: %w", path, err)
	}
	defer f.Close()
	if private {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("load age identity %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("load age identity %s: not a regular file", path)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("load age identity %s: the private key is accessible by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("load age identity %s: %w", path, err)
	}
	defer wipe(data)
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("load age identity %s: file is larger than %d bytes", path, maxKeyFile)
	}
	// age's parse errors never quote key material.
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("load age identity %s: %v", path, err)
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("load age identity %s: holds %d identities; want exactly one", path, len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("load age identity %s: not an X25519 identity (AGE-SECRET-KEY-1…); create one with age-keygen", path)
	}
	return id, nil
}
