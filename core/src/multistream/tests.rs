use std::sync::Arc;

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> BytesMut {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .as_slice()
        .into()
}

fn p(s: &'static str) -> Protocol {
    Protocol::from_static(s)
}

fn set(list: &[&'static str]) -> Arc<ProtocolSet> {
    Arc::new(ProtocolSet::from_protocols(list.iter().map(|s| p(s))))
}

fn drain_dialer(d: &mut Dialer) -> BytesMut {
    let mut out = BytesMut::new();
    d.poll_transmit(&mut out);
    out
}

fn drain_listener(l: &mut Listener) -> BytesMut {
    let mut out = BytesMut::new();
    l.poll_transmit(&mut out);
    out
}

const HEADER_HEX: &str = "13 2f6d756c746973747265616d2f312e302e30 0a";
const ECHO_HEX: &str = "0c 2f6563686f2f312e302e30 0a";

#[test]
fn echo_negotiation_matches_spec_bytes() {
    let mut dialer = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    let flight = drain_dialer(&mut dialer);
    assert_eq!(flight, hex(&format!("{HEADER_HEX} {ECHO_HEX}")));

    let mut listener = Listener::new(set(&["/echo/1.0.0"]), ListenerConfig::default());
    let mut input = flight;
    input.extend_from_slice(b"hello");
    assert_eq!(
        listener.handle_input(&mut input).unwrap(),
        ListenerStatus::Agreed(p("/echo/1.0.0"))
    );
    assert_eq!(&input[..], b"hello", "application bytes stay in the input");
    let answer = drain_listener(&mut listener);
    assert_eq!(answer, hex(&format!("{HEADER_HEX} {ECHO_HEX}")));

    let mut input = answer;
    input.extend_from_slice(b"world");
    assert_eq!(
        dialer.handle_input(&mut input).unwrap(),
        DialerStatus::Agreed(p("/echo/1.0.0"))
    );
    assert_eq!(&input[..], b"world");
    assert!(dialer.poll_transmit(&mut BytesMut::new()).is_none());
}

#[test]
fn na_then_second_proposal_matches_spec_bytes() {
    let mut dialer = Dialer::new([p("/echo/1.0.0"), p("/echo/2.0.0")], DialerMode::Strict).unwrap();
    let mut listener = Listener::new(set(&["/echo/2.0.0"]), ListenerConfig::default());

    let mut d2l = drain_dialer(&mut dialer);
    assert_eq!(
        listener.handle_input(&mut d2l).unwrap(),
        ListenerStatus::InProgress
    );
    let mut l2d = drain_listener(&mut listener);
    assert_eq!(l2d, hex(&format!("{HEADER_HEX} 03 6e 61 0a")));
    assert_eq!(
        dialer.handle_input(&mut l2d).unwrap(),
        DialerStatus::InProgress
    );
    let mut d2l = drain_dialer(&mut dialer);
    assert_eq!(d2l, hex("0c 2f 65 63 68 6f 2f 32 2e 30 2e 30 0a"));
    assert_eq!(
        listener.handle_input(&mut d2l).unwrap(),
        ListenerStatus::Agreed(p("/echo/2.0.0"))
    );
    let mut l2d = drain_listener(&mut listener);
    assert_eq!(l2d, hex("0c 2f 65 63 68 6f 2f 32 2e 30 2e 30 0a"));
    assert_eq!(
        dialer.handle_input(&mut l2d).unwrap(),
        DialerStatus::Agreed(p("/echo/2.0.0"))
    );
}

#[test]
fn noise_first_flight_matches_spec_bytes() {
    let mut dialer = Dialer::new([p("/noise")], DialerMode::Lazy).unwrap();
    assert_eq!(dialer.optimistic_protocol(), Some(&p("/noise")));
    assert_eq!(
        drain_dialer(&mut dialer),
        hex("132f6d756c746973747265616d2f312e302e300a072f6e6f6973650a")
    );
}

#[test]
fn lazy_dialer_is_optimistic_only_for_the_last_candidate() {
    let mut dialer = Dialer::new([p("/a"), p("/b")], DialerMode::Lazy).unwrap();
    assert_eq!(dialer.optimistic_protocol(), None);
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("036e610a"));
    assert_eq!(
        dialer.handle_input(&mut input).unwrap(),
        DialerStatus::InProgress
    );
    assert_eq!(dialer.optimistic_protocol(), Some(&p("/b")));
    assert!(!dialer.is_agreed());
}

