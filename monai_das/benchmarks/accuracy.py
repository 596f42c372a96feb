"""Accuracy benchmark: every sampler on every dataset under one protocol, through the bundles themselves.

    python -m monai_das.benchmarks.accuracy --datasets vessel adrenal covid_blues \\
        --methods full random uniform dps adps das --seeds 3 --device cuda

For each (dataset, method, seed) the dataset's bundle is trained (``configs/train.json``) and tested
(``configs/evaluate.json``) in a subprocess with ``--sampler_name METHOD --seed SEED`` as the only differences, so
every method gets the same recipe. One CSV row is appended as soon as a run finishes and finished rows are skipped on
restart: a run cut off goes on where it stopped. The Markdown table (mean +- std over seeds) is rewritten after every
row and says when it is partial. ``--backbone resnet18_3d`` adds the bundles' ``configs/backbone_resnet3d.json`` (MONAI's
3D ResNet-18 on the picked slices) and writes ``accuracy_resnet18_3d.csv`` / ``.md`` instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "append_row", "read_rows", "main"]

REPO = Path(__file__).resolve().parents[2]
#: short name -> (bundle folder, data folder relative to the workplace's shared data, or None for generated data)
DATASETS = {
    "vessel": ("vesselmnist3d_das_classification", "medmnist3d"),
    "adrenal": ("adrenalmnist3d_das_classification", "medmnist3d"),
    "organ": ("organmnist3d_das_classification", "medmnist3d"),
    "nodule": ("nodulemnist3d_das_classification", "medmnist3d"),
    "fracture": ("fracturemnist3d_das_classification", "medmnist3d"),
    "synapse": ("synapsemnist3d_das_classification", "medmnist3d"),
    "covid_blues": ("covid_blues_das_classification", "ultrasound/covid_blues"),
    "synthetic": ("synthetic_das_classification", None),
}
METHODS = ("full", "random", "uniform", "dps", "adps", "das", "das_segments")
FIELDS = ["dataset", "method", "seed", "epochs", "sampling_ratio", "test_auc", "test_balanced_accuracy",
          "test_accuracy", "test_loss", "train_seconds", "device"]
METRICS = ("test_auc", "test_balanced_accuracy", "test_accuracy")
#: backbone -> the bundle config files added after train.json (the stretch goal: a 3D backbone on the picked slices)
BACKBONE_CONFIGS = {"mobilenet_v3_small": [], "resnet18_3d": ["backbone_resnet3d.json"]}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict, fields: list[str] = FIELDS) -> None:
    """Append ``row`` to the CSV at ``path`` (header first when the file is new): one finished run, kept at once."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_metrics(eval_dir: Path) -> dict[str, float]:
    metrics = {}
    with open(eval_dir / "metrics.csv") as f:
        for line in f:
            name, value = line.strip().split(",")[:2]
            metrics[name] = float(value)
    return metrics


def bundle_run(bundle: Path, config_files: list[str], overrides: dict, log, threads: int | None = None) -> None:
    files = "[" + ",".join(f"'{bundle / 'configs' / c}'" for c in config_files) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", str(bundle),
           "--meta_file", str(bundle / "configs" / "metadata.json"),
           "--logging_file", str(bundle / "configs" / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    log.write("$ " + shlex.join(cmd) + "\n")
    log.flush()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=bundle, env=env)


def record_command(path: Path, command: str) -> None:
    """Add ``command`` to the commands that wrote rows to this table (``path``, one a line) unless it is there."""
    if not path.exists() or command not in path.read_text().splitlines():
        with open(path, "a") as f:
            f.write(command + "\n")


