//! Router selection cost: how long `Router::pick` takes per request with 1 and with 10
//! deployments in a group, for each strategy. Run with `cargo bench -p traceway --bench router`;
//! results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use traceway::router::{Router, RouterSettings, RoutingStrategy, SystemClock, ThreadRandom};
use traceway::{Deployment, DeploymentConfig};

fn group(n: usize) -> Vec<Arc<Deployment>> {
    (0..n)
        .map(|i| {
            Arc::new(
                Deployment::new(DeploymentConfig {
                    model_name: "g".into(),
                    model: format!("mock/m{i}"),
                    rpm: Some(1_000_000_000),
                    weight: Some(1.0 + i as f64),
                    ..DeploymentConfig::default()
                })
                .unwrap(),
            )
        })
        .collect()
}

fn main() {
    let iterations = 1_000_000u32;
    println!("| strategy | deployments | ns per pick |");
    println!("|---|---|---|");
    for strategy in [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::LatencyBased,
        RoutingStrategy::UsageBased,
    ] {
        for n in [1, 10] {
            let router = Router::new(
                RouterSettings {
                    strategy,
                    ..RouterSettings::default()
                },
                Arc::new(SystemClock),
                Arc::new(ThreadRandom),
            );
            let deployments = group(n);
            for _ in 0..10_000 {
                black_box(router.pick("g", &deployments).unwrap());
            }
            let start = Instant::now();
            for _ in 0..iterations {
                // The in-flight guard is dropped at once, as a finished call would.
                black_box(router.pick("g", black_box(&deployments)).unwrap());
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
            println!("| {strategy:?} | {n} | {ns:.0} |");
        }
    }
}
