//! Contacts as an API client manages them: one person with a name, their addresses (the
//! identities every channel already finds them by) and tags, so a broadcast can reach
//! "everyone tagged `night-shift`" (`"tags"` in `POST /api/v1/broadcasts`).
//!
//! A contact saved with a phone number is found by that number on any phone channel (sms,
//! whatsapp, voice) and gets the `sms` identity if no contact holds it; with an email, by
//! the `email` identity. A number and an email held by two different contacts save onto the
//! number's (merging people is `POST /api/v1/contacts/merge`'s job, which moves tags too).
//! Tags are lower case, 1–64 of `a-z 0-9 - _ . :`, at most [`MAX_TAGS`] per contact.

use super::{new_id, StoreError};
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

/// Tags one contact may carry.
pub const MAX_TAGS: usize = 20;
/// Phone channels a number is looked up on.
const PHONE_CHANNELS: [&str; 3] = ["sms", "whatsapp", "voice"];

/// A tag in its stored form, or what is wrong with it.
pub fn check_tag(tag: &str) -> Result<String, String> {
    let t = tag.trim().to_lowercase();
    let ok = (1..=64).contains(&t.len())
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c));
    match ok {
        true => Ok(t),
        false => Err(format!(
            "tag `{tag}`: 1 to 64 characters of a-z, 0-9, `-`, `_`, `.`, `:`"
        )),
    }
}

/// Checked tags, duplicates dropped, in the order given.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = check_tag(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    Ok(out)
}

/// A person to save, checked as the API and the CLI take it: the phone made E.164, the
/// email lower case, the name trimmed (at most 200 characters), the tags checked. An error
/// names the field (``field `phone`: …``).
pub fn check_save(
    org_id: &str,
    name: Option<String>,
    phone: Option<&str>,
    email: Option<&str>,
    tags: &[String],
) -> Result<ContactOp, String> {
    let bad = |field: &str, e: &dyn std::fmt::Display| format!("field `{field}`: {e}");
    let phone = match phone {
        Some(p) => Some(channels::address::normalize_e164(p).map_err(|e| bad("phone", &e))?),
        None => None,
    };
    let email = match email.map(str::trim) {
        Some(e) if broadcast::spec::is_email(e) => Some(e.to_lowercase()),
        Some(e) => return Err(bad("email", &format!("`{e}` is not an email address"))),
        None => None,
    };
    if phone.is_none() && email.is_none() {
        return Err("a contact needs a `phone` or an `email`".into());
    }
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(bad("name", &"at most 200 characters"));
    }
    let tags = check_tags(tags).map_err(|e| bad("tags", &e))?;
    Ok(ContactOp::Save {
        org_id: org_id.to_owned(),
        name,
        phone,
        email,
        tags,
    })
}

/// A contact write, run in the committer's transaction.
#[derive(Debug)]
pub enum ContactOp {
    /// Find the contact by its phone or email, or make it; add the tags.
    Save {
        org_id: String,
        name: Option<String>,
        /// E.164.
        phone: Option<String>,
        /// Lower case.
        email: Option<String>,
        tags: Vec<String>,
    },
    /// Replace a contact's tags.
    SetTags {
        org_id: String,
        id: String,
        tags: Vec<String>,
    },
}

/// What a contact write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactResult {
    /// Saved; `created` when it is new.
    Saved { id: String, created: bool },
    /// No such contact in the org (or merged into another).
    NotFound,
}

/// Runs one op.
pub async fn execute(
    conn: &mut AnyConnection,
    op: &ContactOp,
    now: i64,
) -> Result<ContactResult, StoreError> {
    match op {
        ContactOp::Save {
            org_id,
            name,
            phone,
            email,
            tags,
        } => save(conn, org_id, name.as_deref(), phone, email, tags, now).await,
        ContactOp::SetTags { org_id, id, tags } => {
            let live = sqlx::query(
                "SELECT 1 FROM contacts WHERE org_id = $1 AND id = $2 AND merged_into IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if live.is_none() {
                return Ok(ContactResult::NotFound);
            }
            sqlx::query("DELETE FROM contact_tags WHERE org_id = $1 AND contact_id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            add_tags(conn, org_id, id, tags, now).await?;
            Ok(ContactResult::Saved {
                id: id.clone(),
                created: false,
            })
        }
    }
}

async fn find(
    conn: &mut AnyConnection,
    org_id: &str,
    channels: &[&str],
    address: &str,
) -> Result<Option<String>, StoreError> {
    let list = channels
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    // The channel names are this module's constants, never input.
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT i.contact_id FROM contact_identities i JOIN contacts c ON c.id = i.contact_id \
         WHERE i.org_id = $1 AND i.address = $2 AND i.channel IN ({list}) \
         AND c.merged_into IS NULL ORDER BY i.created_at LIMIT 1"
    )))
    .bind(org_id)
    .bind(address)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

