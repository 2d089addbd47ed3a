#!/usr/bin/env bash
# End-to-end check against a real Arize Phoenix (from PyPI): a call through the proxy with the
# `arize_phoenix` callback must show up in Phoenix, read back through its REST API, as an LLM
# span with its messages and token counts. Not part of `cargo test` (Phoenix is a large Python
# install); run it as `bash scripts/phoenix-check.sh`. Set PHOENIX_VENV to reuse a virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PHOENIX_VENV:-target/phoenix-venv}
if [ ! -x "$venv/bin/phoenix" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q arize-phoenix
fi
cargo build -q -p traceway-proxy
work=$(mktemp -d)
phoenix_port=16006
proxy_port=14999
cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "${phoenix_pid:-}" ] && kill "$phoenix_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

PHOENIX_WORKING_DIR="$work" PHOENIX_PORT=$phoenix_port PHOENIX_GRPC_PORT=14317 PHOENIX_HOST=127.0.0.1 \
  "$venv/bin/phoenix" serve >"$work/phoenix.log" 2>&1 &
phoenix_pid=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$phoenix_port/healthz" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$phoenix_port/healthz" >/dev/null || { echo "Phoenix did not start"; cat "$work/phoenix.log"; exit 1; }

cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: m
    litellm_params:
      model: mock/m
litellm_settings:
  callbacks: ["arize_phoenix"]
general_settings:
  ui: false
YAML
PHOENIX_COLLECTOR_ENDPOINT="http://127.0.0.1:$phoenix_port" \
  target/debug/traceway serve --config "$work/config.yaml" --port $proxy_port >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$proxy_port/health/liveliness" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$proxy_port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"m","messages":[{"role":"user","content":"Hello Phoenix"}]}' >/dev/null
kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=
for _ in $(seq 1 50); do
  spans=$(curl -sf "http://127.0.0.1:$phoenix_port/v1/projects/default/spans?limit=50" || true)
  echo "$spans" | grep -q '"span_kind":"LLM"' && break
  sleep 0.2
done
SPANS="$spans" python3 - <<'PY'
import json, os
spans = json.loads(os.environ["SPANS"])["data"]
llm = [s for s in spans if s["span_kind"] == "LLM"]
assert llm, f"no LLM span in Phoenix: {[s['name'] for s in spans]}"
a = llm[0]["attributes"]
assert a["llm.input_messages.0.message.content"] == "Hello Phoenix", a
assert a["llm.output_messages.0.message.role"] == "assistant", a
assert a["llm.token_count.total"] == a["llm.token_count.prompt"] + a["llm.token_count.completion"] > 0, a
assert any(s["name"] == "raw_gen_ai_request" for s in spans), "the attempt span arrived too"
print("phoenix: an LLM span with messages and token counts arrived")
print("1 passed, 0 failed")
PY
