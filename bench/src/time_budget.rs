//! `versus`'s default `--timeout`: a bound on the whole invocation that grows with what it
//! runs, so that no command needs an override however many servers, bots, messages or sweep
//! steps it has. It is generous on purpose (a bound against a hang, not a target): signing
//! the bots up once, then per server run a fixed allowance (starting and stopping a process,
//! closing, lingering) plus connecting its bots and three times its sending time (a server
//! that falls behind delivers the rest after the last send), and for a sweep each step of each
//! server at its fixed length.

use crate::plan::Plan;
use crate::sweep::{DRAIN, GRACE, SweepArgs};

/// Per server run: start, sign in, close, stop, linger.
const PER_RUN_SECS: f64 = 30.0;
/// Bots connected and joined per second, at the least.
const CONNECTS_PER_SEC: f64 = 100.0;
/// Bots signed up per second (a password hash each), at the least.
const SIGNUPS_PER_SEC: f64 = 10.0;
/// Acks per second at the least, for sends paced by acks (rate 0).
const ACKS_PER_SEC: f64 = 2_000.0;
/// A server's sending time, times this: what is owed may come well after the last send.
const SENDING_SLACK: f64 = 3.0;

/// Seconds `versus` may take by default: `servers` servers running `plan` at `rate` messages
/// per second per bot (0: paced by acks), or, with `sweep`, each of its steps.
pub fn versus_secs(servers: usize, plan: &Plan, rate: f64, sweep: &SweepArgs) -> u64 {
    let bots = plan.bots() as f64;
    let setup = PER_RUN_SECS + bots / CONNECTS_PER_SEC;
    let per_server = if sweep.sweep {
        let step = f64::from(sweep.step_warmup_secs + sweep.step_secs)
            + (GRACE + DRAIN).as_secs_f64()
            + setup;
        step * f64::from(sweep.sweep_steps)
    } else {
        let sending = if rate > 0.0 {
            f64::from(plan.sends_per_bot()) / rate
        } else {
            plan.sends() as f64 / ACKS_PER_SEC
        };
        setup + SENDING_SLACK * sending
    };
    let signup = PER_RUN_SECS + bots / SIGNUPS_PER_SEC;
    (signup + per_server * servers as f64).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(on: bool, steps: u32) -> SweepArgs {
        SweepArgs {
            sweep: on,
            sweep_steps: steps,
            sweep_factor: 2.0,
            step_secs: 3,
            step_warmup_secs: 1,
            p99_bound_ms: 1000,
            past_saturation_steps: 2,
        }
    }

    #[test]
    fn grows_with_servers_bots_messages_and_steps() {
        // 100 bots, 300 messages each at 100/s: 3 s of sending per server.
        let plan = Plan::new(1, 100, 0, 300).unwrap();
        let one = versus_secs(1, &plan, 100.0, &sweep(false, 7));
        assert_eq!(one, 30 + 10 + 31 + 9);
        let four = versus_secs(4, &plan, 100.0, &sweep(false, 7));
        assert_eq!(four, 40 + 4 * 40);
        // Four servers used to be cut at 120 s.
        assert!(four > 120);
        let longer = Plan::new(1, 100, 0, 3_000).unwrap();
        assert!(versus_secs(4, &longer, 100.0, &sweep(false, 7)) > four);
        let bigger = Plan::new(10, 100, 0, 300).unwrap();
        assert!(versus_secs(4, &bigger, 100.0, &sweep(false, 7)) > four);
        // A sweep: 7 steps of (1 + 3 + 1 + 3 + 31) s per server.
        assert_eq!(versus_secs(4, &plan, 1.0, &sweep(true, 7)), 40 + 4 * 7 * 39);
        // Paced by acks: 30,000 sends at 2,000 acks/s.
        assert_eq!(versus_secs(1, &plan, 0.0, &sweep(false, 7)), 40 + 31 + 45);
    }
}
