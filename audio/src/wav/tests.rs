use super::*;
use proptest::prelude::*;

#[test]
fn pcm16_round_trips() {
    let samples: Vec<i16> = (0..1_000)
        .map(|i| (i * 37 % 2_000 - 1_000) as i16)
        .collect();
    let clip = parse_wav(&encode_wav(8_000, 1, &samples)).unwrap();
    assert_eq!(clip, Clip::mono(8_000, samples));
    assert!((clip.seconds() - 0.125).abs() < 1e-9);
}

#[test]
fn stereo_is_kept_interleaved_and_downmixed_on_request() {
    let stereo: Vec<i16> = (0..10).flat_map(|_| [1_000, 3_000]).collect();
    let clip = parse_wav(&encode_wav(16_000, 2, &stereo)).unwrap();
    assert_eq!((clip.rate, clip.channels), (16_000, 2));
    assert_eq!(clip.samples, stereo);
    assert_eq!(clip.to_mono(), Clip::mono(16_000, vec![2_000; 10]));
}

#[test]
fn resampling_to_8k_is_band_limited() {
    // 6 kHz at 16 kHz cannot be carried at 8 kHz: the resampler removes it instead of
    // folding it to 2 kHz (the linear interpolator this replaced kept most of it).
    let tone: Vec<i16> = (0..16_000)
        .map(|n| {
            (8_000.0 * (2.0 * std::f64::consts::PI * 6_000.0 * n as f64 / 16_000.0).sin()) as i16
        })
        .collect();
    let clip = parse_wav(&encode_wav(16_000, 1, &tone)).unwrap();
    let out = clip.to_mono_at(8_000).unwrap();
    assert_eq!(out.len(), 8_000);
    let peak = out[800..7_200]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!(peak < 100, "aliased energy left: peak {peak}");
}

fn with_format(tag: u16, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 8 + 18 + 8 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    for v in [tag, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&8_000u32.to_le_bytes());
    b.extend_from_slice(&8_000u32.to_le_bytes());
    for v in [1u16, bits, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn g711_float_and_other_widths_are_read() {
    let codes = G711Law::Ulaw.encode(&[0, 1_000, -1_000, 30_000]);
    let clip = parse_wav(&with_format(7, 8, &codes)).unwrap();
    assert_eq!(clip.samples, G711Law::Ulaw.decode(&codes));
    let codes = G711Law::Alaw.encode(&[0, 1_000]);
    assert_eq!(
        parse_wav(&with_format(6, 8, &codes)).unwrap().samples,
        G711Law::Alaw.decode(&codes)
    );
    let floats: Vec<u8> = [0.5f32, -0.25]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    assert_eq!(
        parse_wav(&with_format(3, 32, &floats)).unwrap().samples,
        vec![16_384, -8_192]
    );
    assert_eq!(
        parse_wav(&with_format(1, 8, &[128, 255, 0]))
            .unwrap()
            .samples,
        vec![0, 127 << 8, -32_768]
    );
    assert_eq!(
        parse_wav(&with_format(1, 24, &[0xAA, 0x34, 0x12]))
            .unwrap()
            .samples,
        vec![0x1234]
    );
}

#[test]
fn skips_unknown_chunks_and_refuses_other_formats() {
    let mut bytes = encode_wav(8000, 1, &[1, 2, 3]);
    // Insert a LIST chunk of odd length (padded) before `data`.
    let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), &[9, 9, 9, 0]].concat();
    bytes.splice(36..36, list);
    assert_eq!(parse_wav(&bytes).unwrap().samples, vec![1, 2, 3]);
    assert!(matches!(
        parse_wav(&with_format(2, 4, &[0])),
        Err(WavError::Unsupported {
            format: 2,
            bits: 4,
            ..
        })
    ));
    assert_eq!(
        parse_wav(b"RIFF\0\0\0\0WAVE"),
        Err(WavError::MissingChunk { chunk: "data" })
    );
    assert_eq!(parse_wav(b"OggS"), Err(WavError::NotWav));
    assert_eq!(
        parse_wav(b"this is not a wav file at all"),
        Err(WavError::NotWav)
    );
}

