"""A MONAI Label infer task that serves a monai_das classification bundle: class probabilities and the picked slices.

The task reads its input with the readers of ``monai-das predict`` (NIfTI volume, DICOM series folder, DICOM file,
video) and brings it to the bundle's ``[T, H, W]`` with the same resampling
(:func:`monai_das.apps.predict.prepare_sequence`); the network is the bundle's ``network_def`` with a checkpoint,
built by :class:`monai_das.apps.predict.BundlePredictor`. The result JSON holds MONAI Label's ``prediction`` list
(``{"idx", "label", "score"}`` per class, softmax probabilities) and adds:

- ``probabilities``: ``{class name: probability}``;
- ``predicted_label``: the most probable class;
- ``picked_slices``: the sampler's k picks, increasing, in the resampled sequence ``[0, T)``;
- ``source_slices``: the same picks as slice / frame indices of the original file (0-based);
- ``num_slices`` (T) and ``num_source_slices``;
- ``warnings``: notes of the preprocessing (e.g. a constant input).

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

from monai_das.apps.predict import (
    BundlePredictor,
    InputSpec,
    RawSequence,
    expand_inputs,
    prepare_sequence,
    read_input,
)
from monai_das.apps.monailabel.request_checks import check_device, check_int

BasicInferTask, has_monailabel = optional_import(
    "monailabel.tasks.infer.basic_infer", name="BasicInferTask", as_type="base"
)
InferType, _ = optional_import("monailabel.interfaces.tasks.infer_v2", name="InferType")
MONAILabelException, _ = optional_import("monailabel.interfaces.exception", name="MONAILabelException")
MONAILabelError, _ = optional_import("monailabel.interfaces.exception", name="MONAILabelError")

__all__ = ["bundle_class_names", "LoadSequenced", "DASClassificationInferTask"]

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


class LoadSequenced(MapTransform):
    """Read one input and bring it to the network's ``(C, T, H, W)``, as ``monai-das predict`` does.

    ``data[key]`` is a path: a NIfTI file, a video, a DICOM file, or a folder holding one DICOM series (as MONAI
    Label passes DICOMweb studies); or an array of frames ``(N, H, W)`` / ``(C, N, H, W)``. It is replaced by a
    float32 tensor ``(channels, T, H, W)`` in [0, 1]; ``source_slices`` (the original index of each of the T frames),
    ``num_source_slices`` and ``das_notes`` (preprocessing notes) are added.

    Args:
        keys: the input key (one).
        spatial_shape: the network's ``(T, H, W)``.
        channels: the network's input channels.
        slice_axis: NIfTI only: the voxel axis whose slices are the frames (default the last).

    Raises:
        ValueError: for an input that cannot be read (the message names it), or a folder that does not hold
            exactly one DICOM series / input.
    """

    def __init__(self, keys: Any, spatial_shape: Sequence[int], channels: int = 1, slice_axis: int = -1) -> None:
        super().__init__(keys)
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.channels = int(channels)
        self.slice_axis = int(slice_axis)

    def _raw(self, value: Any) -> RawSequence:
        if isinstance(value, (np.ndarray, torch.Tensor)):
            frames = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, np.float32)
            frames = frames[None] if frames.ndim == 3 else frames
            if frames.ndim != 4:
                raise ValueError(f"an array input must be (N, H, W) or (C, N, H, W), got shape {frames.shape}.")
            n = frames.shape[1]
            return RawSequence(frames, np.arange(n, dtype=np.int64), n)
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"the image must be a path or an array, got {type(value).__name__}.")
        specs: list[InputSpec] = expand_inputs([value])
        if len(specs) != 1:
            raise ValueError(f"'{value}' holds {len(specs)} inputs ({[s.id for s in specs][:5]}); one volume, "
                             "DICOM series or video per request is needed.")
        return read_input(specs[0], slice_axis=self.slice_axis, grayscale=self.channels == 1,
                          max_frames=self.spatial_shape[0])

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            raw = self._raw(d[key])
            image, source, notes = prepare_sequence(raw, self.spatial_shape, self.channels)
            d[key] = image
            d["source_slices"] = [int(s) for s in source]
            d["num_source_slices"] = int(raw.num_source_frames)
            d["das_notes"] = list(notes)
        return d


class _PicksInferer(Inferer):
    """Runs the network and records, under the same lock, which frames its sampler picked (``record[key]``)."""

    def __init__(self, record: dict, lock: threading.Lock, key: str = "picked_slices") -> None:
        super().__init__()
        self.record, self.lock, self.key = record, lock, key

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:  # the network (and its last_sampler_output) is shared by concurrent requests
            outputs = network(inputs, *args, **kwargs)
            out = getattr(network, "last_sampler_output", None)
            self.record[self.key] = None if out is None else [int(i) for i in out.indices[0].tolist()]
        return outputs


class DASClassificationInferTask(BasicInferTask):
    """MONAI Label infer task (``InferType.CLASSIFICATION``, ``dimension=3``) for a monai_das classification bundle.

    The network is built from the bundle's ``configs/train.json`` (``network_def``) and loaded from the last
    existing file of ``path`` (MONAI Label's convention: a pretrained checkpoint first, the app's trained one last);
    it is rebuilt when that file changes (a training run published a new checkpoint). The task is listed by the
    server (``is_valid``) only once a checkpoint exists.

    Args:
        bundle: the bundle folder.
        path: checkpoint file(s) (a state dict, or ``{"model": state dict}``); the last one that exists is used.
        overrides: values for keys of the bundle's ``train.json`` used at training (e.g. ``{"sampler_name": "dps"}``).
        slice_axis: NIfTI only: default voxel axis of the slices (a request may pass ``slice_axis``).
        description: shown by the server.

    Raises:
        FileNotFoundError, ValueError: for a bundle without usable metadata.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        path: str | Sequence[str],
        overrides: Mapping[str, Any] | None = None,
        slice_axis: int = -1,
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
            config={"slice_axis": int(slice_axis)},
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
        and ``slice_axis`` (an integer in [-3, 2]).

        Raises:
            RequestError: for an option of the wrong type or value (the message names it).
        """
        if "device" in request:
            check_device(request["device"])
        if "slice_axis" in request:
            check_int(request["slice_axis"], "slice_axis", -3, 2)
        return super().__call__(request, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------- transforms

    def pre_transforms(self, data: Any = None) -> Sequence[Any]:
        device = str((data or {}).get("device", "cpu"))
        predictor = self.predictor(device)
        slice_axis = int((data or {}).get("slice_axis", self._config.get("slice_axis", -1)))
        return [LoadSequenced(self.input_key, predictor.spatial_shape, predictor.channels, slice_axis=slice_axis)]

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
        best = int(np.argmax(probs)) if probs else -1
        result["predicted_label"] = self.class_names[best] if 0 <= best < len(self.class_names) else str(best)
        picks = data.get("picked_slices")
        source = data.get("source_slices")
        result["picked_slices"] = picks
        result["source_slices"] = [int(source[i]) for i in picks] if picks is not None and source else None
        image = data.get(self.input_key)
        result["num_slices"] = int(image.shape[1]) if hasattr(image, "shape") and len(image.shape) == 4 else None
        result["num_source_slices"] = data.get("num_source_slices")
        result["warnings"] = data.get("das_notes", [])
        return label, result
