//! The plugin registry: which providers exist, how a stored account becomes a running
//! [`ChannelPlugin`], and a short-lived cache of orgs and their plugins so a webhook does not
//! read the database twice before its own transaction.
//!
//! The cache lives `CACHE_TTL`: an account changed by the CLI while the gateway runs is picked
//! up within that time; one changed through the API is picked up at once ([`Plugins::forget`]).
//! Slugs come from webhook paths anyone can send, so the caches are bounded
//! ([`crate::cache::TtlCache`]): random slugs cost at most `CACHE_CAPACITY` entries.

use crate::cache::TtlCache;
use crate::db::orgs::{self, Org};
use crate::db::{Db, StoreError};
use channels::{registry, ChannelPlugin};
use state_machines::Channel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most orgs (and, separately, most orgs' plugin lists) cached at once.
const CACHE_CAPACITY: usize = 10_000;

/// Why an account could not be turned into a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No provider of that name.
    #[error("unknown provider `{0}`")]
    UnknownProvider(String),
    /// The stored or given configuration is invalid.
    #[error("invalid {provider} configuration: {reason}")]
    InvalidConfig {
        /// The provider.
        provider: &'static str,
        /// Every problem found.
        reason: String,
    },
}

/// Builds a plugin from a provider name and its JSON configuration, through the registry
/// in `channels` (the gateway knows no provider by name).
pub fn build(
    provider: &str,
    config_json: &str,
    http: &reqwest::Client,
) -> Result<Arc<dyn ChannelPlugin>, PluginError> {
    let spec = registry::find(provider)
        .ok_or_else(|| PluginError::UnknownProvider(provider.to_string()))?;
    (spec.build)(config_json, http.clone()).map_err(|e| PluginError::InvalidConfig {
        provider: spec.name,
        reason: e.to_string(),
    })
}

/// An org's plugins as (provider, plugin).
type OrgPlugins = Vec<(String, Arc<dyn ChannelPlugin>)>;

/// Orgs and plugins, cached briefly.
pub struct Plugins {
    db: Db,
    http: reqwest::Client,
    orgs_by_slug: TtlCache<Option<Org>>,
    slugs: Mutex<HashMap<String, String>>,
    plugins: TtlCache<OrgPlugins>,
    /// Per provider, a plugin with secrets nobody knows (see [`Plugins::decoy`]).
    decoys: HashMap<&'static str, Arc<dyn ChannelPlugin>>,
    /// Outbound calls, when SIP runs with a trunk (see [`crate::voice_out`]).
    dialer: std::sync::OnceLock<Arc<crate::voice_out::Dialer>>,
    /// Each org's caller id (its first voice route number), `None`: it has none.
    caller_ids: TtlCache<Option<String>>,
}

impl Plugins {
    /// An empty registry over this database.
    pub fn new(db: Db, http: reqwest::Client) -> Plugins {
        let decoys = registry::PROVIDERS
            .iter()
            .filter_map(|spec| {
                let built = (spec.build)(&(spec.decoy)(), http.clone());
                if let Err(e) = &built {
                    tracing::error!(provider = spec.name, error = %e, "the provider's decoy does not build");
                }
                Some((spec.name, built.ok()?))
            })
            .collect();
        Plugins {
            decoys,
            db,
            http,
            orgs_by_slug: TtlCache::new(CACHE_TTL, CACHE_CAPACITY),
            slugs: Mutex::default(),
            plugins: TtlCache::new(CACHE_TTL, CACHE_CAPACITY),
            dialer: std::sync::OnceLock::new(),
            caller_ids: TtlCache::new(CACHE_TTL, CACHE_CAPACITY),
        }
    }

    /// Lets orgs place calls (channel `voice`) through this dialer (the first attach wins).
    pub fn attach_dialer(&self, dialer: Arc<crate::voice_out::Dialer>) {
        if self.dialer.set(dialer).is_err() {
            tracing::warn!("a dialer was attached already; the new one is ignored");
        }
    }

