#!/usr/bin/env bash
# Build the reference environment used by the Inception parity test and benchmarks/fid.py:
# a separate venv with pytorch-fid (which needs torchvision; PyPI's torchvision does not import beside the CPU torch
# that gpm's own environment uses, so the reference lives apart and is called as a subprocess).
# Usage: scripts/make_ref_venv.sh [DIR]   (default .venv-ref); then export GPM_REF_PYTHON=DIR/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.venv-ref}"
if [ -x "$DIR/bin/python" ] && "$DIR/bin/python" -c "import pytorch_fid, torchvision" 2>/dev/null; then
  echo "$DIR already holds pytorch-fid"; exit 0
fi
python3 -m venv "$DIR"
"$DIR/bin/python" -m pip install -q --upgrade pip
"$DIR/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" pytorch-fid numpy scipy pillow
"$DIR/bin/python" -c "import torch, torchvision, pytorch_fid; print('reference venv:', torch.__version__, torchvision.__version__, pytorch_fid.__version__)"
