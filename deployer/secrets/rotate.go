package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"
	"github.com/eeveon/eeveon/deployer/fsutil"
)

// testHookRotate, when set, runs after each step of Rotate; an error
// stops Rotate there, as a crash would.
var testHookRotate func(step int, next *age.X25519Identity) error

// Rotate replaces the data-dir identity with a new one and re-encrypts
// every store to it, returning the new recipient (age1…). It holds the
// exclusive store lock throughout. The steps are:
//
//  1. re-encrypt every store to both the old and the new recipient;
//  2. write the new identity over <dataDir>/age.key (atomic rename; the
//     old key is not kept anywhere);
//  3. re-encrypt every store to the new recipient only.
//
// Whichever key is in age.key after a crash between (or during) steps
// decrypts every store. After a crash in step 2 or 3 some stores are still
// also readable by the old key: run Rotate again to finish (it then
// rotates once more, which is harmless).
//
// Rotate refuses an identity that comes from $EEVEON_AGE_KEY_FILE or a
// systemd credential: eeveon does not own that file, so the operator
// rotates it (the error says how).
func Rotate(dataDir string) (newRecipient string, err error) {
	path, external := IdentityPath(dataDir)
	if external {
		return "", fmt.Errorf("rotate secrets key: the age identity is %s, which eeveon does not manage; rotate it yourself: create a new key with age-keygen, re-encrypt each %s with `age -d -i OLD.key FILE | age -r NEW_RECIPIENT -o FILE.new && mv FILE.new FILE`, then install the new key in place of the old one and restart eeveon",
			identitySource(dataDir), filepath.Join(dataDir, "secrets", "*.age"))
	}
	dir := filepath.Join(dataDir, "secrets")
	if err := ensurePrivateDir(dir); err != nil {
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	unlock, err := lockDir(dir, true)
	if err != nil {
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	defer unlock()

	old, err := LoadIdentity(dataDir, false)
	if err != nil {
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	next, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	files, err := storeFiles(dir)
	if err != nil {
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	hook := func(step int) error {
		if testHookRotate == nil {
			return nil
		}
		return testHookRotate(step, next)
	}

	// 1: both recipients. A failure here changes nothing that matters: the
	// old key still decrypts every store.
	if err := reencrypt(files, old, old.Recipient(), next.Recipient()); err != nil {
		return "", fmt.Errorf("rotate secrets key: step 1 (nothing lost, the old key is still in place): %w", err)
	}
	if err := hook(1); err != nil {
		return "", err
	}

	// 2: the new key takes over.
	content := identityFile(next)
	err = fsutil.WriteFileAtomic(path, content, 0o600)
	wipe(content)
	if err != nil {
		return "", fmt.Errorf("rotate secrets key: step 2 (the old key is still in place): %w", err)
	}
	if err := hook(2); err != nil {
		return "", err
	}

	// 3: drop the old recipient.
	if err := reencrypt(files, next, next.Recipient()); err != nil {
		return "", fmt.Errorf("rotate secrets key: step 3 (the new key is in place and decrypts every store; run rotate again to finish): %w", err)
	}
	if err := hook(3); err != nil {
		return "", err
	}
	return next.Recipient().String(), nil
}

// reencrypt decrypts each file with id and writes it back encrypted to
// recipients, atomically. The plaintext is carried over byte for byte.
func reencrypt(files []string, id age.Identity, recipients ...age.Recipient) error {
	for _, f := range files {
		plain, err := decryptFile(f, id)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since listed; cannot happen under the lock
		}
		if err != nil {
			return err
		}
		err = encryptFile(f, plain, recipients...)
		wipe(plain)
		if err != nil {
			return err
		}
	}
	return nil
}
