"""The efficiency benchmark on a tiny configuration: files, columns and sane values (no wall-clock limits)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from benchmarks import efficiency
from benchmarks.efficiency import FIELDS, ConfigBench, measure_config, merge_rows, run_benchmark, write_markdown



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """T=8, batch 1, 2 timed passes of full, das and adps, measured in this process on one thread (intra-op threads
    only add overhead on these tiny tensors, and large slowdowns on a busy CPU)."""
    out = tmp_path_factory.mktemp("efficiency")
    threads = torch.get_num_threads()
    try:
        measured = run_benchmark([8], [1], ["full", "das", "adps"], device="cpu", repeats=2, warmup=1,
                                 results_dir=out, command="pytest tiny", isolate=False, time_budget=None, threads=1,
                                 verbose=False)
    finally:
        torch.set_num_threads(threads)
    with open(out / "efficiency.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    return out, measured, header, {r["method"]: r for r in rows}


def test_files_and_columns(tiny_run):
    out, measured, header, rows = tiny_run
    assert header == FIELDS
    assert set(rows) == {"full", "das", "adps"} and len(measured) == 3
    md = (out / "efficiency.md").read_text()
    assert md.splitlines()[2] == "- Command: `pytest tiny`"
    assert "torch " + torch.__version__ in md and "## cpu:" in md and "## Targets" in md
    assert "| eager | 1 | 8 | 1 | das | 4 |" in md
    assert "speed-up vs full" in md and ("(met" in md or "(missed" in md)
    assert "counts matmul/convolution-type ops only" in md


def test_sane_values(tiny_run):
    _, _, _, rows = tiny_run
    for method, row in rows.items():
        assert float(row["latency_ms_median"]) > 0 and float(row["latency_ms_iqr"]) >= 0, method
        assert int(row["repeats"]) == 2 and row["device"] == "cpu" and row["mode"] == "eager"
        assert int(row["threads"]) == 1
        assert float(row["throughput_vol_s"]) == pytest.approx(1000 / float(row["latency_ms_median"]), rel=1e-4)
        assert 0 < float(row["sampler_share"]) < 1, method
        assert float(row["peak_mem_mib"]) >= 0
        assert float(row["gflops"]) > 0
    assert int(rows["das"]["k"]) == 4 and int(rows["full"]["k"]) == 8
    assert float(rows["das"]["gflops"]) < float(rows["full"]["gflops"])
    assert float(rows["das"]["sampler_mflops"]) > 0 and float(rows["full"]["sampler_mflops"]) == 0
    full_ms = float(rows["full"]["latency_ms_median"])
    for method, row in rows.items():
        assert float(row["speedup_vs_full"]) == pytest.approx(full_ms / float(row["latency_ms_median"]), rel=1e-4)
    assert float(rows["adps"]["sampler_time_vs_adps"]) == pytest.approx(1.0)
    assert float(rows["das"]["sampler_time_vs_adps"]) == pytest.approx(
        float(rows["das"]["sampler_ms_median"]) / float(rows["adps"]["sampler_ms_median"]), rel=1e-4)


def test_rows_of_another_device_are_kept(tiny_run, tmp_path):
    out, _, _, rows = tiny_run
    gpu = {k: v for k, v in rows["das"].items()}
    gpu.update(device="cuda", device_name="Some GPU", latency_ms_median="1.0", command="gpu run", date="later")
    merged = merge_rows(list(rows.values()), [gpu])
    assert len(merged) == 4
    merged = merge_rows(merged, [dict(rows["das"], latency_ms_median="123")])  # same key: replaced
    assert len(merged) == 4
    assert [r["latency_ms_median"] for r in merged if r["device"] == "cpu" and r["method"] == "das"] == ["123"]
    write_markdown(merged, tmp_path / "e.md")
    md = (tmp_path / "e.md").read_text()
    assert "## cpu:" in md and "## cuda: Some GPU" in md and "`gpu run`" in md
    assert "cuda (Some GPU), eager, 1 thread(s), T=8, batch 1: speed-up vs full n/a" in md


def test_compile_failure_is_recorded(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    row = measure_config("das", 8, 1, repeats=1, warmup=0, compile=True, time_budget=None)
    assert row["mode"] == "compile:default"
    assert row["note"] == "compile failed: RuntimeError: no compiler here"
    assert math.isnan(row["latency_ms_median"])
    md_rows = merge_rows([], [dict(row, command="c", date="d", platform="p", cpu_count=2, torch="t",
                                   other_runnable="", loadavg_start="", loadavg_end="")])
    (line,) = efficiency.targets_lines(md_rows)
    assert line.endswith("T=8, batch 1: not measured (compile failed: RuntimeError: no compiler here).")


def test_ratio_sweep_measures_full_once_and_checks_targets_at_half(tmp_path):
    threads = torch.get_num_threads()
    try:
        run_benchmark([8], [1], ["full", "das", "adps"], repeats=1, warmup=0, results_dir=tmp_path, command="sweep",
                      isolate=False, time_budget=None, threads=1, verbose=False, ratios=(0.25, 0.5))
    finally:
        torch.set_num_threads(threads)
    with open(tmp_path / "efficiency.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["method"], int(r["k"])) for r in rows) == [
        ("adps", 2), ("adps", 4), ("das", 2), ("das", 4), ("full", 8)]
    by = {(r["method"], int(r["k"])): r for r in rows}
    for k in (2, 4):
        assert float(by[("das", k)]["sampler_time_vs_adps"]) == pytest.approx(
            float(by[("das", k)]["sampler_ms_median"]) / float(by[("adps", k)]["sampler_ms_median"]), rel=1e-4)
    assert float(by[("das", 2)]["gflops"]) < float(by[("das", 4)]["gflops"]) < float(by[("full", 8)]["gflops"])
    targets = efficiency.targets_lines(merge_rows([], rows))
    assert len(targets) == 1 and "T=8, batch 1" in targets[0]


@pytest.mark.parametrize("method", ["das", "full", "uniform"])
def test_trace_mode_is_measured(method):
    # the fixed samplers return None logits, which a traced module cannot: only their tensors are traced
    row = measure_config(method, 8, 1, repeats=2, warmup=1, time_budget=None, trace=True)
    assert row["mode"] == "trace" and row["note"] == ""
    assert float(row["latency_ms_median"]) > 0 and 0 < float(row["sampler_share"]) < 1


def test_traced_sampler_gives_the_eager_picks():
    bench = ConfigBench("das", 8, 2, trace=True)
    x = bench.x
    with torch.inference_mode():
        traced = bench.calls["sampler"]()
        eager = bench.model.sampler(x)
    assert not bench.failed
    assert torch.equal(traced[2], eager.indices) and torch.equal(traced[0], eager.frames)


def test_targets_depend_on_the_batch_and_loaded_rows_are_marked(tiny_run, tmp_path):
    _, _, _, rows = tiny_run
    full, das, adps = (dict(rows[m]) for m in ("full", "das", "adps"))
    for row in (full, das, adps):
        row["other_runnable"] = "0"
    full["latency_ms_median"], das["latency_ms_median"], das["sampler_ms_median"] = "17", "10", "0.4"  # 1.7x
    das["sampler_share"] = "0.04"
    adps["sampler_ms_median"] = "1.0"  # DAS / A-DPS sampler time 0.4
    batch1 = efficiency.targets_lines(merge_rows([], [full, das, adps]))
    assert "1.70x (met, target >= 1.6x)" in batch1[0] and "4.0% (met, target <= 5%)" in batch1[0]
    assert "0.40 (missed, target <= 0.33)" in batch1[0] and "loaded" not in batch1[0]
    big = [dict(r, batch="64", other_runnable="2.5") for r in (full, das, adps)]
    merged = merge_rows([], big)
    (line,) = efficiency.targets_lines(merged)
    assert "1.70x (missed, target >= 1.8x)" in line and "4.0% (missed, target <= 3%)" in line
    assert line.endswith("measured on a loaded machine (2.5 other runnable threads).")
    write_markdown(merged, tmp_path / "e.md")
    assert "| loaded machine (2.5 runnable) |" in (tmp_path / "e.md").read_text()
