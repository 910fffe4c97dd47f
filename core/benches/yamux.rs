//! Plait's sans-IO yamux `Session` side by side with the `yamux` crate (0.13) over an
//! in-memory duplex: one stream moving `YAMUX_BENCH_BYTES` (default 1 GiB), 100 streams moving
//! `YAMUX_BENCH_STREAM_BYTES` each (default 10 MiB), and heap bytes per idle session and per
//! idle stream, measured with a counting global allocator. Runs alternate the two sides;
//! medians of `YAMUX_BENCH_ROUNDS` (default 3) are printed.
//!
//! `cargo bench -p plait-core --bench yamux`

// A benchmark is a driver: it measures wall-clock time.
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cap::Cap;
use futures::executor::LocalPool;
use futures::future::poll_fn;
use futures::task::LocalSpawnExt;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use plait_core::yamux::{Config, Event, Mode, Session, StreamId};

#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Bytes handed to the transport per `poll_transmit` (one socket write).
const BATCH: usize = 64 * 1024;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- plait

struct PlaitPair {
    c: Session,
    s: Session,
    c_in: BytesMut,
    s_in: BytesMut,
    out: BytesMut,
}

impl PlaitPair {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            c: Session::new(Mode::Client, Config::default(), now),
            s: Session::new(Mode::Server, Config::default(), now),
            c_in: BytesMut::with_capacity(4 * BATCH),
            s_in: BytesMut::with_capacity(4 * BATCH),
            out: BytesMut::with_capacity(BATCH),
        }
    }

    /// One socket write each way: transmit a batch, copy it into the peer's input (the
    /// in-memory "socket"), let the peer consume it.
    fn exchange(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while self.c.poll_transmit(now, &mut self.out, BATCH).is_some() {
            self.s_in.extend_from_slice(&self.out);
            self.out.clear();
            self.s
                .handle_input(now, &mut self.s_in)
                .expect("server input");
            moved = true;
        }
        while self.s.poll_transmit(now, &mut self.out, BATCH).is_some() {
            self.c_in.extend_from_slice(&self.out);
            self.out.clear();
            self.c
                .handle_input(now, &mut self.c_in)
                .expect("client input");
            moved = true;
        }
        moved
    }
}

/// Moves `per_stream` bytes on each of `streams` streams; returns the elapsed time.
fn plait_transfer(streams: usize, per_stream: u64) -> Duration {
    let src = Bytes::from(vec![0x5a_u8; 1 << 20]);
    let start = Instant::now();
    let mut p = PlaitPair::new();
    let ids: Vec<StreamId> = (0..streams)
        .map(|_| p.c.open_stream(start).expect("open"))
        .collect();
    let mut written = vec![0u64; streams];
    let mut read_total = 0u64;
    let goal = per_stream * streams as u64;
    let mut inbound: Vec<StreamId> = Vec::with_capacity(streams);
    let mut off = 0usize;
    while read_total < goal {
        let now = Instant::now();
        for (k, id) in ids.iter().enumerate() {
            let mut st = p.c.stream(*id).expect("stream");
            while written[k] < per_stream {
                let want = (per_stream - written[k]).min((src.len() - off) as u64) as usize;
                let n = st.write_bytes(src.slice(off..off + want)).expect("write");
                if n == 0 {
                    break;
                }
                written[k] += n as u64;
                off = (off + n) % src.len();
            }
        }
        p.exchange(now);
        while let Some(ev) = p.s.poll_event() {
            if let Event::InboundStream(id) = ev {
                inbound.push(id);
            }
        }
        while p.c.poll_event().is_some() {}
        for id in &inbound {
            if let Some(mut st) = p.s.stream(*id) {
                while let Ok(Some(b)) = st.read(usize::MAX) {
                    read_total += b.len() as u64;
                }
            }
        }
        p.exchange(now);
    }
    start.elapsed()
}

