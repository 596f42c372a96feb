"""The rows of the efficiency benchmark: their columns, reading and writing ``efficiency.csv``, merging a new run into
the kept rows and deriving the columns that compare rows (speed-up vs full, sampler time vs A-DPS)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

__all__ = ["FIELDS", "KEY", "METHODS", "METRIC_FIELDS", "derive", "merge_rows", "num", "read_rows", "row_key",
           "same_k_adps", "setting", "write_csv"]

METHODS = ("full", "uniform", "random", "dps", "adps", "das")

KEY = ("device", "device_name", "mode", "threads", "frames", "frame_size", "batch", "method", "k")

FIELDS = [
    "device", "device_name", "mode", "frames", "frame_size", "batch", "k", "method", "repeats", "warmup",
    "latency_ms_median", "latency_ms_iqr", "throughput_vol_s", "speedup_vs_full",
    "sampler_ms_median", "sampler_ms_iqr", "sampler_share", "sampler_time_vs_adps",
    "gflops", "sampler_mflops", "peak_mem_mib", "peak_mem_abs_mib", "mem_method", "compile_s",
    "threads", "other_runnable", "loadavg_start", "loadavg_end", "note",
    "date", "command", "platform", "cpu_count", "torch",
]

METRIC_FIELDS = ("latency_ms_median", "latency_ms_iqr", "throughput_vol_s", "sampler_ms_median", "sampler_ms_iqr",
                 "sampler_share", "gflops", "sampler_mflops", "peak_mem_mib", "peak_mem_abs_mib")



def read_rows(path: Path) -> list[dict]:
    """The rows of ``path``; rows written before frames had a size of their own (T x T frames) get ``frame_size``
    = T."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["frame_size"] = row.get("frame_size") or row["frames"]
    return rows


def num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def row_key(row: dict) -> tuple:
    return tuple(str(row[k]) for k in KEY)


def setting(row: dict) -> tuple:
    """(device, device name, mode, threads, T, frame size, batch): the rows compared with each other."""
    return row_key(row)[:-2]


def same_k_adps(row: dict, members: list[dict]) -> dict | None:
    return next((r for r in members if r["method"] == "adps" and str(r["k"]) == str(row["k"])), None)


def derive(rows: list[dict]) -> None:
    """Fill ``speedup_vs_full`` (vs the full row of the same setting) and ``sampler_time_vs_adps`` (vs the A-DPS row
    of the same setting and k)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[setting(row)].append(row)
    for members in groups.values():
        full = next((r for r in members if r["method"] == "full"), None)
        for row in members:
            adps = same_k_adps(row, members)
            latency = num(row["latency_ms_median"])
            speedup = num(full["latency_ms_median"]) / latency if full else float("nan")
            ratio = num(row["sampler_ms_median"]) / num(adps["sampler_ms_median"]) if adps else float("nan")
            row["speedup_vs_full"] = speedup
            row["sampler_time_vs_adps"] = ratio


def _csv_value(name: str, value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(k, row.get(k, "")) for k in FIELDS})


def _sort_key(row: dict) -> tuple:
    method = row["method"]
    return (row["device"], row["device_name"], row["mode"] != "eager", row["mode"], str(row["threads"]),
            int(row["frames"]), int(row["frame_size"]), int(row["batch"]), int(row["k"]) if method != "full" else 0,
            METHODS.index(method) if method in METHODS else len(METHODS))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with every row that ``new`` measures again replaced, plus the rest of ``new``; sorted, derived."""
    fresh = {row_key(r) for r in new}
    rows = [r for r in old if row_key(r) not in fresh] + list(new)
    rows.sort(key=_sort_key)
    derive(rows)
    return rows

