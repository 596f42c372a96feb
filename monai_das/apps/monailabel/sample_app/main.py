"""MONAI Label app serving one monai_das classification bundle (infer: probabilities + picked slices; train).

    cp -r <this folder> my_app          # the server writes logs/ and model/ into the app folder
    python -c "import secrets; print(secrets.token_urlsafe(32))" > token && chmod 600 token
    MONAI_LABEL_SESSIONS=false python -m monailabel.main start_server --app my_app --studies my_studies \\
        --host 127.0.0.1 --port 8000 --uvicorn_app monai_das.apps.monailabel.server:app \\
        --conf bundle bundles/vesselmnist3d_das_classification --conf token_file token [--conf ckpt model.pt]

The app refuses to start without ``--uvicorn_app monai_das.apps.monailabel.server:app``: that guard
(:mod:`monai_das.apps.monailabel.server`) serves only ``/info/``, ``/infer``, the datastore and ``/train``, checks the
token, and runs inference and training off the event loop (:mod:`monai_das.apps.monailabel.access` lists who may call
what).

``--conf`` keys:

- ``bundle`` (required): the bundle folder (``configs/train.json``, ``configs/metadata.json``).
- ``ckpt``: a checkpoint to serve (default ``<bundle>/models/model.pt`` when it exists). A checkpoint trained by
  this app (``<model_dir>/<name>.pt``) takes precedence once it exists.
- ``name``: the model name in the URLs (default the bundle folder's name).
- ``model_dir``: where trained checkpoints and training runs go (default ``<app>/model``).
- ``labels_csv``: ``image,label`` rows for training (default ``<studies>/labels.csv``); an image's info field
  ``label`` wins over it.
- ``overrides``: JSON ``{key: value}`` for the bundle's ``train.json`` (e.g. ``'{"sampler_name": "dps"}'``), used
  for both inference and training.
- ``max_epochs``: default epochs of a training run (10); ``max_train_epochs``: the most a request may ask for (100).
- ``token_file``: a file holding the token (at least 16 characters, not readable by other users) that the datastore
  and training endpoints require (``Authorization: Bearer <token>``); without it they are off.
- ``open_infer``: ``true`` lets anyone who reaches the port call ``/infer`` without the token (default: token).
- ``infer_queue``: how many inference requests may wait for the worker (8; more are answered 503).

Requests: ``POST /infer/<name>?image=<id>`` (or ``-F file=@clip.mp4``; ``image`` may also be a path inside the
studies folder, e.g. a DICOM series folder; ``params`` may set ``device`` and ``slice_plane``, nothing else);
``POST /train/<name>[?run_sync=true]`` with a JSON body ``{"max_epochs": 5}`` (options: ``max_epochs``, ``device``,
``pretrained``, ``val_every``; the training runs in a child process, one at a time: a second one is 409; ``GET
/train/`` tells its status, ``DELETE /train/`` stops it). The trained model replaces the served one only when its
validation AUC is higher (the answer's ``published`` and ``quality_gate`` say which). An image's class for training:
``PUT /datastore/image/info?image=<id>`` with the form field ``info={"label": "<class>"}``, or labels.csv. A refused
request gets a 4xx answer with a JSON ``detail``; the server's administrator alone sets bundle overrides (``--conf
overrides``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import sys
from pathlib import Path

from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp

from monai_das.apps.monailabel import DASClassificationInferTask, DASClassificationTrainTask
from monai_das.apps.monailabel.jobs import InferenceQueue, TrainingRunner
from monai_das.apps.monailabel.request_checks import (
    RequestError,
    check_int,
    check_keys,
    check_name,
    confine,
    http_errors,
    resolve_image,
)
from monai_das.apps.monailabel.uploads import UploadFolder

logger = logging.getLogger(__name__)

#: added to MONAI Label's file patterns: videos and single DICOM files (multi-frame cines)
EXTRA_EXTENSIONS = ["*.mp4", "*.avi", "*.mov", "*.mkv", "*.dcm"]
#: what an inference request may hold (``device`` and ``slice_plane`` are checked by the task; the keys that MONAI
#: Label's batch inference adds reach no config); anything else is refused
INFER_KEYS = ("model", "image", "device", "slice_plane")
#: the guard module that must be in front of the app (``--uvicorn_app monai_das.apps.monailabel.server:app``)
GUARD = "monai_das.apps.monailabel.server"


class ConfinedDatastore(LocalDatastore):
    """MONAI Label's local datastore, confined to the studies folder.

    MONAI Label 0.8.5 joins an uploaded image's id (``PUT /datastore/image?image=``) and a label's tag to the folder as
    they are, and reads, serves and deletes an image's file through ``realpath``: a study that is a link to a file
    elsewhere is read, downloaded and *deleted* there. Here ids and tags must be plain names, uploads one of the
    datastore's file types, image info a JSON object, and every file read or deleted by id must resolve inside the
    studies folder (403 otherwise, as on the path route); a refused upload's file is removed at once."""

    def __init__(self, datastore_path: str, **kwargs) -> None:
        self.root = os.path.realpath(datastore_path)
        super().__init__(datastore_path, **kwargs)

    def _check_file(self, filename: str, what: str) -> None:
        name = os.path.basename(filename)
        if not any(fnmatch.fnmatch(name, pattern) for pattern in self._extensions):
            raise RequestError(f"{what} '{name}' is not one of the datastore's file types {self._extensions}.")

    @staticmethod
    def _check_info(info, what: str) -> None:
        if not isinstance(info, dict):
            raise RequestError(f"{what} must be a JSON object, got {type(info).__name__}: {str(info)[:80]}.")

    def get_image_uri(self, image_id: str) -> str:
        uri = super().get_image_uri(image_id)
        if uri:
            confine(uri, [self.root], f"datastore image '{str(image_id)[:80]}'")
        return uri

    def add_image(self, image_id, image_filename, image_info):
        try:
            check_name(image_id, "image id")
            self._check_file(image_filename, "image file")
            self._check_info(image_info, "params")
        except RequestError:
            if os.path.isfile(image_filename):  # MONAI Label's temporary copy of the upload
                os.unlink(image_filename)
            raise
        return super().add_image(image_id, image_filename, image_info)

    def remove_image(self, image_id):
        self.get_image_uri(image_id)  # 403 for a file outside the studies folder
        for tag, label_id in (self.get_labels_by_image_id(image_id) or {}).items():
            confine(self.get_label_uri(label_id, tag), [self.root], f"label '{tag}' of '{image_id}'")
        return super().remove_image(image_id)

    def update_image_info(self, image_id, info):
        self._check_info(info, "info")
        return super().update_image_info(image_id, info)

    def save_label(self, image_id, label_filename, label_tag, label_info):
        check_name(label_tag, "label tag")
        self._check_file(label_filename, "label file")
        return super().save_label(image_id, label_filename, label_tag, label_info)


