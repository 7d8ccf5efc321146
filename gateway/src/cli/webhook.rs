//! `webhook add|list|rotate|remove|dead-letters|replay`: an org's signed outbound webhook
//! endpoints ([`crate::outhooks`]). `add` and `rotate` print the signing secret (`whsec_…`)
//! alone on their last line; it is stored to sign and never shown again.

use crate::db::{now_ms, webhooks, Db};
use anyhow::bail;
use clap::Subcommand;

/// Webhook commands.
#[derive(Subcommand)]
pub enum WebhookAction {
    /// Send the org's events, from now on, to URL.
    Add {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// An http(s) URL.
        #[arg(long)]
        url: String,
    },
    /// List the org's endpoints: id, URL, last event delivered, retries, last error.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
    /// Give an endpoint a new secret; the old one keeps signing for `webhooks.rotation_overlap_secs`.
    Rotate {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
    },
    /// Stop sending to an endpoint.
    Remove {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
    },
    /// List events endpoints kept refusing.
    DeadLetters {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
    /// Deliver a dead-lettered event again.
    Replay {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The dead letter's id.
        #[arg(long)]
        id: String,
    },
}

/// Runs a webhook command.
pub async fn run(
    db: &Db,
    settings: &crate::outhooks::WebhookSettings,
    action: WebhookAction,
) -> anyhow::Result<()> {
    match action {
        WebhookAction::Add { org, url } => {
            let org = super::find_org(db, &org).await?;
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
                bail!("--url must be an http(s) URL of at most 2048 characters");
            }
            let secret = crate::outhooks::new_secret();
            let id = webhooks::add(&db.pool, &org.id, &url, &secret, now_ms()).await?;
            println!(
                "endpoint {id} receives {}'s events from now on; signing secret (shown once):",
                org.slug
            );
            println!("{secret}");
        }
        WebhookAction::List { org } => {
            let org = super::find_org(db, &org).await?;
            println!("id\turl\tdelivered_through_seq\tattempts\tlast_error");
            for ep in webhooks::of_org(&db.pool, &org.id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    ep.id,
                    ep.url,
                    ep.cursor_seq,
                    ep.attempts,
                    ep.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        WebhookAction::Rotate { org, id } => {
            let org = super::find_org(db, &org).await?;
            let secret = crate::outhooks::new_secret();
            let until = now_ms() + (settings.rotation_overlap_secs as i64) * 1000;
            if !webhooks::rotate(&db.pool, &org.id, &id, &secret, until).await? {
                bail!("organization `{}` has no endpoint `{id}`", org.slug);
            }
            println!(
                "endpoint {id}: new signing secret (the old one signs too for {} s):",
                settings.rotation_overlap_secs
            );
            println!("{secret}");
        }
        WebhookAction::Remove { org, id } => {
            let org = super::find_org(db, &org).await?;
            if !webhooks::remove(&db.pool, &org.id, &id, now_ms()).await? {
                bail!("organization `{}` has no endpoint `{id}`", org.slug);
            }
            println!("endpoint {id} removed");
        }
        WebhookAction::DeadLetters { org } => {
            let org = super::find_org(db, &org).await?;
            println!("id\tendpoint\tevent\tseq\tattempts\treplayed\terror");
            for d in webhooks::dead_letters(&db.pool, &org.id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.endpoint_id,
                    d.event_id,
                    d.seq,
                    d.attempts,
                    d.replayed_at
                        .map_or("-".to_string(), crate::events::rfc3339_ms),
                    d.error
                );
            }
        }
        WebhookAction::Replay { org, id } => {
            let org = super::find_org(db, &org).await?;
            if !webhooks::request_replay(&db.pool, &org.id, &id, now_ms()).await? {
                bail!(
                    "organization `{}` has no unreplayed dead letter `{id}`",
                    org.slug
                );
            }
            println!("dead letter {id} will be delivered again");
        }
    }
    Ok(())
}
