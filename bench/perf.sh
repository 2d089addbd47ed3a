#!/usr/bin/env bash
# Where a request's CPU *time* goes (BENCHMARKS.md, "Profile"): callgrind counts instructions,
# which hides cache misses and the kernel; this samples the running gateway with `perf record -e
# cpu-clock` (a software clock, so it works on VMs without hardware counters) during a
# max-throughput round of each case, and prints microseconds of CPU per request: in all, in the
# kernel, per thread, and for the hottest symbols.
#
#   bash bench/perf.sh [CASES]   # default "off,otlp-noui"; any of off, otlp, otlp-noui, off-ui
#
# Needs perf (Debian's linux-perf); builds nothing: run
# `cargo build --release -p traceway-proxy -p traceway-bench` first. The samples stay in
# target/bench/perf/CASE.data for `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-off,otlp-noui}"
work="$PWD/target/bench/perf"
rm -rf "$work" && mkdir -p "$work"
seconds=12
hz=1999
target/release/traceway-bench --traceway-bin target/release/traceway --cases "$cases" \
  --cold-starts 0 --rounds 1 --max-seconds 25 --rate-seconds 1 --otlp-rate-seconds 1 \
  --stream-seconds 1 --streams-seconds 1 --work-dir "$work" > "$work/harness.log" 2>&1 &
harness=$!
IFS=, read -ra list <<< "$cases"
done_cases=0
for c in "${list[@]}"; do
  # The harness names each case's process by its config and announces each round.
  for _ in $(seq 900); do
    n=$(grep -c "round 1 — " "$work/harness.log" 2>/dev/null || true)
    [ "$n" -gt "$done_cases" ] && break
    sleep 0.2
  done
  sleep 4
  cfg=$([ "${c#off}" = "$c" ] && echo otlp || echo off)
  pid=$(pgrep -f "serve --config $work/traceway-$cfg.yaml" | head -1)
  done_cases=$((done_cases + 1))
  perf record -F "$hz" -e cpu-clock -p "$pid" -o "$work/$c.data" -- sleep "$seconds" > /dev/null 2>&1
done
wait "$harness"
for c in "${list[@]}"; do
  label=$(grep "round 1 — " "$work/harness.log" | sed -n "$(( $(printf '%s\n' "${list[@]}" | grep -nx "$c" | cut -d: -f1) ))p" | sed 's/.*round 1 — //')
  rps=$(grep -F "| $label |" "$work/harness.log" | head -1 | cut -d'|' -f3 | tr -d ' ')
  echo "== $c ($label): $rps req/s in its round"
  perf report -i "$work/$c.data" --stdio --sort comm -n 2>/dev/null | awk -v hz="$hz" -v req="$rps" -v s="$seconds" \
    '/^ +[0-9.]+%/ {printf "  thread %-18s %7.1f µs/request\n", $3, $2 / hz / (req * s) * 1e6}'
  perf report -i "$work/$c.data" --stdio --sort sym -n 2>/dev/null | awk -v hz="$hz" -v req="$rps" -v s="$seconds" '
    /^ +[0-9.]+%/ { n = $2; total += n; if ($3 == "[k]") kernel += n;
      if (shown < 25) { $1 = ""; $2 = ""; $3 = ""; line[shown++] = sprintf("  %7.2f µs %s", n / hz / (req * s) * 1e6, $0) } }
    END { printf "  all %.1f µs/request, kernel %.1f\n", total / hz / (req * s) * 1e6, kernel / hz / (req * s) * 1e6;
          for (i = 0; i < shown; i++) print line[i] }'
done
