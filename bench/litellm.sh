#!/usr/bin/env bash
# Installs LiteLLM's proxy from PyPI into a virtualenv under target/ (never committed), with the
# OpenTelemetry packages its `otel` callback needs, for `bench/run.sh --with-litellm`.
# Prints the installed version. Re-running reuses the virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench/litellm-venv
if [ ! -x "$venv/bin/litellm" ]; then
  mkdir -p target/bench
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'litellm[proxy]' opentelemetry-api opentelemetry-sdk opentelemetry-exporter-otlp
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("litellm", m.version("litellm"))'
