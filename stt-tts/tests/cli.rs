//! The `speech` subcommands as the gateway will wire them: clap parsing, `say` writing a
//! WAV, `transcribe` reading it back, and `models install` being idempotent.

mod common;

use clap::Parser;
use stt_tts::cli::{run, ModelsCommand, SpeechCommand};

/// Stand-in for the gateway's `speech` subcommand slot.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    speech: SpeechCommand,
}

fn parse(args: &[&str]) -> SpeechCommand {
    Cli::try_parse_from(std::iter::once("speech").chain(args.iter().copied()))
        .unwrap()
        .speech
}

#[test]
fn command_lines_parse() {
    assert_eq!(
        parse(&["models", "install"]),
        SpeechCommand::Models(ModelsCommand::Install { dir: None })
    );
    assert!(
        matches!(parse(&["transcribe", "a.wav"]), SpeechCommand::Transcribe { file, model: None, threads: None } if file.to_str() == Some("a.wav"))
    );
    assert!(matches!(
        parse(&["say", "Hello there", "out.wav"]),
        SpeechCommand::Say { text, rate: 8_000, .. } if text == "Hello there"
    ));
    assert!(Cli::try_parse_from(["speech", "say", "only text"]).is_err());
}

#[test]
fn say_then_transcribe_and_install_is_idempotent() {
    common::tiny(); // installs the models if this machine has none yet
    let dir = common::scratch("cli");
    let wav = dir.join("say.wav");
    run(parse(&[
        "say",
        "I want to talk to a person.",
        wav.to_str().unwrap(),
    ]))
    .unwrap();
    let clip = stt_tts::wav::read_wav(&wav).unwrap();
    assert_eq!(clip.rate, 8_000);
    assert!(clip.seconds() > 1.0, "{} s", clip.seconds());
    run(parse(&["transcribe", wav.to_str().unwrap()])).unwrap();

    let missing = dir.join("nope.wav");
    assert!(run(parse(&["transcribe", missing.to_str().unwrap()])).is_err());

    let models = stt_tts::models::models_dir();
    let started = std::time::Instant::now();
    run(SpeechCommand::Models(ModelsCommand::Install {
        dir: Some(models),
    }))
    .unwrap();
    // Already installed: only checksums are computed, nothing is downloaded.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
