//! Any bytes through the email parse path: no panic, and nothing unstorable comes out.
#![no_main]

use channels::email::parse::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parsed::Message(m) = parse(data, "support@acme.test", 1 << 16) {
        assert!(!m.body.contains('\0'));
        assert!(!m.provider_message_id.is_empty());
    }
});
