"""A MONAI Label infer task that serves a monai_das classification bundle: class probabilities and the picked slices.

The task executes the bundle's own ``configs/inference.json`` (its ``preprocessing`` and ``network_def``, through
:class:`monai_das.apps.BundlePredictor`), as ``monai-das predict`` and ``python -m monai.bundle run`` do: the same
readers (NIfTI volume, DICOM series folder, DICOM file, video), slice direction, intensities and resampling. The
result JSON holds MONAI Label's ``prediction`` list (``{"idx", "label", "score"}`` per class, softmax probabilities)
and adds:

- ``probabilities``: ``{class name: probability}``;
- ``predicted_label``: the class (binary: above the threshold stored with the checkpoint, chosen on validation; else the most probable);
- ``picked_slices``: the sampler's k picks, increasing, among the network's ``T`` frames (only the real ones: every
  slice of an input with fewer than k);
- ``source_slices``: the same picks as the file numbers its frames (NIfTI: voxel index along the slice direction;
  DICOM series: InstanceNumber, with ``source_uids`` their SOPInstanceUIDs; cine, video: frame index);
- ``num_slices`` (T) and ``num_source_slices``;
- ``checkpoint_sha256`` and ``bundle_version``;
- ``domain_warning``: how the input differs from the training data (``""`` when it does not);
- ``warnings``: notes of the reading and preprocessing.

Class scores are never resized or restored to the image grid (no ``Restored`` step): ``pred`` stays a 1-D
``MetaTensor`` of probabilities, which is what MONAI Label's ``ClassificationWriter`` expects.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer
from monai.transforms import Activationsd, EnsureTyped, MapTransform
from monai.utils import optional_import

from monai_das.apps.bundle_predictor import BundlePredictor
from monai_das.utils import decide
from monai_das.apps.monailabel.request_checks import RequestError, check_device
from monai_das.data import slice_axcodes

BasicInferTask, has_monailabel = optional_import(
    "monailabel.tasks.infer.basic_infer", name="BasicInferTask", as_type="base"
)
InferType, _ = optional_import("monailabel.interfaces.tasks.infer_v2", name="InferType")
MONAILabelException, _ = optional_import("monailabel.interfaces.exception", name="MONAILabelException")
MONAILabelError, _ = optional_import("monailabel.interfaces.exception", name="MONAILabelError")

__all__ = ["bundle_class_names", "BundlePreprocessd", "DASClassificationInferTask"]

logger = logging.getLogger(__name__)


def bundle_class_names(bundle: str | os.PathLike) -> list[str]:
    """Class names in index order from a bundle's ``configs/metadata.json``
    (``network_data_format.outputs.pred.channel_def``).

    Raises:
        FileNotFoundError: when the metadata file is missing.
        ValueError: when it names no class, or a class name is empty (MONAI Label would drop that class).
    """
    meta_file = Path(bundle) / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"bundle '{bundle}' has no configs/metadata.json ({meta_file}).")
    meta = json.loads(meta_file.read_text())
    channel_def = meta.get("network_data_format", {}).get("outputs", {}).get("pred", {}).get("channel_def", {})
    try:
        names = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{meta_file}: outputs.pred.channel_def keys must be class indices, got "
                         f"{list(channel_def)}.") from e
    if not names or not all(n.strip() for n in names):
        raise ValueError(f"{meta_file}: outputs.pred.channel_def must name every class, got {channel_def!r}.")
    return names


class BundlePreprocessd(MapTransform):
    """The bundle's inference ``preprocessing`` (:meth:`monai_das.apps.BundlePredictor.prepare`) on ``data[key]``
    (a path or an array); its results (the network's input ``(C, T, H, W)`` under ``key``, the frame tracing keys,
    ``notes``) are merged into the dict.

    Args:
        keys: the input key (one).
        predictor: the bundle's predictor.
        slice_plane: volumes: the slice direction (``None``: the bundle's).
    """

    def __init__(self, keys: Any, predictor: BundlePredictor, slice_plane: str | None = None) -> None:
        super().__init__(keys)
        self.predictor, self.slice_plane = predictor, slice_plane

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            prepared = self.predictor.prepare(d[key], self.slice_plane)
            d.update({k if k != "image" else key: v for k, v in prepared.items()})
        return d


class _PicksInferer(Inferer):
    """Runs the network on the input with its frame mask (``record["image_frame_mask"]``, from the bundle's
    preprocessing) and records, under the same lock, which real frames its sampler picked (``record[key]``)."""

    def __init__(self, record: dict, lock: threading.Lock, key: str = "picked_slices") -> None:
        super().__init__()
        self.record, self.lock, self.key = record, lock, key

    def __call__(self, inputs: torch.Tensor, network: Any) -> Any:
        with self.lock:  # the network (and its last_sampler_output) is shared by concurrent requests
            outputs, picks = BundlePredictor.classify(network, inputs, self.record.get("image_frame_mask"))
            self.record[self.key] = None if picks is None else [int(i) for i in picks]
        return outputs


class DASClassificationInferTask(BasicInferTask):
    """MONAI Label infer task (``InferType.CLASSIFICATION``, ``dimension=3``) for a monai_das classification bundle.

    The network is built from the bundle's ``configs/inference.json`` (``network_def``) and loaded from the last
    existing file of ``path`` (MONAI Label's convention: a pretrained checkpoint first, the app's trained one last);
    it is rebuilt when that file changes (a training run published a new checkpoint). The task is listed by the
    server (``is_valid``) only once a checkpoint exists.

    Args:
        bundle: the bundle folder.
        path: checkpoint file(s) (a state dict, or ``{"model": state dict}``); the last one that exists is used.
        overrides: values for keys of the bundle's ``inference.json`` used at training (e.g.
            ``{"sampler_name": "dps"}``).
        slice_plane: volumes: the default slice direction (``None``: the bundle's; a request may pass
            ``slice_plane``: ``axial``, ``coronal``, ``sagittal`` or an axcode letter).
        description: shown by the server.

    Raises:
        FileNotFoundError, ValueError: for a bundle without usable metadata.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        path: str | Sequence[str],
        overrides: Mapping[str, Any] | None = None,
        slice_plane: str | None = None,
        description: str = "",
        **kwargs: Any,
    ) -> None:
        self.bundle = Path(bundle)
        self.class_names = bundle_class_names(self.bundle)
        self.overrides = dict(overrides or {})
        self._predictors: dict[str, tuple[BundlePredictor, str, float]] = {}
        self._lock = threading.Lock()
        super().__init__(
            path=[str(p) for p in ([path] if isinstance(path, (str, os.PathLike)) else path)],
            network=None,
            type=InferType.CLASSIFICATION,
            labels={name: i for i, name in enumerate(self.class_names)},
            dimension=3,
            description=description or f"DAS classification bundle {self.bundle.name}: class probabilities and the "
            "slices / frames the sampler picked",
            config={"slice_plane": slice_plane},
            **kwargs,
        )

    # ---------------------------------------------------------------------------------------------------- network

    def predictor(self, device: str = "cpu") -> BundlePredictor:
        """The bundle's network with the current checkpoint on ``device`` (cached; rebuilt when the file changes).

        Raises:
            MONAILabelException: when no checkpoint exists yet, or it does not fit the network.
        """
        path = self.get_path()
        if path is None:
            raise MONAILabelException(
                MONAILabelError.INFERENCE_ERROR,
                f"no checkpoint for bundle '{self.bundle.name}' at {self.path}: train the model first or start the "
                "app with --conf ckpt PATH.",
            )
        mtime = os.stat(path).st_mtime
        cached = self._predictors.get(str(device))
        if cached is not None and cached[1:] == (path, mtime):
            return cached[0]
        logger.info("loading %s for bundle %s on %s", path, self.bundle, device)
        try:
            predictor = BundlePredictor(self.bundle, ckpt=path, device=device, overrides=self.overrides)
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            raise MONAILabelException(MONAILabelError.INFERENCE_ERROR, str(e)) from e
        if len(predictor.class_names) != len(self.class_names):
            raise MONAILabelException(
                MONAILabelError.INFERENCE_ERROR,
                f"bundle '{self.bundle}': metadata.json names {len(self.class_names)} classes but the network has "
                f"{len(predictor.class_names)}.",
            )
        self._predictors[str(device)] = (predictor, path, mtime)
        return predictor

    def _get_network(self, device: Any, data: Any) -> torch.nn.Module:
        return self.predictor(str(device)).network

    def clear_cache(self) -> None:
        self._predictors.clear()
        super().clear_cache()

    def is_valid(self) -> bool:
        return self.get_path() is not None

    def __call__(self, request: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """MONAI Label's inference, after checking the request's options: ``device`` (``cpu``, ``cuda``, ``cuda:N``)
        and ``slice_plane`` (``axial``, ``coronal``, ``sagittal`` or an axcode letter).

        Raises:
            RequestError: for an option of the wrong type or value (the message names it).
        """
        if "device" in request:
            check_device(request["device"])
        if "slice_plane" in request:
            try:
                slice_axcodes(request["slice_plane"])
            except (ValueError, TypeError, AttributeError) as e:
                raise RequestError(f"slice_plane: {str(request['slice_plane'])[:80]!r} is not a slice plane; {e}") from e
        return super().__call__(request, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------- transforms

    def pre_transforms(self, data: Any = None) -> Sequence[Any]:
        device = str((data or {}).get("device", "cpu"))
        slice_plane = (data or {}).get("slice_plane", self._config.get("slice_plane"))
        return [BundlePreprocessd(self.input_key, self.predictor(device), slice_plane)]

    def inferer(self, data: Any = None) -> Inferer:
        return _PicksInferer(data if data is not None else {}, self._lock)

    def inverse_transforms(self, data: Any = None) -> None:
        return None  # class scores: nothing to restore

    def post_transforms(self, data: Any = None) -> Sequence[Any]:
        # pred: (num_classes,) logits -> a MetaTensor of softmax probabilities (ClassificationWriter reads .array)
        return [
            EnsureTyped(keys=self.output_label_key, dtype=torch.float32, track_meta=True),
            Activationsd(keys=self.output_label_key, softmax=True),
        ]

    # ----------------------------------------------------------------------------------------------------- result

    def writer(self, data: dict[str, Any], extension: Any = None, dtype: Any = None) -> tuple[Any, Any]:
        label, result = super().writer(data, extension, dtype)
        probs = [float(p) for p in torch.as_tensor(data[self.output_label_key]).reshape(-1).tolist()]
        result["probabilities"] = {name: probs[i] for i, name in enumerate(self.class_names) if i < len(probs)}
        predictor = self.predictor(str(data.get("device", "cpu")))
        best = int(decide(np.asarray(probs)[None], predictor.network_options)[0]) if probs else -1
        result["predicted_label"] = self.class_names[best] if 0 <= best < len(self.class_names) else str(best)
        picks = data.get("picked_slices")
        result["picked_slices"] = picks
        result["source_slices"], result["source_uids"] = (BundlePredictor.trace(data, picks) if picks is not None
                                                          else (None, None))
        image = data.get(self.input_key)
        result["num_slices"] = int(image.shape[1]) if hasattr(image, "shape") and len(image.shape) == 4 else None
        result["num_source_slices"] = data.get("image_num_source_frames")
        result["checkpoint_sha256"], result["bundle_version"] = predictor.ckpt_sha256, predictor.version
        result["domain_warning"] = data.get("image_domain_warning", "")
        result["warnings"] = data.get("notes", [])
        return label, result
