"""Batch inference of a bundle on NIfTI, DICOM, video and MedMNIST npz files, one CSV row per input.

    monai-das predict --bundle bundles/vesselmnist3d_das_classification --input scans/ clip.mp4 test.npz \\
        --output results.csv [--ckpt model.pt] [--montage_dir montages/] [--resume] [--overwrite]
    python -m monai_das.apps.cli predict ...          # the same

The jobs, one module each: input discovery (:func:`monai_das.data.expand_inputs`: files and folders, loop-safe,
DICOM files grouped by SeriesInstanceUID, FIFOs and devices skipped unopened), reading (:mod:`monai_das.data`
``LoadSequenced``: MONAI's ``LoadImage`` + ``Orientation`` for volumes, so that frames are slices along an anatomical
direction, ``--slice_plane``), preprocessing and prediction (:class:`monai_das.apps.BundlePredictor`: the bundle's
own ``configs/inference.json``, the definition that ``python -m monai.bundle run`` and the MONAI Label task run too;
intensities as in training: 8-bit units / 255), writing (:class:`monai_das.apps.PredictionTable`).

Inputs over ``--max_voxels`` voxels (default 2**28, a 512 x 512 x 1024 CT) are refused before their pixels are read;
a single 2-D image is refused unless ``--allow_2d``. Peak memory is about 15 bytes per voxel of the largest input plus
0.6 GB (measured: a 640^3 NIfTI, just under the default limit, peaked at 4.6 GB; 384^3 at 1.4 GB).

CSV columns: ``input, status, predicted_class, predicted_label, prob_<class>..., picked_frames, source_frames,
source_uids, num_source_frames, montage, error, warning, domain_warning, checkpoint_sha256, bundle_version``. ``picked_frames`` are
the sampler's picks among the network's ``T`` frames; ``source_frames`` the same frames as the file numbers them
(NIfTI: the voxel index along the slice direction; DICOM series: InstanceNumber, with ``source_uids`` the
SOPInstanceUIDs; cine, video, npz: the frame index), in the same order. ``domain_warning`` says how an input differs
from the bundle's training data (``metadata.json`` ``training_statistics``: value range, fraction of voxels at its
ends, foreground fraction), e.g. a CT scan given to a model trained on binary masks. An input that cannot be read or run gets
``status=error`` and the message; the others go on. Rows are written as inputs finish (``<output>.partial``) and the
CSV appears complete at the end; after an interruption, ``--resume`` keeps the finished rows and runs the rest.
Cells that a spreadsheet would take for a formula get a leading ``'``. The exit status is 0 when at least one input
succeeded, 2 when none did, 1 when nothing could be run (bad bundle, checkpoint or arguments, or an output that
exists without ``--overwrite`` / ``--resume``).

Extra ``--key value`` pairs override keys of the bundle's ``configs/inference.json`` (for example ``--sampler_name
dps`` for a checkpoint trained with that override).
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import optional_import

from monai_das.apps.bundle_predictor import BundlePredictor
from monai_das.apps.prediction_table import PredictionTable
from monai_das.data import DEFAULT_MAX_VOXELS, NPZ_SPLITS, SLICE_PLANES, InputSpec, expand_inputs
from monai_das.utils import decide

PILImage, has_pil = optional_import("PIL.Image")

__all__ = [
    "BundlePredictor",
    "InputSpec",
    "expand_inputs",
    "write_montage",
    "predict",
    "build_parser",
    "main",
]

logger = logging.getLogger(__name__)

MONTAGE_STYLES = ("picks", "decisions")
EXIT_OK, EXIT_SETUP_ERROR, EXIT_ALL_FAILED = 0, 1, 2


# ------------------------------------------------------------------------------------------------------------ montage


def _slug(text: str, limit: int = 80) -> str:
    name = text.replace("\\", "/").rstrip("/").split("/")[-1] or "input"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-limit:]


def write_montage(
    path: Path, image: torch.Tensor, picks: np.ndarray, title: str, style: str = "picks", scores: Any = None
) -> Path:
    """Write one input's picked frames as a PNG.

    ``style="picks"``: :func:`monai_das.visualize.frames_montage` of the picked frames, in order, each with a bar
    showing where in the sequence it lies (Pillow). ``style="decisions"``:
    :func:`monai_das.visualize.plot_sampling_decisions`, every frame with the picked ones outlined (matplotlib).
    """
    from monai_das.visualize import frames_montage, plot_sampling_decisions

    if style == "decisions":
        return plot_sampling_decisions(image, picks, path, title=title, scores=scores)
    _, t, h, w = image.shape
    montage = frames_montage(image[:, torch.as_tensor(picks)], picks, num_frames=t, scale=max(1, 128 // max(h, w)))
    pixels = (montage.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path, format="PNG")
    return path


# ------------------------------------------------------------------------------------------------------------ driver


def _indices_text(values: Any) -> str:
    return " ".join(str(int(v)) for v in values)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def predict(
    bundle: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    ckpt: str | os.PathLike | None = None,
    montage_dir: str | os.PathLike | None = None,
    montage_style: str = "picks",
    device: str = "cpu",
    npz_split: str = "test",
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    overwrite: bool = False,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Run a bundle on every input and write the CSV (see the module docstring).

    Args:
        max_voxels: refuse inputs over this many voxels (``None``: no limit); also given to the bundle's reader.
        resume: keep the rows of an interrupted (or finished) run into ``output`` and run only the other inputs.
        overrides: values for keys of the bundle's ``configs/inference.json`` (``slice_plane``, ``allow_2d``...).

    Returns:
        the CSV rows, as written.

    Raises:
        FileExistsError: when ``output`` (or its partial file, or a montage) exists and neither ``overwrite`` nor
            ``resume`` is set; nothing is run then.
        FileNotFoundError, ValueError, RuntimeError, OSError: for a bundle, checkpoint, option or output location
            that cannot be used; raised before any input is run.
    """
    if montage_style not in MONTAGE_STYLES:
        raise ValueError(f"montage_style must be one of {list(MONTAGE_STYLES)}, got {montage_style!r}.")
    if montage_dir is not None and montage_style == "picks" and not has_pil:
        raise RuntimeError("--montage_dir needs Pillow (pip install pillow).")
    check_device(device)
    table = PredictionTable(output, overwrite=overwrite, resume=resume)  # the output location, before anything else
    specs = expand_inputs(inputs, npz_split, max_voxels)
    if not specs:
        raise ValueError("no inputs given.")
    _check_output_is_no_input(table, specs)
    montage_paths: list[Path | None] = [None] * len(specs)
    if montage_dir is not None:
        montage_paths = [Path(montage_dir) / f"{i:04d}_{_slug(s.id)}.png" for i, s in enumerate(specs)]
        existing = [str(p) for p in montage_paths if p is not None and p.exists()]
        if existing and not (overwrite or resume):
            raise FileExistsError(f"montage file '{existing[0]}' exists ({len(existing)} in all); pass --resume to "
                                  "continue the run that wrote them, or --overwrite to replace them.")
    predictor = BundlePredictor(bundle, ckpt=ckpt, device=device, overrides={"max_voxels": max_voxels,
                                                                             **(overrides or {})})
    class_columns = [f"prob_{name}" for name in predictor.class_names]
    columns = ["input", "status", "predicted_class", "predicted_label", *class_columns, "picked_frames",
               "source_frames", "source_uids", "num_source_frames", "montage", "error", "warning",
               "domain_warning", "checkpoint_sha256", "bundle_version"]
    table.start(columns)
    if table.done:
        logger.info("resuming: %d input(s) already done", len(table.done))
    rows: list[dict[str, str]] = []
    for spec, montage_path in zip(specs, montage_paths):
        if spec.id in table.done:
            rows.append(table.done[spec.id])
            continue
        row = _predict_one(predictor, spec, montage_path, montage_style)
        row.update(checkpoint_sha256=predictor.ckpt_sha256, bundle_version=predictor.version)
        table.append(row)
        rows.append(row)
    table.close()
    return rows


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, if this machine has it.

    Raises:
        ValueError: naming ``--device``, for a device name torch does not know, or a CUDA device on a machine (or a
            torch build) without it.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {device}: not a device name ({e}); use cpu, cuda or cuda:N.") from e
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda is not None}); use --device cpu.")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device}: only cpu, cuda and cuda:N are supported.")
    return dev


