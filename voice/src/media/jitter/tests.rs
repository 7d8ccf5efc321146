use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn payload(seq: u16) -> [u8; 2] {
    seq.to_be_bytes()
}

fn seq_of(p: &Playout) -> Option<u16> {
    match p {
        Playout::Packet(v) => Some(u16::from_be_bytes([v[0], v[1]])),
        _ => None,
    }
}

/// Pushes packet `seq` as if sent on a 20 ms clock and arriving `delay` ms late.
fn push(jb: &mut JitterBuffer, seq: u16, delay: u64) -> PushOutcome {
    let n = u64::from(seq);
    jb.push(seq, (n * 160) as u32, 7, &payload(seq), ms(n * 20 + delay))
}

#[test]
fn waits_for_the_target_depth_then_plays_in_order() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    assert_eq!(jb.pop(), Playout::Waiting);
    push(&mut jb, 0, 0);
    assert_eq!(jb.pop(), Playout::Waiting);
    push(&mut jb, 1, 0);
    assert_eq!(jb.pop(), Playout::Waiting);
    let mut out = Vec::new();
    for s in 2..10 {
        push(&mut jb, s, 0);
        out.push(seq_of(&jb.pop()));
    }
    assert_eq!(out, (0..8).map(Some).collect::<Vec<_>>());
    let st = jb.stats();
    assert_eq!(
        (st.received, st.expected, st.lost, st.concealed),
        (10, 10, 0, 0)
    );
    assert_eq!(st.jitter_ms, 0.0);
}

#[test]
fn reorders_within_its_depth() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    push(&mut jb, 1, 0);
    push(&mut jb, 0, 5);
    assert_eq!(jb.pop(), Playout::Waiting);
    let mut got = Vec::new();
    for s in [3, 2, 5, 4] {
        push(&mut jb, s, 0);
        got.push(seq_of(&jb.pop()));
    }
    got.push(seq_of(&jb.pop()));
    got.push(seq_of(&jb.pop()));
    assert_eq!(got, (0..6).map(Some).collect::<Vec<_>>());
    assert!(jb.stats().reordered >= 2);
}

#[test]
fn conceals_a_gap_and_drops_the_late_packet_and_duplicates() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for s in 0..3 {
        push(&mut jb, s, 0);
    }
    let mut got = vec![jb.pop()];
    for s in [4, 5, 6] {
        push(&mut jb, s, 0);
        got.push(jb.pop());
    }
    assert_eq!(push(&mut jb, 5, 0), PushOutcome::Duplicate);
    got.push(jb.pop());
    let seqs: Vec<_> = got.iter().map(seq_of).collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2), None, Some(4)]);
    assert_eq!(got[3], Playout::Lost);
    assert_eq!(push(&mut jb, 3, 100), PushOutcome::Late);
    let st = jb.stats();
    assert_eq!((st.late, st.duplicates, st.concealed), (1, 1, 1));
    // RFC 3550 loss counts late arrivals as received and duplicates twice.
    assert_eq!((st.expected, st.received, st.lost), (7, 8, -1));
}

#[test]
fn an_earlier_packet_before_the_first_pop_becomes_the_start() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    push(&mut jb, 11, 0);
    push(&mut jb, 10, 0);
    assert_eq!(jb.pop(), Playout::Waiting);
    push(&mut jb, 12, 0);
    assert_eq!(seq_of(&jb.pop()), Some(10));
    assert_eq!(seq_of(&jb.pop()), Some(11));
}

#[test]
fn stays_bounded_and_restarts_on_a_jump() {
    let cfg = JitterConfig::default();
    let mut jb = JitterBuffer::new(cfg);
    for s in 0..1000u16 {
        push(&mut jb, s, 0);
        assert!(jb.depth() <= cfg.capacity);
    }
    assert!(jb.stats().restarts > 0);
    // After a restart the newest packets play, the old ones are gone.
    let first = seq_of(&jb.pop()).unwrap();
    assert!(first >= 1000 - cfg.capacity as u16, "{first}");
}

