//! TLS record framing: whole records are handed to rustls, so partial records stay in the
//! caller's buffer and rustls sees the same records however the input was chunked.

use super::{Error, MAX_RECORD_LEN};

/// Length of a record header: type, legacy version, body length.
const HEADER_LEN: usize = 5;

/// The length (header included) of the complete record at the front of `input`, `None` if
/// it is not all there yet. The header is checked as soon as its bytes arrive, so garbage
/// and oversized records are refused before their body is awaited.
pub(super) fn complete_record(input: &[u8]) -> Result<Option<usize>, Error> {
    let Some(&content_type) = input.first() else {
        return Ok(None);
    };
    // change_cipher_spec, alert, handshake, application_data (RFC 8446 §5.1).
    let not_tls = |version| Error::NotTlsRecord {
        content_type,
        version,
    };
    if !(20..=23).contains(&content_type) {
        return Err(not_tls(0));
    }
    if let Some(&major) = input.get(1) {
        if major != 0x03 {
            return Err(not_tls(u16::from(major) << 8));
        }
    }
    let (Some(&minor), Some(&hi), Some(&lo)) = (input.get(2), input.get(3), input.get(4)) else {
        return Ok(None);
    };
    if minor > 0x04 {
        return Err(not_tls(0x0300 | u16::from(minor)));
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_RECORD_LEN {
        return Err(Error::RecordTooLarge { len });
    }
    Ok((input.len() >= HEADER_LEN + len).then_some(HEADER_LEN + len))
}