#[test]
fn lazy_dialer_surfaces_rejection() {
    let mut dialer = Dialer::new([p("/echo/1.0.0")], DialerMode::Lazy).unwrap();
    let mut listener = Listener::new(set(&["/other"]), ListenerConfig::default());
    let mut d2l = drain_dialer(&mut dialer);
    listener.handle_input(&mut d2l).unwrap();
    let mut l2d = drain_listener(&mut listener);
    assert_eq!(dialer.handle_input(&mut l2d), Err(Error::NotSupported));
}

#[test]
fn strict_strict_all_rejected() {
    let mut dialer = Dialer::new([p("/a"), p("/b")], DialerMode::Strict).unwrap();
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("036e610a 036e610a"));
    assert_eq!(dialer.handle_input(&mut input), Err(Error::NotSupported));
}

#[test]
fn dialer_error_paths() {
    assert_eq!(
        Dialer::new(Vec::<Protocol>::new(), DialerMode::Strict).unwrap_err(),
        Error::NoProtocols
    );
    // First message is not the header.
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    assert!(matches!(
        d.handle_input(&mut hex(ECHO_HEX)),
        Err(Error::BadHeader { .. })
    ));
    // An answer that is neither the echo nor na.
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("072f6e6f6973650a"));
    assert!(matches!(
        d.handle_input(&mut input),
        Err(Error::UnexpectedAnswer { .. })
    ));
    // A second header.
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex(HEADER_HEX));
    assert!(matches!(
        d.handle_input(&mut input),
        Err(Error::UnexpectedAnswer { .. })
    ));
    // Missing newline, over-long frame, over-long varint.
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("02 2f61"));
    assert_eq!(
        d.handle_input(&mut input),
        Err(Error::Message(ProtocolError::MissingNewline))
    );
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    assert!(matches!(
        d.handle_input(&mut hex("81 08")),
        Err(Error::Frame(FrameError::TooLarge { len: 1025, .. }))
    ));
    let mut d = Dialer::new([p("/echo/1.0.0")], DialerMode::Strict).unwrap();
    assert!(matches!(
        d.handle_input(&mut hex("ff ff ff ff 0f")),
        Err(Error::Frame(FrameError::PrefixTooLong { .. }))
    ));
}

#[test]
fn listener_error_paths() {
    let cfg = ListenerConfig::default();
    // First message is not the header.
    let mut l = Listener::new(set(&["/echo/1.0.0"]), cfg.clone());
    assert!(matches!(
        l.handle_input(&mut hex(ECHO_HEX)),
        Err(Error::BadHeader { .. })
    ));
    // Garbage from the first byte: a zero-length frame.
    let mut l = Listener::new(set(&["/echo/1.0.0"]), cfg.clone());
    assert!(matches!(
        l.handle_input(&mut hex("00")),
        Err(Error::BadHeader { .. })
    ));
    // A dialer sending na.
    let mut l = Listener::new(set(&["/echo/1.0.0"]), cfg.clone());
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("036e610a"));
    assert!(matches!(
        l.handle_input(&mut input),
        Err(Error::UnexpectedProposal { .. })
    ));
    // A length prefix claiming gigabytes.
    let mut l = Listener::new(set(&["/echo/1.0.0"]), cfg.clone());
    assert!(matches!(
        l.handle_input(&mut hex("80 80 80 80 04")),
        Err(Error::Frame(_))
    ));
    // Invalid protocol id.
    let mut l = Listener::new(set(&["/echo/1.0.0"]), cfg);
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("04 61 62 63 0a"));
    assert_eq!(
        l.handle_input(&mut input),
        Err(Error::Message(ProtocolError::NoLeadingSlash))
    );
}

#[test]
fn listener_limits_rejections() {
    let mut l = Listener::new(
        set(&["/echo/1.0.0"]),
        ListenerConfig {
            max_rejections: 3,
            ..ListenerConfig::default()
        },
    );
    let mut input = hex(HEADER_HEX);
    for _ in 0..4 {
        Message::Protocol(p("/nope")).encode(&mut input);
    }
    assert_eq!(
        l.handle_input(&mut input),
        Err(Error::TooManyRejections { max: 3 })
    );
}

#[test]
fn listener_stops_reading_while_answers_are_not_drained() {
    let mut l = Listener::new(
        set(&["/echo/1.0.0"]),
        ListenerConfig {
            max_rejections: 1000,
            max_pending_output: 64,
        },
    );
    let mut input = hex(HEADER_HEX);
    for _ in 0..100 {
        Message::Protocol(p("/nope")).encode(&mut input);
    }
    let before = input.len();
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::InProgress
    );
    assert!(
        input.len() < before && !input.is_empty(),
        "consumed some, not all"
    );
    let pending = drain_listener(&mut l);
    assert!(
        pending.len() < 64 + 8,
        "pending output bounded: {}",
        pending.len()
    );
    // Draining lets it continue.
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::InProgress
    );
}

