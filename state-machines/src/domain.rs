//! The shared vocabulary: channels and directions, with their stable wire names.
//!
//! Entities themselves (organizations, contacts with several channel identities,
//! conversations, messages) are rows owned by `gateway`'s storage; what every crate must agree
//! on — the names that appear in the API, the database and events — is defined once here.

use serde::{Deserialize, Serialize};

/// A family of channels a contact can be reached on. One contact has one identity per
/// (channel, address) pair, and one conversation across all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMS through a provider such as Twilio.
    Sms,
    /// WhatsApp Cloud API.
    Whatsapp,
    /// Email (IMAP in, SMTP out).
    Email,
    /// Phone calls.
    Voice,
}

impl Channel {
    /// Every channel, for iteration in metrics and validation.
    pub const ALL: [Channel; 4] = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Email,
        Channel::Voice,
    ];

    /// The stable name used in the database, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
            Channel::Voice => "voice",
        }
    }

    /// Parses a stable name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a contact to the organization.
    Inbound,
    /// From the organization to a contact.
    Outbound,
}

impl Direction {
    /// The stable name used in the database, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// Parses a stable name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("fax"), None);
        for d in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("sideways"), None);
    }
}
