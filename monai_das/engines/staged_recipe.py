"""The staged recipe as one resumable workflow: teacher, cached features, head on the prior, sampler, selection,
optional fine-tuning; each training stage an ignite engine with MONAI handlers (:mod:`.stage_engines`).

Files in ``output_dir``: ``teacher/``, ``prior/``, ``sampler/``, ``finetune/`` (each stage's ``model.pt``,
``last.pt``, ``logs/``), ``features.pt`` (the cache), ``selection.json`` (what was kept and why) and ``model.pt``
(the kept network with its network options, among them the decision threshold chosen on validation).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.utils import look_up_option
from torch import nn

from monai_das.engines.batchnorm_recalibration import recalibrate_batchnorm
from monai_das.engines.sampler_selection import SELECTION_RULES, keep_learned_sampler, roc_auc
from monai_das.engines.stage_engines import attach_stage_handlers, feature_engines, image_engines
from monai_das.engines.staged_sampler_training import cache_frame_features, load_teacher, teacher_frame_scores
from monai_das.handlers import NetworkConfig, ReplacingDiskSaver, claim_output, load_checkpoint, release_output
from monai_das.handlers.network_config import split_checkpoint
from monai_das.handlers.training_state import is_finished
from monai_das.utils.atomic_file import atomic_write

__all__ = ["StagedRecipe"]

logger = logging.getLogger(__name__)


class StagedRecipe:
    """Train a :py:class:`SubsampledClassifier` (2D backbone, mean pooling) with the staged recipe, one stage after
    another, each resumable and skipped once finished.

    1. **teacher** (unless ``teacher_ckpt``): ``teacher_network`` (the same classifier with the ``full`` sampler)
       trained end to end on ``teacher_train_loader``; its backbone and head are copied into ``network``.
    2. **features**: every frame of ``train_data`` and of the validation set through the frozen backbone, once.
    3. **prior**: the head alone on the picks of the sampler's untrained prior (for uniform, random, or
       ``sampler_lr_scale=0`` this is the only training stage).
    4. **sampler** (samplers with parameters, ``sampler_lr_scale > 0``): sampler and head from the teacher's head,
       with the teacher's frame ranking (``rank_weight``).
    5. **selection**: the learned sampler replaces the prior only by ``selection``
       (:py:func:`keep_learned_sampler`).
    6. **finetune** (``finetune_epochs > 0``): sampler, backbone and head on the images, BatchNorm re-estimated
       before each validation; kept when its best validation AUC beats the kept state's.

    Args:
        network: the classifier to train.
        train_data: training dataset without random augmentation (``{"image": (C, T, H, W), "label", [mask]}``).
        val_loader: validation loader (its dataset is cached too).
        output_dir: the run's folder.
        teacher_network, teacher_train_loader: the teacher and its (augmented) training loader; needed without
            ``teacher_ckpt``.
        teacher_ckpt: a finished teacher's ``model.pt`` of the same bundle, instead of stage 1.
        network_config: the :py:class:`NetworkConfig` saved with the weights (the threshold is added to it).
        loss_function: the task loss on ``(logits, labels)``; cross-entropy when ``None``.
        teacher_epochs, teacher_learning_rate: stage 1 (Adam, cosine annealing).
        epochs, learning_rate: stages 3 and 4, each (Adam; the sampler at ``sampler_lr_scale`` times the rate).
        rank_weight, rank_temperature, rank_target: the ranking term (:py:func:`teacher_frame_scores`).
        selection, selection_confidence, num_bootstrap: stage 5.
        finetune_epochs, finetune_learning_rate: stage 6.
        batch_size: inputs per step of stages 2-6.
        early_stop_patience: epochs without a better validation AUC before a stage stops.
        device: where to train.
        seed: of the per-epoch orders and draws of stages 3-4 and of the bootstrap.
        frame_mask_key: item key of the real-frames mask (e.g. ``"image_frame_mask"``), or ``None``.
        feature_cache: where to keep the features (default ``<output_dir>/features.pt``); reused when the teacher's
            sha256 and the dataset sizes match, so runs sharing a teacher skip stage 2.
        resume: ``False`` (start afresh), ``True`` or ``"auto"`` (continue every unfinished stage, skip finished ones).
        overwrite: let a fresh run replace a finished run's files.
    """

    def __init__(self, network: nn.Module, train_data: Sequence[dict], val_loader: Any, output_dir: str,
                 teacher_network: nn.Module | None = None, teacher_train_loader: Any = None,
                 teacher_ckpt: str | None = None, network_config: Any = None, loss_function: Any = None,
                 teacher_epochs: int = 40, teacher_learning_rate: float = 1e-3, epochs: int = 30,
                 learning_rate: float = 1e-3, sampler_lr_scale: float = 1.0, rank_weight: float = 0.3,
                 rank_temperature: float = 0.5, rank_target: str = "true_class", selection: str = "bootstrap",
                 selection_confidence: float = 0.9, num_bootstrap: int = 1000, finetune_epochs: int = 0,
                 finetune_learning_rate: float = 1e-4, batch_size: int = 32, early_stop_patience: int = 40,
                 device: Any = "cpu", seed: int = 0, frame_mask_key: str | None = None,
                 feature_cache: str | None = None, resume: bool | str = False, overwrite: bool = False) -> None:
        if getattr(network, "backbone_dims", 2) != 2 or getattr(network, "pooling", "mean") != "mean":
            raise ValueError("the staged recipe needs a 2D backbone with mean pooling (pooling='mean', "
                             "backbone_dims=2).")
        if teacher_ckpt is None and (teacher_network is None or teacher_train_loader is None):
            raise ValueError("without teacher_ckpt the recipe trains the teacher: give teacher_network and "
                             "teacher_train_loader (the bundle's full-sequence network and training loader).")
        if min(teacher_epochs, epochs) < 1 or finetune_epochs < 0:
            raise ValueError(f"teacher_epochs and epochs must be >= 1 and finetune_epochs >= 0, got {teacher_epochs}, "
                             f"{epochs} and {finetune_epochs}.")
        self.selection = look_up_option(selection, SELECTION_RULES)
        self.__dict__.update({k: v for k, v in locals().items() if k not in ("self", "selection")})
        self.output_dir = os.fspath(output_dir)
        self.network_config = network_config if network_config is not None else NetworkConfig({})
        self.loss_function = loss_function if loss_function is not None else nn.CrossEntropyLoss()
        self.stage_resume = "auto" if resume in (True, "auto") or str(resume).lower() in ("true", "auto") else False
        self.num_classes = int(network.head[-1].out_features)

    # ---- the stages -----------------------------------------------------------------------------------------------

    def _stage_dir(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    def _finished(self, name: str) -> bool:
        last = os.path.join(self._stage_dir(name), "last.pt")
        if self.stage_resume and os.path.isfile(last) and is_finished(last):
            logger.info(f"staged: stage '{name}' finished earlier ({last}): skipped.")
            return True
        return False

    def _teacher(self) -> str:
        if self.teacher_ckpt is not None:
            return os.fspath(self.teacher_ckpt)
        net, stage = self.teacher_network.to(self.device), self._stage_dir("teacher")
        if not self._finished("teacher"):
            optimizer = torch.optim.Adam(net.parameters(), lr=self.teacher_learning_rate)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.teacher_epochs)
            trainer, evaluator = image_engines(net, self.teacher_train_loader, self.val_loader, optimizer,
                                               self.loss_function, self.teacher_epochs, self.device, None,
                                               self.num_classes, self.frame_mask_key)
            attach_stage_handlers(trainer, evaluator, stage, net, optimizer, None, self.early_stop_patience,
                                  self.stage_resume, self.overwrite, lr_scheduler=scheduler, seed=self.seed)
            trainer.run()
        return os.path.join(stage, "model.pt")

    def _features(self, teacher_path: str) -> tuple[dict, dict]:
        path = self.feature_cache or os.path.join(self.output_dir, "features.pt")
        with open(teacher_path, "rb") as f:
            stamp = {"teacher_sha256": hashlib.sha256(f.read()).hexdigest(),
                     "sizes": [len(self.train_data), len(self.val_loader.dataset)], "mask": self.frame_mask_key}
        if os.path.isfile(path):
            saved = load_checkpoint(path, map_location=self.device)
            if saved.get("stamp") == stamp:
                logger.info(f"staged: frame features read from {path}")
                return saved["train"], saved["val"]
        caches = [cache_frame_features(self.network, data, self.device, self.batch_size, self.frame_mask_key)
                  for data in (self.train_data, self.val_loader.dataset)]
        folder, name = os.path.split(os.path.abspath(path))
        ReplacingDiskSaver(folder)({"stamp": stamp, "train": caches[0], "val": caches[1]}, name)
        return caches[0], caches[1]

    def _feature_stage(self, name: str, start: dict, caches: tuple[dict, dict], scores: torch.Tensor,
                       sampler_learns: bool) -> str:
        net = self.network
        if not self._finished(name):
            net.load_state_dict(start)
            groups = [{"params": list(net.head.parameters()), "lr": self.learning_rate}]
            if sampler_learns:
                groups.append({"params": [p for p in net.sampler.parameters() if p.requires_grad],
                               "lr": self.learning_rate * self.sampler_lr_scale})
            optimizer = torch.optim.Adam(groups)
            trainer, evaluator = feature_engines(net, *caches, scores, optimizer, self.loss_function, self.epochs,
                                                 self.batch_size, self.device, self.network_config, self.num_classes,
                                                 sampler_learns, self.rank_weight, self.rank_temperature, self.seed)
            attach_stage_handlers(trainer, evaluator, self._stage_dir(name), net, optimizer, self.network_config,
                                  self.early_stop_patience, self.stage_resume, self.overwrite, seed=self.seed)
            trainer.run()
        return os.path.join(self._stage_dir(name), "model.pt")

    def _finetune(self, start: str, train_cache: dict) -> str:
        net, name = self.network, "finetune"
        if not self._finished(name):
            self._load(start)
            for p in net.backbone.parameters():
                p.requires_grad_(True)
            groups = [{"params": list(net.backbone.parameters()) + list(net.head.parameters()),
                       "lr": self.finetune_learning_rate}]
            sampler_params = [p for p in net.sampler.parameters() if p.requires_grad]
            if sampler_params and self.sampler_lr_scale > 0:
                groups.append({"params": sampler_params, "lr": self.finetune_learning_rate * self.sampler_lr_scale})
            optimizer = torch.optim.Adam(groups)
            loader = DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True)
            trainer, evaluator = image_engines(net, loader, self.val_loader, optimizer, self.loss_function,
                                               self.finetune_epochs, self.device, self.network_config,
                                               self.num_classes, self.frame_mask_key)
            attach_stage_handlers(trainer, evaluator, self._stage_dir(name), net, optimizer, self.network_config,
                                  self.early_stop_patience, self.stage_resume, self.overwrite,
                                  before_validation=lambda e: recalibrate_batchnorm(net, train_cache["images"],
                                                                                    self.batch_size), seed=self.seed)
            trainer.run()
        return os.path.join(self._stage_dir(name), "model.pt")

    # ---- choosing -------------------------------------------------------------------------------------------------

    def _load(self, path: str) -> dict:
        """Load a stage's best ``model.pt`` into the network; its network options."""
        weights, options = split_checkpoint(load_checkpoint(path, map_location=self.device))
        self.network.load_state_dict(weights)
        return options

    @torch.no_grad()
    def _probabilities(self, path: str, cache: dict) -> torch.Tensor:
        """``(N, C)`` validation probabilities of a stage's best model (the whole network, eval mode)."""
        self._load(path)
        self.network.eval()
        parts = [F.softmax(self.network(x, m), dim=-1) for x, m in
                 zip(cache["images"].split(self.batch_size), cache["frame_mask"].split(self.batch_size))]
        return torch.cat(parts).cpu()

    def _choose(self, candidates: dict[str, str], val_cache: dict) -> tuple[str, dict]:
        if "sampler" not in candidates:
            return "prior", {"kept": "prior", "reason": "the sampler has nothing to learn"}
        labels = val_cache["labels"].cpu()
        learned = self._probabilities(candidates["sampler"], val_cache)
        prior = self._probabilities(candidates["prior"], val_cache)
        keep, stats = keep_learned_sampler(learned, prior, labels, self.selection, self.selection_confidence,
                                           self.num_bootstrap, self.seed)
        kept = "sampler" if keep else "prior"
        logger.info(f"staged: validation AUC learned - prior {stats['difference']:+.4f}, learned wins in "
                    f"{stats['win_rate']:.1%} of {self.num_bootstrap} paired bootstrap draws; rule "
                    f"{stats['rule']}: kept the {kept} state.")
        return kept, {"kept": kept, **stats}

    # ---- the run --------------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run (or finish) every stage; the final ``model.pt`` is written last. Returns what ``selection.json``
        holds."""
        final = os.path.join(self.output_dir, "model.pt")
        claim_output(os.path.join(self.output_dir, "last.pt"), [final], self.resume, self.overwrite, logger)
        try:
            teacher = self._teacher()
            load_teacher(self.network, teacher)
            self.network.to(self.device)
            for p in self.network.backbone.parameters():
                p.requires_grad_(False)
            caches = self._features(teacher)
            scores = teacher_frame_scores(self.network.head, caches[0]["features"], caches[0]["labels"],
                                          self.rank_target)
            start = copy.deepcopy(self.network.state_dict())  # teacher's backbone and head, the sampler's prior
            candidates = {"prior": self._feature_stage("prior", start, caches, scores, False)}
            if self.sampler_lr_scale > 0 and any(p.requires_grad for p in self.network.sampler.parameters()):
                candidates["sampler"] = self._feature_stage("sampler", start, caches, scores, True)
            kept, summary = self._choose(candidates, caches[1])
            path = candidates[kept]
            if self.finetune_epochs > 0:
                path, summary["finetune"] = self._keep_finetune(path, caches)
            options = self._load(path)
            self.network.eval()
            ReplacingDiskSaver(self.output_dir)({"model": self.network.state_dict(), "network_config": options},
                                                "model.pt")
            with atomic_write(os.path.join(self.output_dir, "selection.json")) as f:
                json.dump({**summary, "model": os.path.relpath(path, self.output_dir)}, f, indent=1)
            logger.info(f"staged: saved {final} (from {path})")
            return summary
        finally:
            release_output(os.path.join(self.output_dir, "last.pt"))

    def _keep_finetune(self, path: str, caches: tuple[dict, dict]) -> tuple[str, dict]:
        tuned = self._finetune(path, caches[0])
        labels = caches[1]["labels"].cpu()
        aucs = {name: roc_auc(self._probabilities(p, caches[1]), labels) for name, p in (("kept", path),
                                                                                          ("finetune", tuned))}
        better = aucs["finetune"] > aucs["kept"]
        return (tuned if better else path), {"val_auc": aucs, "kept": better}
