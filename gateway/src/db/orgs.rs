//! Organizations, their API keys and their provider accounts.
//!
//! API keys are 32 random bytes shown once (`dw_` + hex) and stored as their SHA-256: a key
//! with 256 bits of entropy cannot be guessed from its hash, so a slow password hash would add
//! latency to every request and no security.

use super::{new_id, now_ms, StoreError};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Its id.
    pub id: String,
    /// Its URL-safe name, used in webhook paths.
    pub slug: String,
    /// Its display name.
    pub name: String,
}

/// Whether a slug is acceptable: 1–63 characters of `a-z`, `0-9` and `-`, not starting with `-`.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 63
        && !slug.starts_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Creates an organization; `None` if the slug is taken.
pub async fn create(pool: &AnyPool, slug: &str, name: &str) -> Result<Option<Org>, StoreError> {
    let org = Org {
        id: new_id(),
        slug: slug.to_string(),
        name: name.to_string(),
    };
    let res = sqlx::query(
        "INSERT INTO orgs (id, slug, name, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (slug) DO NOTHING",
    )
    .bind(&org.id)
    .bind(&org.slug)
    .bind(&org.name)
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok((res.rows_affected() == 1).then_some(org))
}

/// Finds an organization by slug.
pub async fn by_slug(pool: &AnyPool, slug: &str) -> Result<Option<Org>, StoreError> {
    let row = sqlx::query("SELECT id, slug, name FROM orgs WHERE slug = $1")
        .bind(slug)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Org {
            id: r.try_get(0)?,
            slug: r.try_get(1)?,
            name: r.try_get(2)?,
        })
    })
    .transpose()
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates an API key for an org and returns it; only its hash is kept.
pub async fn create_api_key(pool: &AnyPool, org_id: &str) -> Result<String, StoreError> {
    create_labelled_api_key(pool, org_id, None).await
}

/// Creates an API key with a label (what it is for) and returns it.
pub async fn create_labelled_api_key(
    pool: &AnyPool,
    org_id: &str,
    label: Option<&str>,
) -> Result<String, StoreError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system's random source works");
    let key = format!("dw_{}", hex::encode(raw));
    sqlx::query(
        "INSERT INTO api_keys (id, org_id, key_hash, prefix, created_at, label) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(org_id)
    .bind(hash_key(&key))
    .bind(&key[..10])
    .bind(now_ms())
    .bind(label)
    .execute(pool)
    .await?;
    Ok(key)
}

/// A live API key: its id and its org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key's id (what `apikey list` shows; rate limits count per key).
    pub key_id: String,
    /// Its organization.
    pub org_id: String,
}

/// The key id and org of a live API key.
pub async fn org_for_key(pool: &AnyPool, key: &str) -> Result<Option<KeyOwner>, StoreError> {
    let row =
        sqlx::query("SELECT id, org_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(hash_key(key))
            .fetch_optional(pool)
            .await?;
    row.map(|r| {
        Ok(KeyOwner {
            key_id: r.try_get(0)?,
            org_id: r.try_get(1)?,
        })
    })
    .transpose()
}

/// Notes that a key was used now (at most once a minute per key, so it costs no write per
/// request).
pub async fn touch_key(pool: &AnyPool, key_id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
         AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(now)
    .bind(key_id)
    .bind(now - 60_000)
    .execute(pool)
    .await?;
    Ok(())
}

/// An API key as `apikey list` shows it (never the key itself).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Its id.
    pub id: String,
    /// Its first 10 characters (`dw_` + 7), to recognise it.
    pub prefix: String,
    /// What it is for.
    pub label: Option<String>,
    /// When it was made, Unix ms.
    pub created_at: i64,
    /// When it was last used (to the minute), Unix ms.
    pub last_used_at: Option<i64>,
    /// When it was revoked, Unix ms.
    pub revoked_at: Option<i64>,
}

