#!/usr/bin/env bash
# The GPU checks, for a machine with CUDA (no test needs one): the learner micro-benchmarks and the pipeline's
# parts on `--device cuda`, then a short CPU/GPU comparison.  Bounded: each command has a timeout and the
# whole script ends within ~5 minutes.  JSON lines on stdout.
#   bash bench/gpu.sh            # from the repository root, with the project's virtualenv active or in .venv
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c 'import torch, sys; print({"cuda": torch.cuda.is_available(), "torch": torch.__version__}); sys.exit(0 if torch.cuda.is_available() else 3)'
timeout 120 "$PY" bench/learner.py --device cuda
timeout 150 "$PY" bench/pipeline.py --device cuda --no-bus --part-seconds 10
timeout 90 "$PY" bench/pipeline.py --device cpu --no-bus --part-seconds 5
