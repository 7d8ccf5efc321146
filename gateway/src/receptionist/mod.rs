//! The gateway's adapters of the receptionist's ports (`voice::receptionist`):
//!
//! - [`DbReceptionistStore`]: org settings and knowledge base from the database; transcript
//!   turns and bookings through the committer (each with its event, in one transaction);
//!   AI turns counted against the org's `ai_turns_per_hour` (one statement on the pool, the
//!   check and the count together; `ai_turns_refused_total{org}` counts refusals).
//! - [`chat::OpenAiChat`]: an org's remote model over an OpenAI-compatible endpoint.
//! - [`LocalSpeech`]: whisper (`stt-tts`, streaming with VAD and speculative decoding) as
//!   the listener, espeak-ng as the voice. The model is loaded on the first receptionist
//!   call, on a blocking thread, and shared by every call after it.
//!
//! A booking's slot is turned into UTC here, in the org's time zone; the slots offered when
//! it is taken are the following ones on the appointment grid that fit the opening hours,
//! for up to two weeks.

pub mod chat;
pub mod settings;

use crate::commit::{Committer, WriteOp, WriteResult};
use crate::db::appointments::{BookResult, BookWrite, CancelWrite, Slot};
use crate::db::receptionist::{self as rdb, TranscriptWrite, VoicemailWrite};
use crate::db::Db;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use stt_tts::stt::{StreamConfig, StreamEvent, StreamingTranscriber, WhisperConfig, WhisperStt};
use stt_tts::tts::{synthesize_to_vec, EspeakConfig, EspeakTts};
use stt_tts::SpeechToText;
use voice::receptionist::jiff::{civil::DateTime, tz::TimeZone, ToSpan};
use voice::receptionist::responder::{Entry, Hours, Knowledge, Profile};
use voice::receptionist::{
    Booked, Booking, Existing, Heard, Listener, OrgSettings, ReceptionistStore, Speaker, Speech,
    SpeechFailure, StoreFailure, TranscriptTurn, Turn, Voicemail,
};
use voice::ua::BoxFuture;

/// The provider name an org's responder key is sealed under ([`crate::secrets`]).
pub const RESPONDER: &str = "responder";

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreFailure {
    StoreFailure {
        source: Box::new(e),
    }
}

/// Settings, knowledge base, transcript and appointments on the gateway's database.
pub struct DbReceptionistStore {
    /// Reads.
    pub db: Db,
    /// Writes.
    pub committer: Committer,
}

/// An org's settings as the receptionist uses them (bad stored values are skipped, logged).
pub async fn load_settings(db: &Db, org_id: &str) -> Result<OrgSettings, crate::db::StoreError> {
    let stored = rdb::settings(&db.pool, org_id).await?;
    let entries = rdb::entries(&db.pool, org_id).await?;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
        .bind(org_id)
        .fetch_optional(&db.pool)
        .await?;
    let hours = stored.hours.as_deref().and_then(|h| match Hours::parse(h) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(org = org_id, error = %e, "stored hours ignored");
            None
        }
    });
    let timezone = match stored.timezone.as_deref() {
        Some(tz) => TimeZone::get(tz).unwrap_or_else(|e| {
            tracing::warn!(org = org_id, error = %e, "stored time zone ignored; UTC used");
            TimeZone::UTC
        }),
        None => TimeZone::UTC,
    };
    let knowledge = Knowledge::new(
        entries
            .into_iter()
            .map(|(question, answer)| Entry { question, answer })
            .collect(),
    );
    let model = endpoint(org_id, &stored);
    Ok(OrgSettings {
        profile: Profile {
            name: name.unwrap_or_default(),
            greeting: stored.greeting.filter(|g| !g.trim().is_empty()),
            hours,
            knowledge,
            appointment_minutes: stored
                .appointment_minutes
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(30),
        },
        timezone,
        model,
    })
}

/// The org's remote model, if it names one (a key that does not open is logged and the
/// endpoint is used without it, so the local fallback still answers if it refuses).
fn endpoint(org_id: &str, stored: &rdb::Settings) -> Option<voice::receptionist::model::Endpoint> {
    let url = stored.responder_url.as_deref().filter(|u| !u.is_empty())?;
    let key = stored
        .responder_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .and_then(|k| match crate::secrets::open(org_id, RESPONDER, k) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(org = org_id, error = %e, "responder key unusable");
                None
            }
        });
    Some(voice::receptionist::model::Endpoint {
        url: url.to_owned(),
        model: stored.responder_model.clone().unwrap_or_default(),
        key,
    })
}

