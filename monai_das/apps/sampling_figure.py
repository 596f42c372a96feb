"""Draw what a trained bundle's sampler picks on a few test inputs.

    python -m monai_das.apps.sampling_figure --bundle bundles/synthetic_das_classification \\
        --figure_dir outputs/figures [--num_inputs 2] [any bundle override, e.g. --dataset_dir DIR]

The bundle's ``train.json`` builds the network and the test dataset (``evaluate.json``); the checkpoint is
``<output_dir of the bundle>/model.pt`` unless ``--ckpt_path`` is given. One PNG per input is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from monai_das.visualize import plot_sampling_decisions

__all__ = ["draw_sampling_figures", "main"]


def draw_sampling_figures(bundle: str | Path, figure_dir: str | Path, num_inputs: int = 2, **overrides) -> list[Path]:
    """Run the bundle's network in eval mode on its first ``num_inputs`` test inputs and plot the picks."""
    bundle = Path(bundle)
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "evaluate.json")])
    parser.update({"bundle_root": str(bundle), "device": "cpu", **overrides})
    network = parser.get_parsed_content("network_def")
    ckpt_path = parser.get_parsed_content("ckpt_path")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    network.eval()
    dataset = parser.get_parsed_content("test_dataset")
    class_names = parser.get_parsed_content("class_names")
    paths = []
    for i in range(min(num_inputs, len(dataset))):
        item = dataset[i]
        image = torch.as_tensor(item["image"]).float()
        with torch.no_grad():
            probs = torch.softmax(network(image[None]), dim=1)[0]
        out = network.last_sampler_output
        label = int(item["label"])
        title = (f"input {i}: label {class_names[label]}, predicted {class_names[int(probs.argmax())]} "
                 f"(p={float(probs.max()):.2f}); {out.indices.shape[1]} of {image.shape[1]} frames picked")
        scores = torch.softmax(out.logits[0], dim=-1) if out.logits is not None else None
        paths.append(plot_sampling_decisions(image, out.indices[0], Path(figure_dir) / f"picks_{i}.png", title, scores))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--figure_dir", required=True)
    parser.add_argument("--num_inputs", type=int, default=2)
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for key, value in zip(rest[::2], rest[1::2]):
        overrides[key.lstrip("-")] = _literal(value)
    for path in draw_sampling_figures(args.bundle, args.figure_dir, args.num_inputs, **overrides):
        print(path)
    return 0


def _literal(value: str):
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


if __name__ == "__main__":
    sys.exit(main())