/// An org's API keys, oldest first.
pub async fn list_api_keys(pool: &AnyPool, org_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, prefix, label, created_at, last_used_at, revoked_at FROM api_keys \
         WHERE org_id = $1 ORDER BY created_at, id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyInfo {
                id: r.try_get(0)?,
                prefix: r.try_get(1)?,
                label: r.try_get(2)?,
                created_at: r.try_get(3)?,
                last_used_at: r.try_get(4)?,
                revoked_at: r.try_get(5)?,
            })
        })
        .collect()
}

/// Revokes an org's key, named by its id or by the key itself. `false` when the org has no
/// such live key.
pub async fn revoke_api_key(
    pool: &AnyPool,
    org_id: &str,
    key_or_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND revoked_at IS NULL \
         AND (id = $3 OR key_hash = $4)",
    )
    .bind(now)
    .bind(org_id)
    .bind(key_or_id)
    .bind(hash_key(key_or_id))
    .execute(pool)
    .await?;
    Ok(res.rows_affected() > 0)
}

/// A stored provider account.
#[derive(Debug, Clone)]
pub struct ChannelAccount {
    /// Its id.
    pub id: String,
    /// The organization.
    pub org_id: String,
    /// The provider, e.g. `twilio`.
    pub provider: String,
    /// The channel it serves.
    pub channel: String,
    /// Its plugin configuration (JSON; holds secrets: never returned by the API).
    pub config: String,
}

/// Creates or replaces an org's account with a provider.
pub async fn upsert_channel_account(
    pool: &AnyPool,
    org_id: &str,
    provider: &str,
    channel: &str,
    config_json: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO channel_accounts (id, org_id, provider, channel, config, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (org_id, provider) DO UPDATE SET config = excluded.config, \
         channel = excluded.channel, updated_at = excluded.updated_at",
    )
    .bind(new_id())
    .bind(org_id)
    .bind(provider)
    .bind(channel)
    .bind(crate::secrets::seal(org_id, provider, config_json))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// An org's accounts, optionally only those for one provider or channel.
pub async fn channel_accounts(
    pool: &AnyPool,
    org_id: &str,
) -> Result<Vec<ChannelAccount>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, provider, channel, config FROM channel_accounts WHERE org_id = $1 \
         ORDER BY provider",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let mut acct = ChannelAccount {
                id: r.try_get(0)?,
                org_id: r.try_get(1)?,
                provider: r.try_get(2)?,
                channel: r.try_get(3)?,
                config: r.try_get(4)?,
            };
            acct.config = match crate::secrets::open(&acct.org_id, &acct.provider, &acct.config) {
                Ok(plain) => plain,
                Err(e) => {
                    // Unusable without its key: an empty configuration, which no provider
                    // accepts, so the account is reported unusable where it is built.
                    tracing::error!(org_id = %acct.org_id, provider = %acct.provider, error = %e,
                        "a stored account's configuration cannot be opened");
                    String::new()
                }
            };
            Ok(acct)
        })
        .collect()
}

/// Re-seals every stored account configuration under the first configured key (after a key
/// was added in front); returns how many rows changed. Plaintext rows are sealed too.
pub async fn reseal_all(pool: &AnyPool, ring: &crate::secrets::Keyring) -> Result<u64, StoreError> {
    let rows = sqlx::query("SELECT id, org_id, provider, config FROM channel_accounts")
        .fetch_all(pool)
        .await?;
    let mut changed = 0;
    for r in rows {
        let (id, org_id, provider, stored): (String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let resealed =
            ring.reseal(&org_id, &provider, &stored)
                .map_err(|e| StoreError::Corrupt {
                    what: "channel_accounts.config",
                    detail: format!("account {id}: {e}"),
                })?;
        let Some(resealed) = resealed else { continue };
        sqlx::query("UPDATE channel_accounts SET config = $1 WHERE id = $2")
            .bind(resealed)
            .bind(&id)
            .execute(pool)
            .await?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug("a/b"));
        assert!(!valid_slug(&"a".repeat(64)));
    }
}
