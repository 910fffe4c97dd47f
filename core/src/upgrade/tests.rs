//! The upgrade's bound on what a peer can make it hold: [`MAX_BUFFERED`] for any input, fed in
//! any chunks, whether or not its output is drained.

use bytes::BytesMut;
use libp2p_identity::Keypair;
use proptest::prelude::*;

use super::*;
use crate::multistream::Message;

fn listener_config(security: Security) -> UpgradeConfig {
    let keypair = Keypair::ed25519_from_bytes([2; 32]).expect("key");
    UpgradeConfig::new(keypair, [2; 32])
        .expect("config")
        .with_security(security)
}

/// The attacker's side of the secure channel, once the handshake is done.
enum Attacker {
    Noise(Box<noise::Transport>),
    Plaintext,
}

impl Attacker {
    fn seal(&mut self, plain: &[u8], wire: &mut BytesMut) {
        match self {
            Self::Noise(t) => t.encrypt(plain, wire).expect("encrypt"),
            Self::Plaintext => wire.extend_from_slice(plain),
        }
    }
}

fn multistream_header_and(protocol: &str) -> BytesMut {
    let mut out = BytesMut::new();
    Message::Header.encode(&mut out);
    Message::Protocol(Protocol::try_from(protocol).expect("id")).encode(&mut out);
    out
}

/// Runs a real dialer-side handshake (without early muxer negotiation) against a listening
/// upgrade, so that what follows is multistream inside the secure channel.
fn handshaken(security: Security, now: Instant) -> (Upgrade, UpgradeConfig, Attacker) {
    let config = listener_config(security);
    let mut listener = Upgrade::new(&config, Role::Listener, None, now).expect("upgrade");
    let keypair = Keypair::ed25519_from_bytes([1; 32]).expect("key");
    let mut to_listener;
    let mut answer = BytesMut::new();
    let attacker = match security {
        Security::Tls => panic!("the hand-driven attacker speaks noise or plaintext"),
        Security::Noise => {
            let noise_config = noise::Config::new(keypair, [1; 32]).expect("noise");
            let mut hs = noise::Handshake::initiator(&noise_config, None).expect("initiator");
            to_listener = multistream_header_and(NOISE.as_str());
            let ms_answer_len = to_listener.len();
            hs.poll_transmit(&mut to_listener);
            listener
                .handle_input(now, &mut to_listener, &config)
                .expect("msg1");
            listener.poll_transmit(&mut answer);
            let mut rest = answer.split_off(ms_answer_len);
            hs.handle_input(&mut rest).expect("msg2");
            hs.poll_transmit(&mut to_listener);
            listener
                .handle_input(now, &mut to_listener, &config)
                .expect("msg3");
            Attacker::Noise(Box::new(hs.into_transport().expect("transport").0))
        }
        Security::Plaintext => {
            let pt_config = plaintext::Config::new(keypair.public());
            let mut exchange = plaintext::Plaintext::new(&pt_config, None);
            to_listener = multistream_header_and(PLAINTEXT.as_str());
            let ms_answer_len = to_listener.len();
            exchange.poll_transmit(&mut to_listener);
            listener
                .handle_input(now, &mut to_listener, &config)
                .expect("exchange");
            listener.poll_transmit(&mut answer);
            let mut rest = answer.split_off(ms_answer_len);
            exchange.handle_input(&mut rest).expect("their exchange");
            assert!(exchange.is_finished());
            Attacker::Plaintext
        }
    };
    assert_eq!(listener.progress(), 2, "agreeing on the muxer now");
    (listener, config, attacker)
}

/// What a hostile dialer does inside the secure channel.
#[derive(Debug, Clone)]
enum Op {
    Header,
    Ls,
    Propose(String),
    /// A length prefix and that many bytes (not a valid message unless it happens to be one).
    Raw(Vec<u8>),
    /// A large blob of plaintext (a peer sending data before the muxer is agreed).
    Blob(usize),
    /// The caller drains our output (the peer reads), then feeds what was left again.
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Header),
        6 => Just(Op::Ls),
        3 => "/[a-z]{1,40}".prop_map(Op::Propose),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Raw),
        1 => (1usize..200_000).prop_map(Op::Blob),
        2 => Just(Op::Drain),
    ]
}

fn encode(op: &Op) -> Vec<u8> {
    let mut out = BytesMut::new();
    match op {
        Op::Header => Message::Header.encode(&mut out),
        Op::Ls => Message::ListProtocols.encode(&mut out),
        Op::Propose(p) => {
            Message::Protocol(Protocol::try_from(p.as_str()).expect("id")).encode(&mut out)
        }
        Op::Raw(bytes) => {
            crate::varint::encode_len(bytes.len(), &mut out);
            out.extend_from_slice(bytes);
        }
        Op::Blob(len) => out.extend((0..*len).map(|i| (i % 251) as u8)),
        Op::Drain => {}
    }
    out.to_vec()
}

/// Feeds `ops` (each sealed as its own frames) in pieces of `chunk` bytes, draining only on
/// [`Op::Drain`]; checks the bound after every call. Returns the upgrade's final result.
fn run(security: Security, ops: &[Op], chunk: usize) -> Result<UpgradeStatus, Error> {
    let now = plait_testkit::start();
    let (mut upgrade, config, mut attacker) = handshaken(security, now);
    let mut wire = BytesMut::new();
    let mut input = BytesMut::new();
    let mut status = Ok(UpgradeStatus::InProgress);
    for op in ops {
        attacker.seal(&encode(op), &mut wire);
        if matches!(op, Op::Drain) {
            let mut sink = BytesMut::new();
            upgrade.poll_transmit(&mut sink);
        }
        while !wire.is_empty() {
            let take = chunk.min(wire.len());
            input.extend_from_slice(&wire.split_to(take));
            status = upgrade.handle_input(now, &mut input, &config);
            assert!(
                upgrade.buffered_bytes() <= MAX_BUFFERED,
                "upgrade holds {} bytes (bound {MAX_BUFFERED})",
                upgrade.buffered_bytes()
            );
            if !matches!(status, Ok(UpgradeStatus::InProgress)) {
                return status;
            }
        }
    }
    status
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_input_makes_the_upgrade_hold_more_than_its_bound(
        plaintext in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..80),
        chunk in prop_oneof![1usize..64, 1000usize..70_000],
    ) {
        let security = if plaintext { Security::Plaintext } else { Security::Noise };
        let _ = run(security, &ops, chunk);
    }
}

#[test]
fn an_ls_flood_ends_the_negotiation_early() {
    for security in [Security::Noise, Security::Plaintext] {
        let mut ops = vec![Op::Header];
        ops.extend(std::iter::repeat_n(Op::Ls, 10_000));
        let result = run(security, &ops, 64 * 1024);
        assert!(
            matches!(
                result,
                Err(Error::Negotiation(
                    multistream::Error::TooManyRejections { .. }
                ))
            ),
            "{security:?}: {result:?}"
        );
    }
}

#[test]
fn an_honest_muxer_proposal_still_agrees() {
    for security in [Security::Noise, Security::Plaintext] {
        let ops = [Op::Header, Op::Ls, Op::Propose("/yamux/1.0.0".into())];
        assert_eq!(run(security, &ops, 7).ok(), Some(UpgradeStatus::Done));
    }
}
