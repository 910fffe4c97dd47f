//! Small helpers for the byte buffers every machine queues its output in.

use bytes::BytesMut;

/// Moves everything queued in `pending` to the end of `out`: without copying when `out` is
/// empty (it takes over the allocation), by one copy otherwise. Returns how many bytes moved,
/// `None` if `pending` was empty (the `poll_transmit` convention).
pub(crate) fn drain_into(pending: &mut BytesMut, out: &mut BytesMut) -> Option<usize> {
    if pending.is_empty() {
        return None;
    }
    let n = pending.len();
    if out.is_empty() {
        *out = pending.split();
    } else {
        out.extend_from_slice(pending);
        pending.clear();
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_everything_once() {
        let mut pending = BytesMut::from(&b"abc"[..]);
        let mut out = BytesMut::new();
        assert_eq!(drain_into(&mut pending, &mut out), Some(3));
        assert_eq!(drain_into(&mut pending, &mut out), None);
        pending.extend_from_slice(b"de");
        assert_eq!(drain_into(&mut pending, &mut out), Some(2));
        assert_eq!(&out[..], b"abcde");
        assert!(pending.is_empty());
    }
}
