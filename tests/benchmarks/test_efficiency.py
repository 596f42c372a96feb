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
    """T=8 (frames of 8 x 8), batch 1, 2 timed passes of full, uniform, das and adps, measured in this process on one thread (intra-op threads
    only add overhead on these tiny tensors, and large slowdowns on a busy CPU)."""
    out = tmp_path_factory.mktemp("efficiency")
    threads = torch.get_num_threads()
    try:
        measured = run_benchmark([8], [1], ["full", "uniform", "das", "adps"], device="cpu", repeats=2, warmup=1,
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
    assert set(rows) == {"full", "uniform", "das", "adps"} and len(measured) == 4
    assert all(r["frame_size"] == "8" for r in rows.values())
    md = (out / "efficiency.md").read_text()
    assert md.splitlines()[2] == "- Command: `pytest tiny`"
    assert "torch " + torch.__version__ in md and "## cpu:" in md and "## Targets" in md
    assert "| eager | 1 | 8 | 8 | 1 | das | 4 |" in md
    assert "latency / uniform's" in md and ("(met" in md or "(missed" in md)
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
    assert len(merged) == 5
    merged = merge_rows(merged, [dict(rows["das"], latency_ms_median="123")])  # same key: replaced
    assert len(merged) == 5
    merged = merge_rows(merged, [dict(rows["das"], frame_size="112")])  # another frame size: a row of its own
    assert len(merged) == 6
    assert [r["latency_ms_median"] for r in merged if r["device"] == "cpu" and r["method"] == "das"
            and r["frame_size"] == "8"] == ["123"]
    write_markdown(merged, tmp_path / "e.md")
    md = (tmp_path / "e.md").read_text()
    assert "## cpu:" in md and "## cuda: Some GPU" in md and "`gpu run`" in md
    assert "cuda (Some GPU), T=8, 8 px, batch 1: latency / uniform's n/a" in md


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
    assert row["mode"] != "eager" and efficiency.targets_lines(md_rows) == []  # targets are judged on eager rows
    (line,) = efficiency.targets_lines([dict(md_rows[0], mode="eager", threads="1")])
    assert line.endswith("T=8, 8 px, batch 1: not measured (compile failed: RuntimeError: no compiler here).")


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
    assert len(targets) == 1 and "T=8, 8 px, batch 1" in targets[0]


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


def test_targets_depend_on_the_setting_and_loaded_rows_are_marked(tiny_run, tmp_path):
    _, _, _, rows = tiny_run
    full, uniform, das = (dict(rows[m], other_runnable="0") for m in ("full", "uniform", "das"))
    full["latency_ms_median"], uniform["latency_ms_median"], das["latency_ms_median"] = "19", "10", "10.4"
    das["sampler_ms_median"], das["sampler_share"] = "0.4", "0.0385"
    (small,) = efficiency.targets_lines(merge_rows([], [full, uniform, das]))
    assert "latency / uniform's 1.04x (met, target <= 1.05x)" in small
    assert "share" not in small and "speed-up" not in small and "loaded" not in small  # 8 px frames, T = 8
    t28 = [dict(r, frames="28", k="28" if r["method"] == "full" else "14") for r in (full, uniform, das)]
    (line,) = efficiency.targets_lines(merge_rows([], t28))
    assert "sampler 0.4 ms (met, target <= 1.0 ms)" in line
    large = [dict(r, frame_size="112", other_runnable="2.5") for r in (full, uniform, das)]
    merged = merge_rows([], large)
    (line,) = efficiency.targets_lines(merged)
    assert "sampler share 3.85% (missed, target <= 3.0%)" in line and "speed-up vs full 1.83x (missed" in line
    assert line.endswith("**measured on a loaded machine** (2.5 other runnable threads): not a verdict.")
    assert efficiency.targets_lines([dict(r, threads="2") for r in merged]) == []  # judged at 1 thread only
    write_markdown(merged, tmp_path / "e.md")
    assert "| loaded machine (2.5 runnable) |" in (tmp_path / "e.md").read_text()


def test_frame_size_apart_from_t_and_resume(tmp_path):
    threads = torch.get_num_threads()
    kwargs = dict(repeats=1, warmup=0, results_dir=tmp_path, command="sizes", isolate=False, time_budget=None,
                  threads=[1], verbose=False, frame_sizes=[12, 20])
    try:
        first = run_benchmark([8], [1], ["uniform", "das"], **kwargs)
        again = run_benchmark([8], [1], ["uniform", "das"], resume=True, **kwargs)
        other = run_benchmark([8], [1], ["uniform", "das"], resume=True, **dict(kwargs, frame_sizes=[12, 16]))
    finally:
        torch.set_num_threads(threads)
    assert sorted((r["frame_size"], r["method"]) for r in first) == [
        (12, "das"), (12, "uniform"), (20, "das"), (20, "uniform")]
    assert again == [] and [(r["frame_size"], r["method"]) for r in other] == [(16, "uniform"), (16, "das")]
    by = {(r["frame_size"], r["method"]): r for r in first}
    assert by[(20, "uniform")]["gflops"] > by[(12, "uniform")]["gflops"]  # the backbone sees the larger frames
