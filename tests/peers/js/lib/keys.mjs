// Identity keys: random, or derived deterministically from `--seed N`.
//
// Derivation (this peer's own, see tests/peers/README.md: "how the key is derived from N is the
// peer's own business"): a byte stream DRBG(label) = SHA-256(label || be32(0)) ||
// SHA-256(label || be32(1)) || ..., with label = "plait-test-peer/js/<type>/<N>" (for RSA
// "plait-test-peer/js/rsa/<bits>/<N>").
// - ed25519: the first 32 bytes are the Ed25519 seed (RFC 8032 secret key).
// - secp256k1: 32-byte big-endian candidates from the stream until one is in [1, n-1].
// - rsa: two primes of ceil(bits/2) and floor(bits/2) bits, each the first candidate from the
//   stream (top two bits and the low bit forced to 1) that passes trial division, gcd(p-1, e) = 1
//   and 16 Miller-Rabin rounds with stream-drawn bases; e = 65537,
//   d = e^-1 mod lcm(p-1, q-1). The key is handed to @libp2p/crypto as PKCS#1 DER (node:crypto
//   builds and checks it from the JWK). js-libp2p cannot seed its own RSA generation
//   (`generateKeyPairFromSeed` is Ed25519 only), hence this generator.
// Same N, type (and bits) give the same key on every run and machine.

import { createHash, createPrivateKey } from 'node:crypto'
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromRaw } from '@libp2p/crypto/keys'

export const KEY_TYPES = ['rsa', 'ed25519', 'secp256k1']

class Drbg {
  constructor (label) {
    this.label = Buffer.from(label, 'utf8')
    this.counter = 0
    this.buf = Buffer.alloc(0)
  }

  bytes (n) {
    while (this.buf.length < n) {
      const ctr = Buffer.alloc(4)
      ctr.writeUInt32BE(this.counter++)
      const block = createHash('sha256').update(this.label).update(ctr).digest()
      this.buf = Buffer.concat([this.buf, block])
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return Buffer.from(out)
  }

  // a BigInt with exactly `bits` random bits (top bits may be zero)
  bigint (bits) {
    const nbytes = Math.ceil(bits / 8)
    const b = this.bytes(nbytes)
    const extra = nbytes * 8 - bits
    if (extra > 0) b[0] &= 0xff >> extra
    return BigInt('0x' + (b.toString('hex') || '0'))
  }
}

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

function modPow (base, exp, mod) {
  let result = 1n
  base %= mod
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod
    exp >>= 1n
    base = (base * base) % mod
  }
  return result
}

function gcd (a, b) {
  while (b !== 0n) [a, b] = [b, a % b]
  return a
}

function modInverse (a, m) {
  let [oldR, r] = [a % m, m]
  let [oldS, s] = [1n, 0n]
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s]
  }
  if (oldR !== 1n) throw new Error('not invertible')
  return ((oldS % m) + m) % m
}

const SMALL_PRIMES = (() => {
  const limit = 20000
  const sieve = new Uint8Array(limit)
  const out = []
  for (let i = 2; i < limit; i++) {
    if (sieve[i]) continue
    out.push(i)
    for (let j = i * i; j < limit; j += i) sieve[j] = 1
  }
  return out
})()
// products of small primes that stay below 2^53, so one BigInt `%` checks a group
const SMALL_PRIME_GROUPS = (() => {
  const groups = []
  let prod = 1
  let members = []
  for (const p of SMALL_PRIMES.slice(1)) { // 2 is excluded: candidates are odd
    if (prod * p > Number.MAX_SAFE_INTEGER) {
      groups.push({ prod: BigInt(prod), members })
      prod = 1
      members = []
    }
    prod *= p
    members.push(p)
  }
  if (members.length > 0) groups.push({ prod: BigInt(prod), members })
  return groups
})()

function passesTrialDivision (c) {
  for (const { prod, members } of SMALL_PRIME_GROUPS) {
    const r = Number(c % prod)
    for (const p of members) {
      if (r % p === 0) return c === BigInt(p)
    }
  }
  return true
}

function millerRabin (n, rounds, drbg, bits) {
  let d = n - 1n
  let s = 0
  while ((d & 1n) === 0n) { d >>= 1n; s++ }
  for (let i = 0; i < rounds; i++) {
    const a = 2n + drbg.bigint(bits) % (n - 3n)
    let x = modPow(a, d, n)
    if (x === 1n || x === n - 1n) continue
    let composite = true
    for (let r = 1; r < s; r++) {
      x = (x * x) % n
      if (x === n - 1n) { composite = false; break }
    }
    if (composite) return false
  }
  return true
}

function deterministicPrime (bits, drbg, e) {
  const top = (1n << BigInt(bits - 1)) | (1n << BigInt(bits - 2))
  for (;;) {
    const c = drbg.bigint(bits) | top | 1n
    if (!passesTrialDivision(c)) continue
    if (gcd(c - 1n, e) !== 1n) continue
    if (millerRabin(c, 16, drbg, bits)) return c
  }
}

function b64url (n) {
  let hex = n.toString(16)
  if (hex.length % 2) hex = '0' + hex
  return Buffer.from(hex, 'hex').toString('base64url')
}

function deterministicRsa (bits, label) {
  const drbg = new Drbg(label)
  const e = 65537n
  const pBits = Math.ceil(bits / 2)
  const qBits = Math.floor(bits / 2)
  let p = deterministicPrime(pBits, drbg, e)
  let q
  do { q = deterministicPrime(qBits, drbg, e) } while (q === p)
  if (p < q) [p, q] = [q, p]
  const n = p * q
  const lambda = (p - 1n) * (q - 1n) / gcd(p - 1n, q - 1n)
  const d = modInverse(e, lambda)
  const jwk = {
    kty: 'RSA',
    n: b64url(n),
    e: b64url(e),
    d: b64url(d),
    p: b64url(p),
    q: b64url(q),
    dp: b64url(d % (p - 1n)),
    dq: b64url(d % (q - 1n)),
    qi: b64url(modInverse(q, p))
  }
  const der = createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs1', format: 'der' })
  return privateKeyFromRaw(new Uint8Array(der))
}

/**
 * @param {'rsa'|'ed25519'|'secp256k1'} type
 * @param {string} seed decimal; '0' means random
 * @param {number} rsaBits
 */
export async function makeIdentity (type, seed, rsaBits) {
  const random = seed === '0'
  switch (type) {
    case 'ed25519':
      if (random) return generateKeyPair('Ed25519')
      return generateKeyPairFromSeed('Ed25519', new Drbg(`plait-test-peer/js/ed25519/${seed}`).bytes(32))
    case 'secp256k1': {
      if (random) return generateKeyPair('secp256k1')
      const drbg = new Drbg(`plait-test-peer/js/secp256k1/${seed}`)
      for (;;) {
        const k = drbg.bytes(32)
        const v = BigInt('0x' + k.toString('hex'))
        if (v > 0n && v < SECP256K1_N) return privateKeyFromRaw(new Uint8Array(k))
      }
    }
    case 'rsa':
      if (random) return generateKeyPair('RSA', rsaBits)
      return deterministicRsa(rsaBits, `plait-test-peer/js/rsa/${rsaBits}/${seed}`)
    default:
      throw new Error(`unsupported key type ${type}`)
  }
}
