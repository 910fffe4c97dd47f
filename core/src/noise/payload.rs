//! The libp2p-noise handshake payload protobuf (spec digest §3), field numbers 1, 2, 4.

/// `NoiseExtensions`: early data carried in messages 2 and 3.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NoiseExtensions {
    /// WebTransport certificate hashes (unused over TCP; decoded and ignored).
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub(crate) webtransport_certhashes: Vec<Vec<u8>>,
    /// Supported stream muxers, in preference order.
    #[prost(string, repeated, tag = "2")]
    pub(crate) stream_muxers: Vec<String>,
}

/// `NoiseHandshakePayload`: identity, signature over the static key, extensions.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NoiseHandshakePayload {
    /// Protobuf-encoded libp2p `PublicKey`.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) identity_key: Option<Vec<u8>>,
    /// Signature over `STATIC_KEY_DOMAIN ‖ static X25519 public key`.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) identity_sig: Option<Vec<u8>>,
    /// Early data.
    #[prost(message, optional, tag = "4")]
    pub(crate) extensions: Option<NoiseExtensions>,
}
