//! What one recipient needs next, decided from its progress alone (pure; the runtime reads
//! the progress, acts, and steps the recipient machine).
//!
//! The ladder's `after_secs` are offsets on a timeline: rung `k` goes out
//! `after[k] − after[last]` seconds after the last rung sent, so a rung the recipient cannot
//! be reached on (no address, channel not configured, outside a window) is passed over
//! without delaying the next. The first reachable rung goes out at once; when its send
//! fails for good the next one is due at once too. After the last rung the recipient has
//! `ack_window_secs` to acknowledge. Quiet hours hold a non-critical send until they end in
//! the recipient's zone. Without acknowledgement only the first reachable rung goes out, and
//! the next one only if that send fails.

use crate::spec::Spec;
use jiff::tz::TimeZone;
use state_machines::RecipientState;

/// A recipient's progress as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its state.
    pub state: RecipientState,
    /// The last rung sent.
    pub last_step: Option<u32>,
    /// When that rung was sent, Unix ms.
    pub last_sent_at: Option<i64>,
    /// Whether any rung's message was not a failure.
    pub delivered_any: bool,
    /// Whether the last rung's message failed for good.
    pub last_failed: bool,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send rung `step`; the recipient is due again at `next_at` (`None`: never).
    Send {
        /// The rung.
        step: u32,
        /// When to look again.
        next_at: Option<i64>,
    },
    /// Nothing yet; due again at `until`.
    Wait {
        /// Unix ms.
        until: i64,
    },
    /// The ladder is over without an acknowledgement.
    Finish {
        /// Whether anything reached the recipient.
        delivered: bool,
    },
    /// Nothing more, ever.
    Idle,
}

