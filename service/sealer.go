package service

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Sealer encrypts sensitive fields at rest (AES-256-GCM) and derives keyed
// hashes for looking them up without decrypting.
type Sealer struct {
	aead    cipher.AEAD
	hashKey []byte
}

// NewSealer derives the encryption and hashing keys from a 32-byte master key.
func NewSealer(master []byte) (*Sealer, error) {
	if len(master) != 32 {
		return nil, errors.New("data key must be 32 bytes")
	}
	encKey := derive(master, "careloop/aes-gcm/v1")
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead, hashKey: derive(master, "careloop/lookup-hash/v1")}, nil
}

func derive(master []byte, label string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Seal encrypts plain; the nonce is stored in front of the ciphertext.
func (s *Sealer) Seal(plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, nil)
}

// Open decrypts what Seal produced.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("open sealed value: %w", err)
	}
	return plain, nil
}

// Hash is the keyed lookup hash of v (hex), for unique indexes and search.
func (s *Sealer) Hash(v string) string {
	m := hmac.New(sha256.New, s.hashKey)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// OpenString decrypts a sealed text field; an empty or unreadable field
// yields "".
func (s *Sealer) OpenString(sealed []byte) string {
	if len(sealed) == 0 {
		return ""
	}
	b, err := s.Open(sealed)
	if err != nil {
		return ""
	}
	return string(b)
}
