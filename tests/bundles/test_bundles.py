"""Every bundle under ``bundles/`` runs train -> evaluate -> inference on tiny generated data.

The end-to-end runs of every bundle go through ``monai.bundle``'s own workflow (``create_workflow`` + ``run`` +
``finalize``, what ``python -m monai.bundle run`` calls) in this process, to keep the file fast on a small CPU. What
only the command line shows (argument parsing by ``fire``, the list syntax of ``--config_file``, the bundles'
``logging.conf``, the error text a user sees) is checked on the output of ``python -m monai.bundle ...`` subprocesses
(see ``CLI_CASES``), started together so their start-up costs overlap.

Data: ``bundle_test_data.py`` (MedMNIST npz, COVID-BLUES manifest + mp4, BUSV png folders), written once per session.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_test_data import BUSV_SPLITS, MEDMNIST_CLASSES, medmnist_counts, moving_blob, write_mp4

from monai_das.handlers import split_checkpoint
from monai_das.utils import decide

monai_bundle = pytest.importorskip("monai.bundle")
pytest.importorskip("ignite")

ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = ROOT / "bundles"
SCHEMA = BUNDLES_DIR / "meta_schema.json"
BUNDLES = ["synthetic", *MEDMNIST_CLASSES, "covid_blues", "busv"]
# end to end (train_end_to_end.json): every component of the bundle in one short run; the staged recipe that
# train.json runs alone is tested in tests/engines/test_staged_bundle.py
TRAIN, EVALUATE, INFERENCE = ["train.json", "train_end_to_end.json"], ["train.json", "evaluate.json"], ["inference.json"]


def bundle_dir(name: str) -> Path:
    return BUNDLES_DIR / f"{name}_das_classification"


def train_params(name: str) -> dict:
    with open(bundle_dir(name) / "configs" / "train.json") as f:
        return json.load(f)


def data_overrides(name: str, data: dict[str, str]) -> dict:
    """Overrides that point a bundle at the tiny data and shrink it."""
    if name == "synthetic":
        return {"num_train": 16, "num_val": 8, "num_test": 8, "num_frames": 16}
    if name in MEDMNIST_CLASSES:
        return {"dataset_dir": data["medmnist"], "check_md5": False}
    return {"dataset_dir": data[name], "num_frames": 16, "frame_size": 32}


def num_frames(name: str, overrides: dict) -> int:
    """T of the network's input: the num_frames override, else the bundle's (28 for MedMNIST: @image_size)."""
    value = overrides.get("num_frames", train_params(name)["num_frames"])
    return 28 if value == "@image_size" else int(value)


def num_test_inputs(name: str, data: dict[str, str], target: str = "covid") -> int:
    if name == "synthetic":
        return 8
    if name in MEDMNIST_CLASSES:
        return medmnist_counts(MEDMNIST_CLASSES[name])[2]
    if name == "busv":
        return len(BUSV_SPLITS["test"])
    from monai_das.data import CovidBluesDataset

    params = train_params(name)
    options = {"seed": params["split_seed"], "fold": params["fold"], "num_folds": params["num_folds"],
               "target": target}
    val, test = (CovidBluesDataset(data["covid_blues"], split=s, **options) for s in ("val", "test"))
    for split in (val, test):  # else the AUC is NaN and no checkpoint is saved
        assert sorted(set(split.labels.tolist())) == list(range(split.num_classes)), (
            f"generated COVID-BLUES {split.split} split lacks a {target} label"
        )
    return len(test)


def inference_inputs(name: str, folder: Path) -> dict:
    """Overrides that point the standalone ``inference.json`` at files for the bundles whose training data it does
    not read (the synthetic set is generated, BUSV is PNG frame folders): an npz of 8 synthetic test sequences, and
    the 2 test videos as mp4 (their counts are those of :func:`num_test_inputs`)."""
    if name not in ("synthetic", "busv"):
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    if name == "synthetic":
        from monai_das.data import save_synthetic_npz

        save_synthetic_npz(folder / "synthetic.npz", num_train=1, num_val=1, num_test=8, num_frames=20, seed=3)
    else:
        rng = np.random.default_rng(0)
        for i in range(len(BUSV_SPLITS["test"])):
            write_mp4(str(folder / f"clip{i}.mp4"), moving_blob(10 + 10 * i, i, rng))
    return {"input_paths": [str(folder)]}


def run_workflow(name: str, configs: list[str], **override):
    """What ``python -m monai.bundle run --config_file <configs> --<key> <value>...`` does, in this process; returns
    the finished workflow (its parser holds the objects the run used)."""
    files = [str(bundle_dir(name) / "configs" / c) for c in configs]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
        warnings.filterwarnings("ignore", message="Detected deprecated name", category=UserWarning)
        warnings.filterwarnings("ignore", message="'(min_delta|cumulative_delta)' is deprecated")  # MONAI -> ignite
        workflow = monai_bundle.scripts.create_workflow(config_file=files, logging_file=False, **override)
        workflow.run()
        workflow.finalize()
    return workflow


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_metrics(path: Path) -> dict[str, float]:
    """``MetricsSaver``'s metrics.csv: one ``name<delimiter>value`` line per metric."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, value = line.replace("\t", ",").split(",", 1)
            out[key.strip()] = float(value)
    return out