/// A local start as a stored slot (`None` when the zone cannot place it).
fn slot(start: DateTime, tz: &TimeZone, minutes: u16) -> Option<Slot> {
    let zoned = start.to_zoned(tz.clone()).ok()?;
    let starts_at = zoned.timestamp().as_millisecond();
    Some(Slot {
        starts_at,
        ends_at: starts_at + i64::from(minutes) * 60_000,
        local_start: start.strftime("%Y-%m-%dT%H:%M").to_string(),
    })
}

/// The slots after `start` on its `minutes` grid that fit `hours`, for two weeks (50 at most).
fn alternatives(start: DateTime, minutes: u16, hours: Option<&Hours>, tz: &TimeZone) -> Vec<Slot> {
    let step = i64::from(minutes.max(5));
    let mut out = Vec::new();
    let mut at = start;
    for _ in 0..(14 * 24 * 60 / step) {
        let Ok(next) = at.checked_add(step.minutes()) else {
            break;
        };
        at = next;
        if hours.is_none_or(|h| h.fits(at, minutes)) {
            if let Some(s) = slot(at, tz, minutes) {
                out.push(s);
            }
            if out.len() == 50 {
                break;
            }
        }
    }
    out
}

impl ReceptionistStore for DbReceptionistStore {
    fn take_turn<'a>(&'a self, org: &'a str) -> BoxFuture<'a, Result<bool, StoreFailure>> {
        Box::pin(async move {
            let now = crate::db::now_ms();
            let allowed = crate::db::org_settings::take_ai_turn(&self.db.pool, org, now)
                .await
                .map_err(unavailable)?;
            if !allowed {
                crate::telemetry::AiTurnRefused { org }.emit();
            }
            Ok(allowed)
        })
    }

    fn settings<'a>(&'a self, org: &'a str) -> BoxFuture<'a, Result<OrgSettings, StoreFailure>> {
        Box::pin(async move { load_settings(&self.db, org).await.map_err(unavailable) })
    }

