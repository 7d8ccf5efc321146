//! Any byte stream, split at an offset chosen by the input: the messages framed must be the
//! same as from the unsplit stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice::sip::framing::{frame_stream, FrameLimits, Framed, RawMessage};

fn collect(chunks: &[&[u8]]) -> (Vec<RawMessage>, bool) {
    let limits = FrameLimits::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match frame_stream(&buf, &limits) {
                Ok(Framed::NeedsMoreData) => break,
                Ok(Framed::KeepAlive(n)) => {
                    buf.drain(..n);
                }
                Ok(Framed::Message(m, n)) => {
                    out.push(*m);
                    buf.drain(..n);
                }
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let whole = collect(&[rest]);
    let split = collect(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split);
});
