"""Accuracy benchmark: every sampler at every budget on every dataset under one protocol, through the bundles.

    python -m benchmarks.accuracy --datasets vessel adrenal --methods full uniform dps das das_prior \\
        --ratios 0.125 0.25 0.5 --seeds 3 --recipe staged --device cpu --jobs 2

Recipes (the same for every method of a dataset; only how the sampler itself is trained differs):

- ``staged`` (default): the dataset's bundle is trained on the full sequence end to end (the ``full`` row; it is
  also the teacher), then each method runs the bundle's one training command, ``configs/train.json``
  (``monai_das.engines.StagedRecipe``), given that teacher (``--teacher_ckpt``): the head on the sampler prior's
  picks, and for a sampler that learns, sampler and head on the teacher's cached frame features, the learned sampler
  kept only when a paired bootstrap on validation says it beats its prior (``--selection``). ``das_prior`` is DAS with
  its sampler untrained (``staged_sampler_lr_scale=0``): only the head learns, as for uniform. ``das_from_prior``
  rows are of the former recipe (head first, then the sampler, best validation state of both): every DAS run now
  trains the head on the prior first, so the method is not run any more.
  Its rows have recipe ``staged_selected`` (``staged`` rows are of the former recipe).
- ``end_to_end``: ``configs/train.json`` with ``configs/train_end_to_end.json`` trains sampler, backbone and head
  together.

Every run is tested with ``configs/evaluate.json`` (accuracy and balanced accuracy at the decision threshold chosen
on validation and stored in ``model.pt``; AUC from the probabilities), whose per-case test predictions
(probabilities, label, picks) are copied to ``<results_dir>/predictions/``. One CSV row is appended as soon as a run
finishes; a row is keyed on every option that changes it (dataset, method, recipe, seed, sampling ratio, image size,
epochs, overrides), and finished rows are skipped on restart; a training cut off resumes (staged: ``--resume auto``,
every finished stage skipped; end to end: from its ``last.pt``). The Markdown table and the paired
comparisons (``paired.csv``: DAS - uniform, - full, - das_prior and - DPS; das_from_prior - uniform, - full, - das_prior
and - DAS; mean over seeds with a paired bootstrap 95% interval over test cases) are rewritten after every row and say
when the table is partial.
``--backbone resnet18_3d`` adds the bundles' ``configs/backbone_resnet3d.json`` and writes
``accuracy_resnet18_3d.*`` (end-to-end recipe only); ``--backbone efficientnet_lite0`` adds
``configs/backbone_efficientnet_lite0.json`` (ImageNet-pretrained EfficientNet-Lite0 and its fine-tuning recipe, both
recipes) and writes ``accuracy_efficientnet_lite0.*``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.paired import paired_difference, read_predictions

__all__ = ["DATASETS", "METHODS", "RECIPES", "append_row", "read_rows", "run_key", "main"]

REPO = Path(__file__).resolve().parents[1]
#: short name -> (bundle folder, data folder relative to the workplace's shared data, or None for generated data)
DATASETS = {
    "vessel": ("vesselmnist3d_das_classification", "medmnist3d"),
    "adrenal": ("adrenalmnist3d_das_classification", "medmnist3d"),
    "organ": ("organmnist3d_das_classification", "medmnist3d"),
    "nodule": ("nodulemnist3d_das_classification", "medmnist3d"),
    "fracture": ("fracturemnist3d_das_classification", "medmnist3d"),
    "synapse": ("synapsemnist3d_das_classification", "medmnist3d"),
    "covid_blues": ("covid_blues_das_classification", "ultrasound/covid_blues"),
    **{f"covid_blues_{target}": ("covid_blues_das_classification", "ultrasound/covid_blues")
       for target in ("covid", "b_lines", "a_lines", "severity")},
    "synthetic": ("synthetic_das_classification", None),
}
#: folds of the COVID-BLUES targets' cross-validation (the bundle's num_folds)
FOLDS = 5
METHODS = ("full", "random", "uniform", "dps", "adps", "das", "das_prior", "das_from_prior", "das_segments")
#: bundle overrides that make a method (default: ``sampler_name`` = the method)
METHOD_OVERRIDES = {"das_prior": {"sampler_name": "das", "sampler_lr_scale": 0, "staged_sampler_lr_scale": 0}}
#: methods whose rows came from a recipe the bundles no longer have: summarised, never run
RETIRED = ("das_from_prior",)
RECIPES = ("staged", "end_to_end")
#: the ``recipe`` of a row, by ``--recipe``: staged rows of the one-command recipe (threshold stored, learned sampler
#: kept by selection) are ``staged_selected``, so that the former ``staged`` rows are neither skipped for them nor
#: mixed with them
ROW_RECIPES = {"staged": "staged_selected", "end_to_end": "end_to_end"}
#: the comparisons of the paired table: (method A, method B), A - B
COMPARISONS = (("das", "uniform"), ("das", "full"), ("das", "das_prior"), ("das", "dps"),
               ("das_from_prior", "uniform"), ("das_from_prior", "full"), ("das_from_prior", "das_prior"),
               ("das_from_prior", "das"))
#: overrides read only by the staged recipe after its teacher: they do not change the full-sequence teacher
STAGED_ONLY = ("staged_epochs", "staged_batch_size", "staged_sampler_lr_scale", "rank_weight", "rank_temperature",
               "rank_target", "selection", "selection_confidence", "finetune_epochs", "finetune_learning_rate")
KEY_FIELDS = ["dataset", "method", "recipe", "seed", "sampling_ratio", "image_size", "epochs", "overrides"]
FIELDS = KEY_FIELDS + ["test_auc", "test_balanced_accuracy", "test_accuracy", "test_loss", "train_seconds", "device",
                       "predictions"]
PAIRED_FIELDS = ["dataset", "recipe", "sampling_ratio", "comparison", "seeds", "cases", "mean_auc_difference",
                 "ci_low", "ci_high"]
METRICS = ("test_auc", "test_balanced_accuracy", "test_accuracy")
#: backbone -> the bundle config files added after train.json (the stretch goal: a 3D backbone on the picked slices)
BACKBONE_CONFIGS = {"mobilenet_v3_small": [], "resnet18_3d": ["backbone_resnet3d.json"],
                    "efficientnet_lite0": ["backbone_efficientnet_lite0.json"]}
#: backbones that see the picked slices as one volume: no 2D frame features for the staged recipe to pool
BACKBONES_3D = ("resnet18_3d",)


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


def _bundle_value(config: dict, key: str):
    """A plain value of the bundle's train.json, following ``@name`` references."""
    value = config.get(key)
    while isinstance(value, str) and value.startswith("@"):
        value = config.get(value[1:])
    return value