/// Heap bytes of one idle session (a connected pair after its first exchange,
/// halved), and heap bytes of one idle stream per endpoint (opened, one byte each way, read).
fn plait_memory() -> (f64, f64) {
    const N: usize = 500;
    let now = Instant::now();
    let (mut c_in, mut s_in, mut out) = (
        BytesMut::with_capacity(BATCH),
        BytesMut::with_capacity(BATCH),
        BytesMut::with_capacity(BATCH),
    );
    let mut pairs = Vec::with_capacity(N);
    let before = ALLOC.allocated();
    for _ in 0..N {
        let mut c = Session::new(Mode::Client, Config::default(), now);
        let mut s = Session::new(Mode::Server, Config::default(), now);
        for _ in 0..3 {
            while c.poll_transmit(now, &mut out, BATCH).is_some() {
                s_in.extend_from_slice(&out);
                out.clear();
                s.handle_input(now, &mut s_in).expect("input");
            }
            while s.poll_transmit(now, &mut out, BATCH).is_some() {
                c_in.extend_from_slice(&out);
                out.clear();
                c.handle_input(now, &mut c_in).expect("input");
            }
            while c.poll_event().is_some() || s.poll_event().is_some() {}
        }
        pairs.push((c, s));
    }
    let per_session = (ALLOC.allocated() - before) as f64 / (2 * N) as f64;
    drop(pairs);

    const S: usize = 200;
    let mut p = PlaitPair::new();
    p.exchange(now);
    while p.s.poll_event().is_some() || p.c.poll_event().is_some() {}
    let before = ALLOC.allocated();
    let ids: Vec<StreamId> = (0..S)
        .map(|_| p.c.open_stream(now).expect("open"))
        .collect();
    for id in &ids {
        p.c.stream(*id).expect("stream").write(b"x").expect("write");
    }
    p.exchange(now);
    while let Some(ev) = p.s.poll_event() {
        if let Event::InboundStream(id) = ev {
            let mut st = p.s.stream(id).expect("inbound");
            st.read(10).expect("read");
            st.write(b"y").expect("write");
        }
    }
    p.exchange(now);
    for id in &ids {
        p.c.stream(*id).expect("stream").read(10).expect("read");
    }
    while p.s.poll_event().is_some() || p.c.poll_event().is_some() {}
    p.exchange(now);
    let per_stream = (ALLOC.allocated() - before) as f64 / (2 * S) as f64;
    (per_session, per_stream)
}

// ---------------------------------------------------------------- yamux crate

