//! Any text: parsing an SDP body and answering it must return, never panic; a body that
//! parses serializes to text that parses back to the same description.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice::sdp::{answer, LocalMedia, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(sdp) = SessionDescription::parse(&text) else {
        return;
    };
    let again = SessionDescription::parse(&sdp.to_string()).expect("serialized SDP parses");
    assert_eq!(again, sdp);
    let local = LocalMedia::new("192.0.2.1".parse().unwrap(), 20000, 1);
    if let Ok((ans, _)) = answer(&sdp, &local) {
        SessionDescription::parse(&ans.to_string()).expect("our answer parses");
    }
});
