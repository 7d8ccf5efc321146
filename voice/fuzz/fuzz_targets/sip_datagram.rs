//! Any datagram: framing and parsing must return, never panic, and a message that parses
//! must give a response that parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice::sip::framing::{frame_datagram, FrameLimits};
use voice::sip::message::parse;
use voice::sip::response::{build_response, ResponseParts};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits::default();
    let Ok(raw) = frame_datagram(data, &limits) else {
        return;
    };
    if let Ok(message) = parse(raw) {
        if message.head.is_addressable() {
            let source = "127.0.0.1:5060".parse().unwrap();
            let reply = build_response(&message.head, source, &ResponseParts::new(400, "Bad"));
            assert!(frame_datagram(&reply, &limits).is_ok());
        }
    }
});
