"""The CSV of ``monai-das predict``, written one row at a time so that an interrupted run loses nothing.

Rows go to ``<output>.partial`` as soon as an input is done (flushed and synced); the finished file is moved onto
``<output>`` in one ``os.replace`` at the end, so ``<output>`` is either absent, the previous file, or complete. A
rerun with ``resume`` keeps the rows of the partial file (or of a finished output) and skips their inputs.

Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return,
e.g. a file named ``=HYPERLINK(...).nii``) are written with a leading ``'`` (OWASP's CSV injection advice), and read
back without it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = ["FORMULA_PREFIXES", "escape_cell", "unescape_cell", "PredictionTable"]

#: first characters that make a spreadsheet evaluate a cell
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: str) -> str:
    """``value`` with a leading ``'`` when it starts like a formula."""
    value = str(value)
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def unescape_cell(value: str) -> str:
    """The inverse of :func:`escape_cell`."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES) else value


class PredictionTable:
    """Rows of one predict run, appended as they come.

    The output location is checked when the table is made (before any input is run); :meth:`start` writes the
    header.

    Args:
        output: the CSV file to produce.
        overwrite: replace an existing output (or partial file) and start afresh.
        resume: keep the rows of an interrupted run (``<output>.partial``) or of a finished ``output``.

    Attributes:
        done: ``{input id: row}`` of the rows kept from an earlier run.

    Raises:
        FileExistsError: when ``output`` or its partial file exists and neither ``overwrite`` nor ``resume`` is set.
        ValueError: when ``output`` is a folder, or the kept rows have other columns (another bundle).
        OSError: when the output folder cannot be written (raised here, before any input is run).
    """

    def __init__(self, output: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> None:
        self.output = Path(output)
        self.partial = self.output.with_name(self.output.name + ".partial")
        if self.output.is_dir():
            raise ValueError(f"output '{self.output}' is a folder; give a CSV file name.")
        parent = next((p for p in self.output.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"output '{self.output}': '{parent}' is a file, not a folder; give a CSV file in a "
                             "folder.")
        self.existing = [p for p in (self.partial, self.output) if p.exists()]
        if self.existing and not (overwrite or resume):
            what = "the rows of an interrupted run" if self.existing[0] == self.partial else "a finished result"
            raise FileExistsError(f"'{self.existing[0]}' exists ({what}); pass --resume to keep its rows and run the "
                                  "other inputs, or --overwrite to start afresh.")
        self.resume = resume
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        self._tmp.touch()  # the folder is writable: known before any input is run
        self._tmp.unlink()
        self.columns: list[str] = []
        self.done: dict[str, dict[str, str]] = {}
        self._file: IO[str] | None = None

    def start(self, columns: Sequence[str]) -> None:
        """Write the header (and the kept rows, with ``resume``) to the partial file, and open it for rows.

        Raises:
            ValueError: when the kept rows have other columns (another bundle).
        """
        self.columns = list(columns)
        if self.resume and self.existing:
            self.done = self._read(self.existing[0])
        with open(self._tmp, "w", newline="", encoding="utf-8") as f:
            self._writer(f).writeheader()
            for row in self.done.values():
                self._writer(f).writerow({k: escape_cell(v) for k, v in row.items()})
        os.replace(self._tmp, self.partial)
        self._file = open(self.partial, "a", newline="", encoding="utf-8")

    def _writer(self, f: IO[str]) -> csv.DictWriter:
        return csv.DictWriter(f, fieldnames=self.columns)

    def _read(self, path: Path) -> dict[str, dict[str, str]]:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != self.columns:
                raise ValueError(f"'{path}' has the columns {reader.fieldnames}, not {self.columns} (another bundle "
                                 "or version): write to another output, or pass --overwrite.")
            # a row cut short by a kill has missing cells (None): its input is run again
            rows = [r for r in reader if None not in r.values() and None not in r]
        return {unescape_cell(r["input"]): {k: unescape_cell(v) for k, v in r.items()} for r in rows}

    def append(self, row: dict[str, str]) -> None:
        """Write one row now (flushed and synced to disk)."""
        if self._file is None:
            raise RuntimeError("the table is not started or already closed.")
        self._writer(self._file).writerow({k: escape_cell(row.get(k, "")) for k in self.columns})
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Move the finished file onto ``output`` (one ``os.replace``)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            os.replace(self.partial, self.output)
