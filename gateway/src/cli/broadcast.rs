//! `contact add|list|tag` and `broadcast list|show|cancel|export`: an operator's hands on an
//! org's audience and its alerts without an API key. Writes run the same ops as the API
//! (`ContactOp`, `BroadcastOp::Cancel`) in one transaction of their own; a running gateway
//! sees them at its next dispatch round. Starting a broadcast stays an API call
//! (`POST /api/v1/broadcasts`): it checks every rung against the running gateway's channel
//! plugins, which only the server holds.

use crate::db::broadcasts::{self as bdb, BroadcastOp, BroadcastResult};
use crate::db::contacts::{self, ContactOp, ContactResult};
use crate::db::{begin_write, broadcast_views, now_ms, Db};
use anyhow::{anyhow, bail};
use clap::Subcommand;

/// Contact commands.
#[derive(Subcommand)]
pub enum ContactAction {
    /// Save a person (found by phone or email, else created) and add tags.
    Add {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// A phone number (made E.164).
        #[arg(long)]
        phone: Option<String>,
        /// An email address.
        #[arg(long)]
        email: Option<String>,
        /// The person's name.
        #[arg(long)]
        name: Option<String>,
        /// A tag (repeatable): a broadcast reaches everyone with a tag (`"tags"`).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List contacts, one JSON object per line, by id.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// Only those with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Replace a contact's tags (no `--tag`: remove them all).
    Tag {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The contact's id.
        #[arg(long)]
        id: String,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

/// Broadcast commands.
#[derive(Subcommand)]
pub enum BroadcastAction {
    /// The org's broadcasts, newest first, one JSON object per line.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One broadcast: state, counts, per-rung figures (JSON).
    Show {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The broadcast's id.
        #[arg(long)]
        id: String,
    },
    /// Stop a running broadcast: no rung goes out after it (queued ones included).
    Cancel {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The broadcast's id.
        #[arg(long)]
        id: String,
    },
    /// Every recipient's outcome as CSV on standard output.
    Export {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The broadcast's id.
        #[arg(long)]
        id: String,
    },
}

/// Runs a contact command.
pub async fn run_contact(db: &Db, action: ContactAction) -> anyhow::Result<()> {
    match action {
        ContactAction::Add {
            org,
            phone,
            email,
            name,
            tags,
        } => {
            let org = super::find_org(db, &org).await?;
            let op = contacts::check_save(&org.id, name, phone.as_deref(), email.as_deref(), &tags)
                .map_err(|e| anyhow!(e.replace("field `", "--").replace("`:", ":")))?;
            let (id, created) = match write_contact(db, &op).await? {
                ContactResult::Saved { id, created } => (id, created),
                ContactResult::NotFound => bail!("the contact could not be saved"),
            };
            let view = contacts::get(&db.pool, &org.id, &id).await?;
            let verb = if created { "created" } else { "found" };
            println!("{verb} {}", serde_json::to_string(&view)?);
        }
        ContactAction::List { org, tag, limit } => {
            let org = super::find_org(db, &org).await?;
            let tag = tag
                .map(|t| contacts::check_tag(&t))
                .transpose()
                .map_err(|e| anyhow!("--tag: {e}"))?;
            let limit = limit.clamp(1, 100_000);
            let mut after: Option<String> = None;
            let mut left = limit;
            while left > 0 {
                let page = contacts::list(
                    &db.pool,
                    &org.id,
                    tag.as_deref(),
                    after.as_deref(),
                    left.min(1000),
                )
                .await?;
                for c in &page {
                    println!("{}", serde_json::to_string(c)?);
                }
                left -= page.len() as i64;
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        ContactAction::Tag { org, id, tags } => {
            let org = super::find_org(db, &org).await?;
            let tags = contacts::check_tags(&tags).map_err(|e| anyhow!("--tag: {e}"))?;
            let op = ContactOp::SetTags {
                org_id: org.id.clone(),
                id: id.clone(),
                tags,
            };
            if write_contact(db, &op).await? == ContactResult::NotFound {
                bail!("no contact `{id}` in {}", org.slug);
            }
            let view = contacts::get(&db.pool, &org.id, &id).await?;
            println!("{}", serde_json::to_string(&view)?);
        }
    }
    Ok(())
}

async fn write_contact(db: &Db, op: &ContactOp) -> anyhow::Result<ContactResult> {
    let mut conn = db.pool.acquire().await?;
    let mut tx = begin_write(&mut conn).await?;
    let result = contacts::execute(&mut tx, op, now_ms()).await?;
    tx.commit().await?;
    Ok(result)
}

/// Runs a broadcast command.
pub async fn run_broadcast(db: &Db, action: BroadcastAction) -> anyhow::Result<()> {
    match action {
        BroadcastAction::List { org, limit } => {
            let org = super::find_org(db, &org).await?;
            for b in broadcast_views::list(&db.pool, &org.id, limit.clamp(1, 500)).await? {
                println!("{b}");
            }
        }
        BroadcastAction::Show { org, id } => {
            let org = super::find_org(db, &org).await?;
            let mut b = broadcast_views::summary(&db.pool, &org.id, &id)
                .await?
                .ok_or_else(|| anyhow!("no broadcast `{id}` in {}", org.slug))?;
            b["steps"] = serde_json::json!(broadcast_views::steps(&db.pool, &id).await?);
            println!("{}", serde_json::to_string_pretty(&b)?);
        }
        BroadcastAction::Cancel { org, id } => {
            let org = super::find_org(db, &org).await?;
            let op = BroadcastOp::Cancel {
                org_id: org.id.clone(),
                id: id.clone(),
            };
            let mut conn = db.pool.acquire().await?;
            let mut tx = begin_write(&mut conn).await?;
            let result = bdb::execute(&mut tx, &op, now_ms()).await?;
            tx.commit().await?;
            match result {
                BroadcastResult::Cancelled(s) if s == "cancelled" => println!("cancelled {id}"),
                BroadcastResult::Cancelled(s) => bail!("broadcast `{id}` is `{s}`, not running"),
                _ => bail!("no broadcast `{id}` in {}", org.slug),
            }
        }
        BroadcastAction::Export { org, id } => {
            let org = super::find_org(db, &org).await?;
            if broadcast_views::summary(&db.pool, &org.id, &id)
                .await?
                .is_none()
            {
                bail!("no broadcast `{id}` in {}", org.slug);
            }
            print!("{}", broadcast_views::export_csv(&db.pool, &id).await?);
        }
    }
    Ok(())
}
