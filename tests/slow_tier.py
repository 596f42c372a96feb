"""Which tests form the slow tier (``-m slow``; marked in ``tests/conftest.py``): bundle runs, servers, several
processes, training loops, subprocesses. Everything else is the quick tier, ``python -m pytest tests -m "not slow"``.
Paths are relative to ``tests/``; ``test_package_hygiene.py`` checks that each still exists."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
SLOW_FOLDERS = ("bundles", "engines", "integration")
SLOW_FILES = (
    "apps/test_export.py",
    "apps/test_monailabel.py",
    "apps/test_predict.py",
    "benchmarks/test_accuracy.py",
    "benchmarks/test_accuracy_pretrained.py",
    "benchmarks/test_efficiency.py",
    "data/test_pocus.py",
    "handlers/test_metrics_distributed.py",
    "handlers/test_sampler_tensorboard_handler.py",
    "reliability/test_checkpoint_errors.py",
    "reliability/test_distributed.py",
    "reliability/test_finished_run.py",
    "reliability/test_inconclusive_runs.py",
    "reliability/test_monailabel_guard.py",
    "reliability/test_monailabel_requests.py",
    "reliability/test_predict_safety.py",
    "reliability/test_resume.py",
    "reliability/test_training_state.py",
    "reliability/test_validation_split.py",
    "reliability/test_variable_length.py",
    "test_optional_dependencies.py",
)


def is_slow(path: Path) -> bool:
    """Whether the test file at ``path`` belongs to the slow tier."""
    relative = Path(path).resolve().relative_to(TESTS)
    return relative.parts[0] in SLOW_FOLDERS or relative.as_posix() in SLOW_FILES
