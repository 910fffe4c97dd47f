//! Protocol ids and the messages of multistream-select.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};

use super::HEADER;
use crate::varint;

/// The longest message accepted, in bytes, including the trailing `\n`.
///
/// go-multistream rejects length prefixes above 1024, the strictest of the real peers, so
/// nothing longer can be useful on the wire.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest protocol id, in bytes (one less than [`MAX_MESSAGE_LEN`] for the `\n`).
pub const MAX_PROTOCOL_LEN: usize = MAX_MESSAGE_LEN - 1;

/// A protocol id is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Protocol ids must start with `/` (rust-libp2p rejects others).
    #[error("protocol id must start with '/'")]
    NoLeadingSlash,
    /// Protocol ids must not contain `\n`.
    #[error("protocol id contains a newline")]
    ContainsNewline,
    /// Protocol ids must be at most [`MAX_PROTOCOL_LEN`] bytes.
    #[error("protocol id of {0} bytes is longer than {MAX_PROTOCOL_LEN}")]
    TooLong(usize),
    /// A message must end with `\n`.
    #[error("message does not end with a newline")]
    MissingNewline,
    /// A message must be UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
}

/// A validated protocol id such as `/echo/1.0.0`: starts with `/`, no `\n`, at most
/// [`MAX_PROTOCOL_LEN`] bytes. Cloning a static id costs nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(Cow<'static, str>);

impl Protocol {
    /// A protocol id from a static string.
    ///
    /// # Panics
    /// If `id` is not a valid protocol id; use [`Protocol::try_from`] for ids not known at
    /// compile time.
    pub const fn from_static(id: &'static str) -> Self {
        assert!(
            Self::check(id.as_bytes()).is_ok(),
            "invalid static protocol id"
        );
        Self(Cow::Borrowed(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    const fn check(id: &[u8]) -> Result<(), ProtocolError> {
        if id.len() > MAX_PROTOCOL_LEN {
            return Err(ProtocolError::TooLong(id.len()));
        }
        if id.is_empty() || id[0] != b'/' {
            return Err(ProtocolError::NoLeadingSlash);
        }
        let mut i = 0;
        while i < id.len() {
            if id[i] == b'\n' {
                return Err(ProtocolError::ContainsNewline);
            }
            i += 1;
        }
        Ok(())
    }
}

impl TryFrom<String> for Protocol {
    type Error = ProtocolError;
    fn try_from(id: String) -> Result<Self, ProtocolError> {
        Self::check(id.as_bytes())?;
        Ok(Self(Cow::Owned(id)))
    }
}

impl TryFrom<&str> for Protocol {
    type Error = ProtocolError;
    fn try_from(id: &str) -> Result<Self, ProtocolError> {
        Self::try_from(id.to_owned())
    }
}

impl AsRef<str> for Protocol {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One multistream-select message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `/multistream/1.0.0`.
    Header,
    /// A protocol proposal (dialer) or its echo (listener).
    Protocol(Protocol),
    /// `na`: the proposal is not available.
    NotAvailable,
    /// `ls`: a request for the listener's protocols.
    ListProtocols,
    /// The answer to `ls`: a list of protocols.
    Protocols(Vec<Protocol>),
}

impl Message {
    /// Decodes a message payload (the bytes inside the length prefix).
    ///
    /// Anything that is not a valid protocol id and not one of the fixed messages is an error;
    /// a list answer is only recognised by the dialer, which never asks for one, so it is not
    /// decoded here.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let text = payload
            .strip_suffix(b"\n")
            .ok_or(ProtocolError::MissingNewline)?;
        let text = std::str::from_utf8(text).map_err(|_| ProtocolError::NotUtf8)?;
        Ok(match text {
            HEADER => Self::Header,
            "na" => Self::NotAvailable,
            "ls" => Self::ListProtocols,
            other => Self::Protocol(Protocol::try_from(other)?),
        })
    }

    /// Appends the framed message (`uvarint(len) ‖ text ‖ '\n'`) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Header => encode_line(HEADER, out),
            Self::Protocol(p) => encode_line(p.as_str(), out),
            Self::NotAvailable => encode_line("na", out),
            Self::ListProtocols => encode_line("ls", out),
            Self::Protocols(list) => {
                let inner: usize = list
                    .iter()
                    .map(|p| {
                        varint::encoded_len(p.as_str().len() as u64 + 1) + p.as_str().len() + 1
                    })
                    .sum::<usize>()
                    + 1;
                varint::encode_len(inner, out);
                for p in list {
                    encode_line(p.as_str(), out);
                }
                out.put_u8(b'\n');
            }
        }
    }
}

