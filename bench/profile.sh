#!/usr/bin/env bash
# Instructions per proxied request, from callgrind (BENCHMARKS.md, "Profile"): runs the harness
# with the gateway under valgrind, switches instrumentation on for 12 s of a max-throughput round,
# and divides the instructions counted by the requests `/metrics` saw in that window.
#
#   bash bench/profile.sh [CASE] [BINARY]   # CASE: off | otlp | otlp-noui | off-ui (default otlp)
#
# Needs valgrind (callgrind_control, callgrind_annotate) and curl; builds nothing: run
# `cargo build --release -p traceway-proxy -p traceway-bench` first. Prints one line; the
# profile stays in target/bench/profile-CASE/ for `callgrind_annotate --inclusive=yes`.
set -euo pipefail
cd "$(dirname "$0")/.."
case_name="${1:-otlp}"
bin="$(realpath "${2:-target/release/traceway}")"
work="$PWD/target/bench/profile-$case_name"
rm -rf "$work" && mkdir -p "$work"
printf '#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=%s/cg.%%p.out %s "$@"\n' \
  "$work" "$bin" > "$work/vg.sh"
chmod +x "$work/vg.sh"
target/release/traceway-bench --traceway-bin "$work/vg.sh" --cases "$case_name" --cold-starts 0 \
  --rounds 1 --concurrency 8 --max-seconds 30 --rate 50 --rate-seconds 1 --otlp-rate-seconds 1 \
  --stream-rate 10 --stream-seconds 1 --streams 8 --streams-seconds 1 --warmup-seconds 6 \
  --work-dir "$work" > "$work/harness.log" 2>&1 &
harness=$!
for _ in $(seq 600); do grep -q "round 1" "$work/harness.log" 2>/dev/null && break; sleep 0.2; done
sleep 3
pid=$(pgrep -f "valgrind.*callgrind.*$work" | head -1)
port=$(tr '\0' ' ' < "/proc/$pid/cmdline" | sed -E 's/.*--port ([0-9]+).*/\1/')
requests() { curl -s "localhost:$port/metrics" | awk '/^traceway_proxy_requests_total/ {s += $2} END {print s}'; }
before=$(requests)
callgrind_control -i on "$pid" > /dev/null
sleep 12
callgrind_control -i off "$pid" > /dev/null
after=$(requests)
wait "$harness"
total=$(callgrind_annotate "$(ls "$work"/cg.*.out | head -1)" 2>/dev/null \
  | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "case=$case_name requests=$((after - before)) instructions=$total per_request=$((total / (after - before)))"
