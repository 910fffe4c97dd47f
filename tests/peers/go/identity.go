package main

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"filippo.io/keygen"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// Key types of --key.
const (
	keyRSA       = "rsa"
	keyEd25519   = "ed25519"
	keySecp256k1 = "secp256k1"
	keyECDSA     = "ecdsa"
)

// Bounds of --rsa-bits: go-libp2p refuses RSA keys outside them (crypto.MinRsaKeyBits and
// the unexported maxRsaKeyBits).
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// makeIdentity returns the peer's private key: derived from (keyType, rsaBits, seed) alone, or
// from a random secret when seed is 0.
//
// The seed's echo example passes a math/rand reader to crypto.GenerateKeyPairWithReader.
// Since Go 1.26 the standard library ignores custom readers in key generation (GODEBUG
// cryptocustomrand), and even with cryptocustomrand=1 it calls randutil.MaybeReadByte, which
// consumes a byte from the reader or not at random, so that route is not deterministic here.
// Instead a 256-bit secret is hashed from the seed and turned into a key by fixed algorithms:
// c2sp.org/det-keygen (filippo.io/keygen, which go-libp2p already depends on) for RSA and
// ECDSA P-256, the secret itself as the Ed25519 seed, and a hash-and-retry scalar for
// secp256k1. Same seed and key type: same key, every run, every machine.
func makeIdentity(keyType string, rsaBits int, seed int64) (crypto.PrivKey, error) {
	secret := seedSecret(keyType, rsaBits, seed)
	if seed == 0 {
		if _, err := rand.Read(secret[:]); err != nil {
			return nil, err
		}
	}
	switch keyType {
	case keyRSA:
		k, err := keygen.RSA(rsaBits, secret[:])
		if err != nil {
			return nil, err
		}
		priv, _, err := crypto.KeyPairFromStdKey(k)
		return priv, err
	case keyEd25519:
		k := ed25519.NewKeyFromSeed(secret[:])
		priv, _, err := crypto.KeyPairFromStdKey(&k)
		return priv, err
	case keySecp256k1:
		for counter := uint32(0); ; counter++ {
			h := sha256.New()
			h.Write(secret[:])
			_ = binary.Write(h, binary.BigEndian, counter)
			var scalar secp256k1.ModNScalar
			// SetByteSlice reports overflow (value >= N); zero is not a key either.
			if overflow := scalar.SetByteSlice(h.Sum(nil)); overflow || scalar.IsZero() {
				continue
			}
			k := secp256k1.NewPrivateKey(&scalar)
			priv, _, err := crypto.KeyPairFromStdKey(k)
			return priv, err
		}
	case keyECDSA:
		k, err := keygen.ECDSA(elliptic.P256(), secret[:])
		if err != nil {
			return nil, err
		}
		priv, _, err := crypto.KeyPairFromStdKey(k)
		return priv, err
	default:
		return nil, fmt.Errorf("unknown key type %q", keyType)
	}
}

// seedSecret is the 256-bit secret a seeded identity is derived from.
func seedSecret(keyType string, rsaBits int, seed int64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "plait-test-peer identity %s %d %d", keyType, rsaBits, seed))
}
