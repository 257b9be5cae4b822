package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/names"
)

// Token errors. ErrInvalidToken covers a malformed or tampered token (its
// signature does not verify) and is never more specific than that.
var (
	ErrInvalidToken = errors.New("invalid approval link")
	ErrExpiredToken = errors.New("approval link expired")
	ErrUsedToken    = errors.New("approval link already used")
)

// purposeApprove binds a token to the approval action: a token made for
// another purpose with the same secret can never approve.
const purposeApprove = "approve"

// secretLen is the size of the HMAC key in <data>/http.secret.
const secretLen = 32

// maxTokenLen bounds what is decoded at all.
const maxTokenLen = 1024

var b64 = base64.RawURLEncoding.Strict()

var nonceRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// Claims is what an approval token says: approve this deploy of this site
// as this user, until then, once (the nonce is what "once" remembers).
type Claims struct {
	Purpose  string `json:"p"`
	Site     string `json:"s"`
	Deploy   string `json:"d"`
	Approver string `json:"a"`
	Expires  int64  `json:"e"` // Unix seconds
	Nonce    string `json:"n"`
}

// ExpiresAt is the expiry as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }

// signer makes and checks tokens:
// base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims JSON)).
type signer struct{ key []byte }

// sign makes a token for a new approval of site's deploy id by approver,
// valid until expires, with a fresh random nonce.
func (s signer) sign(site, id, approver string, expires time.Time) (string, Claims, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", Claims{}, err
	}
	// Round the expiry down: the token never outlives the deploy's window.
	c := Claims{Purpose: purposeApprove, Site: site, Deploy: id, Approver: approver,
		Expires: expires.Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce[:])}
	if err := c.check(); err != nil {
		return "", Claims{}, err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", Claims{}, err
	}
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), c, nil
}

func (s signer) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	return m.Sum(nil)
}

// verify checks a token's signature and contents, then its expiry. A
// token that fails the signature is ErrInvalidToken whatever it claims;
// one that verifies but has lapsed is ErrExpiredToken (with its claims).
func (s signer) verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLen {
		return Claims{}, ErrInvalidToken
	}
	p64, m64, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrInvalidToken
	}
	// Strict: one token has one spelling, so any changed character fails.
	payload, err1 := b64.DecodeString(p64)
	sum, err2 := b64.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(sum, s.mac(payload)) {
		return Claims{}, ErrInvalidToken
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() || c.check() != nil {
		return Claims{}, ErrInvalidToken
	}
	if !now.Before(c.ExpiresAt()) {
		return c, ErrExpiredToken
	}
	return c, nil
}

// check validates the claims' fields with the rules every entry point uses.
func (c Claims) check() error {
	switch {
	case c.Purpose != purposeApprove:
		return fmt.Errorf("%w: purpose %q", ErrInvalidToken, c.Purpose)
	case names.Site(c.Site) != nil, names.DeployID(c.Deploy) != nil, names.User(c.Approver) != nil:
		return fmt.Errorf("%w: bad site, deploy id or approver", ErrInvalidToken)
	case !nonceRe.MatchString(c.Nonce), c.Expires <= 0:
		return fmt.Errorf("%w: bad nonce or expiry", ErrInvalidToken)
	}
	return nil
}

// loadSecret reads the HMAC key at path, creating it (32 random bytes,
// mode 0600, written atomically) on first use. A key readable by others is
// refused: with it anyone on the box could forge approvals.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, secretLen)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("make http secret: %w", err)
		}
		if err := deployer.WriteFileAtomic(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("make http secret: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read http secret: %w", err)
	}
	if len(b) != secretLen {
		return nil, fmt.Errorf("http secret %s must hold %d bytes (remove it to make a new one; that voids every approval link)", path, secretLen)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("http secret %s has mode %o; it must be 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return b, nil
}