/// Decides. `reachable(k)`: whether rung `k` can reach this recipient at all.
pub fn plan(
    spec: &Spec,
    p: &Progress,
    now: i64,
    tz: &TimeZone,
    reachable: &dyn Fn(usize) -> bool,
) -> Action {
    let done_without_ack = p.state == RecipientState::Sent && !spec.require_ack && !p.last_failed;
    if p.state.is_terminal() || done_without_ack {
        return Action::Idle;
    }
    let offset = |k: usize| spec.steps[k].after_secs as i64 * 1000;
    let from = p.last_step.map_or(0, |l| l as usize + 1);
    let Some(k) = (from..spec.steps.len()).find(|&k| reachable(k)) else {
        return match p.last_sent_at {
            None => Action::Finish { delivered: false },
            Some(t) => {
                let end = t + spec.ack_window_secs as i64 * 1000;
                if now >= end || p.last_failed {
                    Action::Finish {
                        delivered: p.delivered_any,
                    }
                } else {
                    Action::Wait { until: end }
                }
            }
        };
    };
    if let (Some(l), Some(t), false) = (p.last_step, p.last_sent_at, p.last_failed) {
        let due = t + offset(k) - offset(l as usize);
        if due > now {
            return Action::Wait { until: due };
        }
    }
    if !spec.critical {
        if let Some(until) = spec.quiet.and_then(|q| q.held_until(now, tz)) {
            return Action::Wait { until };
        }
    }
    let next_at = if !spec.require_ack {
        None
    } else if k + 1 < spec.steps.len() {
        Some(now + offset(k + 1) - offset(k))
    } else {
        Some(now + spec.ack_window_secs as i64 * 1000)
    };
    Action::Send {
        step: k as u32,
        next_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quiet::QuietHours;
    use crate::spec::{Step, StepSpec};
    use state_machines::Channel;

    fn spec(offsets: &[u64], require_ack: bool) -> Spec {
        Spec {
            steps: offsets
                .iter()
                .map(|&after_secs| StepSpec {
                    channel: Channel::Sms,
                    after_secs,
                    content: Step::default(),
                })
                .collect(),
            require_ack,
            critical: false,
            ack_window_secs: 60,
            quiet: None,
            timezone: "UTC".into(),
        }
    }

    fn fresh() -> Progress {
        Progress {
            state: RecipientState::Pending,
            last_step: None,
            last_sent_at: None,
            delivered_any: false,
            last_failed: false,
        }
    }

    fn sent(step: u32, at: i64) -> Progress {
        Progress {
            state: RecipientState::Sent,
            last_step: Some(step),
            last_sent_at: Some(at),
            delivered_any: true,
            last_failed: false,
        }
    }

    const ALL: &dyn Fn(usize) -> bool = &|_| true;

    #[test]
    fn the_ladder_escalates_on_its_offsets_then_waits_for_the_ack_window() {
        let s = spec(&[0, 300, 600], true);
        let utc = TimeZone::UTC;
        assert_eq!(
            plan(&s, &fresh(), 1_000, &utc, ALL),
            Action::Send {
                step: 0,
                next_at: Some(301_000)
            }
        );
        assert_eq!(
            plan(&s, &sent(0, 1_000), 200_000, &utc, ALL),
            Action::Wait { until: 301_000 }
        );
        assert_eq!(
            plan(&s, &sent(0, 1_000), 301_000, &utc, ALL),
            Action::Send {
                step: 1,
                next_at: Some(601_000)
            }
        );
        assert_eq!(
            plan(&s, &sent(1, 301_000), 601_000, &utc, ALL),
            Action::Send {
                step: 2,
                next_at: Some(661_000)
            }
        );
        assert_eq!(
            plan(&s, &sent(2, 601_000), 660_999, &utc, ALL),
            Action::Wait { until: 661_000 }
        );
        assert_eq!(
            plan(&s, &sent(2, 601_000), 661_000, &utc, ALL),
            Action::Finish { delivered: true }
        );
    }

    #[test]
    fn unreachable_rungs_are_passed_over_without_delay_and_nothing_reachable_finishes() {
        let s = spec(&[0, 300, 600], true);
        let utc = TimeZone::UTC;
        let not_first = |k: usize| k != 0;
        assert_eq!(
            plan(&s, &fresh(), 5, &utc, &not_first),
            Action::Send {
                step: 1,
                next_at: Some(300_005)
            }
        );
        let only_first = |k: usize| k == 0;
        // After rung 0, rung 2 is the next reachable: due 600 s after rung 0, not 300 s.
        let skip_middle = |k: usize| k != 1;
        assert_eq!(
            plan(&s, &sent(0, 0), 300_000, &utc, &skip_middle),
            Action::Wait { until: 600_000 }
        );
        // Nothing after rung 0 reachable: its ack window (60 s) has passed.
        assert_eq!(
            plan(&s, &sent(0, 0), 30_000, &utc, &only_first),
            Action::Wait { until: 60_000 }
        );
        assert_eq!(
            plan(&s, &sent(0, 0), 300_000, &utc, &only_first),
            Action::Finish { delivered: true }
        );
        assert_eq!(
            plan(&s, &fresh(), 5, &utc, &|_| false),
            Action::Finish { delivered: false }
        );
    }

    #[test]
    fn a_failed_rung_escalates_at_once() {
        let s = spec(&[0, 300], true);
        let mut p = sent(0, 0);
        p.last_failed = true;
        p.delivered_any = false;
        assert_eq!(
            plan(&s, &p, 10, &TimeZone::UTC, ALL),
            Action::Send {
                step: 1,
                next_at: Some(60_010)
            }
        );
        let mut last = sent(1, 10);
        last.last_failed = true;
        last.delivered_any = false;
        assert_eq!(
            plan(&s, &last, 20, &TimeZone::UTC, ALL),
            Action::Finish { delivered: false }
        );
    }

    #[test]
    fn without_ack_only_the_first_reachable_rung_goes_out() {
        let s = spec(&[0, 300], false);
        assert_eq!(
            plan(&s, &fresh(), 0, &TimeZone::UTC, ALL),
            Action::Send {
                step: 0,
                next_at: None
            }
        );
        assert_eq!(
            plan(&s, &sent(0, 0), 1_000_000, &TimeZone::UTC, ALL),
            Action::Idle
        );
    }

    #[test]
    fn quiet_hours_hold_unless_critical_and_terminals_are_idle() {
        let mut s = spec(&[0], true);
        s.quiet = Some(QuietHours::parse("00:00", "06:00").unwrap());
        let at_1am = 3_600_000;
        assert_eq!(
            plan(&s, &fresh(), at_1am, &TimeZone::UTC, ALL),
            Action::Wait {
                until: 6 * 3_600_000
            }
        );
        s.critical = true;
        assert!(matches!(
            plan(&s, &fresh(), at_1am, &TimeZone::UTC, ALL),
            Action::Send { step: 0, .. }
        ));
        for t in RecipientState::ALL.into_iter().filter(|t| t.is_terminal()) {
            let p = Progress {
                state: t,
                ..fresh()
            };
            assert_eq!(plan(&s, &p, 0, &TimeZone::UTC, ALL), Action::Idle);
        }
    }
}
