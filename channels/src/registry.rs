//! The providers compiled in: a static table the runtime reads to route webhooks, to check at
//! start-up that no two providers claim one path, and to build a stored account into a
//! running plugin. Adding a provider is one folder and one line here.
//!
//! A provider's webhooks live under `/webhooks/{name}/{org}/{hook}`; the hook `""` is
//! `/webhooks/{name}/{org}` itself (Meta calls one URL per app for everything).

use crate::plugin::ChannelPlugin;
use state_machines::Channel;
use std::sync::Arc;

/// Why a stored or given configuration cannot be used. Every problem is reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    /// `Ok` when nothing was found, else every problem.
    pub fn check(problems: Vec<String>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// Builds a running plugin from its stored JSON configuration and the shared HTTP client.
pub type BuildFn = fn(&str, reqwest::Client) -> Result<Arc<dyn ChannelPlugin>, ConfigError>;

/// One provider the gateway can run.
pub struct ProviderSpec {
    /// Its name in webhook paths and in the database (`twilio`).
    pub name: &'static str,
    /// Its name on the command line (`twilio-sms`).
    pub kind: &'static str,
    /// The channel it serves.
    pub channel: Channel,
    /// The webhook hooks it claims under `/webhooks/{name}/{org}/`.
    pub hooks: &'static [&'static str],
    /// Builds an account.
    pub build: BuildFn,
    /// A configuration with fresh random secrets nobody knows. The gateway answers a webhook
    /// for an org that does not exist (or has no account with this provider) with this
    /// decoy, so a stranger gets exactly what a real org gives a request that fails
    /// verification, and learns nothing about which orgs exist.
    pub decoy: fn() -> String,
}

/// `n` random bytes as lowercase hex, for decoy secrets.
pub fn random_hex(n: usize) -> String {
    let mut raw = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("the operating system's random source works");
    hex::encode(raw)
}

/// Parses a stored configuration and builds it with `build`; for the providers' `SPEC`s.
pub fn build_json<C, P>(
    json: &str,
    http: reqwest::Client,
    build: impl FnOnce(C, reqwest::Client) -> Result<P, ConfigError>,
) -> Result<Arc<dyn ChannelPlugin>, ConfigError>
where
    C: serde::de::DeserializeOwned,
    P: ChannelPlugin + 'static,
{
    let config: C = serde_json::from_str(json).map_err(|e| ConfigError(vec![e.to_string()]))?;
    Ok(Arc::new(build(config, http)?))
}

/// Every provider compiled in.
pub const PROVIDERS: &[ProviderSpec] = &[
    crate::sms::twilio::SPEC,
    crate::sms::telnyx::SPEC,
    crate::whatsapp::SPEC,
    crate::email::SPEC,
];

/// A provider by its path/database name.
pub fn find(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Checks that no two providers share a name or a CLI name (run once at start-up; the
/// hooks of different providers never clash because the provider name is in the path).
pub fn check() -> Result<(), String> {
    check_table(PROVIDERS)
}

fn check_table(table: &[ProviderSpec]) -> Result<(), String> {
    for (i, a) in table.iter().enumerate() {
        for b in &table[i + 1..] {
            if a.name == b.name || a.kind == b.kind {
                return Err(format!("providers `{}` and `{}` clash", a.kind, b.kind));
            }
        }
        for (j, h) in a.hooks.iter().enumerate() {
            if a.hooks[j + 1..].contains(h) {
                return Err(format!("webhook {}/{} is claimed twice", a.name, h));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoy_builds_with_its_own_secrets() {
        // reqwest panics without a crypto provider (nextest runs each test in its own process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        for p in PROVIDERS {
            let (a, b) = ((p.decoy)(), (p.decoy)());
            assert_ne!(a, b, "{}: fresh secrets each time", p.name);
            assert!(
                (p.build)(&a, reqwest::Client::new()).is_ok(),
                "{}: {a}",
                p.name
            );
        }
    }

    #[test]
    fn the_table_is_consistent() {
        check().unwrap();
        assert_eq!(find("twilio").map(|p| p.kind), Some("twilio-sms"));
        assert_eq!(find("telnyx").map(|p| p.channel), Some(Channel::Sms));
        assert_eq!(find("whatsapp").map(|p| p.hooks), Some(&[""][..]));
        assert!(find("nope").is_none());
    }

    fn spec(
        name: &'static str,
        kind: &'static str,
        hooks: &'static [&'static str],
    ) -> ProviderSpec {
        let twilio = find("twilio").unwrap();
        ProviderSpec {
            name,
            kind,
            channel: Channel::Sms,
            hooks,
            build: twilio.build,
            decoy: twilio.decoy,
        }
    }

    #[test]
    fn clashing_tables_are_refused() {
        let ok = [
            spec("a", "a-sms", &["sms", "status"]),
            spec("b", "b-sms", &["sms"]),
        ];
        assert_eq!(check_table(&ok), Ok(()));
        let same_name = [spec("a", "a-sms", &[]), spec("a", "b-sms", &[])];
        assert_eq!(
            check_table(&same_name).unwrap_err(),
            "providers `a-sms` and `b-sms` clash"
        );
        let same_kind = [spec("a", "x", &[]), spec("b", "x", &[])];
        assert!(check_table(&same_kind).is_err());
        let hook_twice = [spec("a", "a-sms", &["sms", "status", "sms"])];
        assert_eq!(
            check_table(&hook_twice).unwrap_err(),
            "webhook a/sms is claimed twice"
        );
    }

    #[test]
    fn a_bad_stored_config_names_the_problem() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        for spec in PROVIDERS {
            let err = match (spec.build)("{}", http.clone()) {
                Err(e) => e,
                Ok(_) => panic!("{} built from an empty config", spec.name),
            };
            assert!(!err.0.is_empty(), "{}", spec.name);
        }
    }
}
