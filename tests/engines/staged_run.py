"""``python staged_run.py OUTPUT_DIR RESUME``: the staged recipe on the tiny generated task, every stage trained
(teacher, prior, sampler, fine-tuning), as a process that a test can kill."""

from __future__ import annotations

import logging
import sys

import torch
from monai.data import DataLoader
from tiny_staged import classifier, data

from monai_das.engines import StagedRecipe
from monai_das.handlers import NetworkConfig

EPOCHS = {"teacher_epochs": 5, "epochs": 5, "finetune_epochs": 4}


def main(output_dir: str, resume: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    torch.manual_seed(0)
    train, val = data(64, seed=1, noise=1.0, signal=0.3), data(32, seed=2, noise=1.0, signal=0.3)
    recipe = StagedRecipe(classifier("das"), train, DataLoader(val, batch_size=16), output_dir,
                          teacher_network=classifier("full"), teacher_train_loader=DataLoader(train, batch_size=16),
                          network_config=NetworkConfig({"sampler_name": "das"}), batch_size=16, num_bootstrap=50,
                          selection="best", resume=resume, **EPOCHS)
    print("kept", recipe.run()["kept"])


if __name__ == "__main__":
    main(*sys.argv[1:])
