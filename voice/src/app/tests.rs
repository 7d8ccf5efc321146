use super::*;
use audio::wav::encode_wav;

fn ctx() -> CallContext {
    CallContext::default()
}

#[test]
fn echo_plays_back_each_frame() {
    let mut app = parse_app_spec("echo").unwrap();
    assert!(app.on_start(&ctx()).is_empty());
    let frame: Vec<i16> = (0..160).collect();
    assert_eq!(
        app.on_audio(&frame),
        vec![Action::Play(frame.clone().into())]
    );
    assert!(app.on_dtmf('5').is_empty());
}

#[test]
fn play_loads_16k_wav_plays_it_once_then_hangs_up() {
    let dir = std::env::temp_dir().join(format!("dartwing-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.wav");
    std::fs::write(&path, encode_wav(16_000, 1, &[100; 3200])).unwrap();
    let mut app = parse_app_spec(&format!("play:{}", path.display())).unwrap();
    match app.on_start(&ctx()).as_slice() {
        [Action::Play(a)] => assert_eq!(a.len(), 1600),
        other => panic!("{other:?}"),
    }
    assert_eq!(app.on_playback_finished(), vec![Action::Hangup]);
    assert!(app.on_playback_finished().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_specs_are_typed_errors() {
    assert!(matches!(
        parse_app_spec("karaoke"),
        Err(AppSpecError::Unknown { .. })
    ));
    assert!(matches!(
        parse_app_spec("play:"),
        Err(AppSpecError::Unknown { .. })
    ));
    assert!(matches!(
        parse_app_spec("play:/nonexistent/x.wav"),
        Err(AppSpecError::Io { .. })
    ));
    let path = std::env::temp_dir().join(format!("dartwing-notwav-{}", std::process::id()));
    std::fs::write(&path, b"not a wav").unwrap();
    assert!(matches!(
        parse_app_spec(&format!("menu:{}", path.display())),
        Err(AppSpecError::Wav { .. })
    ));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn menu_walks_its_digits() {
    let mut m = parse_app_spec("menu").unwrap();
    let start = m.on_start(&ctx());
    assert!(matches!(start.as_slice(), [Action::StopPlayback, Action::Play(p)] if p.len() > 1600));
    assert_eq!(
        m.on_dtmf('1'),
        vec![
            Action::StopPlayback,
            Action::Transfer {
                target: "agent".into(),
                summary: Some("Menu: the caller pressed 1 for a person".into()),
            }
        ]
    );
    // The transfer reached nobody: the prompt plays again.
    let back = m.on_notice(Notice::TransferFailed { status: 480 });
    assert!(matches!(back.as_slice(), [Action::StopPlayback, Action::Play(p)] if p.len() > 1600));
    assert!(matches!(
        m.on_dtmf('3').as_slice(),
        [Action::StartRecording, Action::Play(_)]
    ));
    assert!(matches!(
        m.on_dtmf('4').as_slice(),
        [Action::StopRecording, Action::Play(_)]
    ));
    assert!(matches!(
        m.on_dtmf('7').as_slice(),
        [Action::StopPlayback, Action::Play(_)]
    ));
    assert!(m.on_audio(&[1; 160]).is_empty());
    assert_eq!(m.on_dtmf('2'), vec![Action::StopPlayback]);
    assert_eq!(
        m.on_audio(&[1; 160]),
        vec![Action::Play(vec![1; 160].into())]
    );
    assert!(
        m.on_dtmf('1').is_empty(),
        "digits other than * and # are ignored in echo"
    );
    assert!(matches!(
        m.on_dtmf('*').as_slice(),
        [Action::StopPlayback, Action::Play(_)]
    ));
    assert!(m.on_audio(&[1; 160]).is_empty());
    assert_eq!(m.on_dtmf('#'), vec![Action::StopPlayback, Action::Hangup]);
}

#[test]
fn a_parsed_spec_builds_independent_apps_sharing_the_clip() {
    let dir = std::env::temp_dir().join(format!("dartwing-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.wav");
    std::fs::write(&path, encode_wav(8000, 1, &[7; 800])).unwrap();
    let spec = AppSpec::parse(&format!("play:{}", path.display())).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // The file is gone: building still works, from the loaded clip.
    let (mut a, mut b) = (spec.build(), spec.build());
    let (pa, pb) = (a.on_start(&ctx()), b.on_start(&ctx()));
    match (pa.as_slice(), pb.as_slice()) {
        ([Action::Play(x)], [Action::Play(y)]) => assert!(std::sync::Arc::ptr_eq(x, y)),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.on_playback_finished(), vec![Action::Hangup]);
    assert_eq!(
        b.on_playback_finished(),
        vec![Action::Hangup],
        "b has its own state"
    );
    assert!(matches!(
        AppSpec::parse("menu").unwrap(),
        AppSpec::Menu(None)
    ));
}
