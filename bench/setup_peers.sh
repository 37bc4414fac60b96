#!/usr/bin/env bash
# Creates one virtualenv per peer tracer for bench/langchain_overhead.py, under bench/.envs/<name>.
# Each gets the same langchain-core as the project's .venv, so only the tracer differs.
#   bash bench/setup_peers.sh            # both peers
#   bash bench/setup_peers.sh langfuse   # one peer
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
CORE_VERSION="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("langchain-core"))')"
PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(openinference langfuse)

for peer in "${PEERS[@]}"; do
  case "$peer" in
    openinference)
      packages=(openinference-instrumentation-langchain opentelemetry-sdk opentelemetry-exporter-otlp-proto-http) ;;
    langfuse)
      packages=(langfuse) ;;
    *) echo "unknown peer: $peer (openinference, langfuse)" >&2; exit 2 ;;
  esac
  env_dir="bench/.envs/$peer"
  if [ ! -x "$env_dir/bin/python" ]; then
    "$PYTHON" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  fi
  "$env_dir/bin/python" -m pip install --quiet "langchain-core==$CORE_VERSION" "${packages[@]}"
  echo "$peer: $("$env_dir/bin/python" -m pip freeze | grep -iE '^(langchain-core|langfuse|openinference-instrumentation-langchain|opentelemetry-sdk)==' | tr '\n' ' ')"
done