def tensorboard_tags(log_dir: Path) -> dict[str, dict]:
    """``{"scalars": {tag: [values]}, "images": {tag: count}}`` over every event file under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(glob.glob(str(log_dir / "**" / "events.out.tfevents.*"), recursive=True))
    assert files, f"no TensorBoard event file under {log_dir}"
    scalars: dict[str, list[float]] = {}
    images: dict[str, int] = {}
    for file in files:
        acc = EventAccumulator(file, size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            scalars.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
        for tag in tags.get("images", []):
            images[tag] = images.get(tag, 0) + len(acc.Images(tag))
    return {"scalars": scalars, "images": images}


def class_names(name: str, overrides: dict | None = None) -> list[str]:
    """The bundle's class names as its config computes them (COVID-BLUES: from ``--target``)."""
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(bundle_dir(name) / "configs" / "train.json"))
    parser.update(overrides or {})
    return [str(c) for c in parser.get_parsed_content("class_names")]


def check_predictions(path: Path, class_names: list[str], num_inputs: int, frames: int, k: int) -> None:
    """inference.json's predictions.csv: one traceable row per input (``status`` ok, the picks as the file numbers
    its frames, the checkpoint's sha256, the class decided with the threshold the checkpoint stores, else argmax)."""
    rows = read_rows(path)
    options = split_checkpoint(torch.load(path.parent / "model.pt", weights_only=True))[1]
    prob_columns = [f"prob_{c}" for c in class_names]
    assert list(rows[0]) == ["id", "status", "predicted_class", "predicted_label", *prob_columns, "picked_frames",
                             "source_frames", "error", "domain_warning", "checkpoint_sha256"]
    assert {r["status"] for r in rows} == {"ok"} and {r["error"] for r in rows} == {""}, rows
    assert len({r["checkpoint_sha256"] for r in rows}) == 1 and len(rows[0]["checkpoint_sha256"]) == 64
    assert len(rows) == num_inputs, f"{len(rows)} prediction rows for {num_inputs} test inputs"
    assert len({r["id"] for r in rows}) == num_inputs, "prediction ids are not unique"
    for row in rows:
        probs = [float(row[c]) for c in prob_columns]
        assert all(0.0 <= p <= 1.0 for p in probs) and math.isclose(sum(probs), 1.0, abs_tol=1e-4), row
        predicted = int(row["predicted_class"])
        assert predicted == int(decide(torch.tensor([probs]), options)[0]), (row, options.get("decision_threshold"))
        assert row["predicted_label"] == class_names[predicted], row
        picked = [int(i) for i in row["picked_frames"].split()]
        assert len(picked) == k, f"{len(picked)} picked frames, expected k = {k} of T = {frames}: {row}"
        assert picked == sorted(set(picked)), f"picked frames not distinct and increasing: {picked}"
        assert all(0 <= i < frames for i in picked), f"picked frames outside [0, {frames}): {picked}"
        assert len(row["source_frames"].split()) == k, row