    fn transcript(&self, turn: TranscriptTurn) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            let write = TranscriptWrite {
                org_id: turn.org,
                call_id: turn.call_id,
                inbound: turn.speaker == Speaker::Caller,
                text: turn.text,
                span_ms: turn.span_ms,
                confidence: turn.confidence,
                intent: turn.intent.map(str::to_owned),
            };
            match self.committer.submit_wait(WriteOp::Transcript(write)).await {
                Ok(WriteResult::Transcript(Some(_))) => Ok(()),
                Ok(WriteResult::Transcript(None)) => {
                    tracing::warn!("transcript turn of an unknown call dropped");
                    Ok(())
                }
                Ok(_) => unreachable!("Transcript answers Transcript"),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn voicemail(&self, v: Voicemail) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            let write = VoicemailWrite {
                org_id: v.org,
                call_id: v.call_id,
                text: v.text,
                seconds: v.pcm.len() as f64 / 8_000.0,
                wav: audio::wav::encode_wav(8_000, 1, &v.pcm),
            };
            match self.committer.submit_wait(WriteOp::Voicemail(write)).await {
                Ok(WriteResult::Transcript(Some(_))) => Ok(()),
                Ok(WriteResult::Transcript(None)) => Err(unavailable(std::io::Error::other(
                    "the voicemail's call is not stored",
                ))),
                Ok(_) => unreachable!("Voicemail answers Transcript"),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn book(&self, b: Booking) -> BoxFuture<'_, Result<Booked, StoreFailure>> {
        Box::pin(async move {
            let Some(wanted) = slot(b.start, &b.timezone, b.minutes) else {
                return Ok(Booked::Taken { next: None });
            };
            let alternatives = alternatives(b.start, b.minutes, b.hours.as_ref(), &b.timezone);
            let write = BookWrite {
                org_id: b.org,
                call_id: b.call_id,
                timezone: b.timezone.iana_name().unwrap_or("UTC").to_owned(),
                wanted,
                alternatives,
                replaces: b.replaces,
            };
            match self.committer.submit_wait(WriteOp::Book(write)).await {
                Ok(WriteResult::Booked(BookResult::Booked(id))) => Ok(Booked::Confirmed { id }),
                Ok(WriteResult::Booked(BookResult::Taken(next))) => Ok(Booked::Taken {
                    next: next.and_then(|s| s.local_start.parse::<DateTime>().ok()),
                }),
                Ok(_) => unreachable!("Book answers Booked"),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn upcoming<'a>(
        &'a self,
        org: &'a str,
        call_id: &'a str,
        tz: &'a TimeZone,
    ) -> BoxFuture<'a, Result<Option<Existing>, StoreFailure>> {
        Box::pin(async move {
            let now = crate::db::now_ms();
            let next = crate::db::appointments::upcoming_for_call(&self.db.pool, org, call_id, now)
                .await
                .map_err(unavailable)?;
            Ok(next.and_then(|(id, starts_at)| {
                let at = voice::receptionist::jiff::Timestamp::from_millisecond(starts_at).ok()?;
                Some(Existing {
                    id,
                    start: at.to_zoned(tz.clone()).datetime(),
                })
            }))
        })
    }

    fn cancel<'a>(
        &'a self,
        org: &'a str,
        call_id: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreFailure>> {
        Box::pin(async move {
            let write = CancelWrite {
                org_id: org.to_owned(),
                call_id: call_id.to_owned(),
                appointment_id: id.to_owned(),
            };
            match self
                .committer
                .submit_wait(WriteOp::CancelAppointment(write))
                .await
            {
                Ok(WriteResult::Cancelled(done)) => Ok(done),
                Ok(_) => unreachable!("CancelAppointment answers Cancelled"),
                Err(e) => Err(unavailable(e)),
            }
        })
    }
}

/// whisper to listen, espeak-ng to speak; both made on first use.
pub struct LocalSpeech {
    model: PathBuf,
    voice: String,
    stt: Mutex<Option<Arc<WhisperStt>>>,
    tts: Mutex<Option<Arc<EspeakTts>>>,
    /// Whether whisper is given the org's vocabulary as its initial prompt.
    prompt: bool,
}

impl LocalSpeech {
    /// Speech with this whisper model and espeak-ng voice (nothing loaded yet).
    pub fn new(model: PathBuf, voice: String) -> LocalSpeech {
        LocalSpeech {
            model,
            voice,
            stt: Mutex::new(None),
            tts: Mutex::new(None),
            prompt: false,
        }
    }

    /// Whether whisper hears each call biased by the org's vocabulary (`sip.whisper_prompt`,
    /// off by default). Measured (BENCHMARKS.md): the prompt lowers tiny.en's WER on
    /// espeak-ng's robotic voices by 4–5 points but raises it on a natural voice (1.8 % →
    /// 5.9 %), and it costs ~65 % more decoding time: reply p50 1,040 ms with it, 580 ms
    /// without, on the RTP wire.
    pub fn with_vocabulary_prompt(mut self, prompt: bool) -> LocalSpeech {
        self.prompt = prompt;
        self
    }

    /// The model path from `sip.whisper_model`, or tiny.en in the models folder.
    pub fn model_path(configured: &str) -> PathBuf {
        match configured.trim() {
            "" => stt_tts::models::WhisperModel::TinyEn.path(),
            path => PathBuf::from(path),
        }
    }
}

impl LocalSpeech {
    /// The whisper model, loaded on first use and shared.
    fn whisper(&self) -> Result<Arc<WhisperStt>, SpeechFailure> {
        let mut slot = self.stt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stt) = slot.as_ref() {
            return Ok(Arc::clone(stt));
        }
        let loaded = Arc::new(WhisperStt::load(WhisperConfig::new(&self.model)).map_err(failure)?);
        *slot = Some(Arc::clone(&loaded));
        Ok(loaded)
    }
}

fn failure(e: impl std::error::Error + Send + Sync + 'static) -> SpeechFailure {
    SpeechFailure {
        source: Box::new(e),
    }
}

/// whisper with an org's vocabulary as its initial prompt.
struct Prompted {
    whisper: Arc<WhisperStt>,
    prompt: String,
}

impl SpeechToText for Prompted {
    fn transcribe(&self, audio: &[f32]) -> Result<stt_tts::Transcript, stt_tts::SpeechError> {
        self.whisper
            .transcribe_with_prompt(audio, Some(&self.prompt))
    }

    fn name(&self) -> &str {
        self.whisper.name()
    }
}

/// How a call's listener cuts and transcribes the caller's turns. Speculation starts after
/// 100 ms of silence, not 200: tiny.en takes ~250–300 ms on a short turn, so at 200 the
/// speculative words arrived just as the 500 ms hangover ran out and ending a whole turn
/// early gained nothing (measured, BENCHMARKS.md); the VAD's end already includes a word's
/// unvoiced tail, and whisper pads 200 ms of silence.
pub fn stream_config() -> StreamConfig {
    StreamConfig {
        post_roll_ms: 100,
        ..StreamConfig::default()
    }
}

impl Speech for LocalSpeech {
    fn listener(&self, vocabulary: &str) -> Result<Box<dyn Listener>, SpeechFailure> {
        let stt = Arc::new(Prompted {
            whisper: self.whisper()?,
            prompt: if self.prompt {
                vocabulary.to_owned()
            } else {
                String::new()
            },
        });
        let inner = StreamingTranscriber::new(stt, stream_config()).map_err(failure)?;
        Ok(Box::new(WhisperListener { inner }))
    }

    fn transcribe(&self, pcm: &[i16], vocabulary: &str) -> Result<String, SpeechFailure> {
        let whisper = self.whisper()?;
        let at_16k =
            audio::resample::resample(&audio::pcm::to_f32(pcm), 8_000, 16_000).map_err(failure)?;
        let prompt = Some(vocabulary).filter(|_| self.prompt);
        let transcript = whisper
            .transcribe_with_prompt(&at_16k, prompt)
            .map_err(failure)?;
        Ok(stt_tts::stt::collapse_repeats(&transcript.text()))
    }

    fn speak(&self, text: &str) -> Result<Vec<i16>, SpeechFailure> {
        let tts = {
            let mut slot = self.tts.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(tts) => Arc::clone(tts),
                None => {
                    let cfg = EspeakConfig {
                        voice: self.voice.clone(),
                        ..EspeakConfig::default()
                    };
                    let made = Arc::new(EspeakTts::new(cfg).map_err(failure)?);
                    *slot = Some(Arc::clone(&made));
                    made
                }
            }
        };
        synthesize_to_vec(tts.as_ref(), text).map_err(failure)
    }
}

/// The streaming transcriber as the receptionist's ear.
struct WhisperListener {
    inner: StreamingTranscriber,
}

impl Listener for WhisperListener {
    fn push(&mut self, frame: &[i16]) -> Vec<Heard> {
        let events = self.inner.push(frame);
        self.heard(events)
    }

