"""SamplerTensorBoardHandler on real samplers inside MONAI workflows, read back from the event files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from monai_das.handlers import SamplerTensorBoardHandler, unwrap_network
from monai_das.networks.nets import MobileNetV3Small, SubsampledClassifier, get_sampler

T, K, HW = 8, 4, 16
LABELS = [0, 1, 1, 0, 1, 1, 0]  # 3 inputs of class 0, 4 of class 1; batches of 3, 3, 1
PREFIX = "sampler/val"



def _net(name: str, **kwargs) -> SubsampledClassifier:
    torch.manual_seed(0)
    backbone = MobileNetV3Small(1, 0, width_mult=0.25)
    return SubsampledClassifier(get_sampler(name, K, **kwargs), backbone, 2, feature_dim=backbone.out_features)


def _data(one_hot: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    items = []
    for label in LABELS:
        y = torch.nn.functional.one_hot(torch.tensor(label), 2).float() if one_hot else label
        items.append({"image": torch.rand(1, T, HW, HW, generator=g), "label": y})
    return items


def _events(log_dir) -> EventAccumulator:
    guidance = {"images": 0, "histograms": 0, "scalars": 0, "tensors": 0, "compressedHistograms": 0}
    acc = EventAccumulator(str(log_dir), size_guidance=guidance)
    acc.Reload()
    return acc


def _expected_picks(net: SubsampledClassifier, data: list[dict]) -> dict[int, np.ndarray]:
    """Per-class bincount of the picks, from running the network ourselves in eval mode on the same batches
    (same batches: an untrained sampler can have near-ties that batch-size-dependent rounding would flip)."""
    net.eval()
    counts = {c: np.zeros(T, dtype=np.int64) for c in (0, 1)}
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=3):
            net(batch["image"])
            for idx, label in zip(net.last_sampler_output.indices.numpy(), batch["label"]):
                counts[int(label.argmax()) if label.ndim else int(label)] += np.bincount(idx, minlength=T)
    return counts


def _hist_counts(event) -> np.ndarray:
    """Histogram event -> count per frame index (buckets are one frame wide; limits are right edges)."""
    hist = event.histogram_value
    counts = np.zeros(T, dtype=np.int64)
    for limit, count in zip(hist.bucket_limit, hist.bucket):
        if count:
            counts[int(round(limit - 0.5))] += int(count)
    return counts


def _run_evaluator(net, log_dir, epochs=2, decollate=True, one_hot=False, **handler_kwargs):
    data = _data(one_hot)
    handler = SamplerTensorBoardHandler(net, log_dir=str(log_dir), **handler_kwargs)
    evaluator = SupervisedEvaluator("cpu", DataLoader(data, batch_size=3), net, decollate=decollate)
    handler.attach(evaluator)
    for epoch in range(1, epochs + 1):
        evaluator.run(global_epoch=epoch)
    return handler, data


def test_das_tags_images_histograms_and_scalars(tmp_path):
    tau0 = 2.0
    net = _net("das", tau0=tau0)
    handler, data = _run_evaluator(net, tmp_path, num_images=2)
    acc = _events(tmp_path)
    tags = acc.Tags()
    for tag in ("sampling_matrix", "soft_sampling_matrix", "picked_frames"):
        assert f"{PREFIX}/{tag}" in tags["images"]
    for tag in ("picked_index/all", "picked_index/class_0", "picked_index/class_1"):
        assert f"{PREFIX}/{tag}" in tags["histograms"]
    for tag in ("temperature", "entropy", "frames_kept", "distinct_pick_sets"):
        assert f"{PREFIX}/{tag}" in tags["scalars"]

    # one event per epoch, at the evaluator's global epoch
    for tag in tags["images"] + tags["histograms"] + tags["scalars"]:
        events = {"images": acc.Images, "histograms": acc.Histograms, "scalars": acc.Scalars}
        kind = next(k for k in events if tag in tags[k])
        assert [e.step for e in events[kind](tag)] == [1, 2], tag

    # 2 inputs, P is 4 x 8 with 32-pixel cells (to reach 256 px wide), stacked with a 4-pixel gap
    matrix = acc.Images(f"{PREFIX}/sampling_matrix")[0]
    assert (matrix.width, matrix.height) == (8 * 32, 2 * 4 * 32 + 4)
    # 2 inputs, 2x2 grid of 16-px frames upscaled x6 to 96 px, 2-px padding, 12-px position bars, 4-px gap
    montage = acc.Images(f"{PREFIX}/picked_frames")[0]
    assert (montage.width, montage.height) == (2 * 96 + 2, 2 * (2 * (96 + 12) + 2) + 4)

    for event in acc.Scalars(f"{PREFIX}/temperature"):
        assert 0.5 * tau0 < event.value < 1.5 * tau0
    for event in acc.Scalars(f"{PREFIX}/entropy"):
        assert 0.0 <= event.value <= math.log(T) + 1e-5
    assert [e.value for e in acc.Scalars(f"{PREFIX}/frames_kept")] == pytest.approx([K / T, K / T])

    # counts per class = inputs of that class * k, every epoch (accumulators reset), and the very picks
    expected = _expected_picks(net, data)
    for c in (0, 1):
        events = acc.Histograms(f"{PREFIX}/picked_index/class_{c}")
        for event in events:
            assert event.histogram_value.num == LABELS.count(c) * K
            np.testing.assert_array_equal(_hist_counts(event), expected[c])
    for event in acc.Histograms(f"{PREFIX}/picked_index/all"):
        assert event.histogram_value.num == len(LABELS) * K
    handler.close()


@pytest.mark.parametrize("name, kept", [("uniform", K / T), ("full", 1.0)])
def test_fixed_samplers_have_no_temperature_or_entropy(tmp_path, name, kept):
    net = _net(name)
    handler, _ = _run_evaluator(net, tmp_path)
    acc = _events(tmp_path)
    tags = acc.Tags()
    assert f"{PREFIX}/temperature" not in tags["scalars"]
    assert f"{PREFIX}/entropy" not in tags["scalars"]
    assert f"{PREFIX}/soft_sampling_matrix" not in tags["images"]
    assert f"{PREFIX}/sampling_matrix" in tags["images"]
    assert f"{PREFIX}/picked_frames" in tags["images"]
    k = T if name == "full" else K
    matrix = acc.Images(f"{PREFIX}/sampling_matrix")[-1]
    assert (matrix.width, matrix.height) == (T * 32, k * 32)
    assert [e.value for e in acc.Scalars(f"{PREFIX}/frames_kept")] == pytest.approx([kept, kept])
    # the same picks for every input
    assert [e.value for e in acc.Scalars(f"{PREFIX}/distinct_pick_sets")] == pytest.approx([1 / len(LABELS)] * 2)
    for c in (0, 1):
        for event in acc.Histograms(f"{PREFIX}/picked_index/class_{c}"):
            assert event.histogram_value.num == LABELS.count(c) * k
            counts = _hist_counts(event)
            assert set(counts[counts > 0].tolist()) == {LABELS.count(c)}
    handler.close()


def test_one_hot_labels_batch_dict_and_prefix(tmp_path):
    net = _net("uniform")
    handler, _ = _run_evaluator(net, tmp_path, epochs=1, decollate=False, one_hot=True, tag_prefix="sampler/test/")
    acc = _events(tmp_path)
    for c in (0, 1):
        (event,) = acc.Histograms(f"sampler/test/picked_index/class_{c}")
        assert event.histogram_value.num == LABELS.count(c) * K
    handler.close()


def test_labels_from_output_and_without_labels(tmp_path):
    net = _net("uniform")
    handler, _ = _run_evaluator(net, tmp_path / "out", epochs=1, label_source="output")
    assert f"{PREFIX}/picked_index/class_1" in _events(tmp_path / "out").Tags()["histograms"]
    handler.close()
    handler, _ = _run_evaluator(net, tmp_path / "none", epochs=1, label_transform=None)
    histograms = _events(tmp_path / "none").Tags()["histograms"]
    assert histograms == [f"{PREFIX}/picked_index/all"]
    handler.close()


def test_trainer_epoch_is_the_global_step(tmp_path):
    net = _net("das")
    data = _data()
    loader = DataLoader(data, batch_size=4)
    evaluator = SupervisedEvaluator("cpu", loader, net)
    trainer = SupervisedTrainer(
        "cpu", 2, loader, net, torch.optim.SGD(net.parameters(), lr=1e-3), nn.CrossEntropyLoss(),
        train_handlers=[ValidationHandler(validator=evaluator, interval=1)],
    )
    val = SamplerTensorBoardHandler(net, log_dir=str(tmp_path / "val"), epoch_engine=trainer,
                                    global_epoch_transform=lambda e: 10 * e)
    val.attach(evaluator)
    train = SamplerTensorBoardHandler(net, log_dir=str(tmp_path / "train"), tag_prefix="sampler/train")
    train.attach(trainer)
    trainer.run()
    val_acc, train_acc = _events(tmp_path / "val"), _events(tmp_path / "train")
    assert [e.step for e in val_acc.Scalars(f"{PREFIX}/temperature")] == [10, 20]
    assert [e.step for e in train_acc.Scalars("sampler/train/temperature")] == [1, 2]
    for event in train_acc.Histograms("sampler/train/picked_index/all"):
        assert event.histogram_value.num == len(LABELS) * K
    val.close()
    train.close()


def test_epoch_engine_gives_the_step(tmp_path):
    net = _net("uniform")
    trainer = Engine(lambda engine, batch: None)
    trainer.state.epoch = 5
    handler, _ = _run_evaluator(net, tmp_path, epochs=1, epoch_engine=trainer)  # the evaluator itself is at epoch 1
    assert [e.step for e in _events(tmp_path).Scalars(f"{PREFIX}/frames_kept")] == [5]
    handler.close()


def test_attach_twice_registers_once(tmp_path):
    net = _net("uniform")
    handler = SamplerTensorBoardHandler(net, log_dir=str(tmp_path))
    evaluator = SupervisedEvaluator("cpu", DataLoader(_data(), batch_size=3), net)
    handler.attach(evaluator)
    handler.attach(evaluator)
    for event in (Events.EPOCH_STARTED, Events.ITERATION_COMPLETED, Events.EPOCH_COMPLETED):
        assert evaluator.has_event_handler(handler.epoch_completed, Events.EPOCH_COMPLETED)
        registered = [h for h, *_ in evaluator._event_handlers[event] if getattr(h, "__self__", None) is handler]
        assert len(registered) == 1, event
    evaluator.run()
    assert len(_events(tmp_path).Images(f"{PREFIX}/sampling_matrix")) == 1
    handler.close()


def test_wrapped_network_and_bad_arguments(tmp_path):
    net = _net("uniform")
    wrapped = nn.DataParallel(net)
    assert unwrap_network(wrapped) is net
    handler = SamplerTensorBoardHandler(wrapped, log_dir=str(tmp_path))
    assert handler.network is net
    handler.close()
    with pytest.raises(TypeError, match="last_sampler_output"):
        SamplerTensorBoardHandler(nn.Linear(2, 2), log_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_images"):
        SamplerTensorBoardHandler(net, log_dir=str(tmp_path), num_images=0)
    with pytest.raises(ValueError, match="batch"):
        SamplerTensorBoardHandler(net, log_dir=str(tmp_path), label_source="labels")


def test_existing_writer_is_used_and_not_closed(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    net = _net("uniform")
    handler = SamplerTensorBoardHandler(net, summary_writer=writer)
    engine = Engine(lambda e, batch: net(batch))
    handler.attach(engine)
    engine.run([torch.rand(2, 1, T, HW, HW)], max_epochs=1)
    assert not handler.internal_writer
    handler.close()  # must leave the caller's writer open
    writer.add_scalar("still/open", 1.0, 0)
    writer.close()
    tags = _events(tmp_path).Tags()
    assert "still/open" in tags["scalars"] and f"{PREFIX}/sampling_matrix" in tags["images"]
    # a plain engine batch has no labels: only the overall histogram
    assert tags["histograms"] == [f"{PREFIX}/picked_index/all"]


def test_flushes_each_epoch_and_counts_each_forward_once(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    # a writer that would hold everything in memory for an hour unless flushed
    writer = SummaryWriter(log_dir=str(tmp_path), max_queue=10_000, flush_secs=3600)
    net = _net("uniform")
    handler = SamplerTensorBoardHandler(net, summary_writer=writer)
    # the network runs on the first of three iterations only: the stale output must not be counted again
    engine = Engine(lambda e, batch: net(batch) if e.state.iteration == 1 else None)
    handler.attach(engine)
    engine.run([torch.rand(2, 1, T, HW, HW)] * 3, max_epochs=1)
    (event,) = _events(tmp_path).Histograms(f"{PREFIX}/picked_index/all")  # read before closing the writer
    assert event.histogram_value.num == 2 * K
    writer.close()
