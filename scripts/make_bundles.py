"""Writes every bundle under bundles/ from one recipe, so the nine bundles cannot drift apart.

    python scripts/make_bundles.py           # rewrite the bundles' configs, metadata, logging.conf, LICENSE
    python scripts/make_bundles.py --check   # exit 1 if a committed file differs from what this script writes

What differs between bundles (the data, the sequence length, the classes, the augmentations, the text of the
metadata) is declared in BUNDLES; everything else (network, sampler switch, trainer, metrics, checkpoints,
TensorBoard, early stopping, inference output, DDP deltas) is shared. Each docs/README.md is written from the same
template, with the bundle's measured results taken from benchmarks/results/accuracy.csv.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.1.0"
CHANGELOG = {"0.1.0": "first release: DAS and its peer samplers, TensorBoard sampler logging"}
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"

MEDMNIST = {
    "organmnist3d": ("OrganMNIST3D", "abdominal CT, 11 organs", ["liver", "kidney-right", "kidney-left", "femur-right", "femur-left", "bladder", "heart", "lung-right", "lung-left", "spleen", "pancreas"]),
    "nodulemnist3d": ("NoduleMNIST3D", "chest CT lung nodules", ["benign", "malignant"]),
    "adrenalmnist3d": ("AdrenalMNIST3D", "binary masks of adrenal glands (segmented from abdominal CT)", ["normal", "hyperplasia"]),
    "fracturemnist3d": ("FractureMNIST3D", "chest CT rib fractures", ["buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"]),
    "vesselmnist3d": ("VesselMNIST3D", "binary masks of brain vessel segments (segmented from MRA)", ["vessel", "aneurysm"]),
    "synapsemnist3d": ("SynapseMNIST3D", "electron microscopy synapses", ["inhibitory synapse", "excitatory synapse"]),
}

#: the MedMNIST3D sets of binary shape masks (values {0, 255}, mostly 0; not CT or MR images) and the statistics of
#: their training volumes: monai_das.data.training_statistics(np.load("<flag>.npz")["train_images"]) on the official
#: files (1335 and 1188 volumes); predict and MONAI Label flag inputs far outside them
SHAPE_MASK_STATISTICS = {
    "vesselmnist3d": {"value_range": [0.0, 255.0], "volumes": 1335, "outside_fraction": [0.0, 0.0],
                      "extreme_fraction": [1.0, 1.0], "foreground_fraction": [0.0003, 0.066]},
    "adrenalmnist3d": {"value_range": [0.0, 255.0], "volumes": 1188, "outside_fraction": [0.0, 0.0],
                       "extreme_fraction": [1.0, 1.0], "foreground_fraction": [0.0016, 0.0565]},
}
#: every training set comes in 8-bit units (MedMNIST npz, decoded video, PNG frames): the range all bundles know
EIGHT_BIT = {"value_range": [0.0, 255.0]}

IN_PLANE_AUGMENT = [
    {"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 1},
    {"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 2},
    {"_target_": "RandRotate90d", "keys": "image", "prob": 0.5, "spatial_axes": [1, 2]},
]
# ultrasound keeps its orientation (probe at the top): only left-right flips
ULTRASOUND_AUGMENT = [{"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 2}]


def medmnist_dataset(flag: str, split: str, transform: str) -> dict:
    return {
        "_target_": "monai_das.data.MedMNIST3D",
        "root": "@dataset_dir",
        "flag": flag,
        "split": split,
        "size": "@image_size",
        "check_md5": "@check_md5",
        "transform": transform,
    }


def synthetic_dataset(split: str, transform: str) -> dict:
    num, seed = {"train": ("@num_train", "$@seed * 3 + 1"), "val": ("@num_val", 1000), "test": ("@num_test", 2000)}[split]
    return {
        "_target_": "monai_das.data.SyntheticSequenceDataset",
        "num_samples": num,
        "num_frames": "@num_frames",
        "size": "@frame_size",
        "seed": seed,
        "cache": True,
        "transform": transform,
    }


def video_dataset(reader: dict, transform: str) -> dict:
    """Decoded videos (cached on disk by the reader), resized once and kept in memory by a CacheDataset."""
    return {"_target_": "CacheDataset", "data": reader, "transform": transform, "cache_rate": 1.0, "num_workers": 0}


def covid_blues_reader(split: str) -> dict:
    return {
        "_target_": "monai_das.data.CovidBluesDataset",
        "root": "@dataset_dir",
        "split": split,
        "target": "@target",
        "fold": "@fold",
        "num_folds": "@num_folds",
        "seed": "@split_seed",
        "max_frames": "@num_frames",
        "cache_dir": "@video_cache_dir",
    }


def busv_reader(split: str) -> dict:
    return {
        "_target_": "monai_das.data.BUSVDataset",
        "root": "@dataset_dir",
        "video_ids": f"$os.path.join(@dataset_dir, 'splits', '{split}.txt')",
        "max_frames": "@num_frames",
    }


# the real frames of each input (image_frame_mask), given to the network as frame_mask by PREPARE_BATCH: the sampler
# never spends two picks on copies of one frame of a short video
VIDEO_DETERMINISTIC = [
    {"_target_": "monai_das.transforms.PadOrCropFramesd", "keys": "image", "num_frames": "@num_frames", "pad_mode": "repeat",
     "return_mask": True},
    {"_target_": "Resized", "keys": "image", "spatial_size": [-1, "@frame_size", "@frame_size"], "mode": "area"},
]


PREPARE_BATCH = {"_target_": "PrepareBatchExtraInput", "extra_keys": {"frame_mask": "image_frame_mask"}}


def bundle_specs() -> dict[str, dict]:
    specs: dict[str, dict] = {
        "synthetic": {
            "title": "Synthetic sequences: evidence in 2 of 32 frames",
            "task": "Classify a disc or a ring that is visible in only 2 consecutive frames of 32",
            "modality": "synthetic",
            "class_names": ["disc", "ring"],
            "params": {"num_frames": 32, "frame_size": 32, "sampling_ratio": 0.25, "epochs": 10, "num_train": 512,
                       "num_val": 128, "num_test": 256},
            "dataset": synthetic_dataset,
            "augment": IN_PLANE_AUGMENT,
            "data_source": "generated by monai_das.data.make_synthetic_sequences",
            "data_license": "generated data, no licence restriction",
        },
        "covid_blues": {
            "title": "COVID-BLUES lung ultrasound videos",
            "task": "Classify a lung-ultrasound video as from a COVID-19 positive or negative patient",
            "modality": "US",
            "class_names": ["negative", "positive"],
            "params": {"dataset_dir": "/workspace/data/covid_blues", "target": "covid",
                       "class_names": "$monai_das.data.covid_blues_class_names(@target)",
                       "num_frames": 32, "frame_size": 64,
                       "sampling_ratio": 0.5, "epochs": 30, "fold": 0, "num_folds": 5, "split_seed": 0,
                       "video_cache_dir": "$os.path.join(@output_dir, 'video_cache')"},
            # quadratic-weighted kappa for the ordinal severity score (Cohen's kappa for the binary targets)
            "extra_metrics": {"kappa": {"_target_": "monai_das.handlers.QuadraticWeightedKappa",
                                        "num_classes": "@num_classes",
                                        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}},
            "video_reader": covid_blues_reader,
            "augment": ULTRASOUND_AUGMENT,
            "data_source": "COVID-BLUES (Wiedemann et al., IEEE JBHI 2025), github.com/NinaWie/COVID-BLUES",
            "data_license": "CC BY-NC-ND 4.0 (non-commercial, no derivatives): evaluate with it, never redistribute",
            "packages": {"av": "18.1.0"},
            "id_key": "path",
        },
        "busv": {
            "title": "BUSV breast ultrasound videos",
            "task": "Classify a breast-ultrasound video as benign or malignant",
            "modality": "US",
            "class_names": ["benign", "malignant"],
            "params": {"dataset_dir": "/workspace/data/busv", "num_frames": 32, "frame_size": 64,
                       "sampling_ratio": 0.5, "epochs": 30},
            "video_reader": busv_reader,
            "augment": ULTRASOUND_AUGMENT,
            "data_source": "BUSV / BUV (Lin et al., MICCAI 2022), github.com/jhl-Det/CVA-Net",
            "data_license": "non-commercial research or educational use only (dataset README)",
            "packages": {"pillow": "13.0.0"},
            "id_key": "video_id",
        },
    }
    for flag, (name, description, classes) in MEDMNIST.items():
        specs[flag] = {
            "title": f"{name} (MedMNIST v2)",
            "task": f"Classify {description} ({len(classes)} classes) from the slices of a 28^3 (or 64^3) volume",
            "modality": "SEG" if flag in SHAPE_MASK_STATISTICS
            else ("CT" if flag in ("organmnist3d", "nodulemnist3d", "fracturemnist3d") else "EM"),
            "training_statistics": SHAPE_MASK_STATISTICS.get(flag, EIGHT_BIT),
            "class_names": classes,
            "params": {"dataset_dir": "/workspace/data/medmnist3d", "image_size": 28, "check_md5": True,
                       "num_frames": "@image_size",
                       "frame_size": "@image_size", "sampling_ratio": 0.5, "epochs": 40,
                       # the validation sets are small (98-192 volumes): val AUC jumps by +-0.05 from epoch to epoch,
                       # and on VesselMNIST3D patience 10 stopped runs at epochs 13-18 with their best checkpoints at
                       # epochs 3-8; train the whole cosine schedule and keep the best checkpoint
                       "early_stop_patience": 40,
                       # at the full rate the straight-through gradient moved DAS's picks on VesselMNIST3D from the
                       # vessel to the empty end slices within 8 epochs (train loss stuck at 0.64); at 0.1 they stay on
                       # the vessel
                       "sampler_lr_scale": 0.1},
            "dataset": lambda split, transform, flag=flag: medmnist_dataset(flag, split, transform),
            "augment": IN_PLANE_AUGMENT,
            "data_source": f"MedMNIST v2 {name} (Yang et al., Scientific Data 2023), zenodo.org/records/10519652",
            "data_license": "CC BY 4.0",
            "packages": {"medmnist": "3.0.2"},
        }
    return specs


# an empty validation split, or one without every class (AUC NaN), stops the training before it starts
CHECK_VALIDATION = "$monai_das.engines.check_validation_labels(@val_labels, @num_classes, @checkpoint_metric)"
# before anything is written: lock the output folder, refuse to replace a finished run's files without --overwrite
CLAIM_OUTPUT = "$monai_das.handlers.claim_output(@last_ckpt_path, [@ckpt_path], @resume, @overwrite)"


def train_config(spec: dict) -> dict:
    params = {
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/outputs'",
        "ckpt_path": "$@output_dir + '/model.pt'",
        "last_ckpt_path": "$@output_dir + '/last.pt'",
        "resume": False,
        "overwrite": False,
        "log_dir": "$@output_dir + '/logs'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "seed": 0,
        "set_seed": "$monai.utils.set_determinism(seed=@seed)",
        "is_not_rank0": "$int(os.environ.get('RANK', '0')) > 0",
        "sampler_name": "das",
        "class_names": spec["class_names"],
        "num_classes": "$len(@class_names)",
        "in_channels": 1,
        "batch_size": 16,
        "num_workers": 0,
        "learning_rate": 0.001,
        "sampler_lr_scale": 1.0,
        "early_stop_patience": 10,
        "metric_prefix": "val",
        "checkpoint_metric": "val_auc",
        "imbalance": "weighted_loss",
        "pooling": "mean",
    }
    params.update(spec["params"])
    params["num_samples"] = "$monai_das.networks.nets.samples_for_ratio(@num_frames, @sampling_ratio)"
    preprocessing = "@train#preprocessing"
    if "video_reader" in spec:
        datasets = {
            f"{split}_dataset": video_dataset(spec["video_reader"](split), transform)
            for split, transform in (("train", preprocessing), ("val", "@validate#preprocessing"))
        }
        datasets["train_labels"] = "$@train_dataset.data.labels"
        datasets["val_labels"] = "$@val_dataset.data.labels"
        deterministic = VIDEO_DETERMINISTIC
        datasets["prepare_batch"] = PREPARE_BATCH
    else:
        datasets = {
            f"{split}_dataset": spec["dataset"](split, transform)
            for split, transform in (("train", preprocessing), ("val", "@validate#preprocessing"))
        }
        datasets["train_labels"] = "$@train_dataset.labels"
        datasets["val_labels"] = "$@val_dataset.labels"
        deterministic = []
    ensure_type = {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"}
    extra_metrics = spec.get("extra_metrics", {})
    metric_names = repr(("balanced_accuracy", "accuracy", "loss", *extra_metrics))
    config = {
        "imports": ["$import os", "$import ignite", "$import monai_das"],
        **params,
        "sampler": {
            "_target_": "monai_das.networks.nets.get_sampler",
            "name": "@sampler_name",
            "num_samples": "@num_samples",
            "num_frames": "@num_frames",
            "in_channels": "@in_channels",
            "seed": "@seed",
        },
        "backbone": {"_target_": "monai_das.networks.nets.MobileNetV3Small", "in_channels": "@in_channels", "num_classes": 0},
        # channels-last: the 2D backbone trains 3-7x faster on CPU
        "memory_format": "$torch.channels_last",
        "network_def": {
            "_target_": "monai_das.networks.nets.SubsampledClassifier",
            "sampler": "@sampler",
            "backbone": "@backbone",
            "num_classes": "@num_classes",
            "pooling": "@pooling",
        },
        "network": "$@network_def.to(device=@device, memory_format=@memory_format)",
        # saved in model.pt with the weights, so that the checkpoint alone rebuilds its network (predict, MONAI Label)
        "network_config": {"_target_": "monai_das.handlers.NetworkConfig", "values": {
            **{key: f"@{key}" for key in SHAPING_KEYS if key in params},
            "backbone": "$type(@backbone).__module__ + '.' + type(@backbone).__name__"}},
        **datasets,
        "loss": {
            "_target_": "torch.nn.CrossEntropyLoss",
            "weight": "$monai_das.engines.loss_weights(@imbalance, @train_labels, @num_classes, @device)",
        },
        "val_loss": {"_target_": "torch.nn.CrossEntropyLoss", "weight": "@loss#weight"},
        # the sampler's parameters learn at sampler_lr_scale times the backbone's rate (one Adam, two groups)
        "optimizer": {
            "_target_": "torch.optim.Adam",
            "params": "$monai.optimizers.generate_param_groups(@network_def, [lambda net: net.sampler], ['select'], "
                      "[@learning_rate * @sampler_lr_scale])",
            "lr": "@learning_rate",
        },
        "lr_scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "optimizer": "@optimizer", "T_max": "@epochs"},
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": deterministic + spec["augment"] + [ensure_type]},
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@train_dataset",
                "batch_size": "@batch_size",
                "shuffle": "$@imbalance != 'balanced_sampling'",
                "sampler": "$monai_das.engines.balanced_data_sampler(@imbalance, @train_labels)",
                "num_workers": "@num_workers",
            },
            "handlers": [
                {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False},
                {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True, "interval": 1},
                {"_target_": "StatsHandler", "_disabled_": "@is_not_rank0", "tag_name": "train_loss",
                 "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
                {"_target_": "TensorBoardStatsHandler", "_disabled_": "@is_not_rank0", "log_dir": "@log_dir",
                 "tag_name": "train_loss", "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
                # last: writes the epoch's state once validation, lr step, early stopping and best model are done
                {"_target_": "monai_das.handlers.TrainingStateCheckpoint", "path": "@last_ckpt_path",
                 "resume": "@resume", "map_location": "@device", "overwrite": "@overwrite",
                 "protect": ["@ckpt_path"],
                 "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
                               "early_stop": "@validate#early_stop", "best_saver": "@validate#best_saver",
                               "validator": "@validate#evaluator"}},
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": "@epochs",
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": {"_target_": "SimpleInferer"},
                "train_handlers": "@train#handlers",
                "amp": False,
                **({"prepare_batch": "@prepare_batch"} if "video_reader" in spec else {}),
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": copy.deepcopy(deterministic) + [ensure_type]},
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@val_dataset",
                "batch_size": "@batch_size",
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "CopyItemsd", "keys": ["pred", "label"], "names": ["logits", "label_onehot"]},
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {"_target_": "AsDiscreted", "keys": "label_onehot", "to_onehot": "@num_classes"},
                ],
            },
            "metrics": {
                "auc": {"_target_": "ROCAUC", "output_transform": "$monai.handlers.from_engine(['pred', 'label_onehot'])"},
                "balanced_accuracy": {"_target_": "monai_das.handlers.BalancedAccuracy",
                                      "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"},
                "accuracy": {"_target_": "ignite.metrics.Accuracy",
                             "output_transform": "$monai_das.engines.probabilities_and_labels"},
                "loss": {"_target_": "ignite.metrics.Loss", "loss_fn": "@val_loss",
                         "output_transform": "$monai_das.engines.logits_and_labels"},
                **extra_metrics,
            },
            "handlers": [
                {"_target_": "StatsHandler", "_disabled_": "@is_not_rank0", "iteration_log": False},
                {"_target_": "TensorBoardStatsHandler", "_disabled_": "@is_not_rank0", "log_dir": "@log_dir",
                 "iteration_log": False},
                {"_target_": "monai_das.handlers.SamplerTensorBoardHandler", "_disabled_": "@is_not_rank0",
                 "log_dir": "@log_dir", "network": "@network"},
                "@validate#best_saver",
                "@validate#early_stop",
            ],
            # every rank tracks the best score (the resumable state is then the same everywhere), rank 0 writes
            "best_saver": {"_target_": "monai_das.handlers.AtomicCheckpointSaver", "save_dir": "@output_dir",
                           "save_dict": {"model": "@network", "network_config": "@network_config"},
                           "save_key_metric": True,
                           "key_metric_filename": "model.pt", "key_metric_name": "@checkpoint_metric",
                           "key_metric_negative_sign": "$'loss' in @checkpoint_metric"},
            "early_stop": {"_target_": "EarlyStopHandler", "trainer": None, "patience": "@early_stop_patience",
                           "score_function": "$monai_das.engines.metric_score(@checkpoint_metric)", "epoch_level": True},
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": {"_target_": "SimpleInferer"},
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "${@metric_prefix + '_auc': @validate#metrics#auc}",
                "additional_metrics": "${@metric_prefix + '_' + n: @validate#metrics[n] for n in " + metric_names + "}",
                "val_handlers": "@validate#handlers",
                "amp": False,
                **({"prepare_batch": "@prepare_batch"} if "video_reader" in spec else {}),
            },
        },
        "initialize": ["$@set_seed", "$os.makedirs(@output_dir, exist_ok=True)", CHECK_VALIDATION, CLAIM_OUTPUT],
        "run": ["$@validate#early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "finalize": [],
    }
    return config


def test_dataset(spec: dict) -> dict:
    if "video_reader" in spec:
        return video_dataset(spec["video_reader"]("test"), "@validate#preprocessing")
    return spec["dataset"]("test", "@validate#preprocessing")


def evaluate_config(spec: dict) -> dict:
    return {
        "test_dataset": test_dataset(spec),
        "metric_prefix": "test",
        "eval_dir": "$@output_dir + '/eval'",
        "loss": {"_target_": "torch.nn.CrossEntropyLoss", "weight": None},
        "validate#dataloader#dataset": "@test_dataset",
        "validate#handlers": [
            {"_target_": "monai_das.handlers.SafeCheckpointLoader", "load_path": "@ckpt_path",
             "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "MetricsSaver", "save_dir": "@eval_dir", "metrics": "*"},
            # per-case test predictions (probabilities, label, picks) for paired comparisons between methods
            {"_target_": "monai_das.handlers.PredictionWriter", "output_path": "$@eval_dir + '/predictions.csv'",
             "network": "@network", "class_names": "@class_names", "id_key": spec.get("id_key", "id"),
             "label_key": "label"},
            {"_target_": "monai_das.handlers.SamplerTensorBoardHandler", "log_dir": "$@eval_dir + '/logs'",
             "network": "@network", "tag_prefix": "sampler/test"},
        ],
        "initialize": ["$@set_seed"],
        "run": ["$@validate#evaluator.run()"],
        "finalize": [],
    }


#: the options saved with the weights in model.pt (monai_das.handlers.NetworkConfig), with the backbone's class
SHAPING_KEYS = ("sampler_name", "image_size", "target", "num_frames", "frame_size", "sampling_ratio", "pooling",
                "in_channels", "class_names")
#: train.json keys that shape the network: inference.json repeats them, as it runs alone (model-zoo style)
NETWORK_KEYS = ("image_size", "target", "sampler_name", "num_classes", "class_names", "in_channels", "num_frames", "frame_size",
                "sampling_ratio", "num_samples", "pooling", "seed", "sampler", "backbone", "memory_format",
                "network_def", "network")


def inference_inputs(name: str) -> str:
    """The files a bundle's inference reads by default: the MedMNIST npz (its ``npz_split``), the COVID-BLUES test
    fold's videos, else every input found under ``dataset_dir``."""
    if name in MEDMNIST:
        return f"$[os.path.join(@dataset_dir, monai_das.data.medmnist3d_filename('{name}', @image_size))]"
    if name == "covid_blues":
        return "$[@test_videos.path_of(r) for r in @test_videos.rows]"
    return "$[@dataset_dir]"


