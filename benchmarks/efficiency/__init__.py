"""Efficiency benchmark: latency, throughput, FLOPs and peak memory of every sampler against the full sequence.

    python -m benchmarks.efficiency --device cpu --frames 32 64 --frame_size 28 64 112 224 --batch 1 16 \
        --threads 1 2 --methods full uniform das [--trace] [--compile] [--resume]

For every sequence length T in ``--frames``, frame size S in ``--frame_size`` (frames of S x S pixels, one channel;
without it S = T, the MedMNIST3D 28^3 and 64^3 volumes), batch size and thread count, the classifier
``SubsampledClassifier(get_sampler(method, T // 2, num_frames=T), MobileNetV3Small(1, 0), 2)`` is run in eval mode
under ``torch.inference_mode`` (``full`` runs the backbone on all T frames, every other method on k = T/2), and the
benchmark records:

* forward latency: median and interquartile range of ``--repeats`` timed forward passes after ``--warmup`` untimed
  ones (on CUDA with a synchronisation before and after every pass). The methods of one (T, batch) are timed in
  interleaved rounds, one pass of each per round (see ``measure_group``), so that load from other processes falls on
  all of them alike. The number of rounds is lowered, to no fewer than ``MIN_REPEATS``, when ``--repeats`` of them
  would take longer than ``--time-budget`` seconds per method;
* throughput: volumes per second, ``batch / median latency``;
* the sampler's own latency, timed alone in the same rounds, and its share of the forward: ``sampler median /
  forward median``;
* FLOPs of one forward and of the sampler alone, from ``torch.utils.flop_counter.FlopCounterMode``;
* peak memory of the forward passes (see ``ConfigBench`` and ``PeakMemory``);
* derived: the speed-up of every method over ``full`` at the same (device, mode, T, batch) and each sampler's time
  relative to the A-DPS sampler's.

Each configuration lives in a fresh Python process of its own (``--in-process`` turns that off), driven through a pipe,
so its memory reading starts from a clean process and no allocator cache or thread pool is shared between
configurations; only one of them computes at a time. Rows go to ``benchmarks/results/efficiency.csv``, replacing rows
with the same (device, device name, mode, threads, T, frame size, batch, method, k) and keeping the others, so a GPU run
adds its rows beside the CPU ones; ``efficiency.md`` is rewritten from the whole CSV after every setting, and
``--resume`` skips the settings the CSV already holds.
"""

from __future__ import annotations

from .cli import main, run_benchmark
from .measure import ConfigBench, measure_config, measure_group
from .report import LARGE_FRAME, TARGETS, targets_lines, write_markdown
from .rows import FIELDS, METHODS, merge_rows
from .workers import SubprocessBench

__all__ = ["FIELDS", "LARGE_FRAME", "METHODS", "TARGETS", "ConfigBench", "SubprocessBench", "main", "measure_config", "measure_group",
           "merge_rows", "run_benchmark", "targets_lines", "write_markdown"]
