package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	testKey = bytes.Repeat([]byte{7}, secretLen)
)

func TestTokenRoundTrip(t *testing.T) {
	s := signer{key: testKey}
	tok, c, err := s.sign("critical", "20260304-050607-ab12", "alice", testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(tok, "+/=?#&% ") {
		t.Errorf("token is not URL-safe: %s", tok)
	}
	got, err := s.verify(tok, testNow)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got != c || got.Site != "critical" || got.Deploy != "20260304-050607-ab12" || got.Approver != "alice" ||
		!got.ExpiresAt().Equal(testNow.Add(time.Hour)) || got.Purpose != purposeApprove {
		t.Errorf("claims = %+v, want %+v", got, c)
	}
	tok2, c2, _ := s.sign("critical", "20260304-050607-ab12", "alice", testNow.Add(time.Hour))
	if tok2 == tok || c2.Nonce == c.Nonce {
		t.Error("two links for the same deploy share a nonce")
	}
}

func TestTokenExpiry(t *testing.T) {
	s := signer{key: testKey}
	exp := testNow.Add(time.Minute)
	tok, _, _ := s.sign("critical", "20260304-050607-ab12", "alice", exp)
	if _, err := s.verify(tok, exp.Add(-time.Second)); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	for _, now := range []time.Time{exp, exp.Add(time.Hour)} {
		c, err := s.verify(tok, now)
		if !errors.Is(err, ErrExpiredToken) {
			t.Errorf("at %s: err = %v, want expired", now, err)
		}
		if c.Site != "critical" {
			t.Error("an expired token's claims are not reported for the page")
		}
	}
}

// Any change to a token, or a token signed with another key, is invalid.
func TestTokenTamper(t *testing.T) {
	s := signer{key: testKey}
	tok, _, _ := s.sign("critical", "20260304-050607-ab12", "alice", testNow.Add(time.Hour))
	p64, m64, _ := strings.Cut(tok, ".")
	forge := func() string {
		raw, _ := base64.RawURLEncoding.DecodeString(p64)
		raw = bytes.Replace(raw, []byte(`"a":"alice"`), []byte(`"a":"mallory"`), 1)
		return base64.RawURLEncoding.EncodeToString(raw) + "." + m64
	}
	other, _, _ := signer{key: bytes.Repeat([]byte{8}, secretLen)}.sign("critical", "20260304-050607-ab12", "alice", testNow.Add(time.Hour))
	cases := map[string]string{
		"empty":          "",
		"no dot":         p64 + m64,
		"payload only":   p64 + ".",
		"mac only":       "." + m64,
		"other approver": forge(),
		"other key":      other,
		"truncated mac":  tok[:len(tok)-2],
		"extra dot":      tok + ".x",
		"bad base64":     p64 + "." + strings.Repeat("!", len(m64)),
		"too long":       tok + strings.Repeat("A", maxTokenLen),
	}
	// Flip each character of the token in turn.
	for i := 0; i < len(tok); i++ {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		cases[fmt.Sprintf("flip %d", i)] = string(b)
	}
	for name, bad := range cases {
		if _, err := s.verify(bad, testNow); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

// A well-signed payload whose fields break the rules is still refused.
func TestTokenClaimsChecked(t *testing.T) {
	s := signer{key: testKey}
	for _, c := range []Claims{
		{Purpose: "deploy", Site: "critical", Deploy: "20260304-050607-ab12", Approver: "alice", Expires: 1e10, Nonce: strings.Repeat("a", 22)},
		{Purpose: purposeApprove, Site: "../etc", Deploy: "20260304-050607-ab12", Approver: "alice", Expires: 1e10, Nonce: strings.Repeat("a", 22)},
		{Purpose: purposeApprove, Site: "critical", Deploy: "--help", Approver: "alice", Expires: 1e10, Nonce: strings.Repeat("a", 22)},
		{Purpose: purposeApprove, Site: "critical", Deploy: "20260304-050607-ab12", Approver: "", Expires: 1e10, Nonce: strings.Repeat("a", 22)},
		{Purpose: purposeApprove, Site: "critical", Deploy: "20260304-050607-ab12", Approver: "alice", Expires: 1e10, Nonce: "short"},
	} {
		if err := c.check(); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("check(%+v) = %v", c, err)
		}
	}
	if _, _, err := s.sign("Bad Site", "20260304-050607-ab12", "alice", testNow); err == nil {
		t.Error("signed a link for an invalid site name")
	}
}

func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "http.secret")
	k1, err := loadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != secretLen {
		t.Fatalf("secret file: %v, mode %v, size %d", err, fi.Mode(), fi.Size())
	}
	k2, err := loadSecret(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(k1, k2))
	}
	if bytes.Equal(k1, make([]byte, secretLen)) {
		t.Error("secret is all zeros")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSecret(path); err == nil || !strings.Contains(err.Error(), "must be 0600") {
		t.Errorf("world-readable secret: err = %v", err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSecret(path); err == nil || !strings.Contains(err.Error(), "must hold 32 bytes") {
		t.Errorf("short secret: err = %v", err)
	}
}

func TestUsedTokensPersistAndPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "used-tokens.json")
	u, err := openUsedTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	old := "oooooooooooooooooooooo"
	if err := u.use(old, testNow.Add(-48*time.Hour).Unix(), testNow.Add(-72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	nonce := "nnnnnnnnnnnnnnnnnnnnnn"
	if err := u.use(nonce, testNow.Add(time.Hour).Unix(), testNow); err != nil {
		t.Fatal(err)
	}
	if err := u.use(nonce, testNow.Add(time.Hour).Unix(), testNow); !errors.Is(err, ErrUsedToken) {
		t.Errorf("second use: %v", err)
	}
	// After a restart the use is still known; the long-expired one is gone.
	u2, err := openUsedTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u2.isUsed(nonce) {
		t.Error("use forgotten across a reopen")
	}
	if u2.isUsed(old) {
		t.Error("an entry expired two days ago was not pruned")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("used-tokens file: %v %v", err, fi.Mode())
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openUsedTokens(path); err == nil {
		t.Error("a corrupt store was accepted (used links could be replayed)")
	}
}
