//! Receive-window accounting and auto-tuning from the measured round-trip time.
//!
//! Per stream: `window` is the credit the peer still has, `buffered` the received bytes the
//! application has not read, and `max` the current window size. The invariant
//! `window + buffered <= max` holds at all times, so buffered data never exceeds the window we
//! advertised, and the session's memory is bounded by the sum of all `max`.

use std::time::Duration;

use crate::time::Instant;

/// Whether enough has been consumed to send a window update: at least half of the current
/// window (go and rust yamux behaviour, spec §2), so updates are rare but the sender never
/// stalls while the reader keeps up.
pub(crate) fn update_due(max: u32, window: u32, buffered: u32) -> bool {
    pending_credit(max, window, buffered) >= max / 2
}

/// Credit the reader has freed but not yet returned to the peer, in bytes.
pub(crate) fn pending_credit(max: u32, window: u32, buffered: u32) -> u32 {
    max.saturating_sub(window.saturating_add(buffered))
}

/// Whether the peer ran (nearly) out of credit although the reader keeps up: at most an
/// eighth of the window is left to the peer and at most an eighth is waiting to be read. Then
/// the window, not the reader, limits throughput, whatever the round-trip time says (an RTT
/// sampled on an idle connection understates the time credit takes to come back under load).
pub(crate) fn sender_starved(max: u32, window: u32, buffered: u32) -> bool {
    window <= max / 8 && buffered <= max / 8
}

/// The new window size when an update is sent: doubles when the previous update was less than
/// two round trips ago (rust yamux uses 2×RTT, go 4×RTT) or the sender is starved (see
/// [`sender_starved`]), capped by the per-stream maximum and the session budget left.
pub(crate) fn tuned_max(
    max: u32,
    now: Instant,
    last_update: Option<Instant>,
    rtt: Option<Duration>,
    starved: bool,
    cap: u32,
    budget_left: u64,
) -> u32 {
    let fast_updates = match (last_update, rtt) {
        (Some(last), Some(rtt)) => now.saturating_duration_since(last) < rtt.saturating_mul(2),
        _ => false,
    };
    if !fast_updates && !starved {
        return max;
    }
    let target = max.saturating_mul(2).min(cap).max(max);
    let growth = u64::from(target - max).min(budget_left);
    // `growth <= target - max`, which fits in u32.
    max.saturating_add(u32::try_from(growth).unwrap_or(0))
}

/// Smoothed round-trip time from ping samples: `rtt = prev/2 + sample/2` (go-yamux).
pub(crate) fn smooth_rtt(prev: Option<Duration>, sample: Duration) -> Duration {
    match prev {
        None => sample,
        Some(p) => p / 2 + sample / 2,
    }
}
