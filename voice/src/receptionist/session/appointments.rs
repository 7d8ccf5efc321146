//! The caller's appointments during their call: the next one looked up when the call
//! starts, booked, moved (a booking that `replaces` it) and cancelled through the store.

use super::Session;
use crate::receptionist::responder::{when, Stage};
use crate::receptionist::{Booked, Booking, Existing};

impl Session {
    /// The caller's next appointment, if the store knows one (a failure is only logged: the
    /// caller can still book).
    pub(super) async fn load_existing(&mut self) {
        let store = &self.host.store;
        let (org, call) = (&self.ctx.org, &self.ctx.call_id);
        match store.upcoming(org, call, &self.settings.timezone).await {
            Ok(existing) => self.remember(existing),
            Err(e) => tracing::warn!(error = %e, "the caller's appointments are unavailable"),
        }
    }

    fn remember(&mut self, existing: Option<Existing>) {
        self.dialog.existing = existing.as_ref().map(|e| e.start);
        self.existing = existing;
    }

    pub(super) async fn cancel(&mut self) -> String {
        let Some(existing) = self.existing.clone() else {
            return "I can't find an upcoming appointment for this number. Is there anything else?"
                .to_owned();
        };
        let store = &self.host.store;
        match store
            .cancel(&self.ctx.org, &self.ctx.call_id, &existing.id)
            .await
        {
            Ok(true) => {
                self.remember(None);
                format!(
                    "Your appointment on {} is cancelled. Is there anything else?",
                    when::speak(existing.start)
                )
            }
            Ok(false) => {
                self.remember(None);
                "That appointment is no longer booked. Is there anything else?".to_owned()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cancellation not stored");
                "I'm sorry, I couldn't cancel it just now. Would you like to leave a message instead?".to_owned()
            }
        }
    }

    pub(super) async fn book(&mut self, at: jiff::civil::DateTime) -> String {
        let replaces = match self.dialog.rescheduling {
            true => self.existing.as_ref().map(|e| e.id.clone()),
            false => None,
        };
        let moving = replaces.is_some();
        let booking = Booking {
            call_id: self.ctx.call_id.clone(),
            org: self.ctx.org.clone(),
            start: at,
            timezone: self.settings.timezone.clone(),
            minutes: self.settings.profile.appointment_minutes.max(1),
            hours: self.settings.profile.hours.clone(),
            replaces,
        };
        match self.host.store.book(booking).await {
            Ok(Booked::Confirmed { id }) => {
                self.dialog.rescheduling = false;
                self.remember(Some(Existing { id, start: at }));
                let done = if moving {
                    "Done. Your appointment is moved to"
                } else {
                    "You're booked for"
                };
                format!("{done} {}. Is there anything else?", when::speak(at))
            }
            Ok(Booked::Taken { next: Some(next) }) => self.dialog.offer(next),
            Ok(Booked::Taken { next: None }) => {
                self.dialog.stage = Stage::AskWhen {
                    date: None,
                    time: None,
                };
                "That time is taken and I found nothing free soon after. What other day would suit you?".to_owned()
            }
            Err(e) => {
                tracing::warn!(error = %e, "booking not stored");
                "I'm sorry, I couldn't book that just now. Would you like to leave a message instead?".to_owned()
            }
        }
    }
}