#[derive(Default)]
struct PipeInner {
    buf: VecDeque<u8>,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

const PIPE_CAP: usize = 4 * BATCH;

/// One end of an in-memory duplex with a bounded buffer per direction.
struct End {
    rx: Arc<Mutex<PipeInner>>,
    tx: Arc<Mutex<PipeInner>>,
}

fn duplex() -> (End, End) {
    let a = Arc::new(Mutex::new(PipeInner::default()));
    let b = Arc::new(Mutex::new(PipeInner::default()));
    (
        End {
            rx: a.clone(),
            tx: b.clone(),
        },
        End { rx: b, tx: a },
    )
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut p = self.rx.lock().expect("lock");
        if p.buf.is_empty() {
            if p.closed {
                return Poll::Ready(Ok(0));
            }
            p.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = out.len().min(p.buf.len());
        let (a, b) = p.buf.as_slices();
        let na = n.min(a.len());
        out[..na].copy_from_slice(&a[..na]);
        out[na..n].copy_from_slice(&b[..n - na]);
        p.buf.drain(..n);
        if let Some(w) = p.writer.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut p = self.tx.lock().expect("lock");
        if p.closed {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let room = PIPE_CAP - p.buf.len();
        if room == 0 {
            p.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        p.buf.extend(&data[..n]);
        if let Some(w) = p.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut p = self.tx.lock().expect("lock");
        p.closed = true;
        if let Some(w) = p.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

type Conn = Rc<RefCell<yamux::Connection<End>>>;

fn conns() -> (Conn, Conn) {
    let (a, b) = duplex();
    (
        Rc::new(RefCell::new(yamux::Connection::new(
            a,
            yamux::Config::default(),
            yamux::Mode::Client,
        ))),
        Rc::new(RefCell::new(yamux::Connection::new(
            b,
            yamux::Config::default(),
            yamux::Mode::Server,
        ))),
    )
}

/// Spawns a task driving `conn`; inbound streams go to `on_inbound`.
fn drive(pool: &LocalPool, conn: Conn, on_inbound: impl Fn(yamux::Stream) + 'static) {
    pool.spawner()
        .spawn_local(async move {
            while let Some(Ok(s)) = poll_fn(|cx| conn.borrow_mut().poll_next_inbound(cx)).await {
                on_inbound(s);
            }
        })
        .expect("spawn");
}

fn crate_transfer(streams: usize, per_stream: u64) -> Duration {
    let start = Instant::now();
    let mut pool = LocalPool::new();
    let (c, s) = conns();
    let done = Rc::new(RefCell::new(0usize));
    let spawner = pool.spawner();
    let done2 = done.clone();
    drive(&pool, s, move |mut st| {
        let done = done2.clone();
        spawner
            .spawn_local(async move {
                let mut buf = vec![0u8; BATCH];
                let mut got = 0u64;
                while let Ok(n) = st.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                assert_eq!(got, per_stream);
                *done.borrow_mut() += 1;
            })
            .expect("spawn");
    });
    drive(&pool, c.clone(), |_| {});
    let src = vec![0x5a_u8; 1 << 20];
    for _ in 0..streams {
        let c = c.clone();
        let src = src.clone();
        pool.spawner()
            .spawn_local(async move {
                let mut st = poll_fn(|cx| c.borrow_mut().poll_new_outbound(cx))
                    .await
                    .expect("open");
                let mut left = per_stream;
                while left > 0 {
                    let n = left.min(src.len() as u64) as usize;
                    st.write_all(&src[..n]).await.expect("write");
                    left -= n as u64;
                }
                st.close().await.expect("close");
            })
            .expect("spawn");
    }
    while *done.borrow() < streams {
        pool.run_until_stalled();
    }
    start.elapsed()
}

/// Polls both connections (no tasks, a no-op waker) until nothing moves.
fn pump(
    c: &mut yamux::Connection<End>,
    s: &mut yamux::Connection<End>,
    inbound: &mut Vec<yamux::Stream>,
) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..20 {
        while let Poll::Ready(Some(Ok(st))) = s.poll_next_inbound(&mut cx) {
            inbound.push(st);
        }
        while let Poll::Ready(Some(Ok(st))) = c.poll_next_inbound(&mut cx) {
            inbound.push(st);
        }
    }
}

/// Same measurements as [`plait_memory`] for the crate; pipe buffers are allocated before.
fn crate_memory() -> (f64, f64) {
    const N: usize = 500;
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let ends: Vec<(End, End)> = (0..N)
        .map(|_| {
            let (a, b) = duplex();
            a.tx.lock().expect("lock").buf.reserve(PIPE_CAP);
            b.tx.lock().expect("lock").buf.reserve(PIPE_CAP);
            (a, b)
        })
        .collect();
    let mut pairs = Vec::with_capacity(N);
    let mut inbound = Vec::new();
    let before = ALLOC.allocated();
    for (a, b) in ends {
        let mut c = yamux::Connection::new(a, yamux::Config::default(), yamux::Mode::Client);
        let mut s = yamux::Connection::new(b, yamux::Config::default(), yamux::Mode::Server);
        pump(&mut c, &mut s, &mut inbound);
        pairs.push((c, s));
    }
    let per_session = (ALLOC.allocated() - before) as f64 / (2 * N) as f64;
    drop(pairs);

    const S: usize = 200;
    let (a, b) = duplex();
    a.tx.lock().expect("lock").buf.reserve(PIPE_CAP);
    b.tx.lock().expect("lock").buf.reserve(PIPE_CAP);
    let mut c = yamux::Connection::new(a, yamux::Config::default(), yamux::Mode::Client);
    let mut s = yamux::Connection::new(b, yamux::Config::default(), yamux::Mode::Server);
    let mut inbound = Vec::with_capacity(S);
    pump(&mut c, &mut s, &mut inbound);
    let mut outbound = Vec::with_capacity(S);
    let before = ALLOC.allocated();
    for _ in 0..S {
        let Poll::Ready(Ok(mut st)) = c.poll_new_outbound(&mut cx) else {
            panic!("open");
        };
        assert!(matches!(
            Pin::new(&mut st).poll_write(&mut cx, b"x"),
            Poll::Ready(Ok(1))
        ));
        let _ = Pin::new(&mut st).poll_flush(&mut cx);
        outbound.push(st);
    }
    pump(&mut c, &mut s, &mut inbound);
    let mut b1 = [0u8; 1];
    for st in &mut inbound {
        assert!(matches!(
            Pin::new(&mut *st).poll_read(&mut cx, &mut b1),
            Poll::Ready(Ok(1))
        ));
        assert!(matches!(
            Pin::new(&mut *st).poll_write(&mut cx, b"y"),
            Poll::Ready(Ok(1))
        ));
        let _ = Pin::new(&mut *st).poll_flush(&mut cx);
    }
    pump(&mut c, &mut s, &mut inbound);
    for st in &mut outbound {
        assert!(matches!(
            Pin::new(&mut *st).poll_read(&mut cx, &mut b1),
            Poll::Ready(Ok(1))
        ));
    }
    pump(&mut c, &mut s, &mut inbound);
    assert_eq!(inbound.len(), S);
    let per_stream = (ALLOC.allocated() - before) as f64 / (2 * S) as f64;
    (per_session, per_stream)
}

// ---------------------------------------------------------------- main

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let big = env("YAMUX_BENCH_BYTES", 1 << 30);
    let per = env("YAMUX_BENCH_STREAM_BYTES", 10 << 20);
    let rounds = env("YAMUX_BENCH_ROUNDS", 3).max(1) as usize;
    let mib = |bytes: u64, d: Duration| bytes as f64 / d.as_secs_f64() / (1 << 20) as f64;

    for (name, streams, per_stream) in [("1 stream", 1usize, big), ("100 streams", 100, per)] {
        let total = streams as u64 * per_stream;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(mib(total, plait_transfer(streams, per_stream)));
            theirs.push(mib(total, crate_transfer(streams, per_stream)));
        }
        let (o, t) = (median(&mut ours), median(&mut theirs));
        println!(
            "{name:>12} x {:>6} MiB: plait {o:>8.0} MiB/s  yamux-crate {t:>8.0} MiB/s  ratio {:.2}x  (plait {ours:.0?}, crate {theirs:.0?})",
            per_stream >> 20,
            o / t
        );
    }
    let (ps, pst) = plait_memory();
    let (ys, yst) = crate_memory();
    let (pi, yi) = (
        ps + size_of::<Session>() as f64,
        ys + size_of::<yamux::Connection<End>>() as f64,
    );
    println!(
        "idle session heap: plait {ps:.0} B  yamux-crate {ys:.0} B  ratio {:.3}",
        ps / ys
    );
    println!(
        "idle session heap + inline: plait {pi:.0} B  yamux-crate {yi:.0} B  ratio {:.3}",
        pi / yi
    );
    println!(
        "idle stream (per endpoint): plait {pst:.0} B  yamux-crate {yst:.0} B  ratio {:.3}",
        pst / yst
    );
    println!(
        "size_of (included above): plait Session {} B; yamux Connection {} B",
        size_of::<Session>(),
        size_of::<yamux::Connection<End>>()
    );
}