def check_checkpoint(ckpt: Path, network: torch.nn.Module) -> None:
    """``ckpt`` loads strictly into ``network`` and ``network`` holds exactly its weights."""
    assert ckpt.is_file(), f"no checkpoint at {ckpt}"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    assert state, "empty checkpoint"
    network.load_state_dict(state, strict=True)  # raises on any missing / unexpected / mis-shaped key
    loaded = network.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key].cpu(), value), key


# ------------------------------------------------------------------------------------------- end to end


def train_evaluate_infer(name: str, out: Path, data: dict[str, str], **extra) -> dict:
    overrides = {**data_overrides(name, data), "epochs": 1, "batch_size": 4, "output_dir": str(out), **extra}
    run_workflow(name, TRAIN, **overrides)
    ckpt = out / "model.pt"
    assert ckpt.is_file(), "training wrote no model.pt"
    evaluation = run_workflow(name, EVALUATE, **overrides)
    # evaluate's CheckpointLoader put the trained weights into the network it evaluated
    check_checkpoint(ckpt, evaluation.parser.get_parsed_content("network_def"))
    run_workflow(name, INFERENCE, **overrides, **inference_inputs(name, out.parent / "inference_inputs"))
    return overrides


@pytest.mark.parametrize("name", BUNDLES)
def test_train_evaluate_infer(name, bundle_data, tmp_path, restore_torch_state):
    out = tmp_path / "outputs"
    overrides = train_evaluate_infer(name, out, bundle_data)
    params = train_params(name)
    frames = num_frames(name, overrides)
    k = max(1, round(params["sampling_ratio"] * frames))

    # the checkpoint also loads into a network built afresh from the config
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(bundle_dir(name) / "configs" / "train.json"))
    parser.update(overrides)
    check_checkpoint(out / "model.pt", parser.get_parsed_content("network_def"))

    metrics = read_metrics(out / "eval" / "metrics.csv")
    for key in ("test_auc", "test_balanced_accuracy", "test_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, f"{key} = {metrics.get(key)}"
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] >= 0.0, metrics
    # model.pt carries the options that shape its network (monai-das predict needs only --ckpt)
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["network_config"]
    assert saved["num_frames"] == frames and saved["sampler_name"] == "das" and saved["class_names"] == class_names(name)

    check_predictions(out / "predictions.csv", class_names(name), num_test_inputs(name, bundle_data), frames, k)

    logs = tensorboard_tags(out / "logs")
    for tag in ("sampler/val/sampling_matrix", "sampler/val/picked_frames"):
        assert logs["images"].get(tag, 0) >= 1, f"no image {tag}; images: {sorted(logs['images'])}"
    for tag in ("val_auc", "sampler/val/temperature", "train_loss"):
        assert logs["scalars"].get(tag), f"no scalar {tag}; scalars: {sorted(logs['scalars'])}"
    assert 0.0 <= logs["scalars"]["val_auc"][-1] <= 1.0
    assert logs["scalars"]["sampler/val/temperature"][-1] > 0.0
    assert logs["scalars"]["sampler/val/frames_kept"][-1] == pytest.approx(k / frames)
    eval_logs = tensorboard_tags(out / "eval" / "logs")
    assert eval_logs["images"].get("sampler/test/sampling_matrix", 0) >= 1, sorted(eval_logs["images"])