def inference_config(name: str, spec: dict) -> dict:
    """Standalone inference on files (LoadSequenced over a datalist): the one preprocessing definition that
    ``monai-das predict`` and the MONAI Label task execute too. Intensities: the 8-bit units every training set
    comes in (MedMNIST npz, decoded video, PNG frames) divided by 255, as the training datasets do."""
    train = train_config(spec)
    return {
        "imports": ["$import os", "$import monai_das"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/outputs'",
        "ckpt_path": "$@output_dir + '/model.pt'",
        "device": train["device"],
        "dataset_dir": spec["params"].get("dataset_dir", "$@bundle_root + '/inputs'"),
        **{key: train[key] for key in NETWORK_KEYS if key in train},
        **({**{k: train[k] for k in ("fold", "num_folds", "split_seed")},
            "test_videos": {"_target_": "monai_das.data.CovidBluesDataset", "root": "@dataset_dir", "split": "test",
                            **{k: f"@{k}" for k in ("target", "fold", "num_folds")}, "seed": "@split_seed"}}
           if name == "covid_blues" else {}),
        "input_paths": inference_inputs(name),
        "npz_split": "test",
        "slice_plane": "axial",
        "max_voxels": 2**28,
        "allow_2d": False,
        "training_statistics": "$@_meta_['network_data_format']['inputs']['image']['training_statistics']",
        "datalist": "$monai_das.data.inference_datalist(@input_paths, @npz_split, @max_voxels)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "monai_das.data.LoadSequenced", "keys": "image", "slice_plane": "@slice_plane",
                 "max_frames": "@num_frames", "channels": "@in_channels", "max_voxels": "@max_voxels",
                 "allow_2d": "@allow_2d"},
                {"_target_": "monai_das.data.DomainCheckd", "keys": "image", "statistics": "@training_statistics"},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0.0, "a_max": 255.0, "b_min": 0.0,
                 "b_max": 1.0, "clip": True},
                {"_target_": "monai_das.transforms.PadOrCropFramesd", "keys": ["image", "image_frame_index"],
                 "num_frames": "@num_frames", "pad_mode": "repeat", "return_mask": True},
                {"_target_": "Resized", "keys": "image", "spatial_size": [-1, "@frame_size", "@frame_size"],
                 "mode": "area"},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SimpleInferer"},
        "prepare_batch": PREPARE_BATCH,
        "postprocessing": {"_target_": "Compose",
                           "transforms": [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]},
        "predictions_path": "$@output_dir + '/predictions.csv'",
        "handlers": [
            {"_target_": "monai_das.handlers.SafeCheckpointLoader", "load_path": "@ckpt_path",
             "load_dict": {"model": "@network"}, "map_location": "@device"},
            {"_target_": "monai_das.handlers.PredictionWriter", "output_path": "@predictions_path",
             "network": "@network", "class_names": "@class_names", "id_key": "id"},
        ],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "prepare_batch": "@prepare_batch", "val_handlers": "@handlers", "amp": False},
        "initialize": ["$monai.utils.set_determinism(seed=@seed)"],
        "run": ["$@evaluator.run()"],
        "finalize": [],
    }


