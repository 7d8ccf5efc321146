//! Speech benchmark: end-of-turn latency, real-time factors, TTS first-frame time, and
//! our overhead over whisper.cpp's C API. Run through `scripts/speech-bench.sh`, which
//! builds in release and prepares the C reference; alone:
//!
//! ```text
//! cargo run --release -p stt-tts --example speech_bench -- [--threads N] [--margin FRAMES] [--quick] [--ref-dir DIR]
//! ```
//!
//! Audio: receptionist sentences spoken by espeak-ng (through the crate's own FFI),
//! passed through 8 kHz µ-law and back, as a phone line would deliver them.

#[path = "../tests/common/sentences.rs"]
mod sentences;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audio::g711::G711Law;
use stt_tts::models::{ensure_model, WhisperModel};
use stt_tts::stt::{StreamConfig, StreamEvent, StreamingTranscriber, WhisperConfig, WhisperStt};
use stt_tts::tts::{synthesize_to_vec, EspeakConfig, EspeakTts};
use stt_tts::{SpeechError, SpeechToText, TextToSpeech};

struct Args {
    threads: usize,
    margin: Option<usize>,
    quick: bool,
    ref_dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        threads: 2,
        margin: None,
        quick: false,
        ref_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--threads" => a.threads = it.next().and_then(|v| v.parse().ok()).expect("--threads N"),
            "--quick" => a.quick = true,
            "--margin" => a.margin = it.next().and_then(|v| v.parse().ok()),
            "--ref-dir" => a.ref_dir = it.next().map(PathBuf::from),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Utterances of at most 5 s, 8 kHz, through µ-law.
fn utterances(tts: &EspeakTts, quick: bool) -> Result<Vec<(&'static str, Vec<i16>)>, SpeechError> {
    let mut out = Vec::new();
    for &text in sentences::SENTENCES {
        let pcm = synthesize_to_vec(tts, text)?;
        if pcm.len() <= 5 * 8_000 {
            out.push((text, G711Law::Ulaw.decode(&G711Law::Ulaw.encode(&pcm))));
        }
        if quick && out.len() == 8 {
            break;
        }
    }
    Ok(out)
}

fn to_16k(pcm: &[i16]) -> Vec<f32> {
    audio::resample::resample(&audio::pcm::to_f32(pcm), 8_000, 16_000).expect("resample")
}

fn load(model: WhisperModel, a: &Args, reduced: bool) -> Result<Arc<WhisperStt>, SpeechError> {
    let mut cfg = WhisperConfig::new(ensure_model(model)?);
    cfg.threads = a.threads;
    if let Some(m) = a.margin {
        cfg.audio_ctx_margin = m;
    }
    cfg.reduced_audio_ctx = reduced;
    Ok(Arc::new(WhisperStt::load(cfg)?))
}

/// Real-time factor over all utterances (one transcription each).
fn rtf(stt: &WhisperStt, utts: &[(&str, Vec<i16>)]) -> Result<f64, SpeechError> {
    let (mut wall, mut audio) = (0.0, 0.0);
    for (_, pcm) in utts {
        let t = stt.transcribe(&to_16k(pcm))?;
        wall += t.elapsed.as_secs_f64();
        audio += t.audio_ms as f64 / 1000.0;
    }
    Ok(wall / audio)
}

/// Pushes each utterance (with lead-in and trailing silence) through a streaming
/// transcriber; `paced` pushes one 20 ms frame every 20 ms as RTP would. Returns
/// (end decision -> transcript, end of speech -> transcript) in ms, per turn.
fn stream_latency(
    stt: Arc<WhisperStt>,
    utts: &[(&str, Vec<i16>)],
    speculate: bool,
    paced: bool,
) -> Result<(Vec<f64>, Vec<f64>), SpeechError> {
    let cfg = StreamConfig {
        speculate,
        ..StreamConfig::default()
    };
    let (mut decided, mut spoken) = (Vec::new(), Vec::new());
    for (_, pcm) in utts {
        let mut stream = StreamingTranscriber::new(stt.clone(), cfg.clone())?;
        let mut call = vec![0i16; 8 * 300];
        call.extend_from_slice(pcm);
        call.extend(vec![0i16; 8 * (cfg.vad.hangover_ms as usize + 300)]);
        let t0 = Instant::now();
        let mut end_ms = None;
        for (i, frame) in call.chunks(160).enumerate() {
            if paced {
                let due = t0 + Duration::from_millis(20 * i as u64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            for ev in stream.push(frame) {
                if let StreamEvent::TurnEnded { end_ms: e, .. } = ev {
                    end_ms = Some(e);
                }
            }
        }
        let Some(end_ms) = end_ms else { continue };
        let turn = stream
            .next_timeout(Duration::from_secs(60))
            .ok_or(SpeechError::WorkerGone)??;
        decided.push(ms(turn.latency()));
        if paced {
            // The frame holding end_ms was due at t0 + end_ms.
            let spoke_at = t0 + Duration::from_millis(end_ms);
            spoken.push(ms(turn.ready_at.saturating_duration_since(spoke_at)));
        }
    }
    Ok((decided, spoken))
}

/// Our transcribe() vs the C reference on the same padded input, threads and plan.
fn reference(
    stt: &WhisperStt,
    pcm: &[i16],
    threads: usize,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let audio = to_16k(pcm);
    let plan = stt.plan(audio.len());
    let mut padded = audio.clone();
    padded.resize(plan.padded_len, 0.0);
    let raw = dir.join("ref-input.f32");
    std::fs::write(
        &raw,
        padded
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let runs = 7;
    let mut ours: Vec<f64> = (0..runs)
        .map(|_| stt.transcribe(&audio).map(|t| ms(t.elapsed)))
        .collect::<Result<_, _>>()?;
    let out = std::process::Command::new(dir.join("speech-bench-ref"))
        .arg(stt.model_path())
        .arg(&raw)
        .arg(threads.to_string())
        .arg(plan.audio_ctx.unwrap_or(0).to_string())
        .arg(plan.max_tokens.to_string())
        .arg(runs.to_string())
        .output()?;
    let line = String::from_utf8_lossy(&out.stdout);
    let theirs: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("reference printed no time")?;
    let ours = pct(&mut ours, 0.5);
    println!(
        "reference: same {:.2} s utterance, {threads} threads, audio_ctx {:?}",
        audio.len() as f64 / 16_000.0,
        plan.audio_ctx
    );
    println!(
        "  stt-tts transcribe()  median {ours:.1} ms  -> {:?}",
        stt.transcribe(&audio)?.text()
    );
    println!(
        "  whisper.cpp C API     median {theirs:.1} ms  -> {:?}",
        line.split_once(" text ").map_or("", |x| x.1).trim()
    );
    println!("  ratio ours/reference  {:.3}", ours / theirs);
    Ok(())
}

/// Piper: time to first 20 ms frame (after one warm-up sentence) and real-time factor.
#[cfg(feature = "piper")]
fn piper_bench(a: &Args) -> Result<(), SpeechError> {
    let mut cfg = stt_tts::tts::PiperConfig::installed(&stt_tts::models::models_dir());
    cfg.threads = a.threads;
    let piper = stt_tts::tts::PiperTts::new(cfg)?;
    synthesize_to_vec(&piper, "Warm up.")?;
    let (mut first, mut wall, mut audio) = (Vec::new(), 0.0, 0.0);
    let texts = if a.quick {
        &sentences::SENTENCES[..8]
    } else {
        sentences::SENTENCES
    };
    for &text in texts {
        let t0 = Instant::now();
        let mut got = None;
        let mut frames = 0;
        piper.synthesize(text, &mut |_| {
            got.get_or_insert_with(|| t0.elapsed());
            frames += 1;
            ControlFlow::Continue(())
        })?;
        wall += t0.elapsed().as_secs_f64();
        audio += frames as f64 * 0.02;
        first.push(ms(got.unwrap_or_default()));
    }
    println!(
        "tts piper (joe-medium): first 20 ms frame p50 {:.0} ms p95 {:.0} ms; real-time factor {:.3}",
        pct(&mut first.clone(), 0.5),
        pct(&mut first, 0.95),
        wall / audio
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let tts = EspeakTts::new(EspeakConfig::default())?;
    let utts = utterances(&tts, a.quick)?;
    let secs: f64 = utts.iter().map(|(_, p)| p.len() as f64 / 8_000.0).sum();
    println!(
        "speech_bench: {} utterances <= 5 s ({secs:.1} s of audio), {} threads",
        utts.len(),
        a.threads
    );

    // TTS: time to first 20 ms frame, and synthesis speed.
    let mut first = Vec::new();
    let (mut synth_wall, mut synth_audio) = (0.0, 0.0);
    for &text in sentences::SENTENCES {
        let t0 = Instant::now();
        let mut got = None;
        let mut frames = 0;
        tts.synthesize(text, &mut |_| {
            got.get_or_insert_with(|| t0.elapsed());
            frames += 1;
            ControlFlow::Continue(())
        })?;
        synth_wall += t0.elapsed().as_secs_f64();
        synth_audio += frames as f64 * 0.02;
        first.push(ms(got.unwrap_or_default()));
    }
    println!(
        "tts espeak-ng: first 20 ms frame p50 {:.2} ms p95 {:.2} ms; real-time factor {:.4}",
        pct(&mut first.clone(), 0.5),
        pct(&mut first, 0.95),
        synth_wall / synth_audio
    );

    #[cfg(feature = "piper")]
    piper_bench(&a)?;

    let tiny = load(WhisperModel::TinyEn, &a, true)?;
    tiny.transcribe(&to_16k(&utts[0].1))?; // warm-up
    println!(
        "stt tiny.en real-time factor (reduced audio_ctx): {:.3}",
        rtf(&tiny, &utts)?
    );
    let few = &utts[..utts.len().min(4)];
    let tiny_full = load(WhisperModel::TinyEn, &a, false)?;
    println!(
        "stt tiny.en real-time factor (30 s window, {} utts): {:.3}",
        few.len(),
        rtf(&tiny_full, few)?
    );
    drop(tiny_full);
    let base = load(WhisperModel::Base, &a, true)?;
    base.transcribe(&to_16k(&utts[0].1))?;
    println!(
        "stt base real-time factor (reduced audio_ctx): {:.3}",
        rtf(&base, &utts)?
    );
    drop(base);

    let (mut plain, _) = stream_latency(tiny.clone(), &utts, false, false)?;
    println!(
        "end-of-turn decision -> transcript, no speculation (tiny.en): p50 {:.0} ms p95 {:.0} ms (n={})",
        pct(&mut plain.clone(), 0.5),
        pct(&mut plain, 0.95),
        plain.len()
    );
    let (mut decided, mut spoken) = stream_latency(tiny.clone(), &utts, true, true)?;
    println!(
        "end-of-turn decision -> transcript, speculative, real-time paced (tiny.en): p50 {:.0} ms p95 {:.0} ms (n={})",
        pct(&mut decided.clone(), 0.5),
        pct(&mut decided, 0.95),
        decided.len()
    );
    println!(
        "last voiced audio -> transcript (includes the 500 ms hangover), same run: p50 {:.0} ms p95 {:.0} ms",
        pct(&mut spoken.clone(), 0.5),
        pct(&mut spoken, 0.95)
    );

    if let Some(dir) = a.ref_dir {
        let longest = utts
            .iter()
            .max_by_key(|(_, p)| p.len())
            .expect("utterances");
        reference(&tiny, &longest.1, a.threads, &dir)?;
    }
    Ok(())
}
