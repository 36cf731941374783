#!/usr/bin/env bash
# The GPU run's one entry (tools/bench/gpu.py): installs what was carried in
# gpu-wheels/ (pydantic where the machine lacks it, CTranslate2), never from
# the network, then measures and writes gpu-figures.tar.gz to the folder given
# (default: $OUT, where a lent machine collects what comes back).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d gpu-wheels ]; then
  python3 -m pip install -q --no-index --find-links gpu-wheels gpu-wheels/*.whl || echo "gpu-wheels: not all installed; gpu.py says what it skips"
fi
PYTHONUNBUFFERED=1 python3 tools/bench/gpu.py --out "${1:-${OUT:?give the output folder}}" "${@:2}"
