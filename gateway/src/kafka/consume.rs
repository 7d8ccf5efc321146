//! Reading our topics: [`EventReader`] (no consumer group: it assigns every partition itself,
//! from the beginning or from the current end), used by `dartwing-gateway events tail` — the
//! example consumer for the platform — and by [`feed_hub`], which on every node pushes what
//! any node relayed into that node's [`Hub`], so an agent on node B sees what came in on A.
//!
//! A platform service that must not miss events would instead join a consumer group
//! (`group.id`, `group.protocol=classic` works everywhere) and commit offsets after handling;
//! deduplicate on `ce_id` (delivery is at-least-once).

use super::KafkaClientError;
use crate::events::from_envelope;
use crate::relay::{EventSink, Hub, PublishedEvent};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained record.
    Beginning,
    /// Only records produced after the reader opened.
    End,
}

/// One record read from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key (the conversation id for our events).
    pub key: Option<String>,
    /// Its headers, in order (`ce_id`, `ce_type`, …).
    pub headers: Vec<(String, String)>,
    /// Its value.
    pub payload: Vec<u8>,
}

impl Record {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value as JSON (our events: the event's `data`).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload).ok()
    }

    /// The CloudEvents envelope put back together from a binary-mode record: every `ce_*`
    /// header is an attribute (`dartwingseq` as a number), `content-type` is
    /// `datacontenttype`, the value is `data`. `None` when it has no `ce_id` or its value is
    /// not JSON.
    pub fn envelope(&self) -> Option<Value> {
        let mut env = serde_json::Map::new();
        for (name, value) in &self.headers {
            if name == "content-type" {
                env.insert("datacontenttype".into(), Value::String(value.clone()));
            } else if let Some(attr) = name.strip_prefix("ce_") {
                let v = match attr {
                    "dartwingseq" => Value::from(value.parse::<i64>().ok()?),
                    _ => Value::String(value.clone()),
                };
                env.insert(attr.to_string(), v);
            }
        }
        env.get("id")?;
        env.insert("data".into(), self.json()?);
        Some(Value::Object(env))
    }
}

/// Reads every partition of some topics, without a consumer group.
pub struct EventReader {
    consumer: Arc<StreamConsumer>,
}

impl EventReader {
    /// Opens a reader on `topics` at `brokers`. Fails if a topic does not exist.
    pub async fn open(
        brokers: &str,
        topics: &[String],
        from: StartAt,
    ) -> Result<EventReader, KafkaClientError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", "dartwing-gateway-reader")
            // Needed by librdkafka's consumer API; no group is joined (partitions are assigned
            // here) and nothing is committed.
            .set("group.id", "dartwing-gateway-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A live feed: answer fetches quickly (brokers that hold a fetch for its whole
            // wait even when data is there, as tansu does, would add this to every event).
            .set("fetch.wait.max.ms", "20")
            .set("reconnect.backoff.max.ms", "1000")
            .create()?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let topics = topics.to_vec();
        let assignment = tokio::task::spawn_blocking(move || -> Result<_, KafkaClientError> {
            let timeout = Duration::from_secs(10);
            let mut tpl = TopicPartitionList::new();
            for topic in &topics {
                let md = c.fetch_metadata(Some(topic.as_str()), timeout)?;
                let partitions: Vec<i32> = md
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if partitions.is_empty() {
                    return Err(KafkaClientError::MissingTopic {
                        topic: topic.clone(),
                    });
                }
                for p in partitions {
                    let offset = match from {
                        StartAt::Beginning => Offset::Beginning,
                        // The end as of now, resolved here so nothing produced after `open`
                        // returns can be skipped.
                        StartAt::End => Offset::Offset(c.fetch_watermarks(topic, p, timeout)?.1),
                    };
                    tpl.add_partition_offset(topic, p, offset)?;
                }
            }
            Ok(tpl)
        })
        .await??;
        consumer.assign(&assignment)?;
        Ok(EventReader { consumer })
    }

    /// The next record from any partition (each partition's records in order).
    pub async fn next(&self) -> Result<Record, KafkaClientError> {
        let m = self.consumer.recv().await?;
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        })
    }
}

/// Feeds `hub` from the event topics until `shutdown`: every node runs this when Kafka is
/// configured (the relay then publishes only to Kafka, so each event reaches each node's hub
/// exactly once, by this path). `ready` turns true once the reader is positioned.
pub async fn feed_hub(
    brokers: String,
    topics: Vec<String>,
    hub: Hub,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    'open: loop {
        let reader = tokio::select! {
            r = EventReader::open(&brokers, &topics, StartAt::End) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event topics yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue 'open;
            }
        };
        ready.store(true, Ordering::Relaxed);
        loop {
            let record = tokio::select! {
                r = reader.next() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match record {
                Ok(rec) => {
                    let parsed = rec
                        .envelope()
                        .and_then(|env| Some((from_envelope(&env)?, env)));
                    let Some((stored, envelope)) = parsed else {
                        tracing::warn!(topic = %rec.topic, offset = rec.offset, "not one of our events; skipped");
                        continue;
                    };
                    let ev = Arc::new(PublishedEvent { envelope, stored });
                    // The hub never fails: it only fans out in memory.
                    let _ = hub.publish(std::slice::from_ref(&ev)).await;
                }
                // librdkafka retries transient broker errors itself; log and keep reading.
                Err(e) => {
                    tracing::warn!(error = %e, "reading the event topics");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
