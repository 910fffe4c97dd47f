//! The one DER parsing step the core needs outside certificates (x509-parser does those):
//! splitting a tagged element off a buffer, strictly.

/// Splits one DER element with `tag` (definite, minimal length of at most 4 bytes) off the
/// front of `data`: (contents, rest).
pub(crate) fn element(tag: u8, data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = data.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        if len_bytes.first() == Some(&0) {
            return None; // non-minimal
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None; // long form for a short length
        }
        (len, rest)
    };
    rest.split_at_checked(len)
}
