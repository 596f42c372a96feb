"""A MONAI Label train task that trains a monai_das classification bundle on the datastore's labelled images.

MONAI Label datastores hold label *files* (masks); a classification needs one class per image, which this task reads
from two places (the first one wins):

1. the image's info in the datastore: a ``"label"`` field, set for example with
   ``curl -X PUT "$SERVER/datastore/image/info?image=case001" -F 'info={"label": "aneurysm"}'``
   (it is kept in the studies folder's ``datastore_v2.json``);
2. a CSV file (by default ``labels.csv`` in the studies folder) with the columns ``image`` (the image id, i.e. the
   file name without its extension, or the file name) and ``label``.

A label is a class index (``1``, ``"1"``) or a class name of the bundle's ``metadata.json`` (``"aneurysm"``).
Images without a label are left out.

The task runs the bundle's ``configs/train.json`` end to end (with ``train_end_to_end.json``) in-process with
:class:`monai.bundle.ConfigWorkflow` (MONAI Label already runs every training in a subprocess of its own),
overriding ``train_dataset`` / ``val_dataset`` with a :class:`SequenceListDataset` of the labelled images, read and prepared by the bundle's ``inference.json``
``preprocessing``, exactly as at inference, and ``output_dir`` with a work folder. Every class needs
at least one labelled image. Validation: every 5th labelled image of each class (sorted by id), when that leaves every
class in both validation and training; otherwise the training images themselves (a smoke run; its metrics mean
nothing). The bundle's best checkpoint (``model.pt``, by its ``checkpoint_metric``) is
then copied atomically to ``output_path``, the file the infer task loads last, so the next request uses it.

Request options (the JSON body of ``POST /train/<model>?run_sync=true``), each checked (:mod:`.request_checks`):
``max_epochs`` (an integer in [1, 1000]), ``device`` (``cpu``, ``cuda`` or ``cuda:N``), ``pretrained`` (start from
the current checkpoint, default true) and ``val_every`` (default 5: every 5th image validates; 1: validate on the
training images). Any other key is refused: bundle overrides are the administrator's (``--conf overrides``), never a
request's, because a bundle config runs the Python code of its ``$`` expressions.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import optional_import
from torch.utils.data import Dataset

from monai_das.apps.bundle_predictor import bundle_parser
from monai_das.apps.monailabel.infer import bundle_class_names
from monai_das.apps.monailabel.quality_gate import gate
from monai_das.apps.monailabel.request_checks import (
    MAX_EPOCHS,
    check_bool,
    check_device,
    check_int,
    check_keys,
)
from monai_das.handlers import load_checkpoint, release_output

TrainTask, has_monailabel = optional_import("monailabel.interfaces.tasks.train", name="TrainTask", as_type="base")

__all__ = [
    "LABEL_KEY",
    "LABELS_CSV",
    "TRAIN_OPTIONS",
    "parse_class_label",
    "datastore_class_labels",
    "SequenceListDataset",
    "DASClassificationTrainTask",
]

logger = logging.getLogger(__name__)

#: the image-info field holding an image's class
LABEL_KEY = "label"
#: default name of the CSV of ``image,label`` rows in the studies folder
LABELS_CSV = "labels.csv"
#: what a training request may set (typed, checked): anything else is refused
TRAIN_OPTIONS = ("max_epochs", "device", "pretrained", "val_every")
# keys MONAI Label adds to training requests itself: the model name, its bundle path, and in a background run the GPUs
# and the process's rank
_MONAILABEL_KEYS = ("model", "bundle_path", "gpus", "local_rank")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mp4", ".avi", ".mov", ".mkv", ".dcm", ".dicom")


def parse_class_label(value: Any, class_names: Sequence[str]) -> int:
    """A class index from an index (``1``, ``"1"``) or a class name (case-insensitive).

    Raises:
        ValueError: for an index outside ``[0, len(class_names))`` or an unknown name (the message lists the names).
    """
    if isinstance(value, bool):
        raise ValueError(f"class label {value!r} is neither a class index nor a class name of {list(class_names)}.")
    text = str(value).strip()
    names = {n.lower(): i for i, n in enumerate(class_names)}
    if text.lower() in names:
        return names[text.lower()]
    try:
        number = float(text)
        index = int(number) if number.is_integer() else None
    except ValueError:
        index = None
    if index is None or not 0 <= index < len(class_names):
        raise ValueError(f"class label {value!r} is neither a class index in [0, {len(class_names)}) nor a class "
                         f"name of {list(class_names)}.")
    return index


def _image_id(name: str) -> str:
    base = os.path.basename(name.strip())
    for suffix in _IMAGE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _read_labels_csv(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} must have the columns 'image' and 'label'; missing {sorted(missing)} "
                             f"(found {reader.fieldnames}).")
        return {_image_id(row["image"]): row["label"] for row in reader if (row.get("label") or "").strip()}


def datastore_class_labels(
    datastore: Any, class_names: Sequence[str], labels_csv: str | os.PathLike | None = None, key: str = LABEL_KEY
) -> dict[str, int]:
    """``{image_id: class index}`` for the datastore's images that have a class (see the module docstring).

    Args:
        datastore: a MONAI Label datastore (``list_images``, ``get_image_info``).
        class_names: the bundle's classes, in index order.
        labels_csv: an ``image,label`` CSV file; ignored when it does not exist.
        key: the image-info field of the class.

    Raises:
        ValueError: for a label that is neither an index nor a class name (the message names the image).
    """
    from_csv = _read_labels_csv(Path(labels_csv)) if labels_csv and Path(labels_csv).is_file() else {}
    labels: dict[str, int] = {}
    for image_id in sorted(datastore.list_images()):
        info = datastore.get_image_info(image_id) or {}
        value = info.get(key)
        source = "image info"
        if value is None or str(value).strip() == "":
            value, source = from_csv.get(image_id), str(labels_csv)
        if value is None:
            continue
        try:
            labels[image_id] = parse_class_label(value, class_names)
        except ValueError as e:
            raise ValueError(f"image '{image_id}' ({source}): {e}") from e
    unknown = sorted(set(from_csv) - set(datastore.list_images()))
    if unknown:
        logger.warning("%s names %d image(s) not in the datastore, ignored: %s", labels_csv, len(unknown), unknown[:5])
    return labels


class SequenceListDataset(Dataset):
    """Labelled inputs given as a list, read as at inference (the bundle's `reading`); ``transform`` then prepares them.

    Items are ``{"image": float32 tensor (C, N, H, W) as read (8-bit units), "label": int64 0-d tensor,
    "id": str}``, passed through ``transform`` when given. Inputs are read once and kept in memory (``cache=True``).

    Args:
        data: ``[{"image": path, "label": class index[, "id": name]}, ...]``; a path is anything
            ``monai-das predict`` reads (NIfTI, DICOM series folder, DICOM file, video).
        preprocessing: the bundle's inference ``reading`` (``{"image": path}`` -> ``{"image": tensor, ...}``).
        transform: applied to each item dict.
        cache: keep the prepared inputs in memory.

    Attributes:
        labels: int64 numpy array ``(N,)`` (the bundles compute class weights from it).

    Raises:
        ValueError: for an empty list or an item without ``image`` / an integer ``label``.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        preprocessing: Callable[[dict[str, Any]], Mapping[str, Any]],
        transform: Callable | None = None,
        cache: bool = True,
    ) -> None:
        if not data:
            raise ValueError("data is empty: at least one labelled input is needed.")
        for i, item in enumerate(data):
            if "image" not in item or isinstance(item.get("label"), bool) or not isinstance(item.get("label"), int):
                raise ValueError(f"data[{i}] must be {{'image': path, 'label': int}}, got {dict(item)!r}.")
        self.data = [dict(item) for item in data]
        self.labels = np.asarray([int(item["label"]) for item in self.data], dtype=np.int64)
        self.preprocessing = preprocessing
        self.transform = transform
        self.cache = cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        item = self.data[index]
        image = self._cache.get(index)
        if image is None:
            image = torch.as_tensor(self.preprocessing({"image": item["image"]})["image"])
            if self.cache:
                self._cache[index] = image
        out = {"image": image.clone(), "label": torch.tensor(int(item["label"]), dtype=torch.int64),
               "id": str(item.get("id", item["image"]))}
        return self.transform(out) if self.transform is not None else out


