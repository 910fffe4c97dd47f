//! The secure channel after the handshake: application data in TLS records.
//!
//! rustls keeps the record layer (sequence numbers, key updates, alerts), so records go
//! through its buffered API: encrypting copies the plaintext into a rustls record and the
//! record into `out`; decrypting hands rustls one whole record from the caller's input,
//! which it decrypts in its own buffer, and copies the plaintext out once more. The
//! unbuffered API would save a copy each way, at the price of driving rustls' lower-level
//! state machine by hand; records are at most 16 KiB, so these copies stay small.

use bytes::BytesMut;
use rustls::Connection;

use super::handshake::{feed, flush_into, read_plaintext};
use super::provider::{with_context, Context};
use super::record::complete_record;
use super::Error;

/// What one call to [`Transport::decrypt`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The plaintext of one record (at most [`super::MAX_PLAINTEXT`] bytes, never empty).
    Data(BytesMut),
    /// The peer sent close_notify: the end of its stream. Returned again on every later call.
    Closed,
}

/// The TLS channel after a successful handshake.
///
/// After any error every further call returns [`Error::Failed`]: the connection must be
/// closed (after sending what [`Transport::poll_transmit`] holds, perhaps an alert).
pub struct Transport {
    conn: Connection,
    ctx: Option<Context>,
    /// Records rustls produced on its own while decrypting (alerts, key-update answers).
    pending: BytesMut,
    failed: bool,
    closed: bool,
    peer_closed: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("failed", &self.failed)
            .field("closed", &self.closed)
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(super) fn new(mut conn: Connection, ctx: Option<Context>) -> Self {
        // Records are drained into the caller's buffer after every write: no limit needed
        // on what rustls queues in between.
        conn.set_buffer_limit(None);
        Self {
            conn,
            ctx,
            pending: BytesMut::new(),
            failed: false,
            closed: false,
            peer_closed: false,
        }
    }

    /// Whether an earlier error made this transport unusable.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether the peer sent close_notify.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Encrypts `plaintext` into records of at most [`super::MAX_PLAINTEXT`] bytes appended
    /// to `out` (nothing for an empty slice), after any record rustls queued itself.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.closed {
            return Err(Error::Closed);
        }
        crate::buffer::drain_into(&mut self.pending, out);
        if plaintext.is_empty() {
            return Ok(());
        }
        out.reserve(plaintext.len() + plaintext.len().div_ceil(super::MAX_PLAINTEXT) * 22);
        let result = match std::io::Write::write_all(&mut self.conn.writer(), plaintext) {
            Ok(()) => flush_into(&mut self.conn, out),
            Err(_) => Err(Error::Failed),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Decrypts whole records from the front of `input` until one yields plaintext or the
    /// peer's close_notify; `Ok(None)` when `input` holds no further complete record (a
    /// partial one stays there). Records carrying no application data (a NewSessionTicket,
    /// a KeyUpdate) are consumed silently; answers rustls makes go to
    /// [`Transport::poll_transmit`].
    pub fn decrypt(&mut self, input: &mut BytesMut) -> Result<Option<Received>, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.peer_closed {
            return Ok(Some(Received::Closed));
        }
        let result = self.decrypt_inner(input);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn decrypt_inner(&mut self, input: &mut BytesMut) -> Result<Option<Received>, Error> {
        loop {
            let Some(len) = complete_record(input)? else {
                return Ok(None);
            };
            let record = input.split_to(len);
            let conn = &mut self.conn;
            let result = with_context(&mut self.ctx, || feed(conn, &record));
            let flushed = flush_into(&mut self.conn, &mut self.pending);
            let (readable, closed) = result?;
            flushed?;
            if readable > 0 {
                return read_plaintext(&mut self.conn, readable).map(|d| Some(Received::Data(d)));
            }
            if closed {
                self.peer_closed = true;
                return Ok(Some(Received::Closed));
            }
        }
    }

    /// Appends records rustls queued while decrypting (an alert, a key-update answer) to
    /// `out`; returns how many bytes, `None` if nothing. [`Transport::encrypt`] sends them
    /// first anyway.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.pending, out)
    }

    /// Ends our side: appends close_notify to `out` (after any queued record). Later
    /// [`Transport::encrypt`] calls fail with [`Error::Closed`]; decrypting goes on.
    pub fn close(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        crate::buffer::drain_into(&mut self.pending, out);
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.conn.send_close_notify();
        flush_into(&mut self.conn, out)
    }
}
