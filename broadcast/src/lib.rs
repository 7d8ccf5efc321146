//! Broadcast alerts: audience expansion in batches, per-channel pacing, acknowledgement,
//! timed escalation over a channel ladder, opt-out.
//!
//! Not built yet: this crate only reserves its place in the workspace. Each recipient will walk
//! its own pure state machine from `state-machines`; sending goes through the outbound path of
//! `gateway` via a port defined here.
