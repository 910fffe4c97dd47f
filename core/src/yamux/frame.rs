//! The 12-byte yamux frame header (spec §1): encoding straight into the caller's buffer and
//! decoding in place from the front of the input.

use bytes::{BufMut, BytesMut};

/// Length of every frame header, in bytes.
pub const HEADER_LEN: usize = 12;

/// The only protocol version (spec §1); anything else is fatal.
pub const VERSION: u8 = 0;

/// Frame type (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// `0x0`: payload bytes for a stream.
    Data,
    /// `0x1`: credit for a stream's send window (and stream flags).
    WindowUpdate,
    /// `0x2`: session ping (SYN) or pong (ACK).
    Ping,
    /// `0x3`: session termination with an error code.
    GoAway,
}

impl FrameType {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::WindowUpdate => 1,
            Self::Ping => 2,
            Self::GoAway => 3,
        }
    }

    /// Parses a wire value; `None` for an unknown type.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Data),
            1 => Some(Self::WindowUpdate),
            2 => Some(Self::Ping),
            3 => Some(Self::GoAway),
            _ => None,
        }
    }
}

/// Flag bits (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// Opens a stream / ping request.
    pub const SYN: Self = Self(0x1);
    /// Accepts a stream / ping reply.
    pub const ACK: Self = Self(0x2);
    /// Half-close: the sender sends no more data.
    pub const FIN: Self = Self(0x4);
    /// Aborts the stream in both directions.
    pub const RST: Self = Self(0x8);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both flag sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// Go Away code: normal termination.
pub const GO_AWAY_NORMAL: u32 = 0;
/// Go Away code: protocol error.
pub const GO_AWAY_PROTOCOL_ERROR: u32 = 1;
/// Go Away code: internal error.
pub const GO_AWAY_INTERNAL_ERROR: u32 = 2;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub ty: FrameType,
    /// Flag bits.
    pub flags: Flags,
    /// Stream id; 0 for the session.
    pub stream_id: u32,
    /// Payload length (Data), credit delta (Window Update), opaque value (Ping) or code
    /// (Go Away).
    pub length: u32,
}

/// A header could not be decoded (both are fatal for the session, spec §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The version byte was not 0.
    Version(u8),
    /// The type byte was not 0–3.
    Type(u8),
}

impl Header {
    /// A header of the given type.
    pub const fn new(ty: FrameType, flags: Flags, stream_id: u32, length: u32) -> Self {
        Self {
            ty,
            flags,
            stream_id,
            length,
        }
    }

    /// Decodes the header at the front of `buf`; `Ok(None)` when fewer than 12 bytes are there.
    pub fn decode(buf: &[u8]) -> Result<Option<Self>, HeaderError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let [v, t, f0, f1, s0, s1, s2, s3, l0, l1, l2, l3] = *h;
        if v != VERSION {
            return Err(HeaderError::Version(v));
        }
        let ty = FrameType::from_u8(t).ok_or(HeaderError::Type(t))?;
        Ok(Some(Self {
            ty,
            flags: Flags(u16::from_be_bytes([f0, f1])),
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]),
            length: u32::from_be_bytes([l0, l1, l2, l3]),
        }))
    }

    /// The 12 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let f = self.flags.0.to_be_bytes();
        let s = self.stream_id.to_be_bytes();
        let l = self.length.to_be_bytes();
        [
            VERSION,
            self.ty.to_u8(),
            f[0],
            f[1],
            s[0],
            s[1],
            s[2],
            s[3],
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }

    /// Appends the 12 wire bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }
}
