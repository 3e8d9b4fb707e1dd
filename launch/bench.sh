#!/usr/bin/env bash
# The cloakgate benchmark in one command: direct vs mitmdump passthrough vs mitmdump + gateway,
# constant rate (wrk2-style), throughput sweep, HAProxy scale-out, core microbenchmarks.
#
#   launch/bench.sh             paper's parameters: 100 req/s, 2 workers, 50 connections, 2 min per run (~35 min)
#   launch/bench.sh --quick     the whole comparison with short runs (~9 min on 2 cores)
#   launch/bench.sh --smoke     everything for a moment (seconds): checks that it runs
#   launch/bench.sh --help      every option (rate, connections, duration, --profile, ...)
#
# Results: launch/bench/results/<timestamp>/ and launch/bench/results/latest.md.
# Installs matplotlib (plot) and, with --profile, py-spy into .venv when missing; HAProxy from the
# distribution with apt-get when missing and running as root (else the scale-out part is skipped).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/launch/setup"
py="$root/.venv/bin/python"
pipq() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }
if ! "$py" -c "import hdrh" 2>/dev/null; then
  pipq "hdrhistogram>=0.10" || { echo "bench: hdrhistogram is required (pip install hdrhistogram)" >&2; exit 1; }
fi
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  pipq matplotlib || echo "bench: matplotlib not installed; the plot uses the built-in renderer" >&2
fi
for a in "$@"; do
  if [ "$a" = "--profile" ] && [ ! -x "$root/.venv/bin/py-spy" ]; then
    pipq py-spy || echo "bench: py-spy not installed; profiling falls back to cProfile" >&2
  fi
done
cd "$root"
exec "$py" "$root/launch/bench/main.py" "$@"