class DASClassificationTrainTask(TrainTask):
    """MONAI Label train task: the bundle's ``train.json`` on the datastore's labelled images (module docstring).

    Args:
        bundle: the bundle folder.
        output_path: where the trained checkpoint is published (the infer task's last ``path``).
        work_dir: the bundle's ``output_dir`` of a run (``train/``: checkpoints, TensorBoard logs) and
            ``train_stats.json``.
        init_paths: checkpoints to start from when ``pretrained`` (the last existing one; e.g. the infer task's
            ``path`` list).
        labels_csv: an ``image,label`` CSV file (optional).
        overrides: values for keys of ``train.json`` (the same as the infer task's).
        max_epochs: default number of epochs of a run.
        description: shown by the server.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        output_path: str | os.PathLike,
        work_dir: str | os.PathLike,
        init_paths: Sequence[str | os.PathLike] = (),
        labels_csv: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | None = None,
        max_epochs: int = 10,
        description: str = "",
        max_epochs_limit: int = MAX_EPOCHS,
    ) -> None:
        super().__init__(description or f"train DAS classification bundle {Path(bundle).name} on the datastore's "
                         f"labelled images (image info '{LABEL_KEY}' or {LABELS_CSV})")
        self.bundle = Path(bundle)
        self.class_names = bundle_class_names(self.bundle)
        self.output_path = Path(output_path)
        self.work_dir = Path(work_dir)
        self.init_paths = [Path(p) for p in init_paths]
        self.labels_csv = Path(labels_csv) if labels_csv else None
        self.overrides = dict(overrides or {})
        self.max_epochs_limit = int(max_epochs_limit)
        self.max_epochs = min(int(max_epochs), self.max_epochs_limit)
        self.options_names = TRAIN_OPTIONS  # what a request may set (MONAI Label adds the rest itself)

    def config(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs, "device": "cpu" if not torch.cuda.is_available() else "cuda",
                "pretrained": True, "val_every": 5}

    def options(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The request's training options, checked (see :mod:`.request_checks`), over the defaults of ``config()``.

        Raises:
            RequestError: for a key other than ``TRAIN_OPTIONS`` (and the keys MONAI Label adds itself), or an option
                of the wrong type or out of its range; the message names the option and the value.
        """
        check_keys(request, (*TRAIN_OPTIONS, *_MONAILABEL_KEYS), "a training request")
        opts = {**self.config(), **{k: request[k] for k in TRAIN_OPTIONS if k in request}}
        return {
            "max_epochs": check_int(opts["max_epochs"], "max_epochs (bounded by the server's --conf max_train_epochs)",
                                    1, self.max_epochs_limit),
            "device": check_device(opts["device"]),
            "pretrained": check_bool(opts["pretrained"], "pretrained"),
            "val_every": check_int(opts["val_every"], "val_every", 1, MAX_EPOCHS),
        }

    def stats(self) -> dict[str, Any]:
        stats_file = self.work_dir / "train_stats.json"
        try:
            return json.loads(stats_file.read_text()) if stats_file.is_file() else {}
        except (OSError, ValueError):
            return {}

    def _split(self, items: list[dict[str, Any]], val_every: int) -> tuple[list[dict], list[dict]]:
        """Every ``val_every``-th image of each class validates, the rest trains. When that leaves a class out of
        either part (few images), both are all the images: a smoke run whose validation metrics mean nothing."""
        classes = {item["label"] for item in items}
        if val_every >= 2:
            train: list[dict] = []
            val: list[dict] = []
            for c in sorted(classes):
                members = [item for item in items if item["label"] == c]
                val += members[val_every - 1 :: val_every]
                train += [item for i, item in enumerate(members) if (i + 1) % val_every]
            if {item["label"] for item in val} == classes == {item["label"] for item in train}:
                return train, val
            logger.warning("too few labelled images for a validation split holding every class (every %d-th image "
                           "of each class): validating on the training images, whose metrics mean nothing.",
                           val_every)
        return items, items

    def __call__(self, request: Mapping[str, Any], datastore: Any) -> dict[str, Any]:
        """Train one run and publish its best checkpoint when it beats the served one on the run's validation images
        (:func:`~.quality_gate.gate`; else the served model is kept and the stats say so); returns the run's stats
        (also in ``stats()``).

        Only checked options reach the bundle config; the images, their ids and labels reach the bundle as Python
        objects (datasets), never as config text, so no ``$`` expression or ``%`` macro can come from a request or
        from a name in the datastore.

        Raises:
            RequestError: for an option that is not allowed (see :meth:`options`).
            ValueError: when no image of the datastore has a class label, or a label is unknown.
        """
        opts = self.options(request)
        labels = datastore_class_labels(datastore, self.class_names, self.labels_csv)
        if not labels:
            raise ValueError(f"no image of the datastore has a class: set '{LABEL_KEY}' in the image info (PUT "
                             f"/datastore/image/info) or list 'image,label' rows in {self.labels_csv}.")
        missing = sorted(set(range(len(self.class_names))) - set(labels.values()))
        if missing:
            raise ValueError(f"no labelled image of class(es) {[self.class_names[c] for c in missing]}: label at least "
                             f"one image of each of {self.class_names} (a classifier cannot learn, nor be validated "
                             "on, a class it never sees).")
        items = [{"image": datastore.get_image_uri(i), "label": c, "id": i} for i, c in sorted(labels.items())]
        train_items, val_items = self._split(items, opts["val_every"])
        start = time.time()
        run_dir = self.work_dir / "train"
        workflow, init = self._run_bundle(train_items, val_items, opts, run_dir)
        current = next((p for p in reversed(self.init_paths) if p.is_file()), None)
        decision = gate(self.bundle, run_dir / "model.pt", current, val_items, self.overrides)
        if decision["publish"]:
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.output_path.with_name(f".{self.output_path.name}.{os.getpid()}.tmp")
            shutil.copyfile(run_dir / "model.pt", tmp)
            os.replace(tmp, self.output_path)
        trainer = workflow.parser.get_parsed_content("train#trainer")
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        stats = {
            "bundle": self.bundle.name,
            "epochs": int(trainer.state.epoch),
            "num_train": len(train_items),
            "num_val": len(val_items),
            "class_counts": {n: int(sum(item["label"] == i for item in items)) for i, n in enumerate(self.class_names)},
            "best_metric": _finite_or_none(getattr(evaluator.state, "best_metric", None)),
            "best_metric_epoch": int(getattr(evaluator.state, "best_metric_epoch", -1)),
            "started_from": str(init) if init is not None else None,
            "published": decision["publish"],
            "quality_gate": decision,
            "checkpoint": str(self.output_path if decision["publish"] else current),
            "candidate_checkpoint": str(run_dir / "model.pt"),
            "seconds": round(time.time() - start, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (self.work_dir / "train_stats.json").write_text(json.dumps(stats, indent=2))
        logger.info("%s %s: %s", "published" if decision["publish"] else "kept the served model, not",
                    self.output_path, stats)
        return stats

    def _run_bundle(self, train_items: list[dict], val_items: list[dict], opts: Mapping[str, Any],
                    run_dir: Path) -> tuple[Any, Path | None]:
        """The bundle's ``train.json`` on the items; returns the finished workflow and the checkpoint it started
        from (``None``: fresh weights). Its best checkpoint is ``run_dir/model.pt``."""
        from monai.bundle import ConfigWorkflow

        run_dir.mkdir(parents=True, exist_ok=True)
        best = run_dir / "model.pt"
        overrides: dict[str, Any] = {
            **self.overrides,
            "bundle_root": str(self.bundle),
            "output_dir": str(run_dir),
            "epochs": opts["max_epochs"],
            "device": torch.device(opts["device"]),
            "num_workers": 0,
            "resume": False,
            "overwrite": True,  # the task's own work folder: the previous run's model was published already
        }
        logger.info("training %s on %d images (%d for validation), %d epoch(s), %s", self.bundle.name,
                    len(train_items), len(val_items), opts["max_epochs"], opts["device"])
        workflow = ConfigWorkflow(
            config_file=[str(self.bundle / "configs" / c) for c in ("train.json", "train_end_to_end.json")],
            meta_file=str(self.bundle / "configs" / "metadata.json"),
            logging_file=False,
            workflow_type="train",
            **overrides,
        )
        parser = workflow.parser
        # read as at inference; train.json's train / validate preprocessing then scales, pads and resizes them
        preprocessing = bundle_parser(self.bundle, self.overrides, strict=False).get_parsed_content("reading")
        datasets = {name: SequenceListDataset(data, preprocessing)
                    for name, data in (("train_dataset", train_items), ("val_dataset", val_items))}
        parser.update({**datasets, "train_labels": datasets["train_dataset"].labels,
                       "val_labels": datasets["val_dataset"].labels})  # objects: never read as config text
        try:
            workflow.initialize()  # the bundle claims run_dir: a second training into it fails here
            if best.exists():
                best.unlink()  # never publish a previous run's model
            for name, section in (("train_dataset", "train"), ("val_dataset", "validate")):
                datasets[name].transform = parser.get_parsed_content(f"{section}#preprocessing")
            init = next((p for p in reversed(self.init_paths) if p.is_file()), None)
            if init is not None and opts["pretrained"]:
                state = load_checkpoint(init)
                if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
                    state = state["model"]
                workflow.parser.get_parsed_content("network").load_state_dict(state)
                logger.info("starting from %s", init)
            else:
                init = None
            workflow.run()
            workflow.finalize()
            if not best.is_file():
                raise RuntimeError(f"the bundle's training wrote no {best}; see the log.")
        finally:
            release_output(run_dir / "last.pt")  # also when this server process runs the next training itself
        return workflow, init


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