def multi_gpu_config() -> dict:
    return {
        "device": "$torch.device(f\"cuda:{os.environ['LOCAL_RANK']}\" if torch.cuda.is_available() else 'cpu')",
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": "$@network_def.to(device=@device, memory_format=@memory_format)",
            "device_ids": "$[@device] if torch.cuda.is_available() else None",
        },
        # --imbalance balanced_sampling: a DistributedWeightedRandomSampler (a plain DistributedSampler would drop it)
        "train#sampler": "$monai_das.engines.distributed_data_sampler(@imbalance, @train_dataset, @train_labels)",
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "validate#sampler": {"_target_": "DistributedSampler", "dataset": "@val_dataset", "even_divisible": False,
                             "shuffle": False},
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            "$@set_seed",
            "$os.makedirs(@output_dir, exist_ok=True)",
            CHECK_VALIDATION,
            CLAIM_OUTPUT,
        ],
        "run": [
            "$@validate#early_stop.set_trainer(@train#trainer)",
            "$@train#sampler.set_epoch(0)",
            "$@train#trainer.add_event_handler(ignite.engine.Events.EPOCH_STARTED, lambda e: @train#sampler.set_epoch(e.state.epoch))",
            "$@train#trainer.run()",
        ],
        # release the DDP model (the parser keeps it alive) before barrier + destroy: else ~5-25% of processes abort
        # at exit ("terminate called without an active exception")
        "finalize": ["$monai_das.engines.teardown_distributed(@network)"],
    }