#[test]
fn underrun_rebuffers_and_a_burst_is_shrunk() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for s in 0..3 {
        push(&mut jb, s, 0);
    }
    for s in 0..3 {
        assert_eq!(seq_of(&jb.pop()), Some(s));
    }
    assert_eq!(jb.pop(), Playout::Waiting);
    assert_eq!(jb.stats().underruns, 1);
    // A stall then a burst of 10 arriving together, then a steady flow: the excess delay is
    // shed one packet per 0.5 s, never all at once, and playout stays in order.
    for s in 3..13 {
        push(&mut jb, s, 200);
    }
    let mut played = Vec::new();
    played.extend(seq_of(&jb.pop()));
    assert_eq!(jb.stats().discarded, 0, "no loss on the first late tick");
    for s in 13..213 {
        push(&mut jb, s, 200);
        played.extend(seq_of(&jb.pop()));
    }
    let st = jb.stats();
    assert!((4..=6).contains(&st.discarded), "{st:?}");
    assert!(jb.depth() <= st.target_frames + 2, "{}", jb.depth());
    assert!(played.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(played.len() as u64 + st.discarded + jb.depth() as u64, 210);
}

#[test]
fn jitter_estimate_grows_the_target_and_follows_rfc3550() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Alternating 0 and 30 ms of network delay: |D| = 240 units every packet.
    for s in 0..200u16 {
        push(&mut jb, s, if s % 2 == 0 { 0 } else { 30 });
    }
    let st = jb.stats();
    assert!((st.jitter_ms - 30.0).abs() < 0.5, "{}", st.jitter_ms);
    assert_eq!(st.target_frames, 6); // 1 + ceil(3 * 30 / 20)
}

#[test]
fn sequence_wraparound_and_new_ssrc() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut got = Vec::new();
    for (i, s) in (65530u16..=65535).chain(0..4).enumerate() {
        jb.push(s, i as u32 * 160, 1, &payload(s), ms(i as u64 * 20));
        got.extend(seq_of(&jb.pop()));
    }
    got.extend(seq_of(&jb.pop()));
    got.extend(seq_of(&jb.pop()));
    assert_eq!(got, [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3]);
    assert_eq!(jb.stats().expected, 10);
    assert_eq!(
        jb.push(500, 0, 2, &payload(500), ms(300)),
        PushOutcome::Restarted
    );
    jb.push(501, 160, 2, &payload(501), ms(320));
    jb.push(502, 320, 2, &payload(502), ms(340));
    assert_eq!(seq_of(&jb.pop()), Some(500));
}

proptest! {
    /// Packets sent on a 20 ms clock, each delayed by 0–60 ms (so reordered), some dropped,
    /// some duplicated, one pop per 20 ms: playout is strictly in order, never exceeds the
    /// capacity, and every packet is accounted for exactly once.
    #[test]
    fn playout_is_ordered_bounded_and_accounted(
        delays in proptest::collection::vec(0u64..60, 1..300),
        drops in proptest::collection::vec(any::<bool>(), 300),
        dups in proptest::collection::vec(0u8..20, 300),
        start in any::<u16>(),
    ) {
        let cfg = JitterConfig::default();
        let mut jb = JitterBuffer::new(cfg);
        let mut arrivals: Vec<(u64, u16)> = Vec::new();
        for (i, d) in delays.iter().enumerate() {
            if drops[i] && i % 7 == 0 { continue; }
            let seq = start.wrapping_add(i as u16);
            arrivals.push((i as u64 * 20 + d, seq));
            if dups[i] == 0 { arrivals.push((i as u64 * 20 + d + 1, seq)); }
        }
        arrivals.sort();
        let mut played: Vec<u16> = Vec::new();
        let mut next = 0usize;
        let end = delays.len() as u64 * 20 + 400;
        let mut t = 0;
        while t <= end {
            while next < arrivals.len() && arrivals[next].0 <= t {
                let (at, seq) = arrivals[next];
                let i = u64::from(seq.wrapping_sub(start));
                jb.push(seq, (i * 160) as u32, 9, &payload(seq), ms(at));
                prop_assert!(jb.depth() <= cfg.capacity);
                next += 1;
            }
            if let Some(s) = seq_of(&jb.pop()) { played.push(s); }
            t += 20;
        }
        for w in played.windows(2) {
            let step = w[1].wrapping_sub(w[0]);
            prop_assert!((1..0x8000).contains(&step), "out of order: {:?}", w);
        }
        let st = jb.stats();
        prop_assert_eq!(st.received, arrivals.len() as u64);
        prop_assert_eq!(
            played.len() as u64 + st.late + st.duplicates + st.discarded + jb.depth() as u64,
            st.received
        );
    }
}
