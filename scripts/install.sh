#!/usr/bin/env bash
# Installs Bridge-STG into the active Python environment. torch goes first, in its own pip call: a bare `torch`
# requirement would pull a multi-GB CUDA build chosen by the resolver instead of the tested one.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
python -m pip install --quiet --upgrade pip
read -r -a torch_spec <<< "$TORCH_SPEC"  # a space-separated list of requirements
python -m pip install --quiet "${torch_spec[@]}"
python -m pip install --quiet -e ".[test]"
python -c "import torch, transformers, bridge_stg; print(f'torch {torch.__version__}, transformers {transformers.__version__}, bridge_stg {bridge_stg.__version__}')"
