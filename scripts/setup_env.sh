#!/usr/bin/env bash
# Creates .venv (once) and installs monai_das with everything its bundles and tests use, on the CPU build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# constraints.txt pins torch==2.13.0 (CPU); an unpinned torch would pull several GB of CUDA wheels.
python -m pip install -q -c constraints.txt -e ".[test]"
# medmnist's own dependencies pull torchvision and a CUDA torch: only its dataset metadata is needed.
python -m pip install -q --no-deps "medmnist==3.0.2"
python -c "import torch, monai, monai_das; print('torch', torch.__version__, '| monai', monai.__version__, '| monai_das', monai_das.__version__)"