fn encode_line(text: &str, out: &mut BytesMut) {
    varint::encode_len(text.len() + 1, out);
    out.reserve(text.len() + 1);
    out.put_slice(text.as_bytes());
    out.put_u8(b'\n');
}

/// Lossy text of a received payload, for error messages (bounded by the frame limit).
pub(super) fn lossy(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn spec_message_vectors() {
        let cases = [
            (Message::Header, "132f6d756c746973747265616d2f312e302e300a"),
            (
                Message::Protocol(Protocol::from_static("/echo/1.0.0")),
                "0c2f6563686f2f312e302e300a",
            ),
            (
                Message::Protocol(Protocol::from_static("/noise")),
                "072f6e6f6973650a",
            ),
            (
                Message::Protocol(Protocol::from_static("/yamux/1.0.0")),
                "0d2f79616d75782f312e302e300a",
            ),
            (Message::NotAvailable, "036e610a"),
            (Message::ListProtocols, "036c730a"),
            (
                Message::Protocol(Protocol::from_static("/ipfs/id/1.0.0")),
                "0f2f697066732f69642f312e302e300a",
            ),
            (
                Message::Protocol(Protocol::from_static("/ipfs/ping/1.0.0")),
                "112f697066732f70696e672f312e302e300a",
            ),
            (
                Message::Protocol(Protocol::from_static("/ipfs/id/push/1.0.0")),
                "142f697066732f69642f707573682f312e302e300a",
            ),
            (
                Message::Protocols(vec![
                    Protocol::from_static("/noise"),
                    Protocol::from_static("/yamux/1.0.0"),
                ]),
                "17072f6e6f6973650a0d2f79616d75782f312e302e300a0a",
            ),
        ];
        for (msg, want) in cases {
            let mut out = BytesMut::new();
            msg.encode(&mut out);
            assert_eq!(hex(&out), want, "{msg:?}");
            if !matches!(msg, Message::Protocols(_)) {
                let (prefix, len) = varint::LengthPrefixed::new(MAX_MESSAGE_LEN)
                    .peek_len(&out)
                    .unwrap()
                    .unwrap();
                assert_eq!(Message::decode(&out[prefix..prefix + len]).unwrap(), msg);
            }
        }
    }

    #[test]
    fn invalid_messages() {
        assert_eq!(
            Message::decode(b"/echo"),
            Err(ProtocolError::MissingNewline)
        );
        assert_eq!(
            Message::decode(b"echo\n"),
            Err(ProtocolError::NoLeadingSlash)
        );
        assert_eq!(Message::decode(b"\n"), Err(ProtocolError::NoLeadingSlash));
        assert_eq!(
            Message::decode(b"/a\nb\n"),
            Err(ProtocolError::ContainsNewline)
        );
        assert_eq!(Message::decode(b"/\xff\n"), Err(ProtocolError::NotUtf8));
        assert_eq!(Message::decode(b""), Err(ProtocolError::MissingNewline));
        let long = format!("/{}", "a".repeat(MAX_PROTOCOL_LEN));
        assert_eq!(
            Protocol::try_from(long.as_str()),
            Err(ProtocolError::TooLong(MAX_PROTOCOL_LEN + 1))
        );
    }
}