    fn tentative(&mut self) -> Option<String> {
        let t = self.inner.tentative()?;
        Some(stt_tts::stt::collapse_repeats(&t.transcript.text()))
    }

    fn end_turn(&mut self) -> Vec<Heard> {
        let events = self.inner.end_turn_now();
        if events.is_empty() {
            return Vec::new();
        }
        self.heard(events)
    }
}

impl WhisperListener {
    /// What the transcriber's `events`, and the transcripts now ready, tell the session.
    fn heard(&mut self, events: Vec<StreamEvent>) -> Vec<Heard> {
        let mut heard = Vec::new();
        for event in events {
            match event {
                StreamEvent::SpeechStart { .. } => heard.push(Heard::SpeechStart),
                StreamEvent::TurnDropped { turn } => {
                    tracing::warn!(turn, "a caller turn was dropped (recognition behind)");
                }
                StreamEvent::TurnEnded { .. } => {}
            }
        }
        while let Some(done) = self.inner.try_next() {
            match done {
                Ok(t) => {
                    let segments = &t.transcript.segments;
                    let confidence = match segments.len() {
                        0 => 0.0,
                        n => segments.iter().map(|s| s.confidence).sum::<f32>() / n as f32,
                    };
                    heard.push(Heard::Turn(Turn {
                        text: stt_tts::stt::collapse_repeats(&t.transcript.text()),
                        start_ms: t.start_ms,
                        end_ms: t.end_ms,
                        confidence,
                        ended_at: t.ended_at,
                    }));
                }
                Err(e) => tracing::warn!(error = %e, "a caller turn could not be transcribed"),
            }
        }
        heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voice::receptionist::jiff::civil::date;

    #[test]
    fn slots_are_utc_in_the_orgs_zone_and_alternatives_fit_the_hours() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let start = date(2026, 12, 8).at(15, 30, 0, 0);
        let s = slot(start, &tz, 30).unwrap();
        // 15:30 EST is 20:30 UTC.
        assert_eq!(s.starts_at, 1_796_761_800_000);
        assert_eq!(s.ends_at - s.starts_at, 1_800_000);
        assert_eq!(s.local_start, "2026-12-08T15:30");
        let hours = Hours::parse("Mon-Fri 09:00-17:00").unwrap();
        let alt = alternatives(start, 30, Some(&hours), &tz);
        let locals: Vec<&str> = alt.iter().take(4).map(|s| s.local_start.as_str()).collect();
        assert_eq!(
            locals,
            [
                "2026-12-08T16:00",
                "2026-12-08T16:30",
                "2026-12-09T09:00",
                "2026-12-09T09:30"
            ]
        );
        assert_eq!(alt.len(), 50);
    }
}
