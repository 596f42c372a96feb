"""TensorBoard logging of what a frame sampler picked, epoch by epoch."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.handlers.tensorboard_handlers import TensorBoardHandler
from monai.utils import CommonKeys, IgniteInfo, look_up_option, min_version, optional_import
from torch import nn

from monai_das.networks.utils import unwrap_network
from monai_das.utils.class_indices import to_class_indices
from monai_das.visualize.sampling_plots import frames_montage, sampling_matrix_image, soft_entropy, stack_images

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
    from tensorboardX import SummaryWriter as SummaryWriterX
    from torch.utils.tensorboard import SummaryWriter
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )
    SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")
    SummaryWriterX, _ = optional_import("tensorboardX", name="SummaryWriter")

__all__ = ["SamplerTensorBoardHandler"]

LABEL_SOURCES = ("batch", "output")


def default_label_transform(data: Any) -> Any:
    """``data["label"]`` from a batch dict, or the list of labels of a decollated batch (a list of dicts);
    ``None`` when there is no label (inference)."""
    if isinstance(data, dict):
        return data.get(CommonKeys.LABEL)
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, dict) for d in data):
        labels = [d.get(CommonKeys.LABEL) for d in data]
        return None if any(v is None for v in labels) else labels
    return None


class SamplerTensorBoardHandler(TensorBoardHandler):
    """Write to TensorBoard, once per epoch, what the frame sampler of a network picked during that epoch.

    Attach it to an evaluator (or a trainer) whose network stores its last :py:class:`SamplerOutput` in
    ``last_sampler_output``, as :py:class:`monai_das.networks.nets.SubsampledClassifier` does. After every iteration
    the handler reads that output (so the network must run once per iteration on the whole batch: with a
    sliding-window inferer only the last window is seen) and accumulates, over the epoch:

    - the picked frame indices, per class (labels read with ``label_transform``) and overall;
    - the temperature (samplers that have one: DAS) and the entropy of the soft distribution ``softmax(logits)``
      (samplers with logits: DAS, DPS, ADPS);
    - the fraction of frames kept, k/T, and the number of distinct pick sets;
    - the sampling matrix and the picked frames of the first ``num_images`` inputs of the epoch's first batch.

    Accumulators are reset at ``EPOCH_STARTED``. At ``EPOCH_COMPLETED`` it writes (``P`` = ``tag_prefix``):

    ===================================  =========  ================================================================
    tag                                  kind       content
    ===================================  =========  ================================================================
    ``P/sampling_matrix``                image      ``P`` ``(k, T)`` of the first inputs, stacked vertically (rows =
                                                    picks, columns = frames; white = picked)
    ``P/soft_sampling_matrix``           image      ``softmax_T(logits)`` of the same inputs (samplers with logits)
    ``P/picked_frames``                  image      montage of the picked frames of the first inputs (one grid per
                                                    input, stacked), each with a bar showing its position in T
    ``P/picked_index/all``               histogram  every picked index of the epoch, one bin per frame
    ``P/picked_index/class_{c}``         histogram  the picked indices of the inputs of class ``c`` (classes seen)
    ``P/frames_kept``                    scalar     mean k/T
    ``P/distinct_pick_sets``             scalar     distinct index sets / inputs (1/N for a fixed sampler)
    ``P/temperature``                    scalar     mean temperature (only samplers with one)
    ``P/entropy``                        scalar     mean row entropy of ``softmax(logits)`` in nats (only samplers
                                                    with logits; 0 = sure of one frame, log T = uniform)
    ===================================  =========  ================================================================

    The global step is the epoch of ``epoch_engine`` when given (pass the trainer when attaching to the evaluator,
    so the curves line up with training epochs), otherwise the epoch of the engine the handler is attached to,
    then passed through ``global_epoch_transform`` (as in MONAI's ``TensorBoardStatsHandler``). The writer is
    flushed after each epoch. In multi-GPU runs attach it on rank 0 only (it sees rank 0's share of the data).

    Example::

        handler = SamplerTensorBoardHandler(network=net, log_dir="./runs", epoch_engine=trainer)
        evaluator = SupervisedEvaluator(device, val_loader, net, val_handlers=[handler])

    Args:
        network: the network (possibly wrapped in ``DistributedDataParallel`` or ``torch.compile``) whose unwrapped
            module has ``last_sampler_output``.
        summary_writer: an existing TensorBoard or TensorBoardX ``SummaryWriter``; by default one is created in
            ``log_dir`` (and closed by :py:meth:`close`).
        log_dir: where a new writer writes, default ``./runs``.
        tag_prefix: prefix of every tag, default ``"sampler/val"``.
        label_transform: maps ``engine.state.batch`` (or ``engine.state.output``, see ``label_source``) to the
            labels of the batch: class indices ``(B,)``/``(B, 1)``, one-hot ``(B, C)``, or a list of per-input
            labels (decollated batches). Default: the ``"label"`` key (like ``from_engine(["label"])``). ``None``
            disables the per-class histograms. When no label is found, only ``picked_index/all`` is written.
        label_source: ``"batch"`` (default, the labels as loaded) or ``"output"`` (after post-processing).
        num_images: how many inputs of the first batch to draw in the image tags (>= 1).
        epoch_engine: the engine whose epoch is the global step, typically the trainer.
        global_epoch_transform: maps the epoch to the global step.

    Raises:
        TypeError: when the unwrapped ``network`` has no ``last_sampler_output`` attribute.
        ValueError: for an unknown ``label_source`` or ``num_images < 1``.
    """

    def __init__(
        self,
        network: nn.Module,
        summary_writer: SummaryWriter | SummaryWriterX | None = None,
        log_dir: str = "./runs",
        tag_prefix: str = "sampler/val",
        label_transform: Callable | None = default_label_transform,
        label_source: str = "batch",
        num_images: int = 1,
        epoch_engine: Engine | None = None,
        global_epoch_transform: Callable[[int], int] = lambda x: x,
    ) -> None:
        net = unwrap_network(network)
        if not hasattr(net, "last_sampler_output"):
            raise TypeError(
                f"network must keep its sampler output in `last_sampler_output` (as SubsampledClassifier does), "
                f"got {type(net).__name__}."
            )
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive integer, got {num_images!r}.")
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.network = net
        self.tag_prefix = tag_prefix.rstrip("/")
        self.label_transform = label_transform
        self.label_source = look_up_option(label_source, LABEL_SOURCES)
        self.num_images = num_images
        self.epoch_engine = epoch_engine
        self.global_epoch_transform = global_epoch_transform
        self.logger = logging.getLogger(f"{__name__}.{self.__class__.__name__}")
        self._warned: set[str] = set()
        # the indices tensor of the last output recorded (not the output itself, which may hold an autograd graph):
        # an output seen again means the network did not run in that iteration
        self._last_seen: torch.Tensor | None = None
        self.reset()

    def attach(self, engine: Engine) -> None:
        """Register the epoch-start reset, the per-iteration recording and the epoch-end writing on ``engine``;
        attaching twice to the same engine registers nothing more."""
        for event, handler in (
            (Events.EPOCH_STARTED, self.epoch_started),
            (Events.ITERATION_COMPLETED, self.iteration_completed),
            (Events.EPOCH_COMPLETED, self.epoch_completed),
        ):
            if not engine.has_event_handler(handler, event):
                engine.add_event_handler(event, handler)

    def __call__(self, engine: Engine) -> None:
        """Record the current iteration (the generic handler entry point)."""
        self.iteration_completed(engine)

    # ------------------------------------------------------------------ accumulation

    def reset(self) -> None:
        """Clear the epoch's accumulators."""
        self._indices: list[torch.Tensor] = []
        self._class_indices: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._pick_sets: set[tuple[int, ...]] = set()
        self._num_inputs = 0
        self._kept_sum = 0.0
        self._temperature_sum = 0.0
        self._temperature_count = 0
        self._entropy_sum = 0.0
        self._entropy_count = 0
        self._max_frames = 0
        self._examples: dict[str, torch.Tensor] | None = None

    def epoch_started(self, engine: Engine) -> None:
        self.reset()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.logger.warning(message)

    def _labels(self, engine: Engine, batch_size: int) -> torch.Tensor | None:
        """The class index of every input of the batch, or ``None`` when not available."""
        if self.label_transform is None:
            return None
        data = engine.state.batch if self.label_source == "batch" else engine.state.output
        try:
            raw = self.label_transform(data)
        except (KeyError, IndexError, TypeError) as e:
            self._warn_once("label", f"no labels from engine.state.{self.label_source} ({e!r}); no per-class tags.")
            return None
        if isinstance(raw, tuple) and len(raw) == 1:  # from_engine(["label"]) on a dict returns a 1-tuple
            raw = raw[0]
        if raw is None:
            self._warn_once("label", f"no labels in engine.state.{self.label_source}; no per-class tags.")
            return None
        labels = to_class_indices(raw, name="label")
        if labels.numel() != batch_size:
            self._warn_once(
                "label_size",
                f"{labels.numel()} labels for {batch_size} sampled inputs (did the network run more than once per "
                "iteration?); no per-class tags for such batches.",
            )
            return None
        return labels

    def iteration_completed(self, engine: Engine) -> None:
        """Accumulate what the sampler picked in this iteration."""
        out = self.network.last_sampler_output
        if out is None:
            self._warn_once("none", "network.last_sampler_output is None: has the network run? Nothing recorded.")
            return
        if out.indices is self._last_seen:  # the network did not run in this iteration: do not count it twice
            return
        self._last_seen = out.indices
        indices = out.indices.detach().cpu().long()  # (B, k)
        b, k = indices.shape
        t = int(out.weights.shape[-1])
        self._max_frames = max(self._max_frames, t)
        self._num_inputs += b
        self._kept_sum += b * k / t
        self._indices.append(indices.reshape(-1))
        self._pick_sets.update(tuple(row) for row in indices.tolist())
        labels = self._labels(engine, b)
        if labels is not None:
            for c in labels.unique().tolist():
                self._class_indices[int(c)].append(indices[labels == c].reshape(-1))
        if out.temperature is not None:
            temperature = out.temperature.detach().float().cpu().reshape(-1)
            self._temperature_sum += float(temperature.sum())
            self._temperature_count += temperature.numel()
        if out.logits is not None:
            entropy = soft_entropy(out.logits).cpu()
            self._entropy_sum += float(entropy.sum())
            self._entropy_count += entropy.numel()
        if self._examples is None:
            n = min(self.num_images, b)
            self._examples = {
                "weights": out.weights[:n].detach().float().cpu(),
                "frames": out.frames[:n].detach().float().cpu(),
                "indices": indices[:n],
            }
            if out.logits is not None:
                self._examples["soft"] = torch.softmax(out.logits[:n].detach().float().cpu(), dim=-1)

    # ------------------------------------------------------------------ writing

    def _global_step(self, engine: Engine) -> int:
        epoch = self.epoch_engine.state.epoch if self.epoch_engine is not None else engine.state.epoch
        return self.global_epoch_transform(epoch)

    def epoch_completed(self, engine: Engine) -> None:
        """Write the epoch's images, histograms and scalars, then flush the writer."""
        if self._num_inputs == 0:
            self._warn_once("empty", "no sampler output was recorded this epoch; nothing written.")
            return
        step = self._global_step(engine)
        writer, prefix = self._writer, self.tag_prefix
        if self._examples is not None:
            ex = self._examples
            writer.add_image(f"{prefix}/sampling_matrix", self.matrix_image(ex["weights"]), step)
            if "soft" in ex:
                writer.add_image(f"{prefix}/soft_sampling_matrix", self.matrix_image(ex["soft"]), step)
            montage = self.montage_image(ex["frames"], ex["indices"], num_frames=int(ex["weights"].shape[-1]))
            writer.add_image(f"{prefix}/picked_frames", montage, step)
        bins = np.arange(self._max_frames + 1, dtype=np.float64) - 0.5  # one bin per frame index
        writer.add_histogram(f"{prefix}/picked_index/all", torch.cat(self._indices).numpy(), step, bins=bins)
        for c in sorted(self._class_indices):
            values = torch.cat(self._class_indices[c]).numpy()
            if values.size:
                writer.add_histogram(f"{prefix}/picked_index/class_{c}", values, step, bins=bins)
        writer.add_scalar(f"{prefix}/frames_kept", self._kept_sum / self._num_inputs, step)
        writer.add_scalar(f"{prefix}/distinct_pick_sets", len(self._pick_sets) / self._num_inputs, step)
        if self._temperature_count:
            writer.add_scalar(f"{prefix}/temperature", self._temperature_sum / self._temperature_count, step)
        if self._entropy_count:
            writer.add_scalar(f"{prefix}/entropy", self._entropy_sum / self._entropy_count, step)
        writer.flush()

    @staticmethod
    def matrix_image(weights: torch.Tensor) -> torch.Tensor:
        """``(n, k, T)`` matrices -> one ``(1, H, W)`` image: :py:func:`sampling_matrix_image` of each, stacked."""
        return stack_images([sampling_matrix_image(w) for w in weights])

    @staticmethod
    def montage_image(frames: torch.Tensor, indices: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """``(n, C, k, H, W)`` frames and ``(n, k)`` indices -> one image: a :py:func:`frames_montage` per input
        (with position bars when ``num_frames`` is given), stacked vertically.

        Inputs with other than 1 or 3 channels are shown by their first channel. Frames smaller than about
        96 pixels are upscaled by an integer factor (nearest neighbour) so they stay visible in TensorBoard.
        """
        if frames.shape[1] not in (1, 3):
            frames = frames[:, :1]
        scale = max(1, round(96 / max(frames.shape[-2:])))
        return stack_images(
            [frames_montage(f, i, num_frames=num_frames, scale=scale) for f, i in zip(frames, indices)]
        )
