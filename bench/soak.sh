#!/usr/bin/env bash
# The reliability soak: the `soak_` tests (ignored in `cargo test`) of the traceway-proxy suites,
# in release mode, one at a time, printing their figures. See BENCHMARKS.md, "Reliability suites".
#
#   bash bench/soak.sh                      # every soak test
#   bash bench/soak.sh soak_collector       # only those whose name contains the filter
#   SOAK_PHASE_SECS=30 SOAK_RATE=800 bash bench/soak.sh soak_collector_faults
#
# Knobs of soak_collector_faults: SOAK_PHASE_SECS (seconds per phase, default 8), SOAK_RATE
# (requests per second, default 400), SOAK_CLIENTS (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-soak_}"
echo "# traceway reliability soak — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -sr)"
exec cargo test --release --no-fail-fast -p traceway-proxy -- --ignored "$filter" --nocapture --test-threads=1