def metadata(name: str, spec: dict) -> dict:
    params = spec["params"]
    frames = 28 if params.get("num_frames") == "@image_size" else params["num_frames"]
    size = 28 if params.get("frame_size") == "@image_size" else params["frame_size"]
    classes = spec["class_names"]
    return {
        "schema": SCHEMA_URL,
        "version": VERSION,
        "changelog": CHANGELOG,
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "required_packages_version": {**{"monai-das": "0.1.0", "pytorch-ignite": "0.5.5", "tensorboard": "2.21.0",
                                         "scikit-learn": "1.9.1"}, **spec.get("packages", {})},
        "name": f"{spec['title']}: adaptive slice/frame subsampling (DAS)",
        "task": spec["task"],
        "description": (
            f"A MobileNetV3-Small classifier that looks only at k = {params['sampling_ratio']:.0%} of the {frames} "
            "frames (slices) of its input, picked per input by the DAS sampler (or DPS, A-DPS, uniform, random, "
            "full sequence: one override, --sampler_name)."
            + (" It was trained on binary masks of a segmented structure (values 0 and 255 in the files, about 98% "
               "zeros), not on CT or MR images: monai-das predict and the MONAI Label task flag inputs outside "
               "network_data_format.inputs.image.training_statistics." if spec["modality"] == "SEG" else "")
        ),
        "authors": "monai_das developers",
        "copyright": "Copyright (c) monai_das developers",
        "data_source": spec["data_source"],
        "data_type": "numpy" if name.endswith("mnist3d") or name == "synthetic" else "video",
        "intended_use": "Research only; not for diagnostic use.",
        "references": [
            "Shankaranarayana et al., Deep Attention-guided Adaptive Subsampling, arXiv 2510.12376, 2025",
            "Huijben et al., Deep probabilistic subsampling for task-adaptive compressed sensing, ICLR 2020",
            "van Gorp et al., Active deep probabilistic subsampling, ICML 2021",
            "Howard et al., Searching for MobileNetV3, ICCV 2019",
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "binary mask" if spec["modality"] == "SEG" else "magnitude",
                    "modality": spec["modality"],
                    # what the bundle's readers give before its preprocessing (8-bit units), over its training set
                    "training_statistics": spec.get("training_statistics", EIGHT_BIT),
                    "num_channels": 1,
                    "spatial_shape": [frames, size, size],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": len(classes),
                    "spatial_shape": [1, len(classes)],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_onehot": False,
                    "channel_def": {str(i): c for i, c in enumerate(classes)},
                }
            },
        },
    }


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

