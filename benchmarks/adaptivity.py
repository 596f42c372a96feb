"""Input adaptivity on the synthetic task: where static sampling fails and DAS does not.

    python -m benchmarks.adaptivity [--methods ...] [--ratios 0.25 0.5] [--seeds 2]

The class shows in 2 consecutive frames of 32, at a position that changes per input. Every method trains the same
small 2D CNN with the same recipe (Adam 1e-3, batch 16, 14 epochs, 384 training and 256 test sequences); the table
gives test accuracy and how often the picked frames include an evidence frame. Writes
``benchmarks/results/adaptivity.md`` and ``.csv`` (one row per run, appended; finished rows are skipped).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.accuracy import append_row, read_rows
from monai_das.data import evidence_hit_rate, make_synthetic_sequences
from monai_das.engines import recalibrate_batchnorm
from monai_das.networks.nets import SubsampledClassifier, get_sampler, samples_for_ratio

__all__ = ["small_backbone", "train_and_test", "synthetic_split", "main"]

NUM_FRAMES = 32
REPO = Path(__file__).resolve().parents[1]


def small_backbone() -> nn.Module:
    """A 3-layer strided CNN with BatchNorm: ``(N, 1, H, W)`` -> ``(N, 64)``."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def synthetic_split(num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(images (N, 1, 32, 32, 32), labels (N,), evidence_start (N,))`` of the synthetic task."""
    x, y, evidence = make_synthetic_sequences(num_samples, num_frames=NUM_FRAMES, seed=seed)
    return torch.as_tensor(x), torch.as_tensor(y), evidence


def train_and_test(
    sampler_name: str, num_samples: int, train: tuple, test: tuple, epochs: int = 14, seed: int = 0,
    recalibrate_bn: bool = False,
) -> tuple[float, float]:
    """Train ``SubsampledClassifier(sampler, small_backbone())`` and return (test accuracy, evidence hit rate).

    With ``recalibrate_bn`` the backbone's BatchNorm statistics are re-estimated on the eval-mode picks of the
    training inputs before testing (:py:func:`monai_das.engines.recalibrate_batchnorm`).
    """
    (x_train, y_train, _), (x_test, y_test, evidence_test) = train, test
    torch.manual_seed(seed)
    sampler = get_sampler(sampler_name, num_samples, num_frames=NUM_FRAMES, seed=seed)
    net = SubsampledClassifier(sampler, small_backbone(), num_classes=2, feature_dim=64)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x_train)).split(16):
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if recalibrate_bn:
        recalibrate_batchnorm(net, x_train)
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
        hits = evidence_hit_rate(net.last_sampler_output.indices, evidence_test)
    return accuracy, hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Accuracy per sampler on the synthetic task at several k/T.")
    parser.add_argument("--methods", nargs="+", default=["full", "random", "uniform", "dps", "adps", "das"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "adaptivity.csv", out / "adaptivity.md"
    fields = ["method", "ratio", "k", "seed", "accuracy", "evidence_hit_rate", "seconds"]
    rows = read_rows(csv_path)
    done = {(r["method"], float(r["ratio"]), int(r["seed"])) for r in rows}
    train, test = synthetic_split(384, seed=0), synthetic_split(256, seed=1)
    for seed in range(args.seeds):
        for ratio in args.ratios:
            for method in args.methods:
                key_ratio = 1.0 if method == "full" else ratio
                if (method, key_ratio, seed) in done or (method == "full" and ratio != args.ratios[0]):
                    continue
                k = NUM_FRAMES if method == "full" else samples_for_ratio(NUM_FRAMES, ratio)
                start = time.time()
                accuracy, hits = train_and_test(method, k, train, test, seed=seed)
                row = {"method": method, "ratio": 1.0 if method == "full" else ratio, "k": k, "seed": seed,
                       "accuracy": f"{accuracy:.4f}", "evidence_hit_rate": f"{hits:.4f}",
                       "seconds": f"{time.time() - start:.0f}"}
                append_row(csv_path, row, fields)
                rows.append(row)
                done.add((method, key_ratio, seed))
                print(row, flush=True)
    lines = ["# Input adaptivity on the synthetic task", "",
             "The class (disc or ring) shows in 2 consecutive frames of T = 32 at a per-input position; a small 2D",
             "CNN sees only the k picked frames. Mean +- std over seeds; `hit` = fraction of test inputs for which a",
             "picked frame shows the evidence.", "",
             "| method | k/T | k | seeds | test accuracy | evidence hit rate |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], float(r["ratio"])) for r in rows}, key=lambda m: (m[1], args.methods.index(m[0])
                                                                                 if m[0] in args.methods else 99))
    for method, ratio in keys:
        group = [r for r in rows if r["method"] == method and float(r["ratio"]) == ratio]
        acc = np.array([float(r["accuracy"]) for r in group])
        hit = np.array([float(r["evidence_hit_rate"]) for r in group])
        lines.append(f"| {method} | {ratio:g} | {group[0]['k']} | {len(group)} | {acc.mean():.3f} +- {acc.std():.3f} "
                     f"| {hit.mean():.3f} +- {hit.std():.3f} |")
    command = "python -m benchmarks.adaptivity " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines += ["", f"Command: `{command}`", "",
              f"Machine: {platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
              f"{os.cpu_count()} CPUs, shared with other jobs", ""]
    md_path.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
