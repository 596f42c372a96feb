"""What the sampler looks at: the teacher's per-frame score at DAS's picks against uniform's, paired over test videos.

    python -m benchmarks.sampler_focus --dataset covid_blues_b_lines --backbone efficientnet_lite0 --ratio 0.25 \\
        --seeds 5 --epochs 4 --set num_frames=16 --set frame_size=112 --data_root /path/to/shared/data

It reads what ``benchmarks.accuracy`` left with the same options (``--work_dir``, ``--results_dir``, ``--epochs``,
``--set``, ``--backbone``): per fold (seed) the full-sequence model (the teacher, ``model.pt`` of its run folder) and
the test predictions of DAS and of uniform at ``--ratio`` (their ``picked_frames``). The teacher scores every frame of
every test video alone: its backbone's features of that frame through its linear head, softmax, the probability of
class ``--positive`` (B-lines present). With mean pooling the video's logit is the mean of these per-frame logits, so
the score says how much each frame shows the label to the model that learned it.

Per video: the mean score over DAS's picks, over uniform's picks and over all real frames. The table gives their
means and the paired difference DAS - uniform with a bootstrap 95% interval over videos (all videos, and the videos
whose label is ``--positive``). Rows go to ``sampler_focus_<backbone>.csv`` (per video) and ``.md``; TensorBoard
(``<work_dir>/<backbone>/sampler_focus_logs``, never committed: the videos' licences forbid sharing images of them)
gets, per positive test video, the teacher's score curve and montages of the frames DAS and uniform picked.
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import accuracy

__all__ = ["frame_scores", "paired_mean_difference", "main"]

FIELDS = ["fold", "id", "label", "das_mean", "uniform_mean", "all_mean"]


def frame_scores(network: torch.nn.Module, frames: torch.Tensor, positive: int) -> torch.Tensor:
    """The teacher's probability of class ``positive`` for every frame alone: ``(C, T, H, W)`` -> ``(T,)``."""
    with torch.no_grad():
        features = network.backbone(frames.transpose(0, 1).contiguous())
        return torch.softmax(network.head(features), dim=1)[:, positive]


