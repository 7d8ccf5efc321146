//! `dartwing-gateway voice …`: which dialled numbers reach which org and application
//! (`route add|list`), and the SIP credentials of agent phones (`agent add|list`; only the
//! digest HA1 is stored, made in the org's realm, its slug).

use super::find_org;
use crate::db::{calls, now_ms, sip_agents, Db};
use anyhow::bail;
use clap::Subcommand;

/// Voice commands.
#[derive(Subcommand)]
pub enum VoiceAction {
    /// Numbers and the application that answers them.
    Route {
        /// What to do.
        #[command(subcommand)]
        action: RouteAction,
    },
    /// Agent phones (SIP accounts that register and take transfers).
    Agent {
        /// What to do.
        #[command(subcommand)]
        action: AgentAction,
    },
}

/// Route commands.
#[derive(Subcommand)]
pub enum RouteAction {
    /// Map a dialled number (the request URI's user part) to an org and an application.
    Add {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The number, e.g. `+15550100000` (spaces, dashes and `+` are ignored).
        #[arg(long)]
        number: String,
        /// `echo` (says back what it hears), `menu` (a DTMF menu), `play:FILE.wav` or
        /// `receptionist` (the AI receptionist; see `receptionist set` and `kb add`).
        #[arg(long)]
        app: String,
        /// The agent (a username of the same org) the application's transfer reaches
        /// (`menu` key 1); without it the application cannot transfer.
        #[arg(long)]
        agent: Option<String>,
        /// Let the caller transfer itself with REFER (refused with 403 otherwise).
        #[arg(long)]
        allow_refer: bool,
    },
    /// An organization's routes.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
}

/// Agent commands.
#[derive(Subcommand)]
pub enum AgentAction {
    /// Create (or reset) an agent phone's SIP credentials.
    Add {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The SIP username (unique within the organization; another organization may have
        /// an agent of the same name).
        #[arg(long)]
        username: String,
        /// The password (also read from DARTWING_SIP_AGENT_PASSWORD); only its digest HA1 is
        /// stored.
        #[arg(long, env = "DARTWING_SIP_AGENT_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// An organization's agents, their realm and where each is registered now.
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
}

/// Checks an application spec the way a call will start it (`voice::app::AppSpec::parse`:
/// `echo`, `menu[:FILE.wav]`, `play:FILE.wav`, the WAV read and decoded).
pub fn check_app(spec: &str) -> anyhow::Result<()> {
    voice::app::AppSpec::parse(spec)?;
    Ok(())
}

/// Runs a voice command.
pub async fn run(db: &Db, action: VoiceAction) -> anyhow::Result<()> {
    match action {
        VoiceAction::Route {
            action:
                RouteAction::Add {
                    org,
                    number,
                    app,
                    agent,
                    allow_refer,
                },
        } => {
            check_app(&app)?;
            let org = find_org(db, &org).await?;
            let normalized = calls::normalize_number(&number);
            if normalized.is_empty() {
                bail!("empty number");
            }
            if let Some(agent) = &agent {
                if !sip_agents::exists(&db.pool, &org.id, agent).await? {
                    bail!(
                        "no agent `{agent}` in {} (add it with `voice agent add`)",
                        org.slug
                    );
                }
            }
            let route = calls::Route {
                number,
                org_id: org.id.clone(),
                app: app.clone(),
                agent,
                allow_refer,
            };
            if !calls::add_route(&db.pool, &route, now_ms()).await? {
                bail!("number {normalized} is routed to another organization");
            }
            println!("{normalized} → {app} for {}", org.slug);
        }
        VoiceAction::Route {
            action: RouteAction::List { org },
        } => {
            let org = find_org(db, &org).await?;
            for r in calls::list_routes(&db.pool, &org.id).await? {
                println!("{}\t{}", r.number, r.app);
            }
        }
        VoiceAction::Agent {
            action:
                AgentAction::Add {
                    org,
                    username,
                    password,
                },
        } => {
            if username.is_empty()
                || !username
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
            {
                bail!("invalid username `{username}`: use a-z, A-Z, 0-9, '.', '_', '-', '+'");
            }
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            let org = find_org(db, &org).await?;
            // The org's slug is the agent's digest realm: two orgs' `alice` are two agents.
            let realm = org.slug.as_str();
            sip_agents::upsert(&db.pool, &org.id, &username, realm, &password, now_ms()).await?;
            println!(
                "agent {username} of {realm} registers as sip:{username}@{realm}[.YOUR-SIP-DOMAIN] \
                 (digest realm {realm}); sip:{username}@GATEWAY-ADDRESS works while no other \
                 organization has an agent {username}"
            );
        }
        VoiceAction::Agent {
            action: AgentAction::List { org },
        } => {
            let org = find_org(db, &org).await?;
            for a in sip_agents::list(&db.pool, &org.id, now_ms()).await? {
                let contacts = if a.contacts.is_empty() {
                    "not registered".to_owned()
                } else {
                    a.contacts.join(" ")
                };
                println!("{}\t{}\t{contacts}", a.username, a.realm);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_specs_are_checked() {
        assert!(check_app("echo").is_ok());
        assert!(check_app("menu").is_ok());
        assert!(check_app("receptionist").is_ok());
        assert!(check_app("dance").is_err());
        assert!(check_app("play:/nonexistent.wav").is_err());
        let dir = std::env::temp_dir().join(format!("dw-app-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_wav = dir.join("x.wav");
        std::fs::write(&not_wav, b"hello world, not a wav").unwrap();
        assert!(check_app(&format!("play:{}", not_wav.display())).is_err());
        let wav = dir.join("y.wav");
        std::fs::write(&wav, audio::wav::encode_wav(8000, 1, &[0; 800])).unwrap();
        assert!(check_app(&format!("play:{}", wav.display())).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
