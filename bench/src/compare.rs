//! Comparing two transports measured in the same invocation: each key figure of the first
//! divided by the same figure of the second (absent where the second is zero).

use serde::Serialize;

use crate::server_cpu::ServerCost;
use crate::stats::{RunStats, Summary};

/// `a / b` for the key figures of two runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub ack: SummaryRatios,
    pub fanout: SummaryRatios,
    pub connect_join: SummaryRatios,
    pub late_connect_join: SummaryRatios,
    pub acked_per_s: Option<f64>,
    pub delivered_per_s: Option<f64>,
    /// Server cost (both runs with `--server-pid`).
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_us_per_ack: Option<f64>,
}

/// `a / b` for each percentile of two latency distributions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SummaryRatios {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
}

impl Ratios {
    pub fn of(a: &RunStats, b: &RunStats) -> Ratios {
        Ratios {
            ack: SummaryRatios::of(&a.latency_us.ack, &b.latency_us.ack),
            fanout: SummaryRatios::of(&a.latency_us.fanout, &b.latency_us.fanout),
            connect_join: SummaryRatios::of(&a.latency_us.connect_join, &b.latency_us.connect_join),
            late_connect_join: SummaryRatios::of(
                &a.latency_us.late_connect_join,
                &b.latency_us.late_connect_join,
            ),
            acked_per_s: ratio(a.throughput.acked_per_s, b.throughput.acked_per_s),
            delivered_per_s: ratio(a.throughput.delivered_per_s, b.throughput.delivered_per_s),
            server_cpu_us_per_delivery: server_ratio(a, b, |c| c.cpu_us_per_delivery),
            server_cpu_us_per_ack: server_ratio(a, b, |c| c.cpu_us_per_ack),
        }
    }
}

impl SummaryRatios {
    pub fn of(a: &Summary, b: &Summary) -> SummaryRatios {
        if a.count == 0 || b.count == 0 {
            return SummaryRatios {
                p50: None,
                p90: None,
                p99: None,
                p99_9: None,
                max: None,
            };
        }
        let r = |x: u64, y: u64| ratio(x as f64, y as f64);
        SummaryRatios {
            p50: r(a.p50, b.p50),
            p90: r(a.p90, b.p90),
            p99: r(a.p99, b.p99),
            p99_9: r(a.p99_9, b.p99_9),
            max: r(a.max, b.max),
        }
    }
}

/// `a / b` for one server-cost figure, when both runs have it.
fn server_ratio(a: &RunStats, b: &RunStats, figure: fn(&ServerCost) -> Option<f64>) -> Option<f64> {
    let (a, b) = (
        a.server.as_ref().and_then(figure)?,
        b.server.as_ref().and_then(figure)?,
    );
    ratio(a, b)
}

/// `a / b`, if that is a finite number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(count: u64, p50: u64, max: u64) -> Summary {
        Summary {
            count,
            p50,
            p90: p50,
            p99: max,
            p99_9: max,
            max,
            mean: p50 as f64,
        }
    }

    #[test]
    fn ratios_divide_the_first_by_the_second() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(0.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        let r = SummaryRatios::of(&summary(10, 500, 2_000), &summary(10, 1_000, 1_000));
        assert_eq!((r.p50, r.max), (Some(0.5), Some(2.0)));
    }

    #[test]
    fn an_empty_side_has_no_ratio() {
        let r = SummaryRatios::of(&summary(0, 0, 0), &summary(10, 1_000, 1_000));
        assert_eq!((r.p50, r.p99_9), (None, None));
    }
}
