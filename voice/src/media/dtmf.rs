//! RFC 4733 telephone-events (DTMF) over RTP: payload codec, a receiver that reports each
//! key press once, and a sender that paces one press into packets.
//!
//! An event is one key press; all its packets carry the same RTP timestamp (its start), a
//! growing duration, and the last three repeat with the end bit. The receiver keys presses by
//! (timestamp, event), so retransmitted packets and repeated ends are reported once, and a
//! press is reported on the first packet that survives (not only at its end).

/// Samples per 20 ms packet at 8 kHz.
const FRAME: u16 = 160;

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code: 0–9, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash.
    pub event: u8,
    /// The end bit.
    pub end: bool,
    /// Volume in −dBm0 (6 bits).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// Parses the first four bytes of a payload; `None` when shorter.
    pub fn parse(payload: &[u8]) -> Option<EventPayload> {
        let b = payload.get(..4)?;
        Some(EventPayload {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The four payload bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// The character of an event code (`!` for flash), `None` for codes that are not keys.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        16 => Some('!'),
        _ => None,
    }
}

/// The event code of a key, `None` for anything else.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        '!' => Some(16),
        _ => None,
    }
}

/// Reports each key press once, however many of its packets arrive.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The last few presses seen, by (timestamp, event); a ring so old entries age out.
    seen: [Option<(u32, u8)>; 4],
    next: usize,
}

impl DtmfReceiver {
    /// Feeds one telephone-event packet; returns the digit when it starts a new press.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let p = EventPayload::parse(payload)?;
        let digit = event_to_digit(p.event)?;
        let key = (timestamp, p.event);
        if self.seen.contains(&Some(key)) {
            return None;
        }
        self.seen[self.next] = Some(key);
        self.next = (self.next + 1) % self.seen.len();
        Some(digit)
    }
}

/// One outgoing key press, paced one packet per 20 ms tick.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    timestamp: u32,
    frames: u16,
    sent: u16,
    ends_left: u8,
}

/// One packet to send for an outgoing press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Set on the first packet of the press.
    pub marker: bool,
    /// The press's start timestamp (the same on every packet).
    pub timestamp: u32,
    /// The payload.
    pub payload: EventPayload,
}

impl DtmfSender {
    /// Volume sent, −10 dBm0 as most phones do.
    const VOLUME: u8 = 10;
    /// End packets sent (RFC 4733 §2.5.1.4 recommends three).
    const ENDS: u8 = 3;

    /// A press of `digit` starting at RTP `timestamp`, lasting `frames` × 20 ms.
    pub fn new(digit: char, timestamp: u32, frames: u16) -> Option<DtmfSender> {
        Some(DtmfSender {
            event: digit_to_event(digit)?,
            timestamp,
            frames: frames.clamp(1, 400),
            sent: 0,
            ends_left: Self::ENDS,
        })
    }

    /// How many timestamp units the press occupies (audio resumes after it).
    pub fn duration(&self) -> u32 {
        u32::from(self.frames) * u32::from(FRAME)
    }

    /// The packet for the next tick, `None` once the last end packet has gone.
    pub fn next_packet(&mut self) -> Option<EventPacket> {
        let end = if self.sent < self.frames {
            self.sent += 1;
            false
        } else if self.ends_left > 0 {
            self.ends_left -= 1;
            true
        } else {
            return None;
        };
        Some(EventPacket {
            marker: self.sent == 1 && !end,
            timestamp: self.timestamp,
            payload: EventPayload {
                event: self.event,
                end,
                volume: Self::VOLUME,
                duration: self.sent * FRAME,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_codes_map_both_ways() {
        for d in "0123456789*#ABCD!".chars() {
            assert_eq!(event_to_digit(digit_to_event(d).unwrap()), Some(d));
        }
        assert_eq!(digit_to_event('x'), None);
        assert_eq!(event_to_digit(17), None);
    }

    #[test]
    fn sender_emits_growing_durations_then_three_ends() {
        let mut s = DtmfSender::new('5', 8000, 5).unwrap();
        let packets: Vec<_> = std::iter::from_fn(|| s.next_packet()).collect();
        assert_eq!(packets.len(), 8);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        let durations: Vec<u16> = packets.iter().map(|p| p.payload.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        let ends: Vec<bool> = packets.iter().map(|p| p.payload.end).collect();
        assert_eq!(ends, [false, false, false, false, false, true, true, true]);
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 8000 && p.payload.event == 5));
        assert_eq!(s.duration(), 800);
    }

    #[test]
    fn receiver_reports_each_press_once_despite_loss_and_retransmission() {
        let mut tx = DtmfSender::new('#', 1000, 3).unwrap();
        let packets: Vec<_> = std::iter::from_fn(|| tx.next_packet()).collect();
        let mut rx = DtmfReceiver::default();
        // First packet lost; the rest (with repeated ends, and one duplicate) arrive.
        let mut got = Vec::new();
        for p in packets[1..].iter().chain(&packets[3..]) {
            got.extend(rx.on_packet(p.timestamp, &p.payload.to_bytes()));
        }
        assert_eq!(got, ['#']);
        // Only an end packet of a new press still reports it.
        let end = EventPayload {
            event: 1,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(rx.on_packet(5000, &end.to_bytes()), Some('1'));
        assert_eq!(rx.on_packet(5000, &end.to_bytes()), None);
        // The same key pressed again is a new timestamp.
        assert_eq!(rx.on_packet(9000, &end.to_bytes()), Some('1'));
        assert_eq!(rx.on_packet(9000, &[1, 2]), None);
        assert_eq!(rx.on_packet(9100, &[200, 0, 0, 0]), None);
    }
}
