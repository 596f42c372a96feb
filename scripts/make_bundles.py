"""Writes each bundle's standalone configs from the files a person edits, so the nine bundles cannot drift apart.

    python scripts/make_bundles.py           # rewrite the generated files of every bundle
    python scripts/make_bundles.py --check   # exit 1 if a generated file differs, or a bundle contradicts itself

What a person edits:

- ``bundles/common/``: the recipe every bundle shares (``train.json``: network, sampler, preprocessing, trainer,
  validation, checkpoints; ``inference.json``: reading files and writing predictions; the overlays
  ``evaluate.json``, ``multi_gpu_train.json``, ``train_staged.json``, ``backbone_resnet3d.json``; ``logging.conf``,
  ``LICENSE``), one place for each default;
- ``bundles/<name>/configs/dataset.json``: what is this bundle's own (its classes, frames, data, and the defaults it
  changes), and ``metadata.json`` and ``docs/README.md``.

What this script writes into each bundle (a model-zoo bundle must run from its own folder, and ``train.json`` and
``inference.json`` must each run alone: ``monai.bundle run``, the model-zoo verifier, ``monai-das predict``, MONAI
Label): ``train.json`` = common ``train.json`` merged with ``dataset.json`` (MONAI's own multi-file merge, so a
``"a#b"`` key of ``dataset.json`` sets a nested value); ``inference.json`` = common ``inference.json`` plus the keys
of that merge it refers to (network, frames, classes, preprocessing), with ``dataset.json``'s values winning; the
overlays, ``logging.conf`` and ``LICENSE`` as copies.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
COMMON = BUNDLES / "common"
#: copied unchanged into every bundle (relative to bundles/common -> relative to the bundle)
COPIES = {**{f: f"configs/{f}" for f in ("evaluate.json", "multi_gpu_train.json", "train_staged.json",
                                         "backbone_resnet3d.json", "logging.conf")}, "LICENSE": "LICENSE"}
REFERENCE = re.compile(r"@([A-Za-z_]\w*)")


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def merged_train(bundle: Path) -> dict:
    """common/train.json then the bundle's dataset.json, merged as ``monai.bundle`` merges a list of config files."""
    from monai.bundle import ConfigParser

    config = ConfigParser.load_config_files([str(COMMON / "train.json"), str(bundle / "configs" / "dataset.json")])
    return dict(config)


def references(value) -> set[str]:
    """The top-level config ids that ``value`` refers to with ``@id`` (``_meta_`` aside)."""
    return set(REFERENCE.findall(json.dumps(value))) - {"_meta_"}


def standalone_inference(train: dict, dataset: dict) -> dict:
    """common/inference.json, completed with every key of ``train`` it refers to (transitively)."""
    config = {**read_json(COMMON / "inference.json")}
    config.update({k: v for k, v in dataset.items() if k in config})  # the bundle's inputs (input_paths, dataset_dir)
    pending = references(config)
    added: dict = {}
    while pending:
        key = pending.pop()
        if key in config or key in added:
            continue
        if key not in train:
            raise KeyError(f"bundles/common/inference.json refers to @{key}, which the bundle's train.json lacks")
        added[key] = train[key]
        pending |= references(train[key])
    ordered = {k: added[k] for k in train if k in added}  # train.json's order: options before the objects using them
    return {"imports": config.pop("imports"), **ordered, **config}


def contradictions(bundle: Path, train: dict) -> list[str]:
    """Where the bundle's metadata.json says another class list or input shape than its train.json."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(train)
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    meta = parser.get("_meta_")["network_data_format"]
    classes = [str(c) for c in parser.get_parsed_content("class_names")]
    shape = [int(parser.get_parsed_content(k)) for k in ("num_frames", "frame_size", "frame_size")]
    errors = []
    if list(meta["outputs"]["pred"]["channel_def"].values()) != classes:
        errors.append(f"{bundle.name}: metadata.json channel_def differs from class_names {classes}")
    if meta["inputs"]["image"]["spatial_shape"] != shape:
        errors.append(f"{bundle.name}: metadata.json spatial_shape differs from [num_frames, frame_size, frame_size] "
                      f"{shape}")
    return errors


def dumps(config: dict) -> str:
    return json.dumps(config, indent=4) + "\n"


def bundle_files(bundle: Path) -> dict[Path, str]:
    """The generated files of one bundle: {path: text}."""
    dataset = read_json(bundle / "configs" / "dataset.json")
    train = merged_train(bundle)
    files = {bundle / "configs" / "train.json": dumps(train),
             bundle / "configs" / "inference.json": dumps(standalone_inference(train, dataset))}
    for source, target in COPIES.items():
        files[bundle / target] = (COMMON / source).read_text()
    return files


def bundle_dirs() -> list[Path]:
    return sorted(p.parent.parent for p in BUNDLES.glob("*/configs/dataset.json"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args()
    stale, errors = [], []
    for bundle in bundle_dirs():
        files = bundle_files(bundle)
        errors += contradictions(bundle, read_json(bundle / "configs" / "train.json") if args.check
                                 else json.loads(files[bundle / "configs" / "train.json"]))
        for path, text in files.items():
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path)
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(("differs: " if args.check else "wrote: ") + str(path.relative_to(ROOT)))
    for error in errors:
        print("contradiction: " + error)
    return 1 if (args.check and stale) or errors else 0


if __name__ == "__main__":
    sys.exit(main())
