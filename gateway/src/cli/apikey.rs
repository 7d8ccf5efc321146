//! `apikey create|list|revoke`: an org's API keys. A key is printed once, at creation; after
//! that only its id, prefix, label and times are shown. A revoked key stops working on every
//! node within a second (the key cache lives 0.9 s).

use crate::db::{now_ms, orgs, Db};
use anyhow::bail;
use clap::Subcommand;

/// API key commands.
#[derive(Subcommand)]
pub enum KeyAction {
    /// Create an API key; it is printed once, alone on the last line.
    Create {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// What the key is for (shown by `apikey list`).
        #[arg(long)]
        label: Option<String>,
    },
    /// List an organization's keys: id, prefix, label, created, last used, revoked.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
    /// Revoke a key, named by its id (from `apikey list`) or by the key itself.
    Revoke {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The key's id, or the key (also read from DARTWING_APIKEY, so it need not appear
        /// on the command line).
        #[arg(long, env = "DARTWING_APIKEY", hide_env_values = true)]
        key: String,
    },
}

/// Unix ms as `2026-11-30T06:07:02Z`, or `-`.
fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), crate::events::rfc3339_ms)
}

/// Runs an API key command.
pub async fn run(db: &Db, action: KeyAction) -> anyhow::Result<()> {
    match action {
        KeyAction::Create { org, label } => {
            let org = super::find_org(db, &org).await?;
            let key = orgs::create_labelled_api_key(&db.pool, &org.id, label.as_deref()).await?;
            println!("API key for {} (shown once; store it now):", org.slug);
            println!("{key}");
        }
        KeyAction::List { org } => {
            let org = super::find_org(db, &org).await?;
            println!("id\tprefix\tlabel\tcreated\tlast_used\trevoked");
            for k in orgs::list_api_keys(&db.pool, &org.id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.prefix,
                    k.label.as_deref().unwrap_or("-"),
                    when(Some(k.created_at)),
                    when(k.last_used_at),
                    when(k.revoked_at)
                );
            }
        }
        KeyAction::Revoke { org, key } => {
            let org = super::find_org(db, &org).await?;
            if !orgs::revoke_api_key(&db.pool, &org.id, key.trim(), now_ms()).await? {
                bail!(
                    "organization `{}` has no live key with that id or value",
                    org.slug
                );
            }
            println!("revoked; refused on every node within a second");
        }
    }
    Ok(())
}