def run_key(dataset: str, method: str, seed: int, ratio: float, args) -> dict:
    """The fields that identify a run: everything that changes its result."""
    config = json.loads((Path(args.bundles_dir) / DATASETS[dataset][0] / "configs" / "train.json").read_text())
    image_size = args.set.get("image_size", args.set.get("frame_size", _bundle_value(config, "frame_size")))
    return {
        "dataset": dataset,
        "method": method,
        # the full sequence has no sampler to train: one end-to-end run serves every recipe (and is the teacher)
        "recipe": "end_to_end" if method == "full" else ROW_RECIPES[args.recipe],
        "seed": str(seed),
        "sampling_ratio": "1.0" if method == "full" else str(float(ratio)),
        "image_size": str(image_size),
        "epochs": str(args.epochs if args.epochs is not None else config["epochs"]),
        "overrides": " ".join(f"{k}={v}" for k, v in sorted(args.set.items())
                              if method != "full" or k not in STAGED_ONLY),
    }


def _key_tuple(row: dict) -> tuple:
    return tuple(str(row[f]) for f in KEY_FIELDS)


def run_name(key: dict, args) -> str:
    """The run's folder name: readable, and distinct for every key of one work folder."""
    name = f"{key['dataset']}-{key['method']}-seed{key['seed']}"
    if key["method"] != "full":
        name += f"-{key['recipe']}-r{key['sampling_ratio']}"
    if args.epochs is not None:
        name += f"-e{args.epochs}"
    if key["overrides"]:
        name += "-" + key["overrides"].replace(" ", "-").replace("=", "")
    return name.replace("/", "_")


