#!/usr/bin/env bash
# The test suite: fast unit tests on tiny in-memory models, then the real-model tests (bounded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pytest -q -p no:cacheprovider
status=0
timeout 1800 python3 -m pytest -q -p no:cacheprovider -m slow || status=$?
# exit 5 means no test was selected: not a failure of the slow step
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
