//! Log set-up: `tracing` to stderr with a `Targets` filter (`info`, `info,gateway=debug`).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Installs the subscriber once; an invalid filter falls back to `info` with a warning.
pub fn init(filter: &str) {
    let (targets, bad) = match filter.parse::<Targets>() {
        Ok(t) => (t, false),
        Err(_) => ("info".parse::<Targets>().expect("static filter"), true),
    };
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(targets)
        .try_init();
    if bad {
        tracing::warn!(filter, "invalid log filter; using `info`");
    }
}