@pytest.mark.parametrize("target", ["b_lines", "a_lines", "severity"])
def test_covid_blues_targets(target, bundle_data, tmp_path, restore_torch_state):
    """``--target`` trains, evaluates and infers COVID-BLUES on the expert labels of severity.csv: the classes, the
    network's outputs and the test fold follow the target; evaluate adds the quadratic-weighted kappa."""
    out = tmp_path / "outputs"
    overrides = train_evaluate_infer("covid_blues", out, bundle_data, target=target, fold=2)
    names = class_names("covid_blues", {"target": target})
    assert len(names) == (4 if target == "severity" else 2)
    metrics = read_metrics(out / "eval" / "metrics.csv")
    for key in ("test_auc", "test_balanced_accuracy", "test_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, f"{key} = {metrics.get(key)}"
    assert -1.0 <= metrics["test_kappa"] <= 1.0, metrics
    k = max(1, round(train_params("covid_blues")["sampling_ratio"] * overrides["num_frames"]))
    rows = read_rows(out / "predictions.csv")
    check_predictions(out / "predictions.csv", names, len(rows), overrides["num_frames"], k)
    from monai_das.data import CovidBluesDataset

    params = train_params("covid_blues")
    test = CovidBluesDataset(bundle_data["covid_blues"], "test", target=target, fold=2, seed=params["split_seed"],
                             num_folds=params["num_folds"])
    assert sorted(r["id"] for r in rows) == sorted(test.path_of(r) for r in test.rows)  # the test fold's videos
    assert set(test.labels.tolist()) == set(range(len(names)))


@pytest.mark.parametrize("sampler, k", [("dps", 14), ("full", 28)])
def test_sampler_override(sampler, k, bundle_data, tmp_path, restore_torch_state):
    """``--sampler_name`` swaps the sampler of a bundle: the vessel bundle (T = 28, ratio 0.5) with DPS keeps 14
    frames, with the full sequence all 28."""
    out = tmp_path / "outputs"
    overrides = {**data_overrides("vesselmnist3d", bundle_data), "epochs": 1, "batch_size": 4,
                 "output_dir": str(out), "sampler_name": sampler}
    training = run_workflow("vesselmnist3d", TRAIN, **overrides)
    expected = {"dps": "DPSampler", "full": "FullSequence"}[sampler]
    assert type(training.parser.get_parsed_content("sampler")).__name__ == expected
    run_workflow("vesselmnist3d", INFERENCE, **overrides)
    check_predictions(out / "predictions.csv", class_names("vesselmnist3d"),
                      medmnist_counts(2)[2], 28, k)
    logs = tensorboard_tags(out / "logs")
    assert logs["images"].get("sampler/val/sampling_matrix", 0) >= 1 and logs["scalars"].get("val_auc")
    assert logs["scalars"]["sampler/val/frames_kept"][-1] == pytest.approx(k / 28)
    assert "sampler/val/temperature" not in logs["scalars"]  # only DAS has a temperature


def test_backbone_resnet3d(bundle_data, tmp_path, restore_torch_state):
    """``configs/backbone_resnet3d.json`` after ``train.json`` swaps in MONAI's 3D ResNet-18 (contiguous memory),
    which sees the k picked slices as one volume: train -> evaluate -> inference still run and agree."""
    import monai.networks.nets

    name, extra, out = "vesselmnist3d", "backbone_resnet3d.json", tmp_path / "outputs"
    overrides = {**data_overrides(name, bundle_data), "epochs": 1, "batch_size": 4, "output_dir": str(out)}
    training = run_workflow(name, [*TRAIN, extra], **overrides)
    network = training.parser.get_parsed_content("network")
    assert isinstance(network.backbone, monai.networks.nets.ResNet) and network.backbone_dims == 3
    assert network.backbone.conv1.weight.is_contiguous()
    evaluation = run_workflow(name, ["train.json", "evaluate.json", extra], **overrides)
    check_checkpoint(out / "model.pt", evaluation.parser.get_parsed_content("network_def"))
    metrics = read_metrics(out / "eval" / "metrics.csv")
    assert 0.0 <= metrics["test_auc"] <= 1.0, metrics
    run_workflow(name, ["inference.json", extra], **overrides)
    check_predictions(out / "predictions.csv", class_names(name), num_test_inputs(name, bundle_data),
                      28, 14)


@pytest.mark.parametrize("name, sampler, scale", [("vesselmnist3d", "das", None), ("vesselmnist3d", "das", 1.0),
                                                   ("synthetic", "das", None), ("vesselmnist3d", "uniform", None)])
def test_sampler_learning_rate_group(name, sampler, scale):
    """One Adam, two parameter groups: the sampler's at ``learning_rate * sampler_lr_scale`` (0.1 on MedMNIST, 1.0
    elsewhere by default), the rest of the network at ``learning_rate``; together they hold every parameter once."""
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(bundle_dir(name) / "configs" / "train.json"))
    parser.update({"device": "$torch.device('cpu')", "sampler_name": sampler})
    if scale is not None:
        parser["sampler_lr_scale"] = scale
    optimizer = parser.get_parsed_content("optimizer")
    network = parser.get_parsed_content("network")
    expected_scale = scale if scale is not None else (0.1 if name in MEDMNIST_CLASSES else 1.0)
    sampler_group, rest_group = optimizer.param_groups
    assert sampler_group["lr"] == pytest.approx(0.001 * expected_scale) and rest_group["lr"] == pytest.approx(0.001)
    assert {id(p) for p in sampler_group["params"]} == {id(p) for p in network.sampler.parameters()}
    assert bool(sampler_group["params"]) == (sampler != "uniform")  # DAS's group is not empty, uniform's is
    assert sorted(map(id, sampler_group["params"] + rest_group["params"])) == sorted(map(id, network.parameters()))


