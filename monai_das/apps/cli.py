"""The ``monai-das`` command: one entry point, one subcommand per tool.

    monai-das predict --bundle DIR --input PATH [PATH ...] --output results.csv [--ckpt PATH] [--montage_dir DIR]
    monai-das sampling_figure --bundle DIR --figure_dir DIR [--num_inputs 2]
    python -m monai_das.apps.cli predict ...      # the same without the installed script

``monai-das COMMAND --help`` describes a command's options.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module with a ``main(argv) -> int``, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": (
        "monai_das.apps.predict",
        "run a bundle's network on NIfTI / DICOM / video / MedMNIST npz files and write a CSV of predictions and picks",
    ),
    "sampling_figure": (
        "monai_das.apps.sampling_figure",
        "draw what a trained bundle's sampler picks on a few test inputs",
    ),
}


def _usage() -> str:
    lines = ["usage: monai-das COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<16} {description}" for name, (_, description) in COMMANDS.items()]
    lines += ["", "`monai-das COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its subcommand's ``main`` and return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"{_usage()}\n\nmonai-das: error: unknown command {command!r}; choose from {list(COMMANDS)}.",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