async fn save(
    conn: &mut AnyConnection,
    org_id: &str,
    name: Option<&str>,
    phone: &Option<String>,
    email: &Option<String>,
    tags: &[String],
    now: i64,
) -> Result<ContactResult, StoreError> {
    let mut found = None;
    if let Some(p) = phone {
        found = find(conn, org_id, &PHONE_CHANNELS, p).await?;
    }
    if let (None, Some(e)) = (&found, email) {
        found = find(conn, org_id, &["email"], e).await?;
    }
    let created = found.is_none();
    let id = match found {
        Some(id) => {
            if let Some(n) = name {
                sqlx::query("UPDATE contacts SET name = $1 WHERE id = $2")
                    .bind(n)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
            }
            id
        }
        None => {
            let id = new_id();
            sqlx::query(
                "INSERT INTO contacts (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(org_id)
            .bind(name)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            id
        }
    };
    for (channel, address) in [("sms", phone), ("email", email)] {
        let Some(address) = address else { continue };
        // An address another contact already holds stays theirs.
        sqlx::query(
            "INSERT INTO contact_identities (org_id, channel, address, contact_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, channel, address) DO NOTHING",
        )
        .bind(org_id)
        .bind(channel)
        .bind(address)
        .bind(&id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    add_tags(conn, org_id, &id, tags, now).await?;
    Ok(ContactResult::Saved { id, created })
}

async fn add_tags(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    tags: &[String],
    now: i64,
) -> Result<(), StoreError> {
    for tag in tags {
        sqlx::query(
            "INSERT INTO contact_tags (org_id, tag, contact_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, tag, contact_id) DO NOTHING",
        )
        .bind(org_id)
        .bind(tag)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Moves `from`'s tags to `into` (a contact merge).
pub async fn merge_tags(
    conn: &mut AnyConnection,
    org_id: &str,
    from: &str,
    into: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO contact_tags (org_id, tag, contact_id, created_at) \
         SELECT org_id, tag, $1, created_at FROM contact_tags WHERE org_id = $2 AND contact_id = $3 \
         ON CONFLICT (org_id, tag, contact_id) DO NOTHING",
    )
    .bind(into)
    .bind(org_id)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM contact_tags WHERE org_id = $1 AND contact_id = $2")
        .bind(org_id)
        .bind(from)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A contact as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContactView {
    pub id: String,
    pub name: Option<String>,
    /// Its addresses as `{channel, address}`.
    pub identities: Vec<Identity>,
    pub tags: Vec<String>,
}

/// One address of a contact.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Identity {
    pub channel: String,
    pub address: String,
}

/// An org's live contacts (not merged away), by id after `after`; with `tag`, only those
/// carrying it.
pub async fn list(
    pool: &AnyPool,
    org_id: &str,
    tag: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ContactView>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, c.name FROM contacts c WHERE c.org_id = $1 AND c.merged_into IS NULL \
         AND ($2 IS NULL OR c.id > $2) AND ($3 IS NULL OR EXISTS (SELECT 1 FROM contact_tags t \
         WHERE t.org_id = $1 AND t.tag = $3 AND t.contact_id = c.id)) ORDER BY c.id LIMIT $4",
    )
    .bind(org_id)
    .bind(after)
    .bind(tag)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(ContactView {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                identities: Vec::new(),
                tags: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    fill(pool, org_id, &mut out).await?;
    Ok(out)
}

/// One live contact of the org.
pub async fn get(
    pool: &AnyPool,
    org_id: &str,
    id: &str,
) -> Result<Option<ContactView>, StoreError> {
    let row = sqlx::query(
        "SELECT name FROM contacts WHERE org_id = $1 AND id = $2 AND merged_into IS NULL",
    )
    .bind(org_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let mut one = vec![ContactView {
        id: id.to_owned(),
        name: r.try_get(0)?,
        identities: Vec::new(),
        tags: Vec::new(),
    }];
    fill(pool, org_id, &mut one).await?;
    Ok(one.pop())
}

/// Reads the identities and tags of these contacts: one query each for the whole page.
async fn fill(
    pool: &AnyPool,
    org_id: &str,
    contacts: &mut [ContactView],
) -> Result<(), StoreError> {
    if contacts.is_empty() {
        return Ok(());
    }
    let marks = super::sql::numbered_list(2, contacts.len());
    let at: std::collections::HashMap<String, usize> = contacts
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i))
        .collect();
    // Placeholders are numbered here; every id is bound.
    let page = |sql: String| {
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org_id.to_owned());
        for c in contacts.iter() {
            q = q.bind(c.id.clone());
        }
        q
    };
    let identities = page(format!(
        "SELECT contact_id, channel, address FROM contact_identities WHERE org_id = $1 \
         AND contact_id IN ({marks}) ORDER BY channel, address"
    ))
    .fetch_all(pool)
    .await?;
    let tags = page(format!(
        "SELECT contact_id, tag FROM contact_tags WHERE org_id = $1 AND contact_id IN ({marks}) \
         ORDER BY tag"
    ))
    .fetch_all(pool)
    .await?;
    for r in &identities {
        let i = at[&r.try_get::<String, _>(0)?];
        contacts[i].identities.push(Identity {
            channel: r.try_get(1)?,
            address: r.try_get(2)?,
        });
    }
    for r in &tags {
        let i = at[&r.try_get::<String, _>(0)?];
        contacts[i].tags.push(r.try_get(1)?);
    }
    Ok(())
}

/// A broadcast's audience from tags: every live contact carrying any of `tags` (checked
/// ones), with its name, a phone number (an E.164 address on a phone channel) and an email;
/// at most `limit` contacts are read. Contacts with neither address are left out (nothing
/// could reach them).
pub async fn recipients_with_tags(
    pool: &AnyPool,
    org_id: &str,
    tags: &[String],
    limit: usize,
) -> Result<Vec<broadcast::Recipient>, StoreError> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let marks = super::sql::numbered_list(3, tags.len());
    // Placeholders are numbered here; every tag is bound.
    let sql = format!(
        "SELECT c.id, c.name, i.channel, i.address FROM contacts c \
         JOIN contact_identities i ON i.contact_id = c.id AND i.org_id = c.org_id \
         WHERE c.org_id = $1 AND c.merged_into IS NULL AND c.id IN (SELECT t.contact_id \
         FROM contact_tags t WHERE t.org_id = $1 AND t.tag IN ({}) GROUP BY t.contact_id \
         ORDER BY t.contact_id LIMIT $2) ORDER BY c.id, i.channel, i.address",
        marks
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(org_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for t in tags {
        q = q.bind(t);
    }
    let rows = q.fetch_all(pool).await?;
    let mut out = Vec::new();
    let mut current: Option<(String, broadcast::Recipient)> = None;
    for r in &rows {
        let id: String = r.try_get(0)?;
        if current.as_ref().is_none_or(|(c, _)| *c != id) {
            if let Some((_, done)) = current.take() {
                push(&mut out, done);
            }
            let person = broadcast::Recipient {
                name: r.try_get(1)?,
                ..Default::default()
            };
            current = Some((id, person));
        }
        let (channel, address): (String, String) = (r.try_get(2)?, r.try_get(3)?);
        let Some((_, person)) = current.as_mut() else {
            continue;
        };
        match channel.as_str() {
            "email" if person.email.is_none() => person.email = Some(address),
            c if PHONE_CHANNELS.contains(&c) && person.phone.is_none() => {
                person.phone = channels::address::normalize_e164(&address).ok();
            }
            _ => {}
        }
    }
    if let Some((_, last)) = current {
        push(&mut out, last);
    }
    Ok(out)
}

fn push(out: &mut Vec<broadcast::Recipient>, person: broadcast::Recipient) {
    if person.phone.is_some() || person.email.is_some() {
        out.push(person);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_lower_case_words_of_a_few_signs() {
        assert_eq!(check_tag(" Night-Shift "), Ok("night-shift".to_owned()));
        assert_eq!(check_tag("icu:level.2_b"), Ok("icu:level.2_b".to_owned()));
        assert!(check_tag(&"a".repeat(64)).is_ok());
        for bad in ["", " ", "two words", "émile", "a/b", &"a".repeat(65)] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(check_tags(&many).map(|t| t.len()), Ok(MAX_TAGS));
        let mut more = many.clone();
        more.push("one-more".into());
        assert!(check_tags(&more).is_err());
        // Duplicates (after lower-casing) count once.
        let twice = vec!["A".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(check_tags(&twice), Ok(vec!["a".to_owned(), "b".to_owned()]));
    }
}