def parse_bundle(name: str, configs: list[str], **overrides) -> "monai_bundle.ConfigParser":
    parser = monai_bundle.ConfigParser()
    parser.read_config([str(bundle_dir(name) / "configs" / c) for c in configs])
    parser.update({"device": "$torch.device('cpu')", **overrides})
    return parser


def test_network_widths_come_from_the_code():
    """num_classes is the length of class_names, and the head's input width is the backbone's (not a repeated 576):
    three class names and a narrower MobileNetV3-Small give a working 3-class network; the 3D ResNet gives 512."""
    parser = parse_bundle("synthetic", TRAIN, class_names=["a", "b", "c"], **{"backbone#width_mult": 0.5})
    network = parser.get_parsed_content("network_def")
    assert network.backbone.out_features != 576
    assert network.head[1].in_features == network.backbone.out_features and network.head[1].out_features == 3
    assert network.eval()(torch.rand(1, 1, 32, 32, 32)).shape == (1, 3)
    resnet = parse_bundle("vesselmnist3d", ["train.json", "backbone_resnet3d.json"]).get_parsed_content("network_def")
    assert resnet.head[1].in_features == 512 and resnet.head[1].out_features == 2


@pytest.mark.parametrize("imbalance, expected", [("balanced_sampling", "DistributedWeightedRandomSampler"),
                                                 ("weighted_loss", "DistributedSampler")])
