//! `agent create|list|revoke`: the people who log in to the inbox.

use crate::db::{agents, Db};
use crate::inbox::api::validate_agent;
use crate::inbox::auth::hash_password;
use anyhow::{anyhow, bail};
use clap::Subcommand;

/// Agent commands.
#[derive(Subcommand)]
pub enum AgentAction {
    /// Create an agent who logs in to the inbox with this email and password.
    Create {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The login (unique across the gateway).
        #[arg(long)]
        email: String,
        /// At least 8 characters (also read from DARTWING_AGENT_PASSWORD).
        #[arg(long, env = "DARTWING_AGENT_PASSWORD", hide_env_values = true)]
        password: String,
        /// `agent` or `admin` (admins also manage agents and merge contacts).
        #[arg(long, default_value = "agent")]
        role: String,
        /// Open conversations the agent takes from the queue at most (default: the config's).
        #[arg(long)]
        capacity: Option<i64>,
    },
    /// List an organization's agents.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
    /// Revoke every session of an agent (it must log in again).
    Revoke {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The agent's email.
        #[arg(long)]
        email: String,
    },
}

/// Runs an agent command.
pub async fn run(db: &Db, default_capacity: i64, action: AgentAction) -> anyhow::Result<()> {
    match action {
        AgentAction::Create {
            org,
            email,
            password,
            role,
            capacity,
        } => {
            let role = validate_agent(&email, &password, Some(&role)).map_err(|e| anyhow!(e))?;
            let capacity = capacity.unwrap_or(default_capacity);
            if capacity < 1 {
                bail!("--capacity must be at least 1");
            }
            let org = super::find_org(db, &org).await?;
            let hash = hash_password(password).await.map_err(|e| anyhow!(e))?;
            match agents::create(&db.pool, &org.id, &email, &hash, role, capacity).await? {
                Some(a) => println!(
                    "created {} {} in {} ({})",
                    a.role.as_str(),
                    a.email,
                    org.slug,
                    a.id
                ),
                None => bail!("an agent with email `{email}` exists"),
            }
        }
        AgentAction::List { org } => {
            let org = super::find_org(db, &org).await?;
            for a in agents::list(&db.pool, &org.id).await? {
                println!("{}\t{}\t{}\t{}", a.email, a.role.as_str(), a.capacity, a.id);
            }
        }
        AgentAction::Revoke { org, email } => {
            let org = super::find_org(db, &org).await?;
            let agent = agents::list(&db.pool, &org.id)
                .await?
                .into_iter()
                .find(|a| a.email == agents::normalize_email(&email))
                .ok_or_else(|| anyhow!("no agent `{email}` in {}", org.slug))?;
            let n = agents::revoke_all(&db.pool, &org.id, &agent.id).await?;
            println!("revoked {n} session(s) of {}", agent.email);
        }
    }
    Ok(())
}
