#!/usr/bin/env bash
# Separate virtualenv with anomalib 2.7 (PyPI) for benchmarks/anomalib_reference.py.
#
#   bash benchmarks/setup_anomalib_venv.sh [VENV]     # VENV defaults to ../anomalib_venv (beside the repo)
#
# Kept apart from the project's .venv: anomalib requires opencv-python-headless, which clashes with the
# project's opencv-python. Plain pip (not uv): on these machines pip takes torch 2.14.1 / torchvision
# 0.29.1 from the local wheel folder. anomalib's base install already brings what PatchCore / PaDiM
# training with its Engine needs (lightning, timm, torchmetrics, scikit-learn, kornia, FrEIA): no extras.
# Then, with the project venv, put the backbone weights in a Hugging Face cache (offline runs):
#   .venv/bin/python benchmarks/save_lite0_hf_cache.py --hf_home ../anomalib_hf_home
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/../anomalib_venv}"

if [[ -e "$venv" && ! -x "$venv/bin/pip" ]]; then
    echo "error: $venv exists but is not a virtualenv; give another path or remove it" >&2
    exit 2
fi

python3 -m venv "$venv"
"$venv/bin/pip" install torch==2.14.1 torchvision==0.29.1
"$venv/bin/pip" install "anomalib==2.7.*"
"$venv/bin/python" - <<'EOF'
"""Smoke check: the modules anomalib_reference.py uses import, and report their versions."""
import anomalib
import lightning
import sklearn
import timm
import torch
from anomalib.engine import Engine  # noqa: F401
from anomalib.models import Padim, Patchcore  # noqa: F401

print(f"anomalib {anomalib.__version__}, torch {torch.__version__}, timm {timm.__version__}, "
      f"lightning {lightning.__version__}, scikit-learn {sklearn.__version__}")
EOF
echo "anomalib venv ready: $venv"