class DASClassificationApp(MONAILabelApp):
    """One bundle, one infer task and one train task; no active-learning strategy."""

    def __init__(self, app_dir: str, studies: str, conf: dict) -> None:
        if not conf.get("bundle"):
            raise ValueError("start the app with --conf bundle <bundle folder>.")
        bundle = Path(conf["bundle"]).expanduser()
        if not bundle.is_dir() and (Path(app_dir) / bundle).is_dir():
            bundle = Path(app_dir) / bundle
        if not (bundle / "configs" / "train.json").is_file():
            raise FileNotFoundError(f"--conf bundle {conf['bundle']}: no configs/train.json in '{bundle}'.")
        self.bundle = bundle.resolve()
        self.model_name = conf.get("name") or self.bundle.name
        self.model_dir = Path(conf.get("model_dir") or os.path.join(app_dir, "model")).resolve()
        self.trained_ckpt = self.model_dir / f"{self.model_name}.pt"
        ckpt = conf.get("ckpt")
        if ckpt and not Path(ckpt).is_file():
            raise FileNotFoundError(f"--conf ckpt {ckpt}: no such file.")
        self.ckpt = Path(ckpt).resolve() if ckpt else self.bundle / "models" / "model.pt"
        self.overrides = json.loads(conf.get("overrides") or "{}")
        self.max_epochs_limit = check_int(conf.get("max_train_epochs") or 100, "--conf max_train_epochs", 1, 100000)
        self.max_epochs = min(int(conf.get("max_epochs") or 10), self.max_epochs_limit)
        self.labels_csv = Path(conf.get("labels_csv") or os.path.join(studies, "labels.csv"))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"monai_das - {self.model_name}",
            description="Adaptive slice / frame subsampling (DAS) classification: class probabilities and the "
            "slices the network looked at",
            version="0.1.0",
        )
        self.uploads = UploadFolder()
        self.inference = InferenceQueue(check_int(conf.get("infer_queue") or 8, "--conf infer_queue", 1, 1000))
        self.training = TrainingRunner(self.model_dir / "train_logs")

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        extensions = list(settings.MONAI_LABEL_DATASTORE_FILE_EXT)
        extensions += [e for e in EXTRA_EXTENSIONS if e not in extensions]
        return ConfinedDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self):
        paths = [str(self.ckpt), str(self.trained_ckpt)]
        task = DASClassificationInferTask(self.bundle, path=paths, overrides=self.overrides)
        if not task.is_valid():
            logger.warning("no checkpoint yet for %s (%s): it is served once one exists (train it, or pass --conf "
                           "ckpt PATH)", self.model_name, paths)
        return {self.model_name: task}

    def init_trainers(self):
        return {
            self.model_name: DASClassificationTrainTask(
                self.bundle,
                output_path=self.trained_ckpt,
                work_dir=self.model_dir / f"{self.model_name}_train",
                init_paths=[self.ckpt, self.trained_ckpt],
                labels_csv=self.labels_csv,
                overrides=self.overrides,
                max_epochs=self.max_epochs,
                max_epochs_limit=self.max_epochs_limit,
            )
        }

    def init_strategies(self):
        return {}

    def init_scoring_methods(self):
        return {}

    def on_init_complete(self):
        """Refuse to serve without the guard in front (MONAI Label's own endpoints would be open)."""
        guard = sys.modules.get(GUARD)
        if guard is None or not guard.installed():
            raise RuntimeError(f"start the server with --uvicorn_app {GUARD}:app: without it MONAI Label serves its "
                               "model, datastore-delete, scoring and training endpoints to anyone who reaches the "
                               "port (see the README's Security section).")
        super().on_init_complete()

    def check_train_request(self, model: str, body: dict) -> dict:
        """The request a training runs with: ``model`` and the body's checked options.

        Raises:
            RequestError: 404 for an unknown model, 400 for an option that is not allowed or out of range.
        """
        if model not in self._trainers:
            raise RequestError(f"no trainer '{str(model)[:80]}'; available: {sorted(self._trainers)}.", 404)
        check_keys(body, self._trainers[model].options_names, "a training request")
        self._trainers[model].options(body)
        return {**body, "model": model}

    def bundle_path(self, model):
        # MONAI Label puts this folder on a background training's PYTHONPATH, and without it would take a request's
        # "bundle_path" instead: the bundle folder (configs only) is the one trusted answer
        return str(self.bundle)

    def infer(self, request, datastore=None):
        """Inference on a datastore image (by id, or a path inside the studies folder) or an uploaded file; a
        refused request or an unusable input is answered 4xx with a JSON message (``request_checks``)."""
        with http_errors():
            check_keys(request, INFER_KEYS, "an inference request")
            if request.get("model") not in self._infers:
                raise RequestError(f"no model '{str(request.get('model'))[:80]}'; served: {sorted(self._infers)}.", 404)
            store = datastore or self.datastore()
            roots = [] if self.studies.startswith(("http://", "https://")) else [self.studies]
            image = resolve_image(request.get("image"), store.list_images(), store.get_image_uri, roots, self.uploads)
            return super().infer({**request, "image": image}, datastore)

    def train(self, request):
        """Training with the checked options of ``DASClassificationTrainTask.options``; refused requests are 4xx."""
        with http_errors():
            if request.get("model") not in self._trainers:
                raise RequestError(f"no trainer '{str(request.get('model'))[:80]}'; available: "
                                   f"{sorted(self._trainers)}.", 404)
            return super().train(request)