def paired_mean_difference(a: np.ndarray, b: np.ndarray, num_bootstrap: int = 2000, seed: int = 0) -> tuple:
    """``(mean(a - b), low, high)``: the mean paired difference and its bootstrap 95% interval over the pairs."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    draws = np.random.default_rng(seed).integers(0, diff.size, (num_bootstrap, diff.size))
    low, high = np.percentile(diff[draws].mean(axis=1), [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def _literal(value):
    """An override as ``monai.bundle run`` reads it from its command line: a Python literal when it is one."""
    try:
        return ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return str(value)


def _picks(path: Path) -> dict[str, list[int]]:
    with open(path, newline="") as f:
        return {Path(r["id"]).name: [int(i) for i in r["picked_frames"].split()] for r in csv.DictReader(f)}


def fold_rows(args, fold: int, writer) -> list[dict]:
    """Score every test video of one fold with its teacher; one row per video."""
    from monai.bundle import ConfigParser

    from monai_das.handlers import load_checkpoint

    teacher_key = accuracy.run_key(args.dataset, "full", fold, 1.0, args)
    teacher_dir = Path(args.work_dir) / args.backbone / accuracy.run_name(teacher_key, args)
    picks = {m: _picks(Path(args.results_dir) / "predictions" /
                       f"{accuracy.run_name(accuracy.run_key(args.dataset, m, fold, args.ratio, args), args)}.csv")
             for m in ("das", "uniform")}
    bundle = Path(args.bundles_dir) / accuracy.DATASETS[args.dataset][0]
    bench = accuracy.Benchmark(args, Path(args.work_dir) / args.backbone, Path(args.results_dir), Path(), None)
    overrides = bench._overrides(args.dataset, "full", fold, 1.0, teacher_dir)  # the teacher's bundle options
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c)
                        for c in ("train.json", "evaluate.json", *accuracy.BACKBONE_CONFIGS[args.backbone])])
    parser.update({"bundle_root": str(bundle), **{k: _literal(v) for k, v in overrides.items() if k != "device"}})
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(load_checkpoint(teacher_dir / "model.pt"))
    rows = []
    for item in parser.get_parsed_content("test_dataset"):
        name = Path(item["path"]).name
        real = int(torch.as_tensor(item["image_frame_mask"]).sum())
        scores = frame_scores(network, torch.as_tensor(item["image"]).float(), args.positive)
        das, uniform = picks["das"][name], picks["uniform"][name]
        rows.append({"fold": fold, "id": name, "label": int(item["label"]),
                     "das_mean": f"{float(scores[das].mean()):.4f}",
                     "uniform_mean": f"{float(scores[uniform].mean()):.4f}",
                     "all_mean": f"{float(scores[:real].mean()):.4f}"})
        if writer is not None and int(item["label"]) == args.positive:
            for t, s in enumerate(scores.tolist()):
                writer.add_scalar(f"teacher_score/fold{fold}/{name}", s, t)
            frames = torch.as_tensor(item["image"]).transpose(0, 1)  # (T, C, H, W)
            writer.add_images(f"das_picks/fold{fold}/{name}", frames[das], 0)
            writer.add_images(f"uniform_picks/fold{fold}/{name}", frames[uniform], 0)
    return rows


def summarise(rows: list[dict], args, command: str) -> str:
    lines = [f"# What the sampler looks at: {args.dataset}, k/T = {args.ratio:g}, backbone {args.backbone}", "",
             f"Teacher's per-frame probability of class {args.positive} (the full-sequence model scoring each frame "
             "alone), mean over each method's picks, per test video; folds: "
             f"{sorted({int(r['fold']) for r in rows})}. Paired difference DAS - uniform with a bootstrap 95% "
             "interval over videos (2000 draws).", "",
             "| videos | n | DAS picks | uniform picks | all frames | DAS - uniform | 95% interval |",
             "|---|---|---|---|---|---|---|"]
    for title, subset in (("all", rows), (f"label {args.positive}", [r for r in rows
                                                                    if int(r["label"]) == args.positive])):
        if not subset:
            continue
        das, uni, full = (np.array([float(r[k]) for r in subset]) for k in ("das_mean", "uniform_mean", "all_mean"))
        mean, low, high = paired_mean_difference(das, uni)
        lines.append(f"| {title} | {len(subset)} | {das.mean():.3f} | {uni.mean():.3f} | {full.mean():.3f} | "
                     f"{mean:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    return "\n".join([*lines, "", f"Command: `{command}`", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="covid_blues_b_lines", choices=sorted(accuracy.DATASETS))
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=sorted(accuracy.BACKBONE_CONFIGS))
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, default=5, help="folds 0..N-1")
    parser.add_argument("--positive", type=int, default=1, help="the class whose per-frame probability is scored")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--recipe", default="staged", choices=accuracy.RECIPES)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--bundles_dir", default=str(accuracy.REPO / "bundles"))
    parser.add_argument("--results_dir", default=str(accuracy.REPO / "benchmarks" / "results"))
    parser.add_argument("--work_dir", default=str(accuracy.REPO / "runs" / "benchmark"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", type=lambda text: tuple(text.split("=", 1)), action="append", default=[],
                        metavar="KEY=VALUE", help="the same --set options as the accuracy runs")
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(Path(args.work_dir) / args.backbone / "sampler_focus_logs"))
    rows = [row for fold in range(args.seeds) for row in fold_rows(args, fold, writer)]
    writer.close()
    stem = Path(args.results_dir) / f"sampler_focus_{args.backbone}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=FIELDS)
        out.writeheader()
        out.writerows(rows)
    command = "python -m benchmarks.sampler_focus " + " ".join(argv if argv is not None else sys.argv[1:])
    stem.with_suffix(".md").write_text(summarise(rows, args, command))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
