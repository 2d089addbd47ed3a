#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md in one command: builds the release `traceway` and
# `traceway-bench` binaries into target/release, copies them to target/bench/ (so that another
# build cannot replace them mid-run), then runs the harness. All traffic stays on 127.0.0.1.
#
#   bench/run.sh                      # direct to mock, a bare forwarder in front of it,
#                                     # Traceway tracing off, Traceway OTLP on (about 5 minutes
#                                     # with the defaults, 7 with LiteLLM; add nginx with
#                                     # --cases direct,forwarder,nginx,off,otlp)
#   bench/run.sh --with-litellm       # also LiteLLM's proxy with its otel callback (installed
#                                     # from PyPI into target/bench/litellm-venv by bench/litellm.sh)
#   bench/run.sh --quick              # a few seconds, to check the harness itself
#   bench/run.sh --auth               # virtual-key auth: no auth vs master key vs virtual keys
#                                     # (SQLite, PostgreSQL, PostgreSQL + Redis), ~4 minutes;
#                                     # run `eval "$(.ci/services)"` first for the PostgreSQL and
#                                     # Redis cases (left out, with a note, without them)
#
# Any other option goes to the harness (`target/release/traceway-bench --help`). The report is
# printed and written to target/bench/report.md (target/bench/auth-report.md with --auth).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
out=target/bench/report.md
for a in "$@"; do
  if [ "$a" = "--with-litellm" ]; then
    # A failed install is reported by the harness ("left out") rather than stopping the run.
    if bench/litellm.sh; then args+=("--with-litellm"); else
      echo "bench/run.sh: installing LiteLLM failed; running without it" >&2
      args+=("--with-litellm" "--litellm-bin" "/nonexistent/litellm")
    fi
  elif [ "$a" = "--auth" ]; then
    # 5 rounds of 5 s per case, then 10 s at 1,000 req/s each; later options override these.
    out=target/bench/auth-report.md
    args=("--auth" "--rounds" "5" "--rate-seconds" "10" "${args[@]}")
  else
    args+=("$a")
  fi
done

cargo build --release -p traceway-proxy -p traceway-bench
mkdir -p target/bench
cp target/release/traceway target/release/traceway-bench target/bench/
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec target/bench/traceway-bench \
  --traceway-bin target/bench/traceway \
  --out "$out" \
  "${args[@]}"