def test_multi_gpu_train_sampler_keeps_the_imbalance_policy(imbalance, expected, tmp_path):
    """Under torchrun the train sampler still follows --imbalance (it used to be a plain DistributedSampler)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        parser = parse_bundle("synthetic", ["train.json", "multi_gpu_train.json"], imbalance=imbalance, num_train=8,
                              num_frames=8, frame_size=16)
        sampler = parser.get_parsed_content("train#dataloader#sampler")
        assert type(sampler).__name__ == expected and len(sampler) == 8
        assert parser.get_parsed_content("train#dataloader#shuffle") is False
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------ metadata, generator


@pytest.mark.filterwarnings("ignore:No hash value provided")
@pytest.mark.parametrize("name", BUNDLES)
def test_verify_metadata(name, monkeypatch):
    """``verify_metadata`` against the schema kept in bundles/, with downloading made impossible."""
    assert SCHEMA.is_file(), f"{SCHEMA} is missing: verify_metadata would download it"

    def no_network(*args, **kwargs):
        raise AssertionError(f"verify_metadata tried to download: {args} {kwargs}")

    import monai.apps.utils

    monkeypatch.setattr(monai.apps.utils, "_download_with_progress", no_network)
    monkeypatch.setattr(monai.apps.utils, "urlopen", no_network)
    monai_bundle.verify_metadata(meta_file=str(bundle_dir(name) / "configs" / "metadata.json"), filepath=str(SCHEMA))


# ------------------------------------------------------------------------------------------- command line


def run_args(configs: list[str], *args: str, output_dir: str) -> list[str]:
    """``run --config_file ...`` arguments as a user types them in the bundle folder (several configs in the
    list syntax: ``"['configs/train.json','configs/evaluate.json']"``)."""
    files = [f"configs/{c}" for c in configs]
    config_file = files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]"
    common = ["--epochs", "1", "--batch_size", "4", "--output_dir", output_dir]
    return ["run", "--config_file", config_file, *args, *common]


SMALL_SYNTHETIC = ["--num_train", "4", "--num_val", "4", "--num_frames", "8", "--frame_size", "16"]
# case: (bundle folder to run from, arguments after `python -m monai.bundle` (output_dir is added for `run`))
CLI_CASES = {
    "verify_metadata": ("vesselmnist3d", ["verify_metadata", "--meta_file", "configs/metadata.json", "--filepath",
                                          "../meta_schema.json"]),
    "unknown_sampler": ("synthetic", [TRAIN, "--sampler_name", "foo", *SMALL_SYNTHETIC]),
    "num_samples_above_frames": ("synthetic", [TRAIN, "--num_samples", "99", *SMALL_SYNTHETIC]),
    "sampling_ratio_above_one": ("synthetic", [TRAIN, "--sampling_ratio", "2", *SMALL_SYNTHETIC]),
    "missing_medmnist": ("vesselmnist3d", [EVALUATE, "--dataset_dir", "/nonexistent"]),
    "missing_covid_blues": ("covid_blues", [TRAIN, "--dataset_dir", "/nonexistent"]),
    "missing_busv": ("busv", [TRAIN, "--dataset_dir", "/nonexistent"]),
    # a successful run through the same parsing: `--check_md5 False` must reach MedMNIST3D as a bool (the tiny
    # files fail the md5 check), and evaluate's two-file list syntax must load what training wrote
    "train_tiny": ("vesselmnist3d", [TRAIN, "--dataset_dir", "{medmnist}", "--check_md5", "False"]),
    "evaluate_tiny": ("vesselmnist3d", [EVALUATE, "--dataset_dir", "{medmnist}", "--check_md5", "False"]),
}
# these run as their own `python -m monai.bundle` process; the others share one process that executes the same
# entry point (`runpy.run_module("monai.bundle", run_name="__main__")` with the case's sys.argv and folder) once per
# case and prints the traceback the interpreter would print: this saves a torch + MONAI import (seconds) per case.
OWN_PROCESS = ("verify_metadata", "unknown_sampler")
CASE_DRIVER = """
import json, os, runpy, sys, traceback
for case, folder, argv in json.loads(sys.argv[1]):
    os.chdir(folder)
    sys.argv = [sys.argv[0], *argv]
    print(f"@@@ case {case}", flush=True)
    code = 0
    try:
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"@@@ exit {case} {code}", flush=True)
"""


@pytest.fixture(scope="module")
def cli_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def cli(cli_tmp, bundle_data) -> dict[str, tuple[int, str]]:
    """Runs the ``CLI_CASES`` from their bundle folders, as a user would, and ``scripts/make_bundles.py --check``,
    all at the same time; ``{case: (exit code, stdout + stderr)}``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    commands = {}
    for case, (name, args) in CLI_CASES.items():
        if isinstance(args[0], list):
            output_dir = cli_tmp / ("tiny" if case.endswith("_tiny") else case)
            args = run_args(args[0], *(a.format(**bundle_data) for a in args[1:]), output_dir=str(output_dir))
        commands[case] = (str(bundle_dir(name)), args)
    popen = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = {
        case: subprocess.Popen([sys.executable, "-m", "monai.bundle", *commands[case][1]], cwd=commands[case][0],
                               **popen)
        for case in OWN_PROCESS
    }
    shared = [[case, *commands[case]] for case in commands if case not in OWN_PROCESS]
    procs["shared"] = subprocess.Popen([sys.executable, "-c", CASE_DRIVER, json.dumps(shared)], cwd=ROOT, **popen)
    procs["make_bundles_check"] = subprocess.Popen([sys.executable, "scripts/make_bundles.py", "--check"], cwd=ROOT,
                                                   **popen)
    results = {}
    for case, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            output = f"TIMED OUT\n{output}"
        results[case] = (proc.returncode, output)
    rc, output = results.pop("shared")
    for case, _, _ in shared:
        begin, end = f"@@@ case {case}\n", f"@@@ exit {case} "
        assert begin in output and end in output, f"the shared process did not finish {case} (exit {rc}):\n{output}"
        text = output.split(begin, 1)[1]
        text, code = text.split(end, 1)
        results[case] = (int(code.split()[0]), text)
    return results


