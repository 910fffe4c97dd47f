//! Test support for the Plait workspace.
//!
//! `plait-core` never reads the clock: every machine takes `now` as an input. Its unit tests,
//! doc examples and fuzz-harness tests need a first instant to start from, and take it from
//! here, the way a driver passes the instants it reads from its runtime.

use std::sync::OnceLock;
use std::time::Instant;

/// The instant tests start from: read once per process, the same for every caller, so a test
/// depends only on the durations it adds to it.
pub fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// RSA private keys for tests (PKCS#8 DER, as `libp2p_identity::Keypair::rsa_from_pkcs8`
/// takes them), generated once with `openssl genpkey -algorithm RSA`: RSA keys cannot be
/// generated through libp2p-identity.
pub mod rsa_keys {
    /// The public half (DER `SubjectPublicKeyInfo`) of a 1024-bit key: below what libp2p peers
    /// accept (and what ring signs with, so there is no private half).
    pub const RSA_1024_PUBLIC: &[u8] = include_bytes!("../keys/rsa1024.spki");
    /// A 2048-bit key (the seed's `makeBasicHost` size).
    pub const RSA_2048: &[u8] = include_bytes!("../keys/rsa2048.pk8");
    /// The 2048-bit key as a libp2p `PrivateKey` protobuf (type RSA, PKCS#1 DER data), as
    /// go-libp2p's `crypto.MarshalPrivateKey` writes it.
    pub const RSA_2048_PROTOBUF: &[u8] = include_bytes!("../keys/rsa2048.protobuf");
    /// A 4096-bit key.
    pub const RSA_4096: &[u8] = include_bytes!("../keys/rsa4096.pk8");
}

/// `data` cut at `cuts` (each taken modulo `data.len() + 1`, in any order): the pieces a
/// chunking-invariance test feeds a machine one by one. Pieces may be empty; concatenated they
/// are `data`.
pub fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([data.len()]) {
        out.push(data[prev..c].to_vec());
        prev = c;
    }
    out
}
