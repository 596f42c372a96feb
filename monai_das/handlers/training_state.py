"""Resumable training: the whole training state in one file, written atomically every epoch, and read back on resume.

An interrupted run (a killed job, a pre-empted node, a power cut) loses at most the epoch it was in: the state at the
end of every epoch is written to ``<output_dir>/last.pt`` by writing a temporary file in the same folder and renaming
it over the old one (``os.replace``), so the file on disk is always either the previous complete state or the new
complete state, never a half-written one. The best-model checkpoint gets the same guarantee from
:py:class:`AtomicCheckpointSaver`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.handlers.checkpoint_saver import CheckpointSaver
from monai.handlers.earlystop_handler import EarlyStopHandler
from monai.utils import IgniteInfo, min_version, optional_import

from monai_das.handlers.checkpoint_loading import load_checkpoint
from monai_das.networks.utils import unwrap_network
from monai_das.utils.atomic_file import atomic_write

fcntl, has_fcntl = optional_import("fcntl")  # POSIX only: without it runs are not locked
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
DiskSaver, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "DiskSaver")
EarlyStopping, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EarlyStopping")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = [
    "RESUME_CHOICES",
    "AtomicCheckpointSaver",
    "TrainingStateCheckpoint",
    "atomic_torch_save",
    "claim_output",
    "read_training_state",
    "release_output",
]

#: what ``resume`` accepts: ``False`` (start afresh, overwrite ``last.pt``), ``True`` (continue from it; an error if
#: it is missing) or ``"auto"`` (continue from it when it exists, else start afresh: one command for the first launch
#: and every relaunch of a pre-emptible job).
RESUME_CHOICES = (False, True, "auto")
_FORMAT = "monai_das.training_state.v1"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``.

    The object is written to a temporary file in the folder of ``path``, flushed to disk (``fsync``), then renamed
    over ``path`` with ``os.replace`` (atomic on POSIX and Windows within one file system). A process killed at any
    moment leaves either the old file or the new one; at worst a stray ``.<name>.*.tmp`` file, never a truncated
    ``path``. The file gets the usual ``rw-r--r--``-style permissions (the umask applies), not ``mkstemp``'s 0600.
    """
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made Python numbers and tensors, so ``weights_only=True`` loads it."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _early_stopping(obj: Any) -> Any:
    """The ignite ``EarlyStopping`` inside MONAI's ``EarlyStopHandler`` (created by its ``set_trainer``)."""
    if isinstance(obj, EarlyStopHandler):
        if obj._handler is None:
            raise RuntimeError(
                "the EarlyStopHandler has no trainer yet: call its set_trainer() before the trainer runs "
                "(the bundles' `run` does: `$@validate#early_stop.set_trainer(@train#trainer)`)."
            )
        return obj._handler
    return obj


def _state_of(name: str, obj: Any) -> Any:
    if isinstance(obj, (EarlyStopHandler, EarlyStopping)):
        return dict(_early_stopping(obj).state_dict())
    if isinstance(obj, CheckpointSaver):
        if obj._key_metric_checkpoint is None:
            raise ValueError(f"save_dict['{name}']: a CheckpointSaver is saved only with save_key_metric=True.")
        return obj._key_metric_checkpoint.state_dict()
    if isinstance(obj, Engine):  # another engine (the validator): its best-metric record, not its progress
        return {"best_metric": getattr(obj.state, "best_metric", None),
                "best_metric_epoch": getattr(obj.state, "best_metric_epoch", None)}
    if not hasattr(obj, "state_dict"):
        raise TypeError(f"save_dict['{name}'] must have state_dict()/load_state_dict(), got {type(obj).__name__}.")
    return unwrap_network(obj).state_dict()