LICENSE = """Copyright (c) monai_das developers

Licensed under the Apache License, Version 2.0 (the "License"); you may not use the files of this bundle except in
compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
specific language governing permissions and limitations under the License.

The data a bundle trains on keeps its own licence: see docs/README.md.
"""


DATA_NOTES = {
    "synthetic": "Generated on the fly by `monai_das.data.SyntheticSequenceDataset`: smooth texture and noise in every "
    "frame; the class (a disc or a ring of the same added intensity) is drawn in 2 consecutive frames of 32 at a "
    "random position, and a class-independent cross in 2 others. No data folder is needed.",
    "covid_blues": "`--dataset_dir` is the COVID-BLUES folder holding `manifest.csv` (columns path, label, patient_id), "
    "`severity.csv` (the expert's labels per video) and `lus_videos/`. `--target` chooses the label: `covid` (the "
    "patient's COVID-19 test, the default: no frame shows it, and no method learned it here), `b_lines` or "
    "`a_lines` (absent / present in the video) or `severity` (the expert's score 0-3, 4 classes; evaluate adds the "
    "quadratic-weighted kappa `test_kappa`, and the AUC is the macro one-vs-rest AUC). `severity.csv` is read "
    "strictly: values are trimmed (`\"yes \"`), and an unknown value or a video without a label stops the run with "
    "the file, row and value. Videos are split by patient into `--num_folds` (5) folds stratified by the target: "
    "`--fold F` tests on fold F, validates on fold F + 1 (best checkpoint, early stopping) and trains on the rest; "
    "`--split_seed` shuffles the patients (`--fold None` gives the older 70/15/15 patient split). Videos are decoded "
    "with PyAV to grey frames, resampled to `num_frames` frames (short videos repeat frames, long ones keep evenly "
    "spread frames: no padded frame exists, so none can be picked) and resized to `frame_size`. T = 32 frames of "
    "64 x 64 were chosen by a short pilot on the full sequence (`b_lines`, fold 0: 64 frames or 112 pixels gained "
    "nothing measurable at 1.6-2.4x the cost; `benchmarks/results/covid_blues_input_size.md`). Decoded frames are "
    "cached under `<output_dir>/video_cache` (`--video_cache_dir`; the data folder is never written to).",
    "busv": "`--dataset_dir` holds `rawframes/{benign,malignant}/<video id>/<frame>.png` (the released BUSV layout) "
    "and `splits/{train,val,test}.txt` with one video id per line (for example from the official "
    "train/val JSON files, with a test list held out of train). Frames are resampled to 32 per video and resized to "
    "64x64. The dataset README lists known label errors and one train/val leak: remove those videos from the lists.",
}
MEDMNIST_NOTE = ("`--dataset_dir` holds the official `{flag}.npz` (or `{flag}_64.npz` with `--image_size 64`), checked "
                 "against its md5 (`--check_md5 False` for your own files in the same format). Volumes are read as "
                 "(1, D, H, W) in [0, 1] and the D axis is the sequence of slices the sampler chooses from.")


