"""MONAI Label integration: serve and train a monai_das classification bundle from a MONAI Label server.

- :class:`DASClassificationInferTask`: class probabilities plus the slices / frames the sampler picked.
- :class:`DASClassificationTrainTask`: trains the bundle on the datastore's images with a class in their info.
- ``SAMPLE_APP``: the folder of a ready app (``main.py``) to pass as ``--app`` (copy it: the server writes
  ``logs/`` and ``model/`` into the app folder)::

    cp -r "$(python -c 'import monai_das.apps.monailabel as m; print(m.SAMPLE_APP)')" my_app
    MONAI_LABEL_SESSIONS=false python -m monailabel.main start_server --app my_app --studies studies/ \\
        --host 127.0.0.1 --port 8000 --uvicorn_app monai_das.apps.monailabel.server:app \\
        --conf bundle bundles/vesselmnist3d_das_classification --conf ckpt model.pt --conf token_file token

MONAI Label (``monailabel==0.8.5``, installed with ``--no-deps``: see ``scripts/setup_env.sh``) is imported only by
this subpackage, through ``optional_import``: the classes raise on use when it is missing. Requests are untrusted:
:mod:`.server` (the guard the sample app requires) serves only the endpoints of :mod:`.access` and runs the work off
the event loop (:mod:`.jobs`, :mod:`.endpoints`); :mod:`.request_checks` lets through typed options and datastore
images only.
"""

from __future__ import annotations

from pathlib import Path

from .infer import BundlePreprocessd, DASClassificationInferTask, bundle_class_names
from .request_checks import RequestError
from .train import (
    LABEL_KEY,
    LABELS_CSV,
    TRAIN_OPTIONS,
    DASClassificationTrainTask,
    SequenceListDataset,
    datastore_class_labels,
    parse_class_label,
)

#: the sample MONAI Label app (``main.py``) serving one bundle
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"

__all__ = [
    "SAMPLE_APP",
    "DASClassificationInferTask",
    "BundlePreprocessd",
    "bundle_class_names",
    "LABEL_KEY",
    "LABELS_CSV",
    "TRAIN_OPTIONS",
    "RequestError",
    "DASClassificationTrainTask",
    "SequenceListDataset",
    "datastore_class_labels",
    "parse_class_label",
]
