"""A bundle's inference definition (``configs/inference.json``: ``preprocessing`` and ``network_def``) with a
checkpoint, run on one input at a time: what ``monai-das predict`` and the MONAI Label task execute."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_das.data import picked_source_frames
from monai_das.handlers import load_checkpoint, split_checkpoint

__all__ = ["Prediction", "BundlePredictor", "bundle_parser", "file_sha256", "TASK_OPTIONS", "check_checkpoint_fits"]

logger = logging.getLogger(__name__)

#: warnings a library gives about itself while reading (MONAI's DICOM reader: "nvImageCodec decoder plugin did not
#: register"), not about the input: logged once per process instead of being repeated in every input's notes
LIBRARY_NOTICES = re.compile(r"did not register|is not available|is not installed", re.IGNORECASE)
_logged_notices: set[str] = set()


def input_notes(caught: Any, domain: str = "") -> list[str]:
    """The user warnings of ``caught`` that concern the input, one line each (the domain warning apart); library
    notices (:data:`LIBRARY_NOTICES`) go to the log, once."""
    notes = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if not issubclass(w.category, UserWarning) or (domain and text.endswith(domain)):  # its own column
            continue
        if LIBRARY_NOTICES.search(text):
            if text not in _logged_notices:
                _logged_notices.add(text)
                logger.warning("%s", text)
            continue
        notes.append(text)
    return notes


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: the network options that say which bundle a checkpoint was trained for: its data (``data_name``) and channels;
#: ``class_names`` too for a checkpoint or bundle that does not name its data
TASK_OPTIONS = ("data_name", "in_channels")


def check_checkpoint_fits(ckpt: str | os.PathLike, expected: Mapping[str, Any], bundle: str | os.PathLike,
                          keys: tuple[str, ...] | None = None) -> None:
    """Refuse a checkpoint trained for another bundle (other data, classes or frame layout), naming both.

    The checkpoint's network options (``network_config``, what the bundles save with the weights) are compared with
    ``expected``, the bundle's (its ``network_config``'s ``state_dict()``). A checkpoint without options (a plain state
    dict) says nothing and passes.

    Args:
        ckpt: the checkpoint file.
        expected: the bundle's network options.
        bundle: the bundle, for the message.
        keys: the options compared: ``None`` compares every option both name (``inference.json``, which runs its
            config's options); ``TASK_OPTIONS`` only which bundle the checkpoint is for (``monai-das predict`` and
            MONAI Label, before they take the checkpoint's other options).

    Raises:
        ValueError: naming the checkpoint, the bundle, and each option with both values.
    """
    _, saved = split_checkpoint(load_checkpoint(ckpt))
    if not saved:
        return
    if keys is None:
        keys = tuple(k for k in saved if k in expected)
    elif not ("data_name" in saved and "data_name" in expected):
        keys = (*keys, "class_names")
    differ = [f"{k} = {saved[k]!r} in the checkpoint, {expected[k]!r} in the bundle" for k in keys
              if k in saved and k in expected and saved[k] != expected[k]]
    if differ:
        raise ValueError(f"checkpoint '{ckpt}' does not fit bundle '{bundle}': " + "; ".join(differ) + ". Use a "
                         "checkpoint trained with this bundle and these options (or the options it was trained with).")


def bundle_parser(bundle: str | os.PathLike, overrides: Mapping[str, Any] | None = None, strict: bool = True) -> Any:
    """A ``ConfigParser`` of a bundle's ``configs/inference.json`` and ``metadata.json``, with ``overrides``.

    Args:
        bundle: the bundle folder.
        overrides: values for keys of ``inference.json``.
        strict: refuse a key that ``inference.json`` does not have (else it is left out).

    Raises:
        FileNotFoundError: for a missing config or metadata file.
        ValueError: for an unknown override key (``strict``).
    """
    from monai.bundle import ConfigParser

    bundle = Path(bundle)
    config_file = bundle / "configs" / "inference.json"
    meta_file = bundle / "configs" / "metadata.json"
    for f in (config_file, meta_file):
        if not f.is_file():
            raise FileNotFoundError(f"bundle '{bundle}' has no {f.relative_to(bundle)} ({f}).")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(meta_file))
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in parser]
    if unknown and strict:
        raise ValueError(f"unknown option(s) {['--' + k for k in unknown]}: neither an option of predict nor a key of "
                         f"{config_file}.")
    parser.update({"bundle_root": str(bundle), **{k: v for k, v in overrides.items() if k not in unknown}})
    return parser


@dataclass
class Prediction:
    """One input's result.

    Attributes:
        probabilities: ``(num_classes,)`` softmax probabilities.
        picks: the sampler's picks in the network's ``T`` frames that are real frames of the input (``None`` without
            a sampler): k picks of distinct source frames, or every frame of an input with fewer than k (the padding
            picks that fill up k are left out of the prediction, and out of this list; see
            :py:class:`monai_das.networks.nets.FrameSampler`).
        source_frames: the same picks as the file numbers its frames (see ``monai_das.data.FrameSequence``).
        source_uids: their SOPInstanceUIDs (DICOM series), else empty.
        num_source_frames: frames in the file.
        image: the network's input ``(C, T, H, W)``.
        sampler_output: the sampler's output (picks, scores), or ``None``.
        notes: warnings raised while reading and preparing the input (the domain warning apart).
        domain_warning: how the input differs from the training data (``""`` when it does not, or when the bundle's
            preprocessing has no ``DomainCheckd``).
    """

    probabilities: np.ndarray
    picks: np.ndarray | None
    source_frames: list[int]
    source_uids: list[str]
    num_source_frames: int
    image: torch.Tensor
    sampler_output: Any = None
    notes: list[str] = field(default_factory=list)
    domain_warning: str = ""


class BundlePredictor:
    """A bundle's ``configs/inference.json`` (``preprocessing`` and ``network_def``) with a checkpoint, in eval mode.

    Args:
        bundle: the bundle folder.
        ckpt: the checkpoint: a state dict, or ``{"model": state dict, "network_config": options}`` (what the bundles
            save: the options that shape the network, applied here, so the checkpoint alone is enough); default the
            config's ``ckpt_path`` (``<bundle>/outputs/model.pt``), else ``<bundle>/models/model.pt``.
        device: torch device of the network.
        overrides: values for keys of ``inference.json`` (e.g. ``{"sampler_name": "dps", "slice_plane": "coronal"}``).

    Attributes:
        spatial_shape: ``(T, H, W)`` of the network's input.
        channels: input channels.
        class_names: output class names.
        ckpt: the checkpoint used; ``ckpt_sha256`` its sha256; ``version`` the bundle's metadata version.
        network_options: the checkpoint's network options (with the decision threshold chosen on validation, if any).

    Raises:
        FileNotFoundError: for a missing bundle config, metadata or checkpoint.
        ValueError: for an unknown override key, an override that conflicts with the checkpoint's options (naming the
            key and both values), or a checkpoint that does not fit the network.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        ckpt: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.bundle = Path(bundle)
        self.ckpt = self._find_checkpoint(bundle_parser(self.bundle, overrides), ckpt)
        self.ckpt_sha256 = file_sha256(self.ckpt)
        weights, saved = split_checkpoint(load_checkpoint(self.ckpt))
        bundle_options = bundle_parser(self.bundle).get_parsed_content("network_config").state_dict()
        check_checkpoint_fits(self.ckpt, bundle_options, self.bundle, keys=TASK_OPTIONS)
        self.overrides = {**self._saved_options(saved, dict(overrides or {})), **dict(overrides or {})}
        parser = bundle_parser(self.bundle, self.overrides)
        self.parser = parser
        self.version = str(parser.get("_meta_", {}).get("version", ""))
        self.class_names = [str(c) for c in parser.get_parsed_content("class_names")]
        self.channels = int(parser.get_parsed_content("in_channels"))
        size = int(parser.get_parsed_content("frame_size"))
        self.spatial_shape = (int(parser.get_parsed_content("num_frames")), size, size)
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self._by_plane = {parser.get_parsed_content("slice_plane"): self.preprocessing}
        self.device = torch.device(device)
        network = parser.get_parsed_content("network_def")
        backbone = type(network.backbone).__module__ + "." + type(network.backbone).__name__
        if saved.get("backbone", backbone) != backbone:
            raise ValueError(f"checkpoint '{self.ckpt}' was trained with the backbone {saved['backbone']}, but "
                             f"{self.bundle / 'configs' / 'inference.json'} builds {backbone}.")
        try:
            network.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ValueError(f"checkpoint '{self.ckpt}' does not fit the network of bundle '{self.bundle}' "
                             f"(sampler_name={parser.get('sampler_name', '?')}): {e}") from e
        self.network = network.to(self.device).eval()
        self.network_options = saved

    def _saved_options(self, saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint's network options that ``inference.json`` has (the backbone is compared, not set).

        Raises:
            ValueError: when an override gives another value than the checkpoint, naming the key and both values.
        """
        for key, value in overrides.items():
            if key in saved and saved[key] != value:
                raise ValueError(f"--{key} {value!r} conflicts with checkpoint '{self.ckpt}', trained with {key} = "
                                 f"{saved[key]!r}; leave the option out (the checkpoint says it) or pass another "
                                 "checkpoint.")
        config = bundle_parser(self.bundle)
        return {key: value for key, value in saved.items() if key in config and key != "backbone"}

    def _find_checkpoint(self, parser: Any, ckpt: str | os.PathLike | None) -> Path:
        if ckpt is not None:
            path = Path(ckpt)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint '{path}' not found.")
            return path
        candidates = [Path(parser.get_parsed_content("ckpt_path")), self.bundle / "models" / "model.pt"]
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(f"no checkpoint found at {[str(c) for c in candidates]}; pass --ckpt PATH.")

    def preprocessing_for(self, slice_plane: str | None = None) -> Any:
        """The bundle's ``preprocessing``, with another ``slice_plane`` when given (built once per plane)."""
        if slice_plane is None:
            return self.preprocessing
        if slice_plane not in self._by_plane:
            parser = bundle_parser(self.bundle, {**self.overrides, "slice_plane": slice_plane})
            self._by_plane[slice_plane] = parser.get_parsed_content("preprocessing")
        return self._by_plane[slice_plane]

    def prepare(self, source: Any, slice_plane: str | None = None) -> dict[str, Any]:
        """Run the bundle's ``preprocessing`` on one input (a path, the files of a DICOM series, or an array).

        Returns:
            the preprocessing's dict (``image`` ``(C, T, H, W)``, ``image_frame_index``, ``image_source_frames``,
            ``image_domain_warning``...) with ``notes``: the other warnings raised on the way, one line each.

        Raises:
            the error of the transform that failed (MONAI's ``Compose`` wraps it in a ``RuntimeError`` naming only
            the transform).
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = self.preprocessing_for(slice_plane)({"image": source})
            except RuntimeError as e:
                cause: BaseException = e
                while str(cause).startswith("applying transform") and cause.__cause__ is not None:
                    cause = cause.__cause__
                if cause is e:
                    raise
                raise cause from None
        data["notes"] = input_notes(caught, data.get("image_domain_warning", ""))
        return data

    @staticmethod
    def trace(data: Mapping[str, Any], picks: Any) -> tuple[list[int], list[str]]:
        """The picks (indices among the network's ``T`` frames) as the file numbers its frames, and their
        SOPInstanceUIDs (DICOM series; else empty): from what :meth:`prepare` returned."""
        read_index = torch.as_tensor(data["image_frame_index"]).reshape(-1)[torch.as_tensor(picks)].tolist()
        uids = str(data["image_source_uids"]).split()
        return (picked_source_frames(data["image_frame_index"], data["image_source_frames"], picks),
                [uids[i] for i in read_index] if uids else [])

    @staticmethod
    def classify(network: torch.nn.Module, inputs: torch.Tensor, frame_mask: Any = None) -> tuple[Any, Any]:
        """Run ``network`` on one prepared input ``(1, C, T, H, W)`` with its ``frame_mask`` ``(T,)`` (the
        preprocessing's ``image_frame_mask``: the real frames; ``None`` when it has none).

        Returns:
            ``(logits, picks)``: the network's output, and its sampler's picks that are real frames, a ``(n,)`` int64
            array (``None`` when the network has no sampler).
        """
        if frame_mask is None:
            logits = network(inputs)
        else:
            mask = torch.as_tensor(frame_mask, dtype=torch.bool).reshape(1, -1).to(inputs.device)
            logits = network(inputs, frame_mask=mask)
        out = getattr(network, "last_sampler_output", None)
        if out is None:
            return logits, None
        picks = out.indices[0].cpu()
        if frame_mask is not None:
            picks = picks[mask[0].cpu()[picks]]
        return logits, picks.numpy().astype(np.int64)

    @torch.no_grad()
    def __call__(self, source: Any, slice_plane: str | None = None) -> Prediction:
        """Read, prepare and classify one input.

        Raises:
            ValueError, RuntimeError: for an input that cannot be read or run (the message names it).
        """
        data = self.prepare(source, slice_plane)
        image = torch.as_tensor(data["image"]).float()
        logits, picks = self.classify(self.network, image[None].to(self.device), data.get("image_frame_mask"))
        probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        out = getattr(self.network, "last_sampler_output", None)
        source_frames, source_uids = self.trace(data, picks) if picks is not None else ([], [])
        return Prediction(probs, picks, source_frames, source_uids, int(data["image_num_source_frames"]),
                          image, out, data["notes"], data.get("image_domain_warning", ""))
