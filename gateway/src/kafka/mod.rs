//! Kafka: the relay's sink ([`sink::KafkaSink`]) and the readers of our topics
//! ([`consume`]: the per-node feed of the in-process [`crate::relay::Hub`], and the
//! `events tail` example consumer). Nothing outside this module knows rdkafka exists.
//!
//! ```text
//!  node A: outbox ─▶ relay (leader) ─▶ KafkaSink ─▶ dartwing.messages / .conversations / …
//!                                                    │  key = conversation id (one partition
//!                                                    │  per conversation keeps its order)
//!  node A, node B, …: consume::feed_hub ◀────────────┘  ─▶ Hub ─▶ agents on that node
//! ```
//!
//! Wire format: the CloudEvents Kafka protocol binding in binary content mode — the value is
//! the event's `data` JSON, every context attribute of the envelope
//! ([`crate::events::envelope`]) is a `ce_*` header and `datacontenttype` is `content-type`,
//! so consumers route and filter without parsing the value;
//! [`consume::Record::envelope`] puts the envelope back together. Only standard Kafka APIs are
//! used (idempotent producer, metadata, watermarks, fetch); no transactions and no consumer
//! groups are needed.

pub mod consume;
pub mod sink;

use rdkafka::error::KafkaError;

/// Why a Kafka client could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    /// librdkafka refused the configuration or the call.
    #[error("kafka: {0}")]
    Client(#[from] KafkaError),
    /// A topic the gateway reads does not exist on the broker (create it first).
    #[error("kafka topic `{topic}` does not exist (create it; brokers may not auto-create)")]
    MissingTopic {
        /// The topic.
        topic: String,
    },
    /// A blocking librdkafka call's thread was lost.
    #[error("kafka worker thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The event families and the topic each goes to (`{prefix}{family}s`).
pub const FAMILIES: [&str; 4] = ["message", "conversation", "contact", "call"];

/// The topic of an event type: `dartwing.message.received.v1` with prefix `dartwing.` goes to
/// `dartwing.messages`.
pub fn topic_for(prefix: &str, event_type: &str) -> String {
    let family = event_type.split('.').nth(1).unwrap_or("other");
    format!("{prefix}{family}s")
}

/// Every topic the gateway publishes to.
pub fn all_topics(prefix: &str) -> Vec<String> {
    FAMILIES.iter().map(|f| format!("{prefix}{f}s")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_per_family() {
        assert_eq!(
            topic_for("dartwing.", "dartwing.message.status_changed.v1"),
            "dartwing.messages"
        );
        assert_eq!(
            topic_for("x-", "dartwing.conversation.created.v1"),
            "x-conversations"
        );
        assert_eq!(
            topic_for("dartwing.", "dartwing.contact.opted_out.v1"),
            "dartwing.contacts"
        );
        for t in all_topics("dartwing.") {
            assert!(t.starts_with("dartwing.") && t.ends_with('s'));
        }
    }
}
