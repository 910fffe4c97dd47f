//! Noise benchmarks: transport throughput (ours vs bare snow, same run) and handshakes/second.

// A benchmark is a driver: it measures wall-clock time.
#![allow(clippy::disallowed_methods)]
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libp2p_identity::Keypair;
use plait_core::noise::{Config, Handshake, Transport, MAX_PLAINTEXT};
use std::hint::black_box;

const WRITE: usize = 64 * 1024;

fn configs() -> (Config, Config) {
    let a = Config::new(Keypair::ed25519_from_bytes([1u8; 32]).unwrap(), [1; 32]).unwrap();
    let b = Config::new(Keypair::ed25519_from_bytes([2u8; 32]).unwrap(), [2; 32]).unwrap();
    (a, b)
}

fn handshake(a: &Config, b: &Config) -> (Transport, Transport) {
    let mut init = Handshake::initiator(a, None).unwrap();
    let mut resp = Handshake::responder(b).unwrap();
    let mut wire = BytesMut::with_capacity(512);
    init.poll_transmit(&mut wire);
    resp.handle_input(&mut wire).unwrap();
    resp.poll_transmit(&mut wire);
    init.handle_input(&mut wire).unwrap();
    init.poll_transmit(&mut wire);
    resp.handle_input(&mut wire).unwrap();
    (
        init.into_transport().unwrap().0,
        resp.into_transport().unwrap().0,
    )
}

fn snow_pair() -> (snow::TransportState, snow::TransportState) {
    let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_SHA256".parse().unwrap();
    let mk = || snow::Builder::new(params.clone());
    let ki = mk().generate_keypair().unwrap();
    let kr = mk().generate_keypair().unwrap();
    let mut i = mk()
        .local_private_key(&ki.private)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut r = mk()
        .local_private_key(&kr.private)
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut buf, mut out) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut out).unwrap();
    let n = r.write_message(&[], &mut buf).unwrap();
    i.read_message(&buf[..n], &mut out).unwrap();
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut out).unwrap();
    (
        i.into_transport_mode().unwrap(),
        r.into_transport_mode().unwrap(),
    )
}

fn transport(c: &mut Criterion) {
    let mut g = c.benchmark_group("noise_transport_64KiB");
    g.throughput(Throughput::Bytes(WRITE as u64));
    let data = vec![0xabu8; WRITE];

    // Ours: encrypt one 64 KiB write into framed output, then decrypt every frame in place.
    let (a, b) = configs();
    let (mut ta, mut tb) = handshake(&a, &b);
    let mut wire = BytesMut::with_capacity(2 * WRITE);
    g.bench_function(BenchmarkId::new("plait", "encrypt+decrypt"), |bench| {
        bench.iter(|| {
            ta.encrypt(black_box(&data), &mut wire).unwrap();
            let mut n = 0;
            while let Some(p) = tb.decrypt(&mut wire).unwrap() {
                n += p.len();
            }
            // Recycle the buffer as a read loop would: the plaintext slices are dropped.
            wire.clear();
            black_box(n)
        })
    });

    // Bare snow: same chunking into ≤ 65519-byte messages with the same 2-byte length prefix
    // written by hand, into a reused buffer; decrypt into a reused plaintext buffer.
    let (mut sa, mut sb) = snow_pair();
    let mut swire = vec![0u8; 2 * WRITE];
    let mut plain = vec![0u8; 65535];
    g.bench_function(BenchmarkId::new("snow", "encrypt+decrypt"), |bench| {
        bench.iter(|| {
            let mut len = 0;
            for chunk in black_box(&data).chunks(MAX_PLAINTEXT) {
                let n = sa.write_message(chunk, &mut swire[len + 2..]).unwrap();
                swire[len..len + 2].copy_from_slice(&(n as u16).to_be_bytes());
                len += 2 + n;
            }
            let (mut pos, mut total) = (0, 0);
            while pos < len {
                let n = u16::from_be_bytes([swire[pos], swire[pos + 1]]) as usize;
                total += sb
                    .read_message(&swire[pos + 2..pos + 2 + n], &mut plain)
                    .unwrap();
                pos += 2 + n;
            }
            black_box(total)
        })
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let (a, b) = configs();
    let mut g = c.benchmark_group("noise_handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("both_roles_in_memory", |bench| {
        bench.iter(|| black_box(handshake(&a, &b)))
    });
    g.finish();
}

criterion_group!(benches, transport, handshakes);
criterion_main!(benches);