def results_section(name: str) -> str:
    """The bundle's rows of benchmarks/results/accuracy.csv as a Markdown table (mean +- std over seeds)."""
    short = name.removesuffix("mnist3d")  # the dataset names of benchmarks/accuracy.py: vessel, adrenal, ...
    path = ROOT / "benchmarks" / "results" / "accuracy.csv"
    rows = []
    if path.exists():
        import csv
        import statistics
        from collections import defaultdict

        groups = defaultdict(list)
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                # covid_blues also has one dataset per target: covid_blues_b_lines, covid_blues_severity, ...
                if r["dataset"] == short or r["dataset"].startswith(f"{short}_"):
                    groups[(r["dataset"], r["recipe"], -float(r["sampling_ratio"]), r["method"], r["epochs"],
                            r["overrides"])].append(r)
        for (dataset, recipe, ratio, method, epochs, overrides), group in sorted(groups.items()):
            cells = []
            for key in ("test_auc", "test_balanced_accuracy"):
                values = [float(r[key]) for r in group]
                spread = statistics.pstdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.3f} +- {spread:.3f}")
            rows.append(f"| {dataset} | {-ratio:g} | {method} | {recipe} | {len(group)} | {cells[0]} | {cells[1]} "
                        f"| {epochs} | {group[0]['device']} |")
    if not rows:
        return "Not measured yet: run the accuracy benchmark (see the repository README)."
    header = ["| dataset | k/T | method | recipe | seeds (folds) | test AUC | balanced accuracy | epochs | device |",
              "|---|---|---|---|---|---|---|---|---|"]
    return "\n".join(["From `benchmarks/results/accuracy.md` (see there for the command, the machine and the paired",
                      "comparisons):", ""] + header + rows)