def failed_with(result: tuple[int, str], *needles: str) -> None:
    rc, output = result
    assert rc != 0, f"the run succeeded:\n{output[-3000:]}"
    missing = [n for n in needles if n not in output]
    assert not missing, f"{missing} not in the output:\n{output[-4000:]}"


def test_cli_verify_metadata_offline(cli):
    rc, output = cli["verify_metadata"]
    assert rc == 0, output[-3000:]
    assert "metadata is verified with no error" in output, output[-3000:]
    assert "skipped downloading" in output and "Downloaded" not in output, output[-3000:]


def test_bundles_match_generator(cli):
    rc, output = cli["make_bundles_check"]
    assert rc == 0, f"bundles/ differ from scripts/make_bundles.py (run it without --check):\n{output}"


def test_edited_files_are_short_and_generated_ones_follow_them():
    """What a person edits (``bundles/common/``, each ``dataset.json``) stays under 120 lines; each bundle's
    ``train.json`` holds the shared recipe with the bundle's own values on top (its classes and data), and its
    ``inference.json`` the same network and preprocessing as its ``train.json``."""
    common_files = sorted((BUNDLES_DIR / "common").glob("*.json"))
    datasets = sorted(BUNDLES_DIR.glob("*/configs/dataset.json"))
    assert len(common_files) == 7, common_files
    assert {p.parts[-3] for p in datasets} == {bundle_dir(n).name for n in [*BUNDLES, "pocus"]}, datasets
    edited = [*common_files, *datasets]
    for path in edited:
        assert len(path.read_text().splitlines()) < 120, path
    common = json.loads((BUNDLES_DIR / "common" / "train.json").read_text())
    for name in BUNDLES:
        train = train_params(name)
        own = json.loads((bundle_dir(name) / "configs" / "dataset.json").read_text())
        assert train["train_dataset"] == own["train_dataset"] and train["class_names"] == own["class_names"], name
        assert train["optimizer"] == common["optimizer"] and train["deterministic"] == common["deterministic"], name
        inference = json.loads((bundle_dir(name) / "configs" / "inference.json").read_text())
        for key in ("network_def", "sampler", "backbone", "deterministic", "class_names", "num_frames", "frame_size"):
            assert inference[key] == train[key], (name, key)


def test_cli_unknown_sampler(cli):
    from monai_das.networks.nets import SAMPLER_NAMES

    failed_with(cli["unknown_sampler"], "'foo'", *SAMPLER_NAMES)


def test_cli_num_samples_above_frames(cli):
    failed_with(cli["num_samples_above_frames"], "num_samples (99)", "num_frames (8)")


def test_cli_sampling_ratio_above_one(cli):
    failed_with(cli["sampling_ratio_above_one"], "sampling ratio must be in (0, 1]", "got 2")


def test_cli_missing_medmnist(cli):
    from monai_das.data import medmnist3d_info

    failed_with(cli["missing_medmnist"], "FileNotFoundError", "/nonexistent/vesselmnist3d.npz",
                f"expected md5 {medmnist3d_info('vesselmnist3d')['MD5']}")


def test_cli_missing_covid_blues(cli):
    failed_with(cli["missing_covid_blues"], "FileNotFoundError", "manifest /nonexistent/manifest.csv not found")


def test_cli_missing_busv(cli):
    failed_with(cli["missing_busv"], "FileNotFoundError", "/nonexistent/rawframes")


def test_cli_train_and_evaluate(cli, cli_tmp):
    out = cli_tmp / "tiny"
    for case in ("train_tiny", "evaluate_tiny"):
        rc, output = cli[case]
        assert rc == 0, f"{case} failed:\n{output[-4000:]}"
    # the bundle's configs/logging.conf is applied (in-process runs above skip it)
    assert "Setting logging properties based on config: configs/logging.conf" in cli["train_tiny"][1]
    assert (out / "model.pt").is_file()
    metrics = read_metrics(out / "eval" / "metrics.csv")
    assert 0.0 <= metrics["test_auc"] <= 1.0, metrics