#[test]
fn wide_integers_doubles_and_extensible_headers_are_read() {
    // 32-bit integer PCM keeps its top 16 bits; 64-bit float scales like 32-bit float.
    let ints: Vec<u8> = [0x1234_5678i32, -0x4000_0000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(
        parse_wav(&with_format(1, 32, &ints)).unwrap().samples,
        vec![0x1234, -0x4000]
    );
    let doubles: Vec<u8> = [0.5f64, -1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(
        parse_wav(&with_format(3, 64, &doubles)).unwrap().samples,
        vec![16_384, -32_768]
    );
    // WAVE_FORMAT_EXTENSIBLE (0xFFFE, a 40-byte fmt chunk): the sub-format GUID's first
    // two bytes are the real tag.
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
    b.extend_from_slice(&40u32.to_le_bytes());
    for v in [0xFFFEu16, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&8_000u32.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    for v in [2u16, 16, 22, 16] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&[0; 4]); // channel mask
    b.extend_from_slice(&[1, 0]); // KSDATAFORMAT_SUBTYPE_PCM starts 01 00
    b.extend_from_slice(&[0; 14]);
    b.extend_from_slice(b"data");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&[0x34, 0x12, 0xCC, 0xED]);
    assert_eq!(parse_wav(&b).unwrap().samples, vec![0x1234, -0x1234]);
    // The same header cut to 18 bytes names no sub-format: tag 0xFFFE is refused.
    let short = with_format(0xFFFE, 16, &[0, 0]);
    assert!(matches!(
        parse_wav(&short),
        Err(WavError::Unsupported { format: 0xFFFE, .. })
    ));
}

#[test]
fn no_channels_no_rate_and_not_wave_are_refused() {
    let mut zero_channels = with_format(1, 16, &[0, 0]);
    zero_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
    assert!(matches!(
        parse_wav(&zero_channels),
        Err(WavError::Unsupported { channels: 0, .. })
    ));
    let mut zero_rate = with_format(1, 16, &[0, 0]);
    zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        parse_wav(&zero_rate),
        Err(WavError::Unsupported { rate: 0, .. })
    ));
    assert_eq!(parse_wav(b"RIFF\0\0\0\0AVI LIST"), Err(WavError::NotWav));
    assert_eq!(parse_wav(b"RIFX\0\0\0\0WAVEfmt "), Err(WavError::NotWav));
}

#[test]
fn durations_and_header_fields_are_exact() {
    let stereo = Clip {
        rate: 8_000,
        channels: 2,
        samples: vec![0; 16_000],
    };
    assert!((stereo.seconds() - 1.0).abs() < 1e-12);
    let h = header(8_000, 2, 400);
    assert_eq!(&h[4..8], &436u32.to_le_bytes(), "RIFF size");
    assert_eq!(&h[28..32], &32_000u32.to_le_bytes(), "bytes per second");
    assert_eq!(&h[32..34], &4u16.to_le_bytes(), "block align");
    assert_eq!(&h[40..44], &400u32.to_le_bytes());
    let mono = header(16_000, 1, 0);
    assert_eq!(&mono[28..32], &32_000u32.to_le_bytes(), "bytes per second");
    assert_eq!(&mono[32..34], &2u16.to_le_bytes(), "block align");
}

proptest! {
    #[test]
    fn truncated_or_garbled_never_panics(cut in 0usize..80, at in 0usize..80, byte in any::<u8>()) {
        let mut bytes = encode_wav(16_000, 1, &[5; 10]);
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut);
        if let Ok(clip) = parse_wav(&bytes) { let _ = clip.to_mono_at(8_000); }
    }
}
