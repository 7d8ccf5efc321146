//! `dartwing-gateway receptionist set …` (an org's greeting, hours, time zone, hand-over
//! agent, appointment length) and `dartwing-gateway kb add|list …` (the knowledge base the
//! receptionist answers from). Values are checked as a call would use them.

use super::find_org;
use crate::db::{now_ms, receptionist as rdb, Db};
use crate::receptionist::settings::Change;
use anyhow::bail;
use clap::Subcommand;

/// Receptionist commands.
#[derive(Subcommand)]
pub enum ReceptionistAction {
    /// Set an org's receptionist settings (fields not given keep their values).
    Set {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// What callers hear first (default, or `""`: "Thank you for calling NAME. How can I
        /// help you?").
        #[arg(long)]
        greeting: Option<String>,
        /// Opening hours, e.g. "Mon-Fri 09:00-17:00, Sat 10:00-14:00".
        #[arg(long)]
        hours: Option<String>,
        /// IANA time zone the hours and bookings are in, e.g. Europe/London (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The agent (SIP username of this org) hand-overs reach when the route names none.
        #[arg(long)]
        agent: Option<String>,
        /// Length of an appointment, minutes (default 30).
        #[arg(long)]
        appointment_minutes: Option<u16>,
        /// An OpenAI-compatible chat-completions endpoint to answer callers with
        /// (`https://api.example.com/v1`), or `local` for the built-in responder (the default,
        /// and the fallback whenever the endpoint fails).
        #[arg(long)]
        responder_url: Option<String>,
        /// The endpoint's model name.
        #[arg(long)]
        responder_model: Option<String>,
        /// The endpoint's API key (stored sealed under `secret_keys`); `""` removes it.
        #[arg(long)]
        responder_key: Option<String>,
    },
}

/// Knowledge-base commands.
#[derive(Subcommand)]
pub enum KbAction {
    /// Add a question and its answer.
    Add {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// How a caller might ask.
        #[arg(long)]
        question: String,
        /// What the receptionist answers.
        #[arg(long)]
        answer: String,
    },
    /// List an org's entries.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
}

/// Runs a receptionist command.
pub async fn run(db: &Db, action: ReceptionistAction) -> anyhow::Result<()> {
    let ReceptionistAction::Set {
        org,
        greeting,
        hours,
        timezone,
        agent,
        appointment_minutes,
        responder_url,
        responder_model,
        responder_key,
    } = action;
    let org = find_org(db, &org).await?;
    let change = Change {
        greeting,
        hours,
        timezone,
        agent,
        appointment_minutes,
        responder_url,
        responder_model,
        responder_key,
    };
    let now = change.apply(db, &org.id, now_ms()).await?;
    let key = if now.responder_key_set {
        " (key set)"
    } else {
        ""
    };
    println!(
        "receptionist for {}: greeting {:?}, hours {:?}, timezone {:?}, agent {:?}, {} min appointments, responder {} {:?}{key}",
        org.slug,
        now.greeting,
        now.hours,
        now.timezone,
        now.agent,
        now.appointment_minutes,
        now.responder,
        now.responder_model.unwrap_or_default(),
    );
    Ok(())
}

/// Runs a knowledge-base command.
pub async fn run_kb(db: &Db, action: KbAction) -> anyhow::Result<()> {
    match action {
        KbAction::Add {
            org,
            question,
            answer,
        } => {
            if question.trim().is_empty() || answer.trim().is_empty() {
                bail!("both --question and --answer need text");
            }
            let org = find_org(db, &org).await?;
            let id =
                rdb::add_entry(&db.pool, &org.id, question.trim(), answer.trim(), now_ms()).await?;
            println!("knowledge entry {id} added for {}", org.slug);
        }
        KbAction::List { org } => {
            let org = find_org(db, &org).await?;
            for (q, a) in rdb::entries(&db.pool, &org.id).await? {
                println!("{q}\t{a}");
            }
        }
    }
    Ok(())
}
