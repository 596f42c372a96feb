"""Resumable training with ignite's checkpointing, and the claim of a run's output folder.

The checkpoints are ignite's own: :py:class:`ignite.handlers.Checkpoint` writes through
``DiskSaver(atomic=True)`` (a temporary file in the same folder, then ``os.replace``), so a file on disk is always a
whole checkpoint, and :py:meth:`ignite.handlers.Checkpoint.load_objects` restores one. What this module adds:

- :class:`ReplacingDiskSaver`: a ``DiskSaver`` for a checkpoint kept under one fixed name (``model.pt``, ``last.pt``),
  which never deletes it before the next save replaces it;
- :class:`BestModelCheckpoint` and :class:`TrainingStateCheckpoint`: ignite ``Checkpoint`` set up for the best model
  and for the whole training state, with ``attach`` for MONAI workflows' handler lists;
- :func:`claim_output`: the output folder made this run's (an ``flock`` lock, a finished run protected, stale
  temporary files removed).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from monai.utils import IgniteInfo, min_version, optional_import

from monai_das.handlers.checkpoint_loading import load_checkpoint

fcntl, has_fcntl = optional_import("fcntl")  # POSIX only: without it runs are not locked
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint",
                                as_type="base")
DiskSaver, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "DiskSaver",
                               as_type="base")

__all__ = ["RESUME_CHOICES", "BestModelCheckpoint", "ReplacingDiskSaver", "TrainingStateCheckpoint", "claim_output",
           "read_training_state", "release_output"]

#: what ``resume`` accepts: ``False`` (start afresh), ``True`` (continue from ``last.pt``; an error if it is missing)
#: or ``"auto"`` (continue when it exists: one command for the first launch and every relaunch of a pre-emptible job)
RESUME_CHOICES = (False, True, "auto")
_FORMAT = "monai_das.training_state.v2"
#: the temporary files of ignite's atomic DiskSaver (``tempfile.NamedTemporaryFile`` in the output folder)
_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


class ReplacingDiskSaver(DiskSaver):
    """ignite's ``DiskSaver(atomic=True)`` for a checkpoint kept under one file name.

    ignite's ``Checkpoint`` calls ``remove`` on the old file just before it saves the new one; under one fixed name that
    would leave no checkpoint on disk for a moment. Here ``remove`` keeps the file: the atomic save replaces it.
    """

    def __init__(self, dirname: str | os.PathLike) -> None:
        super().__init__(dirname, atomic=True, require_empty=False)

    def remove(self, filename: str) -> None:
        """Keep ``filename``: the save that follows replaces it with ``os.replace``."""


class BestModelCheckpoint(Checkpoint):
    """The best epoch's ``save_dict`` (e.g. ``{"model": network, "network_config": NetworkConfig}``) in
    ``<save_dir>/<key_metric_filename>``, replaced atomically when a later epoch scores higher: ignite's
    ``Checkpoint`` with ``n_saved=1``. Attach it to the evaluator (a MONAI ``val_handlers`` entry); its record of the
    best score is its ``state_dict``, so :class:`TrainingStateCheckpoint` can save it for resuming.

    Args:
        save_dir: the output folder.
        save_dict: ``{name: object with state_dict()}``.
        key_metric_name: the evaluator's metric, e.g. ``"val_auc"``.
        key_metric_filename: the file name.
        key_metric_negative_sign: lower is better (a loss).
    """

    def __init__(self, save_dir: str, save_dict: Mapping[str, Any], key_metric_name: str,
                 key_metric_filename: str = "model.pt", key_metric_negative_sign: bool = False) -> None:
        sign = -1.0 if key_metric_negative_sign else 1.0

        def score(engine: Any) -> float:  # a Python float (MONAI's ROCAUC gives numpy's): last.pt stays weights_only
            return sign * float(engine.state.metrics[key_metric_name])

        super().__init__(dict(save_dict), ReplacingDiskSaver(save_dir), filename_pattern=key_metric_filename,
                         score_function=score, n_saved=1)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)


def read_training_state(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a file written by :py:class:`TrainingStateCheckpoint` (``weights_only``, :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when ``path`` is not a training-state file (for example a ``model.pt`` state dict).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no training state to resume from: {path} does not exist (resume 'auto' starts afresh when it is missing)."
        )
    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state, Mapping) or state.get("status", {}).get("format") != _FORMAT:
        found = sorted(state)[:8] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"{path} is not a training state written by TrainingStateCheckpoint (found {found}).")
    return dict(state)


def _resume_choice(resume: Any) -> bool | str:
    if isinstance(resume, str) and resume.lower() in ("true", "false", "auto"):
        resume = {"true": True, "false": False, "auto": "auto"}[resume.lower()]
    if not any(resume is c or (isinstance(c, str) and resume == c) for c in RESUME_CHOICES):
        raise ValueError(f"resume must be False, True or 'auto', got {resume!r}.")
    return resume


#: the lock files this process holds, by training-state path
_HELD_LOCKS: dict[str, Any] = {}


def _lock(path: str) -> None:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (rank 0; a no-op where ``fcntl`` is missing or held already).

    Raises:
        RuntimeError: when another process holds it.
    """
    if idist.get_rank() != 0 or path in _HELD_LOCKS or not has_fcntl:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lock_file = open(f"{path}.lock", "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise RuntimeError(f"another run (pid {holder}) is training into {os.path.dirname(path)} (it holds "
                           f"{path}.lock): wait for it to end, or choose another --output_dir.") from e
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    _HELD_LOCKS[path] = lock_file


def release_output(path: str | os.PathLike) -> None:
    """Release the lock that :func:`claim_output` took on the folder of ``path`` (a no-op when none is held)."""
    lock_file = _HELD_LOCKS.pop(os.fspath(path), None)
    if lock_file is not None:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def is_finished(path: str | os.PathLike) -> bool:
    """Whether the training state at ``path`` says its run is over (all epochs done, or stopped early)."""
    status = read_training_state(path)["status"]
    return bool(status["early_stopped"]) or status["epoch"] >= status["max_epochs"]


def _check_fresh_start(path: str, protect: Sequence[str], overwrite: bool, logger: logging.Logger) -> None:
    """Refuse (``FileExistsError``) a fresh run on a finished run's files without ``overwrite``; warn when it
    replaces an interrupted run's files."""
    existing = [p for p in (path, *protect) if os.path.isfile(p)]
    if not existing:
        return
    # a best model without a training state: nothing says it may go
    finished = is_finished(path) if os.path.isfile(path) else True
    names = ", ".join(os.path.basename(p) for p in existing)
    folder = os.path.dirname(os.path.abspath(path))
    if finished and not overwrite:
        raise FileExistsError(
            f"{folder} holds a finished run ({names}); a fresh run would replace them. Pass --resume True to continue "
            "it (raise --epochs to train longer), --overwrite True to start afresh and replace them, or another "
            "--output_dir."
        )
    if idist.get_rank() == 0:
        logger.warning(f"{names} in {folder} will be overwritten: this run starts afresh (resume=False). Pass "
                       "--resume True to continue it instead.")


def claim_output(path: str | os.PathLike, protect: Sequence[str | os.PathLike] = (), resume: bool | str = False,
                 overwrite: bool = False, logger: logging.Logger | None = None) -> None:
    """Make the folder of a run's training state ``path`` (``<output_dir>/last.pt``) this run's, before it writes.

    Rank 0 takes an exclusive lock (``fcntl.flock``, POSIX) on ``<path>.lock``, held until :func:`release_output` or
    the end of the process, so a second run into the same folder fails at once. A fresh run (``resume`` False) on a
    finished run's files (``path`` says all its epochs are done or it stopped early, or a ``protect`` file such as
    ``model.pt`` exists without ``path``) is refused unless ``overwrite``; an interrupted run's files are replaced
    with a warning. Temporary files that a killed atomic save left in the folder (``tmpXXXXXXXX``) are removed.

    Raises:
        RuntimeError: when another process holds the lock.
        FileExistsError: for a fresh run on a finished run's files without ``overwrite``.
        ValueError: for a ``resume`` outside (False, True, "auto").
    """
    path = os.fspath(path)
    protect = [os.fspath(p) for p in protect]
    logger = logger or logging.getLogger(__name__)
    fresh = _resume_choice(resume) is False
    _lock(path)
    try:
        if fresh:
            _check_fresh_start(path, protect, overwrite, logger)
        if idist.get_rank() == 0:
            folder = os.path.dirname(os.path.abspath(path))
            for name in sorted(os.listdir(folder)):
                if _TEMPORARY.fullmatch(name) and os.path.isfile(os.path.join(folder, name)):
                    logger.warning(f"removing {os.path.join(folder, name)}: a temporary file left by a killed save.")
                    os.remove(os.path.join(folder, name))
    except BaseException:
        release_output(path)
        raise


class _RunStatus:
    """The entry ``"status"`` of a training state: its format, the epochs done and whether early stopping ended it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def state_dict(self) -> dict:
        return {"format": _FORMAT, "epoch": int(self.engine.state.epoch),
                "max_epochs": int(self.engine.state.max_epochs), "early_stopped": bool(self.engine.should_terminate)}

    def load_state_dict(self, state: Mapping) -> None:
        """Nothing to restore: :class:`TrainingStateCheckpoint` reads the status itself."""


class TrainingStateCheckpoint:
    """Everything a trainer needs to continue, in one file written after every epoch, and restored on resume.

    An ignite ``Checkpoint`` (``n_saved=1``, :class:`ReplacingDiskSaver`) of ``save_dict`` plus the trainer's state
    and a ``"status"`` entry (epochs done, ``max_epochs``, stopped early). ``save_dict`` holds objects with
    ``state_dict``: networks (DDP/DataParallel unwrapped by ignite), optimizers, schedulers, ignite's
    ``EarlyStopping``, a :class:`BestModelCheckpoint` (its best-score record, so a resumed run never replaces
    ``model.pt`` with a worse model). Attach it to the trainer after the epoch's validation, learning-rate step and
    early stopping. The file loads with ``torch.load(..., weights_only=True)``; only rank 0 writes.

    At the trainer's ``STARTED`` event the folder is claimed (:func:`claim_output`); on resume every object is
    restored with ``Checkpoint.load_objects`` and the trainer continues with the epoch after the saved one, up to the
    ``max_epochs`` it was built with (raise ``--epochs`` to train longer). A run that stopped early or finished does
    nothing more. Random generators are not restored.

    Args:
        path: the file, e.g. ``<output_dir>/last.pt``.
        save_dict: ``{name: object}``; ``None`` values are skipped (rank-0-only handlers on other ranks).
        resume: ``False``, ``True`` or ``"auto"`` (:data:`RESUME_CHOICES`).
        map_location: ``torch.load``'s ``map_location``.
        name: logger name; default: the trainer's logger.
        overwrite: let a fresh run replace a finished run's files.
        protect: other files of the run that a fresh run would replace (e.g. ``<output_dir>/model.pt``).

    Raises:
        ValueError: for a ``resume`` outside :data:`RESUME_CHOICES`, or on resume a file that is not a training state
            or has done more epochs than the trainer's ``max_epochs``.
        FileNotFoundError: on resume with ``resume=True`` and no file at ``path``.
        FileExistsError: for a fresh run on a finished run's files without ``overwrite``.
        RuntimeError: when another process trains into the folder, or a saved object does not fit this run.
    """

    def __init__(self, path: str | os.PathLike, save_dict: Mapping[str, Any], resume: bool | str = False,
                 map_location: Any = "cpu", name: str | None = None, overwrite: bool = False,
                 protect: Sequence[str | os.PathLike] = ()) -> None:
        self.resume = _resume_choice(resume)
        if "trainer" in save_dict or "status" in save_dict:
            raise ValueError("save_dict must not use the names 'trainer' or 'status': the handler writes them.")
        self.path = os.fspath(path)
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.map_location = map_location
        self.logger = logging.getLogger(name) if name is not None else None
        self.overwrite = overwrite
        self.protect = [os.fspath(p) for p in protect]

    def attach(self, engine: Any) -> None:
        self.logger = self.logger or engine.logger
        folder, filename = os.path.split(os.path.abspath(self.path))
        engine.add_event_handler(Events.STARTED, self.load)
        self.checkpoint = Checkpoint({**self.save_dict, "trainer": engine, "status": _RunStatus(engine)},
                                     ReplacingDiskSaver(folder), filename_pattern=filename, n_saved=1)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.COMPLETED, self.unlock)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception_raised)

    def save(self, engine: Any) -> None:
        self.checkpoint(engine)
        if idist.get_rank() == 0:
            self.logger.info(f"saved the training state after epoch {engine.state.epoch} to {self.path}")

    def unlock(self, engine: Any = None) -> None:
        """Release the folder's lock (when the trainer completes or raises; a process that ends releases it too)."""
        release_output(self.path)

    def _exception_raised(self, engine: Any, e: BaseException) -> None:
        self.unlock()
        raise e  # ignite re-raises only when no handler is registered for EXCEPTION_RAISED

    def load(self, engine: Any) -> None:
        claim_output(self.path, self.protect, self.resume, self.overwrite, self.logger)
        try:
            if self.resume is True or (self.resume == "auto" and os.path.isfile(self.path)):
                self._restore(engine)
            elif self.resume == "auto":
                self.logger.info(f"resume='auto': no {self.path} yet, starting afresh.")
        except BaseException:
            self.unlock()
            raise

    def _restore(self, engine: Any) -> None:
        state = read_training_state(self.path, map_location=self.map_location)
        missing = [name for name in self.save_dict if name not in state]
        if missing:
            raise ValueError(f"{self.path} holds no state for {missing}; it has {sorted(state)}.")
        max_epochs, status = engine.state.max_epochs, state["status"]
        epoch = int(status["epoch"])
        if epoch > max_epochs:
            raise ValueError(
                f"{self.path} holds {epoch} finished epochs, more than this trainer's max_epochs ({max_epochs}): "
                f"pass --epochs {epoch} or more to resume it."
            )
        for name, obj in self.save_dict.items():
            try:
                Checkpoint.load_objects({name: obj}, {name: state[name]})
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                raise type(e)(
                    f"cannot restore '{name}' from {self.path}: it does not fit this run's config (resume with the "
                    f"overrides the run was started with, e.g. the same --sampler_name). {e}"
                ) from e
        epoch_length = engine.state.epoch_length or state["trainer"]["epoch_length"]
        engine.load_state_dict({"epoch": epoch, "epoch_length": epoch_length, "max_epochs": max_epochs})
        if status["early_stopped"]:
            self.logger.info(f"resumed from {self.path}: training stopped early after epoch {epoch}; nothing to do.")
            engine.terminate()
        elif epoch >= max_epochs:
            self.logger.info(f"resumed from {self.path}: all {max_epochs} epochs were done; nothing to do.")
        else:
            self.logger.info(f"resumed from {self.path}: {epoch} epoch(s) done, continuing with epoch {epoch + 1}.")