def _check_output_is_no_input(table: PredictionTable, specs: Sequence[InputSpec]) -> None:
    """Refuse a run whose CSV (or its partial file) is one of its inputs: ``--overwrite`` would replace it."""
    ours = {p.resolve() for p in (table.output, table.partial)}
    for spec in specs:
        if spec.path.resolve() in ours:
            raise ValueError(f"--output '{table.output}' is also an input ('{spec.path}'); write the results to "
                             "another file.")


def _predict_one(predictor: BundlePredictor, spec: InputSpec, montage_path: Path | None,
                 montage_style: str) -> dict[str, str]:
    row = {"input": spec.id}
    notes = [spec.warning] if spec.warning else []
    try:
        result = predictor(spec.source)
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
        message = _one_line(f"{type(e).__name__}: {e}")
        if spec.id not in message and str(spec.path) not in message:
            message = f"{spec.id}: {message}"
        logger.warning("%s: error: %s", spec.id, message)
        return {**row, "status": "error", "error": message, "warning": "; ".join(notes)}
    probs = result.probabilities
    label = int(decide(np.asarray(probs)[None], predictor.network_options)[0])  # the threshold chosen on validation
    notes += result.notes
    row.update(status="ok", predicted_class=str(label), predicted_label=predictor.class_names[label],
               num_source_frames=str(result.num_source_frames), domain_warning=result.domain_warning)
    if result.domain_warning:
        logger.warning("%s: %s", spec.id, result.domain_warning)
    row.update({f"prob_{name}": f"{float(p):.6f}" for name, p in zip(predictor.class_names, probs)})
    if result.picks is not None:
        row.update(picked_frames=_indices_text(result.picks), source_frames=_indices_text(result.source_frames),
                   source_uids=" ".join(result.source_uids))
        if montage_path is not None:
            title = (f"{spec.id}: {row['predicted_label']} (p={float(probs[label]):.2f}); frames "
                     f"{row['source_frames']} of {result.num_source_frames}")
            out = result.sampler_output
            try:
                scores = torch.softmax(out.logits[0], dim=-1) if getattr(out, "logits", None) is not None else None
                row["montage"] = str(write_montage(montage_path, result.image, result.picks, title, montage_style,
                                                   scores))
            except Exception as e:  # noqa: BLE001 - a failed picture does not fail the prediction
                notes.append(_one_line(f"montage not written: {type(e).__name__}: {e}"))
    row["warning"] = "; ".join(notes)
    logger.info("%s: %s (%s)", spec.id, row["predicted_label"], row.get("source_frames", ""))
    return row