class Benchmark:
    """Runs the plan one (dataset, seed) group per worker: the teacher (full sequence) first, then every method."""

    def __init__(self, args, work_dir: Path, results_dir: Path, csv_path: Path, threads: int | None) -> None:
        self.args, self.work_dir, self.results_dir, self.csv_path, self.threads = (
            args, work_dir, results_dir, csv_path, threads)
        self.lock = threading.Lock()
        self.on_row = None

    def _overrides(self, dataset: str, method: str, seed: int, ratio: float, run_dir: Path) -> dict:
        bundle_name, data_sub = DATASETS[dataset]
        overrides: dict = {"sampler_name": method, "seed": seed, "output_dir": run_dir, "device": self.args.device}
        overrides.update(METHOD_OVERRIDES.get(method, {}))
        if method != "full":
            overrides["sampling_ratio"] = ratio
        if data_sub is not None:
            overrides["dataset_dir"] = Path(self.args.data_root) / data_sub
        if self.args.epochs is not None:
            overrides["epochs"] = self.args.epochs
        if dataset.startswith("covid_blues"):  # decode the videos once for every run
            overrides["video_cache_dir"] = self.work_dir / "video_cache"
        if dataset == "covid_blues":
            # the first protocol: a 70/15/15 patient split per seed (repeated patient-grouped hold-out)
            overrides.update(split_seed=seed, fold=None)
        elif dataset.startswith("covid_blues_"):
            # patient-grouped 5-fold cross-validation: the seed column is the test fold
            overrides.update(target=dataset.removeprefix("covid_blues_"), fold=seed)
        overrides.update({k: v for k, v in self.args.set.items() if method != "full" or k not in STAGED_ONLY})
        return overrides

    def run(self, dataset: str, method: str, seed: int, ratio: float, teacher: Path | None) -> dict | None:
        """Train (unless its ``train.done`` exists) and test one run; its row, or None when a step failed."""
        key = run_key(dataset, method, seed, ratio, self.args)
        run_dir = self.work_dir / run_name(key, self.args)
        bundle = Path(self.args.bundles_dir) / DATASETS[dataset][0]
        extra = BACKBONE_CONFIGS[self.args.backbone]
        overrides = self._overrides(dataset, method, seed, ratio, run_dir)
        staged = key["recipe"] == ROW_RECIPES["staged"]
        train_files = ["train.json", *extra] if staged else ["train.json", "train_end_to_end.json", *extra]
        if staged:
            overrides["teacher_ckpt"] = teacher
        run_dir.mkdir(parents=True, exist_ok=True)
        done = run_dir / "train.done"
        with open(run_dir / "benchmark.log", "a") as log:
            try:
                if not done.exists():
                    start = time.time()
                    # an unfinished run goes on: staged from its unfinished stage, end to end from its last.pt
                    if staged:
                        resume = {"resume": "auto"}
                    else:
                        resume = {"resume": True} if (run_dir / "last.pt").exists() else {}
                    bundle_run(bundle, train_files, {**overrides, **resume}, log, self.threads)
                    done.write_text(f"{time.time() - start:.0f}\n")
                bundle_run(bundle, ["train.json", "evaluate.json", *extra], overrides, log, self.threads)
            except subprocess.CalledProcessError as e:
                print(f"FAILED {run_dir.name}: {e}; see {run_dir / 'benchmark.log'}", flush=True)
                return None
        metrics = read_metrics(run_dir / "eval")
        predictions = self.results_dir / "predictions" / f"{run_dir.name}.csv"
        predictions.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "eval" / "predictions.csv", predictions)
        row = {**key, "train_seconds": done.read_text().strip(), "device": self.args.device,
               "predictions": str(predictions.relative_to(self.results_dir))}
        row.update({k: f"{metrics[k]:.4f}" for k in ("test_auc", "test_balanced_accuracy", "test_accuracy", "test_loss")})
        return row

    def group(self, dataset: str, seed: int, runs: list[tuple[str, float]], done: set) -> None:
        """The teacher of (dataset, seed) when the recipe needs it or the plan has ``full``, then the other runs."""
        teacher = None
        full_key = run_key(dataset, "full", seed, 1.0, self.args)
        if self.args.recipe == "staged" or any(m == "full" for m, _ in runs):
            teacher_dir = self.work_dir / run_name(full_key, self.args)
            if _key_tuple(full_key) not in done:
                if not self._record(self.run(dataset, "full", seed, 1.0, None)):
                    return
            teacher = teacher_dir / "model.pt"
        for method, ratio in runs:
            if method != "full" and _key_tuple(run_key(dataset, method, seed, ratio, self.args)) not in done:
                self._record(self.run(dataset, method, seed, ratio, teacher))

    def _record(self, row: dict | None) -> bool:
        if row is None:
            return False
        with self.lock:
            append_row(self.csv_path, row)
            print(f"{row['dataset']} {row['method']} r={row['sampling_ratio']} seed {row['seed']}: AUC "
                  f"{row['test_auc']} bal.acc {row['test_balanced_accuracy']} ({row['train_seconds']} s)", flush=True)
            if self.on_row is not None:
                self.on_row()
        return True