def bundle_readme(name: str, spec: dict) -> str:
    params = spec["params"]
    data_arg = "" if name == "synthetic" else " --dataset_dir /path/to/data"
    note = DATA_NOTES.get(name) or MEDMNIST_NOTE.format(flag=name)
    inference_default = (f"the test split of `{name}.npz`" if name in MEDMNIST
                         else "every NIfTI, DICOM, video and npz file under `--dataset_dir`")
    return f"""# {spec['title']}: adaptive slice/frame subsampling (DAS)

**Task.** {spec['task']}. A MobileNetV3-Small sees only k = {params['sampling_ratio']:.0%} of the frames (slices),
picked per input by the sampler; the picked frames' features are pooled and classified. Classes:
{", ".join(f"{i} = {c}" for i, c in enumerate(spec['class_names']))}.

**Data.** {spec['data_source']}. Licence: {spec['data_license']}. {note}

## Run

From this folder (add `--output_dir DIR` to write somewhere else than `outputs/`):

```bash
python -m monai.bundle run --config_file configs/train.json{data_arg}
python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']"{data_arg}
python -m monai.bundle run --config_file configs/inference.json{data_arg}
torchrun --standalone --nproc_per_node 2 -m monai.bundle run --config_file "['configs/train.json','configs/multi_gpu_train.json']"{data_arg}
python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath ../meta_schema.json
```

`train` writes `outputs/model.pt` (best validation AUC; `--checkpoint_metric val_loss` for the paper's choice),
`outputs/last.pt` (the whole training state after every epoch, written atomically: the same command with
`--resume True` continues an interrupted run from it) and TensorBoard logs in `outputs/logs`. A second `train` on a
finished `outputs/` stops with an error instead of replacing its `model.pt` (`--resume True` continues it,
`--overwrite True` replaces it), and two runs at once into one folder are stopped by a lock (`outputs/last.pt.lock`);
`evaluate` writes `outputs/eval/metrics.csv` (test AUC, balanced accuracy,
accuracy, unweighted cross-entropy loss; it needs only the test split); `inference` (standalone: it reads files, `--input_paths "['scans/', 'clip.mp4']"`; by default
{inference_default}) writes `outputs/predictions.csv`: per input its class probabilities, the predicted class and the indices of the picked frames.

**Staged recipe** (`configs/train_staged.json`). Train the bundle once on the full sequence (`--sampler_name full
--output_dir teacher`), then train any sampler on that teacher's frozen backbone:

```bash
python -m monai.bundle run --config_file "['configs/train.json','configs/train_staged.json']" --teacher_ckpt teacher/model.pt --sampler_name das --sampling_ratio 0.25{data_arg}
```

Every frame's backbone features are computed once; the sampler and the linear head then learn on them for
`--staged_epochs` (default 30) with the exact loss of the picked subset plus a term that makes the sampler rank frames
as the teacher does (`--rank_weight`, `--rank_temperature`, `--rank_target true_class` or the label-free
`confidence`); `--sampler_lr_scale 0` keeps the sampler at its prior, and `--head_epochs N` first trains the head
alone on the prior's picks for N epochs, keeping the best validation state of both phases (the benchmark's
`das_from_prior`, N = 30).
It takes minutes where end-to-end training takes an hour on a CPU, and one teacher serves every sampler and budget.
`evaluate` and `inference` run on its `model.pt` as usual (with the same `--sampler_name` and `--sampling_ratio`).

**3D backbone.** Add `configs/backbone_resnet3d.json` after `configs/train.json` (or `configs/inference.json`) in every command (train, evaluate,
inference, multi-GPU) to replace the per-frame MobileNetV3-Small with MONAI's 3D ResNet-18, which sees the k picked
frames, in temporal order, as one volume. It costs far more compute: a training step at batch 16 took 3.7 s on one
CPU core at 14 x 28 x 28, so train it on a GPU.

## Options (one override each)

| override | default | meaning |
|---|---|---|
| `--sampler_name` | `das` | `das`, `das_segments`, `dps`, `adps`, `uniform`, `random` or `full` |
| `--sampling_ratio` | `{params['sampling_ratio']}` | k / T, the fraction of frames kept |
| `--epochs` | `{params['epochs']}` | epochs (cosine learning-rate decay over them) |
| `--learning_rate` | `0.001` | Adam learning rate (the paper: `0.0001`) |
| `--sampler_lr_scale` | `{params.get('sampler_lr_scale', 1.0)}` | the sampler's learning rate is this times `learning_rate` (1.0: one rate for all) |
| `--imbalance` | `weighted_loss` | `weighted_loss` (inverse-frequency class weights), `balanced_sampling` or `none` |
| `--checkpoint_metric` | `val_auc` | metric for the best checkpoint and early stopping (`val_loss` as in the paper) |
| `--early_stop_patience` | `{params.get('early_stop_patience', 10)}` | epochs without improvement before stopping |
| `--pooling` | `mean` | pooling over the picked frames: `mean`, `max` or `attention` |
| `--batch_size` | `16` | batch size |
| `--resume` | `False` | `True`: continue from `outputs/last.pt` (error if missing); `auto`: continue if it exists |
| `--overwrite` | `False` | `True`: a fresh run may replace a finished run's `model.pt` and `last.pt` |
| `--device` | GPU if available | e.g. `"$torch.device('cpu')"` |

The paper's exact protocol is `--learning_rate 0.0001 --imbalance none --checkpoint_metric val_loss` (with flips
and rotations still on); on VesselMNIST3D and AdrenalMNIST3D it predicts the majority class.

## What TensorBoard shows

Besides `train_loss` and the validation metrics (`val_auc`, `val_balanced_accuracy`, `val_accuracy`, `val_loss`),
`sampler/val/*` holds, per epoch: the sampling matrix P of a validation input as an image (rows: the k picks, columns:
the T frames), a montage of its picked frames, the histogram of picked indices per class, the mean temperature and
the entropy of the soft sampling distribution (learned samplers), and the fraction of frames kept.

## Measured results

{results_section(name)}
"""