# ---------------------------------------------------------------------------------------------------------------- CLI


def build_parser(prog: str = "monai-das predict") -> argparse.ArgumentParser:
    """The argument parser of ``monai-das predict``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a monai_das bundle on NIfTI / DICOM / video / MedMNIST npz files and write one CSV row per "
        "input (probabilities, picked frames as the network and as the file numbers them).",
        epilog="Any other --key value pair overrides the bundle's configs/inference.json (e.g. --sampler_name dps). "
        "Exit status: 0 when at least one input succeeded, 2 when none did, 1 when nothing could be run.",
    )
    parser.add_argument("--bundle", required=True, help="the bundle folder (configs/inference.json, metadata.json)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH", help="files or folders")
    parser.add_argument("--output", required=True, metavar="CSV", help="the CSV file to write")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="checkpoint (default: the bundle's outputs/model.pt, else models/model.pt)")
    parser.add_argument("--montage_dir", default=None, metavar="DIR", help="write one PNG of the picks per input")
    parser.add_argument("--montage_style", default="picks", choices=MONTAGE_STYLES,
                        help="picks: the picked frames (fast); decisions: every frame, picks outlined (matplotlib)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--slice_plane", default=None, metavar="PLANE",
                        help=f"volumes: the direction of the frames, one of {list(SLICE_PLANES)} or an axcode letter "
                        "(S, I, A, P, R, L); default: the bundle's (inference.json slice_plane)")
    parser.add_argument("--allow_2d", action="store_true", help="run a single 2-D image as a one-frame sequence")
    parser.add_argument("--max_voxels", type=int, default=DEFAULT_MAX_VOXELS,
                        help=f"refuse inputs over this many voxels before reading them (default {DEFAULT_MAX_VOXELS}: "
                        "1 GiB as float32, but reading and orienting a volume peaks at about 15 bytes per voxel: a "
                        "640^3 NIfTI peaked at 4.6 GB, measured); 0 for no limit")
    parser.add_argument("--npz_split", default="test", choices=NPZ_SPLITS, help="MedMNIST npz: the split to run")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of an interrupted (or finished) run into --output and run the other inputs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file and montages")
    return parser


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``monai-das predict``; returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if len(rest) % 2 or any(not k.startswith("--") for k in rest[::2]):
        parser.error(f"unrecognized arguments: {' '.join(rest)} (bundle overrides are --key value pairs)")
    overrides = {key[2:]: _literal(value) for key, value in zip(rest[::2], rest[1::2])}
    if args.slice_plane is not None:
        overrides["slice_plane"] = args.slice_plane
    if args.allow_2d:
        overrides["allow_2d"] = True
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        rows = predict(
            args.bundle, args.input, args.output, ckpt=args.ckpt, montage_dir=args.montage_dir,
            montage_style=args.montage_style, device=args.device, npz_split=args.npz_split,
            max_voxels=args.max_voxels or None, overwrite=args.overwrite, resume=args.resume, overrides=overrides,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        print(f"monai-das predict: error: {e}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} inputs succeeded; wrote {args.output}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_ALL_FAILED


if __name__ == "__main__":
    sys.exit(main())