#[test]
fn listener_answers_ls_and_asks_about_other_ids() {
    let mut protocols = ProtocolSet::from_protocols([p("/noise"), p("/yamux/1.0.0")]);
    protocols.set_ask_others(true);
    let mut l = Listener::new(Arc::new(protocols), ListenerConfig::default());
    let mut input = hex(HEADER_HEX);
    input.extend_from_slice(&hex("036c730a"));
    Message::Protocol(p("/other/1.0.0")).encode(&mut input);
    Message::Protocol(p("/echo/9.9.9")).encode(&mut input);
    input.extend_from_slice(b"data");
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::Query(p("/other/1.0.0"))
    );
    // Nothing more is consumed until the owner answers.
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::Query(p("/other/1.0.0"))
    );
    l.answer(false).unwrap();
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::Query(p("/echo/9.9.9"))
    );
    l.answer(true).unwrap();
    assert_eq!(
        l.handle_input(&mut input).unwrap(),
        ListenerStatus::Agreed(p("/echo/9.9.9"))
    );
    assert_eq!(
        &input[..],
        b"data",
        "what follows the agreed proposal stays"
    );
    assert_eq!(l.answer(true), Err(Error::NoQuery));
    let mut want = hex(HEADER_HEX);
    want.extend_from_slice(&hex("17072f6e6f6973650a0d2f79616d75782f312e302e300a0a"));
    Message::NotAvailable.encode(&mut want);
    Message::Protocol(p("/echo/9.9.9")).encode(&mut want);
    assert_eq!(drain_listener(&mut l), want);
}

#[test]
fn ls_requests_count_toward_the_rejection_limit() {
    let mut l = Listener::new(
        set(&["/echo/1.0.0"]),
        ListenerConfig {
            max_rejections: 3,
            max_pending_output: usize::MAX,
        },
    );
    let mut input = hex(HEADER_HEX);
    Message::Protocol(p("/nope")).encode(&mut input);
    for _ in 0..3 {
        Message::ListProtocols.encode(&mut input);
    }
    assert_eq!(
        l.handle_input(&mut input),
        Err(Error::TooManyRejections { max: 3 })
    );
}

type PairOutcome = (
    Result<Protocol, Error>,
    Result<Protocol, Error>,
    Vec<u8>,
    Vec<u8>,
);

/// Runs a dialer and a listener against each other, delivering bytes in the given chunk
/// sizes. Returns both outcomes and the application bytes each side saw after negotiation.
fn run_pair(
    proposals: &[Protocol],
    supported: &[Protocol],
    mode: DialerMode,
    chunks: &[usize],
) -> PairOutcome {
    let mut dialer = Dialer::new(proposals.iter().cloned(), mode).unwrap();
    let mut listener = Listener::new(
        Arc::new(ProtocolSet::from_protocols(supported.iter().cloned())),
        ListenerConfig::default(),
    );
    let (mut d2l, mut l2d) = (BytesMut::new(), BytesMut::new());
    let (mut d_in, mut l_in) = (BytesMut::new(), BytesMut::new());
    let (mut d_res, mut l_res) = (None, None);
    let mut sent_app = (false, false);
    let mut chunk = chunks.iter().cycle();
    for _ in 0..10_000 {
        dialer.poll_transmit(&mut d2l);
        listener.poll_transmit(&mut l2d);
        if dialer.optimistic_protocol().is_some() && !sent_app.0 && d_res.is_none() {
            d2l.extend_from_slice(b"from-dialer");
            sent_app.0 = true;
        }
        if matches!(l_res, Some(Ok(_))) && !sent_app.1 {
            l2d.extend_from_slice(b"from-listener");
            sent_app.1 = true;
        }
        let n = (*chunk.next().unwrap()).max(1);
        let moved = d2l.len().min(n);
        l_in.extend_from_slice(&d2l.split_to(moved));
        let moved2 = l2d.len().min(n);
        d_in.extend_from_slice(&l2d.split_to(moved2));
        if l_res.is_none() {
            match listener.handle_input(&mut l_in) {
                Ok(ListenerStatus::Agreed(p)) => l_res = Some(Ok(p)),
                Ok(ListenerStatus::InProgress) => {}
                Ok(ListenerStatus::Query(p)) => panic!("exact sets never ask, got {p}"),
                Err(e) => l_res = Some(Err(e)),
            }
        }
        if d_res.is_none() {
            match dialer.handle_input(&mut d_in) {
                Ok(DialerStatus::Agreed(p)) => d_res = Some(Ok(p)),
                Ok(DialerStatus::InProgress) => {}
                Err(e) => d_res = Some(Err(e)),
            }
        }
        if moved == 0 && moved2 == 0 && d2l.is_empty() && l2d.is_empty() && d_res.is_some() {
            break;
        }
    }
    (
        d_res.expect("dialer finished"),
        l_res.unwrap_or(Err(Error::NotSupported)),
        d_in.to_vec(),
        l_in.to_vec(),
    )
}

