"""Writes what an inference run predicted, and which frames it looked at, to a CSV file a person can read."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_das.data.load_sequence import picked_source_frames
from monai_das.handlers.network_config import NetworkConfig
from monai_das.networks.utils import unwrap_network
from monai_das.utils.atomic_file import atomic_write
from monai_das.utils.decision import decide

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator")

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """One CSV row per input: its id, the predicted class, the class probabilities and the picked frame indices.

    Attach it to the evaluator of an inference run whose postprocessing leaves class probabilities under
    ``pred_key``. The picked frames are read from ``network.last_sampler_output`` (a
    :py:class:`monai_das.networks.nets.SubsampledClassifier`); the id of an input is its ``id_key`` item, else the
    ``filename_or_obj`` of its image metadata, else its running position in the run.

    Columns: ``id, predicted_class, predicted_label, prob_<class name>..., picked_frames`` where ``picked_frames``
    holds the 0-based frame (slice) indices separated by spaces, in temporal order: those that are real frames when
    the batch holds a frame mask under ``mask_key`` (the classifier pools over these only). With ``label_key`` a ``label``
    column follows the id (the true class, for evaluation runs whose per-case predictions are kept).

    Args:
        output_path: the CSV file to write (its folder is created); rewritten at each run.
        network: the classifier whose sampler decisions are recorded.
        class_names: names of the classes, in label order.
        pred_key: key of the class probabilities in each decollated output.
        id_key: key of an input's id in each decollated batch item.
        image_key: key of the image (for its ``filename_or_obj`` metadata).
        label_key: key of the true class in each decollated batch item, written as a ``label`` column; ``None``
            (default) writes no label.
        mask_key: key of the ``(T,)`` bool mask of real frames in each decollated batch item (as
            :py:class:`monai_das.transforms.PadOrCropFramesd` writes it); items without it keep every pick.
        trace: also write, as ``monai-das predict`` does, ``status`` (``ok``, or ``error`` for an item with a
            non-empty ``"error"``, as :py:class:`monai_das.data.InferenceDataset` makes them: its message in the
            ``error`` column, no prediction), ``source_frames`` (the picks as the file numbers its frames, from the
            ``<image_key>_frame_index`` and ``<image_key>_source_frames`` that ``LoadSequenced`` writes),
            ``domain_warning`` (``<image_key>_domain_warning``) and ``checkpoint_sha256``.
        checkpoint_sha256: the sha256 of the checkpoint the network runs (with ``trace``).
        network_config: the checkpoint's network options, as a mapping or the :py:class:`NetworkConfig` a checkpoint
            loader fills: a binary task's class is decided with the threshold they store (chosen on validation,
            :py:func:`monai_das.utils.decide`); ``None``: argmax.
    """

    def __init__(
        self,
        output_path: str,
        network: torch.nn.Module,
        class_names: Sequence[str],
        pred_key: str = "pred",
        id_key: str = "id",
        image_key: str = "image",
        label_key: str | None = None,
        mask_key: str = "image_frame_mask",
        trace: bool = False,
        checkpoint_sha256: str = "",
        network_config: Any = None,
    ) -> None:
        if not class_names:
            raise ValueError("class_names must name at least one class.")
        self.output_path = str(output_path)
        self.network = network
        self.class_names = [str(c) for c in class_names]
        self.pred_key = pred_key
        self.id_key = id_key
        self.image_key = image_key
        self.label_key = label_key
        self.mask_key = mask_key
        self.trace = bool(trace)
        self.checkpoint_sha256 = str(checkpoint_sha256)
        self.network_config = network_config
        self.rows: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._reset, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _item_id(self, item: dict, position: int) -> str:
        if isinstance(item, dict):
            if self.id_key in item:
                value = item[self.id_key]
                return str(value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value)
            meta = getattr(item.get(self.image_key), "meta", None) or {}
            if "filename_or_obj" in meta:
                return str(meta["filename_or_obj"])
        return str(position)

    def __call__(self, engine: Engine) -> None:
        sampled = unwrap_network(self.network).last_sampler_output
        if sampled is None:
            raise RuntimeError("PredictionWriter: the network has no last_sampler_output; is it a SubsampledClassifier?")
        outputs = engine.state.output
        batch = engine.state.batch
        for i, out in enumerate(outputs):
            probs = torch.as_tensor(out[self.pred_key]).detach().float().flatten().cpu()
            if probs.numel() != len(self.class_names):
                raise ValueError(
                    f"PredictionWriter: '{self.pred_key}' has {probs.numel()} values but {len(self.class_names)} "
                    "class names were given."
                )
            item = batch[i] if isinstance(batch, list) else {}
            if self.trace and isinstance(item, dict) and item.get("error"):
                self.rows.append([self._item_id(item, len(self.rows)), "error"] + [""] * (len(self.class_names) + 4)
                                 + [str(item["error"]), "", self.checkpoint_sha256])
                continue
            options = self.network_config.values if isinstance(self.network_config, NetworkConfig) else self.network_config
            label = int(decide(probs[None], options)[0])
            picks = sampled.indices[i].cpu()
            if isinstance(item, dict) and item.get(self.mask_key) is not None:
                picks = picks[torch.as_tensor(item[self.mask_key], dtype=torch.bool).reshape(-1).cpu()[picks]]
            indices = " ".join(str(int(j)) for j in picks.tolist())
            truth = [str(int(torch.as_tensor(item[self.label_key]).reshape(-1)[0]))] if self.label_key else []
            self.rows.append(
                [self._item_id(item, len(self.rows)), *truth, *(["ok"] if self.trace else []), str(label),
                 self.class_names[label]]
                + [f"{p:.6f}" for p in probs.tolist()]
                + [indices]
                + (self._trace_cells(item, picks) if self.trace else [])
            )

    def _trace_cells(self, item: dict, picks: torch.Tensor) -> list[str]:
        """``source_frames, error, domain_warning, checkpoint_sha256`` of one item that ran."""
        index, source = f"{self.image_key}_frame_index", f"{self.image_key}_source_frames"
        numbers = picked_source_frames(item[index], item[source], picks) if index in item and source in item else []
        return [" ".join(map(str, numbers)), "", str(item.get(f"{self.image_key}_domain_warning", "")),
                self.checkpoint_sha256]

    def write(self, engine: Engine | None = None) -> None:
        """Write the rows collected in this run to ``output_path``."""
        with atomic_write(self.output_path, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["id", *(["label"] if self.label_key else []), *(["status"] if self.trace else []), "predicted_class",
                 "predicted_label"] + [f"prob_{c}" for c in self.class_names] + ["picked_frames"]
                + (["source_frames", "error", "domain_warning", "checkpoint_sha256"] if self.trace else [])
            )
            writer.writerows(self.rows)
