#!/usr/bin/env bash
# The benchmark of BENCHMARKS.md in one command: builds the release `traceway` and
# `traceway-bench` binaries into target/, then runs the harness (about 4 minutes with the
# defaults, 6 with LiteLLM). All traffic stays on 127.0.0.1.
#
#   bench/run.sh                      # direct to mock, Traceway tracing off, Traceway OTLP on
#   bench/run.sh --with-litellm       # also LiteLLM's proxy with its otel callback (installed
#                                     # from PyPI into target/bench/litellm-venv by bench/litellm.sh)
#   bench/run.sh --quick              # a few seconds, to check the harness itself
#
# Any other option goes to the harness (`target/release/traceway-bench --help`). The report is
# printed and written to target/bench/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
  if [ "$a" = "--with-litellm" ]; then
    # A failed install is reported by the harness ("left out") rather than stopping the run.
    if bench/litellm.sh; then args+=("--with-litellm"); else
      echo "bench/run.sh: installing LiteLLM failed; running without it" >&2
      args+=("--with-litellm" "--litellm-bin" "/nonexistent/litellm")
    fi
  else
    args+=("$a")
  fi
done

cargo build --release -p traceway-proxy -p traceway-bench
mkdir -p target/bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec target/release/traceway-bench \
  --traceway-bin target/release/traceway \
  --out target/bench/report.md \
  "${args[@]}"
