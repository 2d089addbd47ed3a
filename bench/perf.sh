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
# The gateway process of a case: its config (off or otlp) and its `/ui` buffer (`off-ui` and
# `otlp` have it, `TRACEWAY_UI_TRACES=200`), since two cases can share a config.
case_pid() {
  local cfg ui p
  cfg=$([ "${1#off}" = "$1" ] && echo otlp || echo off)
  case "$1" in off-ui | otlp) ui=200 ;; *) ui=0 ;; esac
  for p in $(pgrep -f "serve --config $work/traceway-$cfg.yaml"); do
    tr '\0' '\n' < "/proc/$p/environ" | grep -qx "TRACEWAY_UI_TRACES=$ui" && echo "$p" && return
  done
}
labels=()
for c in "${list[@]}"; do
  # The harness announces each case's round, in the order of `--cases`.
  for _ in $(seq 900); do
    label=$(grep "round 1 — " "$work/harness.log" 2>/dev/null | sed -n "$(( ${#labels[@]} + 1 ))p" || true)
    [ -n "$label" ] && break
    sleep 0.2
  done
  labels+=("${label#*round 1 — }")
  sleep 4
  perf record -F "$hz" -e cpu-clock -p "$(case_pid "$c")" -o "$work/$c.data" -- sleep "$seconds" \
    > /dev/null 2>&1
done
wait "$harness"
for i in "${!list[@]}"; do
  c=${list[$i]}
  label=${labels[$i]}
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