def _load_into(name: str, obj: Any, state: Any) -> None:
    if isinstance(obj, (EarlyStopHandler, EarlyStopping)):
        _early_stopping(obj).load_state_dict(state)
    elif isinstance(obj, CheckpointSaver):
        obj.load_state_dict(state)
    elif isinstance(obj, Engine):
        for key, value in state.items():
            if value is not None:
                setattr(obj.state, key, value)
    elif isinstance(unwrap_network(obj), torch.nn.Module):
        unwrap_network(obj).load_state_dict(state, strict=True)
    else:
        obj.load_state_dict(state)


def read_training_state(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a file written by :py:class:`TrainingStateCheckpoint` with ``torch.load(..., weights_only=True)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when ``path`` is not a training-state file (for example a ``model.pt`` state dict), or not a
            readable checkpoint (:func:`load_checkpoint`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no training state to resume from: {path} does not exist (resume 'auto' starts afresh when it is missing)."
        )
    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
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


def _check_fresh_start(path: str, protect: Sequence[str], overwrite: bool, logger: logging.Logger) -> None:
    """Refuse (``FileExistsError``) a fresh run on a finished run's files without ``overwrite``; warn when it
    replaces an interrupted run's files."""
    existing = [p for p in (path, *protect) if os.path.isfile(p)]
    if not existing:
        return
    finished = True  # a best model without a training state: nothing says it may go
    if os.path.isfile(path):
        state = read_training_state(path)
        max_epochs = state["trainer"].get("max_epochs")
        finished = bool(state["early_stopped"]) or (max_epochs is not None and state["epoch"] >= max_epochs)
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


def claim_output(
    path: str | os.PathLike,
    protect: Sequence[str | os.PathLike] = (),
    resume: bool | str = False,
    overwrite: bool = False,
    logger: logging.Logger | None = None,
) -> None:
    """Make the folder of a run's training state ``path`` (``<output_dir>/last.pt``) this run's, before it writes.

    Rank 0 takes an exclusive lock (``fcntl.flock``, POSIX) on ``<path>.lock``, held until :func:`release_output` or
    the end of the process, so a second run into the same folder fails at once instead of mixing its files with the
    first one's. A fresh run (``resume`` False) on a finished run's files (``path`` says all its epochs are done or it
    stopped early, or a ``protect`` file such as ``model.pt`` exists without ``path``) is refused unless
    ``overwrite``; an interrupted run's files are replaced with a warning. Temporary files that a killed write left
    (``.<name>.*.tmp`` of ``path`` and ``protect``) are removed. The bundles call it in ``initialize``, before any
    file is opened; :class:`TrainingStateCheckpoint` calls it again at the trainer's start (the lock is held once).

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
            for target in (path, *protect):
                folder, name = os.path.split(os.path.abspath(target))
                for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
                    logger.warning(f"removing {tmp}: a temporary file left by a killed write.")
                    os.remove(tmp)
    except BaseException:
        release_output(path)
        raise


class TrainingStateCheckpoint:
    """Write everything a trainer needs to continue to one file after every epoch, and resume from it.

    Attach it to the **trainer** (in a bundle: the last entry of ``train#handlers``, so that the epoch's validation,
    learning-rate step, early-stopping update and best-model save have all happened when it writes). The file holds:

    - ``"trainer"``: the trainer's ignite state (``epoch``, ``iteration``, ``epoch_length``, ``max_epochs``), plus
      ``"epoch"`` and ``"early_stopped"`` (the trainer had been told to stop by early stopping);
    - one entry per ``save_dict`` item: a network (``DistributedDataParallel``/``DataParallel`` are unwrapped, so the
      weights load in a single process too), an optimizer, a learning-rate scheduler, MONAI's ``EarlyStopHandler``
      or ignite's ``EarlyStopping`` (``counter`` and ``best_score``), MONAI's best-model ``CheckpointSaver`` (its
      record of the best score, so a resumed run does not overwrite ``model.pt`` with a worse model), or another
      engine such as the validator (its ``best_metric`` and ``best_metric_epoch``).

    Every value is a tensor, number, string or container of them: the file loads with ``torch.load(...,
    weights_only=True)`` (no pickled code runs). Only rank 0 writes (in distributed runs every rank reads it on
    resume, so ``path`` must be on storage every node sees).

    On resume (at the trainer's ``STARTED`` event) every object is restored and the trainer continues with the epoch
    after the saved one, up to the ``max_epochs`` it was built with (raise ``--epochs`` to train longer; a smaller
    value than the epochs already done is an error). A run that had stopped early, or finished, does nothing more.
    Random number generators are not restored: a resumed run is as deterministic as a fresh one, but not bitwise
    identical to the run that was never interrupted.

    At the trainer's ``STARTED`` event the folder is claimed with :func:`claim_output` (a lock held while the trainer
    runs; a fresh run never replaces a finished run's files, e.g. the best ``model.pt`` in ``protect``, without
    ``overwrite=True``; stale temporary files removed).

    Args:
        path: the file, e.g. ``<output_dir>/last.pt``.
        save_dict: ``{name: object}`` of what to save and restore besides the trainer. ``None`` values are skipped
            (a rank-0-only handler is ``None`` on the other ranks).
        resume: ``False`` (start afresh; an existing file is overwritten at the end of the first epoch), ``True``
            (continue from ``path``; ``FileNotFoundError`` if it is missing) or ``"auto"`` (continue when ``path``
            exists, else start afresh).
        map_location: ``torch.load``'s ``map_location`` (the training device).
        save_interval: write every this many epochs (and at the last one).
        name: logger name; default: the trainer's logger.
        overwrite: let a fresh run replace a finished run's files.
        protect: other files of the run that a fresh run would replace (e.g. ``<output_dir>/model.pt``).

    Raises:
        ValueError: for a ``resume`` outside (False, True, "auto"), or (on resume) a file that is not a training
            state, or that has done more epochs than the trainer's ``max_epochs``.
        FileNotFoundError: on resume with ``resume=True`` and no file at ``path``.
        FileExistsError: for a fresh run on a finished run's files without ``overwrite``.
        RuntimeError: when another process holds the lock of ``path`` (another run trains into the same folder).
        RuntimeError: on resume into a network whose parameters do not match the saved ones (``load_state_dict``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool | str = False,
        map_location: Any = "cpu",
        save_interval: int = 1,
        name: str | None = None,
        overwrite: bool = False,
        protect: Sequence[str | os.PathLike] = (),
    ) -> None:
        resume = _resume_choice(resume)
        if isinstance(save_interval, bool) or not isinstance(save_interval, int) or save_interval < 1:
            raise ValueError(f"save_interval must be a positive integer, got {save_interval!r}.")
        if "trainer" in save_dict or "format" in save_dict:
            raise ValueError("save_dict must not use the names 'trainer' or 'format': the handler writes them.")
        self.path = os.fspath(path)
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.resume = resume
        self.map_location = map_location
        self.save_interval = save_interval
        self.logger = logging.getLogger(name) if name is not None else None
        self.overwrite = overwrite
        self.protect = [os.fspath(p) for p in protect]

    def attach(self, engine: Engine) -> None:
        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.unlock)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception_raised)

    # ---- the run's folder -----------------------------------------------------------------------------------------

    def unlock(self, engine: Engine | None = None) -> None:
        """Release the folder's lock (when the trainer completes or raises; a process that ends releases it too)."""
        release_output(self.path)

    def _exception_raised(self, engine: Engine, e: BaseException) -> None:
        self.unlock()
        raise e  # ignite re-raises only when no handler is registered for EXCEPTION_RAISED

    # ---- writing --------------------------------------------------------------------------------------------------

    def state_dict(self, engine: Engine) -> dict:
        """The dictionary written to ``path`` (numbers, strings, tensors and containers of them)."""
        state: dict[str, Any] = {
            "format": _FORMAT,
            "trainer": dict(engine.state_dict()),
            "epoch": int(engine.state.epoch),
            "early_stopped": bool(engine.should_terminate),
        }
        for name, obj in self.save_dict.items():
            state[name] = _state_of(name, obj)
        return _plain(state)

    def epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        last = engine.should_terminate or (engine.state.max_epochs is not None and epoch >= engine.state.max_epochs)
        if epoch % self.save_interval and not last:
            return
        state = self.state_dict(engine)  # every rank computes it: a state that cannot be saved fails everywhere
        if idist.get_rank() == 0:
            atomic_torch_save(state, self.path)
            self.logger.info(f"saved the training state after epoch {epoch} to {self.path}")

    # ---- resuming -------------------------------------------------------------------------------------------------

    def load(self, engine: Engine) -> None:
        claim_output(self.path, self.protect, self.resume, self.overwrite, self.logger)
        try:
            self._start(engine)
        except BaseException:
            self.unlock()
            raise

    def _start(self, engine: Engine) -> None:
        if self.resume is False:
            return
        if self.resume == "auto" and not os.path.isfile(self.path):
            self.logger.info(f"resume='auto': no {self.path} yet, starting afresh.")
            return
        state = read_training_state(self.path, map_location=self.map_location)
        missing = [name for name in self.save_dict if name not in state]
        if missing:
            raise ValueError(f"{self.path} holds no state for {missing}; it has {sorted(state)}.")
        max_epochs = engine.state.max_epochs
        epoch = int(state["epoch"])
        if max_epochs is not None and epoch > max_epochs:
            raise ValueError(
                f"{self.path} holds {epoch} finished epochs, more than this trainer's max_epochs ({max_epochs}): "
                f"pass --epochs {epoch} or more to resume it."
            )
        for name, obj in self.save_dict.items():
            try:
                _load_into(name, obj, state[name])
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                raise type(e)(
                    f"cannot restore '{name}' from {self.path}: it does not fit this run's config (resume with the "
                    f"overrides the run was started with, e.g. the same --sampler_name). {e}"
                ) from e
        saved_length = state["trainer"].get("epoch_length")
        epoch_length = engine.state.epoch_length or saved_length
        if saved_length and epoch_length != saved_length:
            self.logger.warning(
                f"an epoch is now {epoch_length} iterations, {saved_length} when {self.path} was written (another "
                "batch size or number of processes?): iteration counts restart from epoch x the new length."
            )
        engine.load_state_dict({"epoch": epoch, "epoch_length": epoch_length, "max_epochs": max_epochs})
        if state["early_stopped"]:
            self.logger.info(f"resumed from {self.path}: training stopped early after epoch {epoch}; nothing to do.")
            engine.terminate()
        elif max_epochs is not None and epoch >= max_epochs:
            self.logger.info(f"resumed from {self.path}: all {max_epochs} epochs were done; nothing to do.")
        else:
            self.logger.info(f"resumed from {self.path}: {epoch} epoch(s) done, continuing with epoch {epoch + 1}.")


class _AtomicFixedNameSaver(DiskSaver):
    """ignite's ``DiskSaver`` writing through :py:func:`atomic_torch_save`, under a fixed file name if given.

    With a fixed name, ``remove`` does nothing: the next save replaces the file atomically, so there is never a
    moment without a best model on disk (MONAI's saver deletes the old file first, then writes the new one in place).
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() == self.save_on_rank:
            atomic_torch_save(checkpoint, self.dirname / (self.filename or filename))

    def remove(self, filename: str) -> None:
        if self.filename is None and idist.get_rank() == self.save_on_rank:
            path = self.dirname / filename
            if path.exists():
                path.unlink()


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :py:class:`monai.handlers.CheckpointSaver` (same arguments, same files and file contents) whose every
    write is atomic (:py:func:`atomic_torch_save`): an interrupted run never leaves a truncated or missing
    ``model.pt``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                old = checkpoint.save_handler
                checkpoint.save_handler = _AtomicFixedNameSaver(str(old.dirname), getattr(old, "filename", None))