def backbone_resnet3d_config() -> dict:
    """Swaps the 2D backbone for MONAI's 3D ResNet-18, fed the k picked frames in temporal order as one volume."""
    return {
        "backbone": {"_target_": "monai.networks.nets.resnet18", "spatial_dims": 3, "n_input_channels": "@in_channels",
                     "feed_forward": False},
        "network_def#backbone_dims": 3,
        # the sampler has 2D convolutions, which channels_last_3d refuses
        "memory_format": "$torch.contiguous_format",
    }


def train_staged_config(spec: dict) -> dict:
    """The staged recipe (``monai_das.engines.train_sampler_staged``): an overlay on ``train.json``."""
    if "video_reader" in spec:
        plain_train = video_dataset(spec["video_reader"]("train"), "@validate#preprocessing")
    else:
        plain_train = spec["dataset"]("train", "@validate#preprocessing")
    return {
        # model.pt of this bundle trained with --sampler_name full (same image size and frames)
        "teacher_ckpt": None,
        "staged_epochs": 30,
        "staged_batch_size": 32,
        "sampler_lr_scale": 1.0,
        "rank_weight": 0.3,
        "rank_temperature": 0.5,
        "rank_target": "true_class",
        "finetune_epochs": 0,
        "finetune_learning_rate": 0.0001,
        "head_epochs": 0,
        # the teacher's frame features, computed once and reused by every sampler and budget trained on it
        "feature_cache": "$None if @teacher_ckpt is None else str(@teacher_ckpt) + '.frame_features.pt'",
        "staged_train_dataset": plain_train,
        "staged": {
            "_target_": "monai_das.engines.train_sampler_staged",
            "_requires_": "@set_seed",
            "network": "@network",
            "teacher_ckpt": "@teacher_ckpt",
            "train_data": "@staged_train_dataset",
            "val_data": "@val_dataset",
            "output_path": "@ckpt_path",
            "loss_function": "@loss",
            "epochs": "@staged_epochs",
            "learning_rate": "@learning_rate",
            "sampler_lr_scale": "@sampler_lr_scale",
            "rank_weight": "@rank_weight",
            "rank_temperature": "@rank_temperature",
            "rank_target": "@rank_target",
            "batch_size": "@staged_batch_size",
            "device": "@device",
            "log_dir": "@log_dir",
            "overwrite": "@overwrite",
            "finetune_epochs": "@finetune_epochs",
            "finetune_learning_rate": "@finetune_learning_rate",
            "head_epochs": "@head_epochs",
            "feature_cache": "@feature_cache",
            "network_config": "@network_config",
        },
        "initialize": ["$@set_seed", "$os.makedirs(@output_dir, exist_ok=True)",
                       "$monai_das.handlers.claim_output(@last_ckpt_path, [@ckpt_path], False, @overwrite)"],
        "run": ["@staged"],
        "finalize": [],
    }


def bundle_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, spec in bundle_specs().items():
        folder = ROOT / "bundles" / f"{name}_das_classification"
        configs = {
            "train.json": train_config(spec),
            "evaluate.json": evaluate_config(spec),
            "inference.json": inference_config(name, spec),
            "multi_gpu_train.json": multi_gpu_config(),
            "backbone_resnet3d.json": backbone_resnet3d_config(),
            "train_staged.json": train_staged_config(spec),
            "metadata.json": metadata(name, spec),
        }
        for file_name, content in configs.items():
            files[folder / "configs" / file_name] = json.dumps(content, indent=4) + "\n"
        files[folder / "configs" / "logging.conf"] = LOGGING_CONF
        files[folder / "LICENSE"] = LICENSE
        files[folder / "docs" / "README.md"] = bundle_readme(name, spec)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args()
    stale = []
    for path, text in bundle_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(("differs: " if args.check else "wrote: ") + str(path.relative_to(ROOT)))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