def _mean_std(rows: list[dict], metric: str) -> str:
    values = np.array([float(r[metric]) for r in rows])
    return f"{values.mean():.3f} +- {values.std():.3f}"


def _without_staged(overrides: str) -> str:
    return " ".join(item for item in overrides.split() if item.partition("=")[0] not in STAGED_ONLY)


def paired_rows(rows: list[dict], results_dir: Path, num_bootstrap: int = 2000) -> list[dict]:
    """Every comparison of :py:data:`COMPARISONS` that has runs of both methods with the same seeds."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        by_key[(row["dataset"], row["method"], row["recipe"], row["sampling_ratio"], row["image_size"],
                row["epochs"], row["overrides"], row["seed"])] = row
    out = []
    settings = sorted({(r["dataset"], r["recipe"], r["sampling_ratio"], r["image_size"], r["epochs"], r["overrides"])
                       for r in rows if r["method"] != "full"})
    for dataset, recipe, ratio, image_size, epochs, overrides in settings:
        for a, b in COMPARISONS:
            runs_a, runs_b = [], []
            for seed in sorted({r["seed"] for r in rows}, key=int):
                row_a = by_key.get((dataset, a, recipe, ratio, image_size, epochs, overrides, seed))
                b_setting = ("end_to_end", "1.0", _without_staged(overrides)) if b == "full" else (recipe, ratio, overrides)
                row_b = by_key.get((dataset, b, *b_setting[:2], image_size, epochs, b_setting[2], seed))
                if row_a and row_b and row_a.get("predictions") and row_b.get("predictions"):
                    runs_a.append(read_predictions(results_dir / row_a["predictions"]))
                    runs_b.append(read_predictions(results_dir / row_b["predictions"]))
            if not runs_a:
                continue
            stats = paired_difference(runs_a, runs_b, num_bootstrap=num_bootstrap)
            out.append({"dataset": dataset, "recipe": recipe, "sampling_ratio": ratio, "comparison": f"{a} - {b}",
                        "seeds": stats["seeds"], "cases": f"{stats['cases']:.0f}",
                        "mean_auc_difference": f"{stats['mean']:.4f}", "ci_low": f"{stats['low']:.4f}",
                        "ci_high": f"{stats['high']:.4f}"})
    return out


def summarise(rows: list[dict], paired: list[dict], expected: int, commands: list[str], out_md: Path) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["recipe"], row["image_size"], row["epochs"], row["overrides"],
                float(row["sampling_ratio"]), row["method"])].append(row)
    lines = ["# Accuracy: every sampler at every budget under one protocol", ""]
    if len(rows) < expected:
        lines += [f"**PARTIAL: {len(rows)} of {expected} runs of the plan finished.** The table grows as the "
                  "benchmark resumes.", ""]
    lines += [
        "Mean +- standard deviation over seeds of the test-split metrics. Each run is the dataset's bundle; the",
        "`full` rows are the full-sequence models trained end to end, which are also the teachers of the `staged`",
        "recipe (see `benchmarks/accuracy.py`); `das_prior` is DAS with its sampler left untrained;",
        "`das_from_prior` is DAS whose head first learned alone on the prior's picks before the sampler learned",
        "(a former recipe). Accuracy and balanced accuracy are at the decision threshold stored in each model.pt",
        "(chosen on validation) for rows trained since the threshold exists, at argmax (0.5) before.",
        "",
        "| dataset | recipe | k/T | method | seeds | test AUC | balanced accuracy | accuracy | image | epochs | overrides "
        "| train s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, recipe, image, epochs, overrides, ratio, method), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1:5], -kv[0][5], METHODS.index(kv[0][6]))):
        cells = " | ".join(_mean_std(group, m) for m in METRICS)
        seconds = np.mean([float(r["train_seconds"]) for r in group])
        lines.append(f"| {dataset} | {recipe} | {ratio:g} | {method} | {len(group)} | {cells} | {image} | {epochs} "
                     f"| {overrides or '-'} | {seconds:.0f} |")
    if paired:
        lines += ["", "## Paired comparisons (test AUC)", "",
                  "Mean over seeds of the per-seed AUC difference, and a paired bootstrap 95% interval over the test",
                  "cases (2000 draws; one draw serves every seed when they share the test cases). An interval that",
                  "contains 0 is a tie. Also in `paired.csv`.", "",
                  "| dataset | recipe | k/T | comparison | seeds | cases | mean difference | 95% interval |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in paired:
            lines.append(f"| {p['dataset']} | {p['recipe']} | {float(p['sampling_ratio']):g} | {p['comparison']} | "
                         f"{p['seeds']} | {p['cases']} | {float(p['mean_auc_difference']):+.3f} | "
                         f"[{float(p['ci_low']):+.3f}, {float(p['ci_high']):+.3f}] |")
    if any(row["dataset"] == "covid_blues" for row in rows):
        lines += ["", "COVID-BLUES (`covid_blues`): each seed trains and tests on its own 70/15/15 patient split "
                  "(`split_seed` = seed)."]
    if any(row["dataset"].startswith("covid_blues_") for row in rows):
        lines += ["", "COVID-BLUES targets (`covid_blues_<target>`): patient-grouped 5-fold cross-validation; the "
                  "`seeds` column counts folds (seed = test fold)."]
    lines += ["", "Commands that wrote these rows (each appends its finished runs and skips those already there):", ""]
    lines += [f"- `{command}`" for command in commands]
    lines += ["", f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
              f"device {rows[0]['device'] if rows else '-'}", "", f"Versions: {_versions()}", ""]
    out_md.write_text("\n".join(lines))


def _write_paired(path: Path, paired: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PAIRED_FIELDS)
        writer.writeheader()
        writer.writerows(paired)
    os.replace(tmp, path)


def _versions() -> str:
    import monai
    import torch

    return f"python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    return key, value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--ratios expects values in (0, 1], got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and test every sampler at every budget (resumable).")
    parser.add_argument("--datasets", nargs="+", default=["vessel", "adrenal"], choices=sorted(DATASETS))
    parser.add_argument("--methods", nargs="+", default=["full", "uniform", "dps", "das", "das_prior"],
                        choices=METHODS)
    parser.add_argument("--ratios", nargs="+", type=_ratio, default=[0.125, 0.25, 0.5],
                        help="fractions k/T of the frames kept (the full sequence runs once, at 1)")
    parser.add_argument("--recipe", default="staged", choices=RECIPES)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--epochs", type=int, default=None, help="override the bundle's epochs (CPU fallback)")
    parser.add_argument("--data_root", default=None,
                        help="folder holding medmnist3d/ and ultrasound/covid_blues/ (needed by every dataset but "
                             "synthetic)")
    parser.add_argument("--bundles_dir", default=str(REPO / "bundles"), help="folder holding the bundles")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--work_dir", default=str(REPO / "runs" / "benchmark"), help="checkpoints and logs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="(dataset, seed) groups at once; each gets cpu_count // jobs threads (2 single-thread "
                             "runs beat one 2-thread run on a 2-core CPU)")
    parser.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="extra bundle override for every run, e.g. --set image_size=64 (repeatable; part of "
                             "each row's key)")
    parser.add_argument("--backbone", default="mobilenet_v3_small", choices=sorted(BACKBONE_CONFIGS),
                        help="resnet18_3d: MONAI's 3D ResNet-18 on the picked slices (end_to_end recipe); "
                             "efficientnet_lite0: the ImageNet-pretrained 2D EfficientNet-Lite0 (both recipes; needs "
                             "monai-das[pretrained]); results go to accuracy_<backbone>.csv/.md")
    parser.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap draws")
    parser.add_argument("--summary_only", action="store_true", help="only rewrite the tables from the finished rows")
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    if args.seeds > FOLDS and any(d.startswith("covid_blues_") for d in args.datasets):
        parser.error(f"covid_blues_<target> runs one row per fold: --seeds must be <= {FOLDS}")
    if args.data_root is None and any(DATASETS[d][1] is not None for d in args.datasets):
        parser.error("--data_root is required: the folder holding medmnist3d/ and ultrasound/covid_blues/")
    retired = sorted(set(args.methods) & set(RETIRED))
    if retired and not args.summary_only:
        parser.error(f"{retired}: rows of a former recipe (head first, then the sampler); every DAS run of the staged "
                     "recipe now trains the head on the prior first and keeps the learned sampler by --set selection")
    if args.backbone in BACKBONES_3D and args.recipe == "staged":
        parser.error(f"--backbone {args.backbone} needs --recipe end_to_end (the staged recipe pools 2D frame "
                     "features)")

    results_dir, work_dir = Path(args.results_dir), Path(args.work_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "accuracy" if args.backbone == "mobilenet_v3_small" else f"accuracy_{args.backbone}"
    work_dir = work_dir if args.backbone == "mobilenet_v3_small" else work_dir / args.backbone
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = results_dir / f"{stem}.csv", results_dir / f"{stem}.md"
    paired_path = results_dir / ("paired.csv" if stem == "accuracy" else f"paired_{args.backbone}.csv")
    commands_path = results_dir / f"{stem}_commands.txt"
    given = argv if argv is not None else sys.argv[1:]
    # as run from the repository root: absolute paths are written relative to it, so the command runs on any clone
    shown = [os.path.relpath(a, REPO) if os.path.isabs(a) else a for a in given if a != "--summary_only"]
    command = "python -m benchmarks.accuracy " + shlex.join(shown)

    # seed-major, then dataset: every dataset gets each seed early when the run is cut short
    groups = [(d, s) for s in range(args.seeds) for d in args.datasets]
    runs = [(m, r) for r in sorted(args.ratios) for m in args.methods if m != "full"]
    with_full = args.recipe == "staged" or "full" in args.methods
    plan = {g: {_key_tuple(run_key(g[0], m, g[1], r, args)) for m, r in [*runs, *([("full", 1.0)] if with_full else [])]}
            for g in groups}
    planned = set().union(*plan.values())
    done = {_key_tuple(r) for r in read_rows(csv_path)}
    todo = [] if args.summary_only else [g for g in groups if plan[g] - done]
    if todo:
        record_command(commands_path, command)
    commands = commands_path.read_text().splitlines() if commands_path.exists() else [command]

    def rewrite() -> None:
        rows = read_rows(csv_path)
        paired = paired_rows(rows, results_dir, args.bootstrap)
        _write_paired(paired_path, paired)
        missing = planned - {_key_tuple(r) for r in rows}
        summarise(rows, paired, len(rows) + len(missing), commands, md_path)

    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    bench = Benchmark(args, work_dir, results_dir, csv_path, threads)
    bench.on_row = rewrite
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(bench.group, d, s, runs, done) for d, s in todo]:
            future.result()
    rewrite()
    return 0


if __name__ == "__main__":
    sys.exit(main())
