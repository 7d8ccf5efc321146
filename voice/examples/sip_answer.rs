//! A standalone answering user agent for trying and measuring the SIP core: every dialled
//! number is routed to org `demo`, app `echo`; calls are kept in memory.
//!
//!   cargo run -p voice --example sip_answer -- 127.0.0.1:5060
//!   sipp -sn uac 127.0.0.1:5060 -r 100 -m 1000 -nostdin

use std::sync::Arc;
use std::time::Duration;
use voice::ua::{start, AdmissionConfig, CallState, InMemoryCallStore, StaticRouter, UaConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5060".to_owned())
        .parse()?;
    let store = Arc::new(InMemoryCallStore::new());
    let router = Arc::new(StaticRouter::new().with_fallback("demo", "echo"));
    let config = UaConfig {
        bind,
        admission: AdmissionConfig {
            max_calls: 100_000,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let server = start(config, router, Arc::clone(&store) as _).await?;
    println!("listening on {} (UDP and TCP)", server.local_addr());
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => println!(
                "active {} answered {} ended {}",
                server.active_calls(),
                store.count(CallState::Answered),
                store.ended()
            ),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
