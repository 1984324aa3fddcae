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
	"sort"
)

// Sealer encrypts sensitive fields at rest (AES-256-GCM) and derives keyed
// hashes for looking them up without decrypting. It holds a keyring: values
// are sealed under the current key and carry its id, so that older keys
// can still open them while `careloop rotate-key` re-seals them.
//
// A sealed value is 0xC1, the key id, the nonce and the ciphertext. Values
// sealed before key ids existed (nonce and ciphertext only) belong to key 1.
type Sealer struct {
	current byte
	aeads   map[byte]cipher.AEAD
	hashKey []byte
}

// sealedMark starts a sealed value that carries its key id.
const sealedMark = 0xC1

// NewSealer is a keyring of one key (id 1) — CARELOOP_DATA_KEY alone.
func NewSealer(master []byte) (*Sealer, error) {
	return NewKeyring(map[byte][]byte{1: master}, 1, 1)
}

// NewKeyring holds keys by id (1–255), sealing with current. The lookup
// hashes (phones, ID cards) are derived from key hashID (0: key 1 while it
// is in the ring, else current); rotate-key re-computes them.
func NewKeyring(keys map[byte][]byte, current, hashID byte) (*Sealer, error) {
	if len(keys[current]) == 0 {
		return nil, fmt.Errorf("the current data key %d is not in the keyring", current)
	}
	s := &Sealer{current: current, aeads: map[byte]cipher.AEAD{}}
	for id, master := range keys {
		if id == 0 || len(master) != 32 {
			return nil, fmt.Errorf("data key %d must be 32 bytes and its id 1–255", id)
		}
		block, err := aes.NewCipher(derive(master, "careloop/aes-gcm/v1"))
		if err != nil {
			return nil, err
		}
		if s.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	if hashID == 0 {
		hashID = current
		if _, ok := keys[1]; ok {
			hashID = 1
		}
	}
	if len(keys[hashID]) == 0 {
		return nil, fmt.Errorf("the lookup-hash key %d is not in the keyring", hashID)
	}
	s.hashKey = derive(keys[hashID], "careloop/lookup-hash/v1")
	return s, nil
}

func derive(master []byte, label string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Current is the id of the key new values are sealed with.
func (s *Sealer) Current() byte { return s.current }

// KeyIDs lists the keys of the ring, ascending.
func (s *Sealer) KeyIDs() []byte {
	var ids []byte
	for id := range s.aeads {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Seal encrypts plain under the current key.
func (s *Sealer) Seal(plain []byte) []byte {
	aead := s.aeads[s.current]
	out := make([]byte, 2, 2+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0], out[1] = sealedMark, s.current
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, nil)
}

// KeyID tells which key sealed a value: the id it carries when that key
// opens it, else 1 (sealed before key ids); 0 for an empty value.
func (s *Sealer) KeyID(sealed []byte) byte {
	if len(sealed) > 2 && sealed[0] == sealedMark {
		if aead, ok := s.aeads[sealed[1]]; ok {
			if _, err := open(aead, sealed[2:]); err == nil {
				return sealed[1]
			}
		}
	}
	if len(sealed) > 0 {
		return 1
	}
	return 0
}

// Open decrypts what Seal produced, under whichever key of the ring sealed it.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	if len(sealed) > 2 && sealed[0] == sealedMark {
		if aead, ok := s.aeads[sealed[1]]; ok {
			if plain, err := open(aead, sealed[2:]); err == nil {
				return plain, nil
			}
		}
	}
	// A value from before key ids (whose first nonce byte may be the mark).
	aead, ok := s.aeads[1]
	if !ok {
		return nil, errors.New("open sealed value: its key is not in the keyring")
	}
	return open(aead, sealed)
}

func open(aead cipher.AEAD, b []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(b) < n {
		return nil, errors.New("sealed value too short")
	}
	plain, err := aead.Open(nil, b[:n], b[n:], nil)
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