def summarise(rows: list[dict], expected: int, commands: list[str], out_md: Path) -> None:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["method"])].append(row)
    lines = ["# Accuracy: every sampler under one protocol", ""]
    if len(rows) < expected:
        lines += [f"**PARTIAL: {len(rows)} of {expected} runs finished.** The table grows as the benchmark resumes.", ""]
    lines += [
        "Mean +- standard deviation over seeds of the test-split metrics, each run the dataset's bundle trained",
        "with `--sampler_name METHOD --seed SEED` and nothing else changed (see the bundle's configs for the recipe).",
        "",
        "| dataset | method | k/T | seeds | test AUC | balanced accuracy | accuracy | epochs | train s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method), group in sorted(groups.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]))):
        cells = []
        for metric in METRICS:
            values = np.array([float(r[metric]) for r in group])
            cells.append(f"{values.mean():.3f} +- {values.std():.3f}")
        ratio = "1" if method == "full" else group[0]["sampling_ratio"]
        seconds = np.mean([float(r["train_seconds"]) for r in group])
        lines.append(f"| {dataset} | {method} | {ratio} | {len(group)} | " + " | ".join(cells)
                     + f" | {group[0]['epochs']} | {seconds:.0f} |")
    if any(row["dataset"] == "covid_blues" for row in rows):
        lines += ["", "COVID-BLUES: each seed trains and tests on its own patient split (`split_seed` = seed)."]
    versions = _versions()
    lines += ["", "Commands that wrote these rows (each appends its finished runs and skips those already there):", ""]
    lines += [f"- `{command}`" for command in commands]
    lines += ["", f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
              f"device {rows[0]['device'] if rows else '-'}", "", f"Versions: {versions}", ""]
    out_md.write_text("\n".join(lines))


def _versions() -> str:
    import monai
    import torch

    return f"python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"


def run_one(dataset: str, method: str, seed: int, args, work_dir: Path, threads: int | None) -> dict | None:
    """Train and test one (dataset, method, seed) through its bundle; the result row, or None when a step failed."""
    bundle_name, data_sub = DATASETS[dataset]
    bundle = REPO / "bundles" / bundle_name
    run_dir = work_dir / f"{dataset}-{method}-seed{seed}"
    extra = BACKBONE_CONFIGS[args.backbone]
    overrides: dict = {"sampler_name": method, "seed": seed, "output_dir": run_dir, "device": args.device}
    if data_sub is not None:
        overrides["dataset_dir"] = Path(args.data_root) / data_sub
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if dataset == "covid_blues":  # decode the videos once for every run
        overrides["video_cache_dir"] = work_dir / "video_cache"
        # a patient split per seed (repeated patient-grouped hold-out): one split leaves only ~9 test patients
        overrides["split_seed"] = seed
    overrides.update(args.set)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "benchmark.log", "a") as log:
        start = time.time()
        try:
            bundle_run(bundle, ["train.json", *extra], overrides, log, threads)
            seconds = time.time() - start
            bundle_run(bundle, ["train.json", "evaluate.json", *extra], overrides, log, threads)
        except subprocess.CalledProcessError as e:
            print(f"FAILED {dataset} {method} seed {seed}: {e}; see {run_dir / 'benchmark.log'}", flush=True)
            return None
    metrics = read_metrics(run_dir / "eval")
    config = json.loads((bundle / "configs" / "train.json").read_text())
    row = {"dataset": dataset, "method": method, "seed": seed, "epochs": overrides.get("epochs", config["epochs"]),
           "sampling_ratio": overrides.get("sampling_ratio", config["sampling_ratio"]),
           "train_seconds": f"{seconds:.0f}", "device": args.device}
    row.update({k: f"{metrics[k]:.4f}" for k in ("test_auc", "test_balanced_accuracy", "test_accuracy", "test_loss")})
    return row


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and test every sampler on every dataset (resumable).")
    parser.add_argument("--datasets", nargs="+", default=["vessel", "adrenal", "covid_blues"], choices=sorted(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--epochs", type=int, default=None, help="override the bundle's epochs (CPU fallback)")
    parser.add_argument("--data_root", default=str(REPO.parent / "shared" / "data"),
                        help="folder holding medmnist3d/ and ultrasound/covid_blues/")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--work_dir", default=str(REPO / "runs" / "benchmark"), help="checkpoints and logs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once; each gets cpu_count // jobs threads (2 single-thread runs beat one "
                             "2-thread run on a 2-core CPU)")
    parser.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="extra bundle override for every run, e.g. --set num_train=64 (repeatable)")
    parser.add_argument("--backbone", default="mobilenet_v3_small", choices=sorted(BACKBONE_CONFIGS),
                        help="resnet18_3d: MONAI's 3D ResNet-18 on the picked slices; results go to "
                             "accuracy_resnet18_3d.csv/.md")
    parser.add_argument("--summary_only", action="store_true", help="only rewrite the table from the finished rows")
    args = parser.parse_args(argv)
    args.set = dict(args.set)

    results_dir, work_dir = Path(args.results_dir), Path(args.work_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "accuracy" if args.backbone == "mobilenet_v3_small" else f"accuracy_{args.backbone}"
    work_dir = work_dir if args.backbone == "mobilenet_v3_small" else work_dir / args.backbone
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = results_dir / f"{stem}.csv", results_dir / f"{stem}.md"
    commands_path = results_dir / f"{stem}_commands.txt"
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m monai_das.benchmarks.accuracy " + shlex.join([a for a in given if a != "--summary_only"])
    # seed-major, then method, then dataset: every dataset gets each method early when the run is cut short
    plan = [(d, m, s) for s in range(args.seeds) for m in args.methods for d in args.datasets]
    done = {(r["dataset"], r["method"], int(r["seed"])) for r in read_rows(csv_path)}
    todo = [] if args.summary_only else [run for run in plan if run not in done]
    if todo:
        record_command(commands_path, command)
    commands = commands_path.read_text().splitlines() if commands_path.exists() else [command]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *run, args, work_dir, threads) for run in todo]
        for future in as_completed(futures):
            row = future.result()
            if row is None:
                continue
            append_row(csv_path, row)
            print(f"{row['dataset']} {row['method']} seed {row['seed']}: AUC {row['test_auc']} "
                  f"bal.acc {row['test_balanced_accuracy']} ({row['train_seconds']} s)", flush=True)
            summarise(read_rows(csv_path), len(plan), commands, md_path)
    summarise(read_rows(csv_path), len(plan), commands, md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