    /// The org's outbound-call plugin: there is a dialer, the org's voice feature is on and
    /// it has a voice route number to call from.
    async fn calls(&self, org_id: &str) -> Option<Arc<dyn ChannelPlugin>> {
        let dialer = self.dialer.get()?;
        let caller_id = match self.caller_ids.get(org_id) {
            Some(known) => known,
            None => {
                let pool = &self.db.pool;
                let settings = crate::db::org_settings::get(pool, org_id).await.ok()?;
                let found = match settings.enabled("voice") {
                    true => crate::db::calls::caller_id(pool, org_id).await.ok()?,
                    false => None,
                };
                self.caller_ids.insert(org_id, found.clone());
                found
            }
        }?;
        Some(Arc::new(crate::voice_out::CallPlugin {
            dialer: Arc::clone(dialer),
            org_id: org_id.to_owned(),
            caller_id,
        }))
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The org with this slug if the cache holds the answer (`Some(None)`: known not to
    /// exist), without touching the database.
    pub fn cached_org(&self, slug: &str) -> Option<Option<Org>> {
        self.orgs_by_slug.get(slug)
    }

    /// The org with this slug, from the cache or the database (a miss is cached too).
    pub async fn org(&self, slug: &str) -> Result<Option<Org>, StoreError> {
        if let Some(org) = self.orgs_by_slug.get(slug) {
            return Ok(org);
        }
        let org = orgs::by_slug(&self.db.pool, slug).await?;
        if let Some(o) = &org {
            self.slugs
                .lock()
                .expect("not poisoned")
                .insert(o.id.clone(), o.slug.clone());
        }
        self.orgs_by_slug.insert(slug, org.clone());
        Ok(org)
    }

    /// An org's running plugins, as (provider, plugin).
    pub async fn of_org(
        &self,
        org_id: &str,
    ) -> Result<Vec<(String, Arc<dyn ChannelPlugin>)>, StoreError> {
        if let Some(list) = self.plugins.get(org_id) {
            return Ok(list);
        }
        let mut list = Vec::new();
        for acct in orgs::channel_accounts(&self.db.pool, org_id).await? {
            match build(&acct.provider, &acct.config, &self.http) {
                Ok(p) => list.push((acct.provider.clone(), p)),
                Err(e) => {
                    tracing::error!(org_id, provider = %acct.provider, error = %e, "stored account is unusable")
                }
            }
        }
        self.plugins.insert(org_id, list.clone());
        Ok(list)
    }

    /// The org's plugin for a provider.
    pub async fn by_provider(
        &self,
        org_id: &str,
        provider: &str,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, StoreError> {
        Ok(self
            .of_org(org_id)
            .await?
            .into_iter()
            .find(|(p, _)| p == provider)
            .map(|(_, plugin)| plugin))
    }

    /// The org's plugin for a channel, with the org's slug (for callback URLs).
    pub async fn for_channel(
        &self,
        org_id: &str,
        channel: Channel,
    ) -> Option<(String, Arc<dyn ChannelPlugin>)> {
        let plugin = match channel {
            Channel::Voice => self.calls(org_id).await?,
            _ => {
                self.of_org(org_id)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|(_, p)| p.channel() == channel)?
                    .1
            }
        };
        let cached = self
            .slugs
            .lock()
            .expect("not poisoned")
            .get(org_id)
            .cloned();
        let slug = match cached {
            Some(s) => s,
            None => {
                let row: (String,) = sqlx::query_as("SELECT slug FROM orgs WHERE id = $1")
                    .bind(org_id)
                    .fetch_one(&self.db.pool)
                    .await
                    .ok()?;
                self.slugs
                    .lock()
                    .expect("not poisoned")
                    .insert(org_id.to_string(), row.0.clone());
                row.0
            }
        };
        Some((slug, plugin))
    }

    /// The provider's decoy: a plugin built with fresh random secrets at start-up. A webhook
    /// for an org that does not exist, or has no account with the provider, is verified by
    /// it, so the stranger gets the answer a real org gives a request that fails
    /// verification (and learns nothing about which orgs exist).
    pub fn decoy(&self, provider: &str) -> Option<Arc<dyn ChannelPlugin>> {
        self.decoys.get(provider).cloned()
    }

    /// Drops an org's cached plugins (after its accounts changed).
    pub fn forget(&self, org_id: &str) {
        self.plugins.remove(org_id);
    }
}
