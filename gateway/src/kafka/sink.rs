//! The relay's Kafka sink: an idempotent producer (`enable.idempotence=true`, `acks=all`)
//! that sends a whole batch, then awaits every delivery report — pipelined, not one round trip
//! per event. `publish` returns `Ok` only when the broker acknowledged every event, so the
//! relay marks nothing published that Kafka does not hold.
//!
//! Wire format (the CloudEvents Kafka protocol binding, binary content mode): the record's
//! value is the event's `data` (JSON), every other attribute is a `ce_*` header, and
//! `datacontenttype` is the `content-type` header; the key is the conversation id.
//!
//! Order: one conversation's events share a key, hence a partition, and the idempotent
//! producer never reorders or duplicates within a partition in one session. A failed batch
//! (broker down past `delivery_timeout_ms`) is sent again whole by the relay: a consumer may
//! then see an event twice, always with the same `ce_id`, and per key the first copies stay
//! in order.

use super::{topic_for, KafkaClientError};
use crate::config::KafkaConfig;
use crate::relay::{EventSink, PublishedEvent, SinkError, SinkFuture};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Publishes relayed events to Kafka.
pub struct KafkaSink {
    config: KafkaConfig,
    producer: Mutex<FutureProducer>,
}

/// The producer settings every Kafka producer of ours uses (the benchmark's bare producer
/// too, so the comparison is fair).
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", "dartwing-gateway")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        // Come back quickly after a broker outage (librdkafka's default waits up to 10 s).
        .set("reconnect.backoff.max.ms", "1000")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
    c
}

impl KafkaSink {
    /// A sink for `config.brokers` (connects lazily; a broker that is down now is not an
    /// error until a publish times out).
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, KafkaClientError> {
        Ok(KafkaSink {
            producer: Mutex::new(producer_config(config).create()?),
            config: config.clone(),
        })
    }

    fn producer(&self) -> FutureProducer {
        self.producer.lock().expect("not poisoned").clone()
    }

    /// After a failed batch the producer is replaced: a fatal error leaves it unusable, and a
    /// broker that came back (or failed over) may no longer know its idempotence state. The
    /// relay sends the whole batch again through the fresh producer (new producer id), so
    /// nothing is lost; copies that did land before carry the same `ce_id`.
    fn recover(&self, failed: &FutureProducer) {
        if let Some((code, reason)) = failed.client().fatal_error() {
            tracing::warn!(?code, %reason, "kafka producer hit a fatal error");
        }
        match producer_config(&self.config).create() {
            Ok(p) => *self.producer.lock().expect("not poisoned") = p,
            Err(e) => tracing::error!(error = %e, "cannot recreate the kafka producer"),
        }
    }

    async fn send_all(&self, events: &[Arc<PublishedEvent>]) -> Result<(), KafkaError> {
        let producer = self.producer();
        let mut pending = Vec::with_capacity(events.len());
        for ev in events {
            let topic = topic_for(&self.config.topic_prefix, &ev.stored.event_type);
            // Binary content mode: the value is the event's data as-is; the context
            // attributes travel as `ce_*` headers.
            let payload = ev.stored.data.to_string();
            loop {
                let record = FutureRecord::to(&topic)
                    .key(&ev.stored.partition_key)
                    .payload(&payload)
                    .headers(headers(&ev.envelope));
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    // The local queue is full: let deliveries drain, then enqueue again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        self.recover(&producer);
                        return Err(e);
                    }
                }
            }
        }
        let mut first_error = None;
        for delivery in pending {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                Err(_canceled) => KafkaError::Canceled,
            };
            first_error.get_or_insert(error);
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                self.recover(&producer);
                Err(e)
            }
        }
    }
}

/// The CloudEvents Kafka binding's `ce_*` headers: every context attribute of the envelope
/// (`data` excepted), strings as-is, numbers in decimal; plus `content-type`.
pub fn headers(envelope: &Value) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(12);
    let Some(obj) = envelope.as_object() else {
        return h;
    };
    for (name, value) in obj {
        let text = match (name.as_str(), value) {
            ("data", _) | ("datacontenttype", _) | (_, Value::Null) => continue,
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        let key = format!("ce_{name}");
        h = h.insert(Header {
            key: &key,
            value: Some(text.as_bytes()),
        });
    }
    if let Some(ct) = obj.get("datacontenttype").and_then(Value::as_str) {
        h = h.insert(Header {
            key: "content-type",
            value: Some(ct.as_bytes()),
        });
    }
    h
}

impl EventSink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn publish<'a>(&'a self, events: &'a [Arc<PublishedEvent>]) -> SinkFuture<'a> {
        Box::pin(async move {
            self.send_all(events).await.map_err(|e| SinkError {
                sink: "kafka",
                reason: e.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn every_attribute_becomes_a_ce_header() {
        let env = serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "/dartwing/gateway",
            "type": "dartwing.message.received.v1", "time": "2026-11-25T19:00:00.000Z",
            "subject": "messages/m1", "datacontenttype": "application/json",
            "dartwingseq": 7, "partitionkey": "c1", "data": {"x": 1},
        });
        let h = headers(&env);
        let got: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        let find = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(find("ce_id"), Some("e1"));
        assert_eq!(find("ce_specversion"), Some("1.0"));
        assert_eq!(find("ce_type"), Some("dartwing.message.received.v1"));
        assert_eq!(find("ce_source"), Some("/dartwing/gateway"));
        assert_eq!(find("ce_time"), Some("2026-11-25T19:00:00.000Z"));
        assert_eq!(find("ce_subject"), Some("messages/m1"));
        assert_eq!(find("ce_dartwingseq"), Some("7"));
        assert_eq!(find("ce_partitionkey"), Some("c1"));
        assert_eq!(find("content-type"), Some("application/json"));
        assert_eq!(find("ce_data"), None);
    }

    #[test]
    fn a_consumer_puts_the_envelope_back_together() {
        let env = serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "/dartwing/gateway",
            "type": "dartwing.message.received.v1", "time": "2026-11-25T19:00:00.000Z",
            "subject": "messages/m1", "datacontenttype": "application/json",
            "dataschema": "https://dartwing.dev/schemas/events/x.json",
            "dartwingorgid": "o1", "dartwingseq": 7, "partitionkey": "c1",
            "data": {"x": 1, "body": "hi"},
        });
        let record = crate::kafka::consume::Record {
            topic: "dartwing.messages".into(),
            partition: 0,
            offset: 0,
            key: Some("c1".into()),
            headers: headers(&env)
                .iter()
                .map(|h| {
                    let v = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                    (h.key.to_string(), v)
                })
                .collect(),
            payload: env["data"].to_string().into_bytes(),
        };
        assert_eq!(record.envelope(), Some(env));
        let not_ours = crate::kafka::consume::Record {
            headers: vec![],
            ..record
        };
        assert_eq!(not_ours.envelope(), None);
    }
}