fn protocol_strategy() -> impl Strategy<Value = Protocol> {
    "/[a-d]{1,3}".prop_map(|s| Protocol::try_from(s).unwrap())
}

proptest! {
    #[test]
    fn pairs_agree_on_first_common_protocol(
        proposals in proptest::collection::vec(protocol_strategy(), 1..6),
        supported in proptest::collection::vec(protocol_strategy(), 0..6),
        chunks in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let (d, l, d_rest, l_rest) = run_pair(&proposals, &supported, DialerMode::Strict, &chunks);
        match proposals.iter().find(|p| supported.contains(p)) {
            Some(want) => {
                prop_assert_eq!(d, Ok(want.clone()));
                prop_assert_eq!(l, Ok(want.clone()));
                prop_assert_eq!(d_rest, b"from-listener".to_vec());
                prop_assert!(l_rest.is_empty());
            }
            None => prop_assert_eq!(d, Err(Error::NotSupported)),
        }
    }

    #[test]
    fn lazy_pairs_deliver_early_data(
        proposal in protocol_strategy(),
        chunks in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let (d, l, d_rest, l_rest) = run_pair(std::slice::from_ref(&proposal), std::slice::from_ref(&proposal), DialerMode::Lazy, &chunks);
        prop_assert_eq!(d, Ok(proposal.clone()));
        prop_assert_eq!(l, Ok(proposal));
        prop_assert_eq!(d_rest, b"from-listener".to_vec());
        prop_assert_eq!(l_rest, b"from-dialer".to_vec());
    }

    /// Whatever the chunking, the listener consumes the same bytes and answers the same.
    #[test]
    fn listener_is_chunking_invariant(
        proposals in proptest::collection::vec(protocol_strategy(), 1..6),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let supported = set(&["/a", "/bb"]);
        let mut wire = BytesMut::new();
        Message::Header.encode(&mut wire);
        for p in &proposals { Message::Protocol(p.clone()).encode(&mut wire); }
        wire.extend_from_slice(&trailing);

        let whole = {
            let mut l = Listener::new(supported.clone(), ListenerConfig::default());
            let mut input = wire.clone();
            let r = l.handle_input(&mut input);
            (r, drain_listener(&mut l), input)
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut l = Listener::new(supported, ListenerConfig::default());
        let mut input = BytesMut::new();
        let mut last = 0;
        let mut result = Ok(ListenerStatus::InProgress);
        for point in points.into_iter().chain([wire.len()]) {
            input.extend_from_slice(&wire[last..point]);
            last = point;
            result = l.handle_input(&mut input);
            if !matches!(result, Ok(ListenerStatus::InProgress)) { break; }
        }
        input.extend_from_slice(&wire[last..]);
        prop_assert_eq!(result, whole.0);
        prop_assert_eq!(drain_listener(&mut l), whole.1);
        prop_assert_eq!(input, whole.2);
    }

    /// Whatever the chunking, the dialer reaches the same outcome and leaves the same bytes.
    #[test]
    fn dialer_is_chunking_invariant(
        answers in proptest::collection::vec(0u8..3, 0..5),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let proposals = [p("/a"), p("/b"), p("/c")];
        let mut wire = BytesMut::new();
        Message::Header.encode(&mut wire);
        for a in &answers {
            match a {
                0 => Message::NotAvailable.encode(&mut wire),
                1 => Message::Protocol(p("/b")).encode(&mut wire),
                _ => Message::Protocol(p("/zz")).encode(&mut wire),
            }
        }
        wire.extend_from_slice(&trailing);
        let whole = {
            let mut d = Dialer::new(proposals.clone(), DialerMode::Strict).unwrap();
            let mut input = wire.clone();
            let r = d.handle_input(&mut input);
            (r, drain_dialer(&mut d), input)
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut d = Dialer::new(proposals, DialerMode::Strict).unwrap();
        let mut input = BytesMut::new();
        let mut last = 0;
        let mut result = Ok(DialerStatus::InProgress);
        for point in points.into_iter().chain([wire.len()]) {
            input.extend_from_slice(&wire[last..point]);
            last = point;
            result = d.handle_input(&mut input);
            if !matches!(result, Ok(DialerStatus::InProgress)) { break; }
        }
        input.extend_from_slice(&wire[last..]);
        prop_assert_eq!(result.clone(), whole.0);
        prop_assert_eq!(drain_dialer(&mut d), whole.1);
        if result.is_ok() { prop_assert_eq!(input, whole.2); }
    }
}
