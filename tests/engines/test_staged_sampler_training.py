"""The staged recipe: teacher loading, cached features, the exact subset loss, the ranking term, the saved state."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialPad
from torch import nn

from monai_das.engines import train_sampler_staged
from monai_das.engines.batchnorm_recalibration import recalibrate_batchnorm
from monai_das.engines.staged_sampler_training import (
    cache_frame_features,
    load_teacher,
    ranking_loss,
    subset_logits,
    teacher_frame_scores,
)
from monai_das.networks.nets import SubsampledClassifier, get_sampler

T, K, SIZE = 8, 2, 16


class FrameMeans(nn.Module):
    """A tiny 2D backbone: 4 learned projections of a frame's mean intensity (BatchNorm to test eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3))


def classifier(name: str, k: int = K) -> SubsampledClassifier:
    torch.manual_seed(0)
    return SubsampledClassifier(get_sampler(name, k, num_frames=T), FrameMeans(), num_classes=2, feature_dim=4)


def data(n: int, seed: int) -> list[dict]:
    """Class 1 has one bright square in a random frame; the other frames hold noise."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        x = 0.1 * torch.rand(1, T, SIZE, SIZE, generator=g)
        label = i % 2
        if label:
            t = int(torch.randint(0, T, (1,), generator=g))
            x[0, t, 4:12, 4:12] += 1.0
        items.append({"image": x, "label": torch.tensor(label)})
    return items


@pytest.fixture
def teacher(tmp_path):
    net = classifier("full")
    net.backbone.norm.running_mean.fill_(0.05)  # a non-default statistic: eval mode must use it
    path = tmp_path / "teacher.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_ranking_loss_is_smallest_at_the_teacher_distribution():
    scores = torch.tensor([[0.0, 1.0, 3.0, -1.0]])
    temperature = 0.5
    target = torch.softmax(scores / temperature, dim=-1)
    matched = (scores / temperature)[:, None, :].expand(1, 3, 4)
    entropy = float(-(target * target.log()).sum())
    assert math.isclose(float(ranking_loss(matched, scores, temperature)), entropy, rel_tol=1e-6)
    assert float(ranking_loss(torch.zeros(1, 3, 4), scores, temperature)) > entropy + 0.1
    assert float(ranking_loss(-matched, scores, temperature)) > float(ranking_loss(torch.zeros(1, 3, 4), scores, 0.5))


def test_subset_logits_are_the_head_of_the_mean_of_picked_features():
    head = nn.Linear(3, 2)
    features = torch.randn(2, 5, 3)
    weights = torch.zeros(2, 2, 5)
    weights[0, 0, 1] = weights[0, 1, 4] = weights[1, 0, 0] = weights[1, 1, 2] = 1
    expected = head(torch.stack([features[0, [1, 4]].mean(0), features[1, [0, 2]].mean(0)]))
    assert torch.allclose(subset_logits(head, weights, features), expected, atol=1e-6)


def test_teacher_scores_are_the_log_probability_of_the_true_class_per_frame():
    head = nn.Linear(3, 2)
    features, labels = torch.randn(4, 6, 3), torch.tensor([0, 1, 1, 0])
    scores = teacher_frame_scores(head, features, labels)
    log_probs = torch.log_softmax(head(features), dim=-1)
    assert scores.shape == (4, 6)
    assert torch.allclose(scores[1], log_probs[1, :, 1]) and torch.allclose(scores[3], log_probs[3, :, 0])


def test_confidence_scores_ignore_the_label_and_reject_unknown_targets():
    head = nn.Linear(3, 3)
    features = torch.randn(2, 5, 3)
    scores = teacher_frame_scores(head, features, torch.tensor([0, 2]), target="confidence")
    assert torch.equal(scores, teacher_frame_scores(head, features, torch.tensor([1, 1]), target="confidence"))
    assert torch.allclose(scores, torch.log_softmax(head(features), dim=-1).max(dim=-1).values)
    with pytest.raises(ValueError, match="entropy"):
        teacher_frame_scores(head, features, torch.tensor([0, 2]), target="entropy")


def test_load_teacher_copies_backbone_and_head_and_rejects_bad_files(teacher, tmp_path):
    net, path = teacher
    student = classifier("das")
    load_teacher(student, path)
    for key, value in net.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="sampler_name full"):
        load_teacher(student, tmp_path / "missing.pt")
    wide = SubsampledClassifier(get_sampler("full", T), FrameMeans(), num_classes=3, feature_dim=4)
    torch.save(wide.state_dict(), tmp_path / "three_classes.pt")
    with pytest.raises(ValueError, match=r"head.1.weight has shape \(3, 4\)"):
        load_teacher(student, tmp_path / "three_classes.pt")


def test_cached_features_are_the_backbone_in_eval_mode(teacher):
    net, _ = teacher
    items = data(6, seed=3)
    cache = cache_frame_features(net, items, batch_size=4)
    assert cache["features"].shape == (6, T, 4) and cache["images"].shape == (6, 1, T, SIZE, SIZE)
    assert cache["labels"].tolist() == [0, 1, 0, 1, 0, 1]
    net.eval()
    with torch.no_grad():
        expected = net.backbone(items[5]["image"].transpose(0, 1))
    assert torch.allclose(cache["features"][5], expected, atol=1e-6)


@pytest.mark.parametrize("name,scale", [("das", 1.0), ("das", 0.0), ("uniform", 1.0)])
def test_staged_training_keeps_the_teacher_backbone_and_saves_what_the_network_computes(teacher, tmp_path, name, scale):
    net, path = teacher
    student = classifier(name)
    sampler_before = {k: v.clone() for k, v in student.sampler.state_dict().items()}
    head_before = net.head.state_dict()["1.weight"].clone()
    out = tmp_path / "model.pt"
    history = train_sampler_staged(student, path, data(32, seed=1), data(16, seed=2), out, epochs=2,
                                   head_epochs=0, sampler_lr_scale=scale, batch_size=8, log_dir=str(tmp_path / "logs"))
    assert len(history["loss"]) == len(history["val_auc"]) == 2
    assert all(0.0 <= auc <= 1.0 for auc in history["val_auc"])
    state = torch.load(out, weights_only=True)
    for key, value in net.backbone.state_dict().items():  # frozen, statistics included
        assert torch.equal(state[f"backbone.{key}"], value), key
    assert all(p.requires_grad for p in student.backbone.parameters())
    assert not torch.equal(state["head.1.weight"], head_before)  # the head learned on the picks
    moved = any(not torch.equal(state[f"sampler.{k}"], v) for k, v in sampler_before.items())
    assert moved == (name == "das" and scale > 0)  # only a trainable sampler at a positive rate learns

    # the saved network in eval mode computes exactly the cached-feature logits that were validated
    fresh = classifier(name)
    fresh.load_state_dict(state)
    fresh.eval()
    val = data(16, seed=2)
    x = torch.stack([item["image"] for item in val])
    with torch.no_grad():
        logits = fresh(x)
        cache = cache_frame_features(fresh, val)
        expected = subset_logits(fresh.head, fresh.last_sampler_output.weights, cache["features"])
    assert torch.allclose(logits, expected, atol=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    assert [e.step for e in events.Scalars("staged/val_auc")] == [1, 2]
    assert [round(e.value, 6) for e in events.Scalars("staged/val_auc")] == [round(a, 6) for a in history["val_auc"]]


def test_staged_training_refuses_pooling_it_cannot_make_exact(teacher, tmp_path):
    _, path = teacher
    torch.manual_seed(0)
    net = SubsampledClassifier(get_sampler("das", K), FrameMeans(), num_classes=2, feature_dim=4, pooling="max")
    with pytest.raises(ValueError, match="mean pooling"):
        train_sampler_staged(net, path, data(4, 1), data(4, 2), tmp_path / "m.pt", epochs=1)
    finished = tmp_path / "finished.pt"
    finished.write_bytes(b"a user's model")
    with pytest.raises(FileExistsError, match="never replaced"):
        train_sampler_staged(classifier("das"), path, data(4, 1), data(4, 2), finished, epochs=1)
    assert finished.read_bytes() == b"a user's model"
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_sampler_staged(classifier("das"), path, data(4, 1), data(4, 2), tmp_path / "m.pt", epochs=0)


def test_batchnorm_statistics_are_the_exact_moments_of_the_eval_mode_picks():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.LazyLinear(3))
    net = SubsampledClassifier(get_sampler("uniform", 2), backbone, num_classes=2, feature_dim=3)
    x = torch.randn(5, 1, T, 4, 4) * torch.arange(1.0, T + 1)[None, None, :, None, None]
    net(x)  # materialise the lazy layer
    net.train()
    net(x * 10)  # training statistics that recalibration must replace
    assert recalibrate_batchnorm(net, x, batch_size=5) == 1
    picked = x[:, :, net.last_sampler_output.indices[0]]  # uniform: the same frames for every input
    norm = backbone[0]
    assert torch.allclose(norm.running_mean, picked.mean().reshape(1), atol=1e-5)
    assert torch.allclose(norm.running_var, picked.var().reshape(1), rtol=1e-4)
    assert norm.momentum == 0.1 and not net.training
    no_norm = SubsampledClassifier(get_sampler("uniform", 2), nn.Sequential(nn.Flatten(), nn.LazyLinear(3)), 2, 3)
    assert recalibrate_batchnorm(no_norm, x) == 0


def test_finetuning_keeps_the_better_state_by_validation_auc(teacher, tmp_path):
    _, path = teacher
    history = train_sampler_staged(classifier("das"), path, data(16, seed=1), data(16, seed=2), tmp_path / "m.pt",
                                   epochs=1, head_epochs=0, batch_size=8, finetune_epochs=1)
    assert len(history["finetune_val_auc"]) == 1 and 0.0 <= history["finetune_val_auc"][0] <= 1.0
    fresh = classifier("das")
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    fresh.eval()
    val = data(16, seed=2)
    with torch.no_grad():
        prob = torch.softmax(fresh(torch.stack([v["image"] for v in val])), dim=-1)
    from monai.metrics import compute_roc_auc

    auc = float(compute_roc_auc(prob, torch.nn.functional.one_hot(torch.tensor([v["label"] for v in val]), 2)))
    assert math.isclose(auc, max(history["val_auc"][0], history["finetune_val_auc"][0]), abs_tol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 0.0])
def test_head_epochs_train_the_head_on_the_prior_picks_before_the_sampler_learns(teacher, tmp_path, scale):
    _, path = teacher
    student = classifier("das")
    prior = {k: v.clone() for k, v in student.sampler.state_dict().items()}
    learning_steps = []
    student.sampler.register_forward_hook(lambda *_: learning_steps.append(torch.is_grad_enabled()))
    history = train_sampler_staged(student, path, data(16, seed=1), data(16, seed=2), tmp_path / "m.pt", epochs=1,
                                   batch_size=8, head_epochs=2, sampler_lr_scale=scale)
    # 2 head epochs, then 1 with the sampler (2 steps of 8); a sampler that does not learn gets no head phase
    assert len(history["val_auc"]) == (3 if scale > 0 else 1)
    assert sum(learning_steps) == (2 if scale > 0 else 0)
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    at_prior = all(torch.equal(saved[f"sampler.{k}"], v) for k, v in prior.items())
    best_epoch = history["val_auc"].index(max(history["val_auc"]))
    assert at_prior == (scale == 0 or best_epoch < 2)  # the best state of either phase is the one kept
    with pytest.raises(ValueError, match="head_epochs >= 0"):
        train_sampler_staged(classifier("das"), path, data(4, 1), data(4, 2), tmp_path / "n.pt", head_epochs=-1)


def test_frame_features_are_cached_per_teacher(teacher, tmp_path, caplog):
    net, path = teacher
    cache = tmp_path / "teacher.pt.frame_features.pt"
    # MetaTensors with traced transforms, as MONAI gives them: the cache must still load with weights_only=True
    pad = SpatialPad((T, SIZE, SIZE))
    train, val = ([{**item, "image": pad(MetaTensor(item["image"]))} for item in data(8, seed=seed)] for seed in (1, 2))
    for i, name in enumerate(("uniform", "das")):
        with caplog.at_level("INFO", logger="monai_das.engines.staged_sampler_training"):
            caplog.clear()
            train_sampler_staged(classifier(name), path, train, val, tmp_path / f"{name}.pt", epochs=1,
                                 feature_cache=cache)
        assert ("frame features read from" in caplog.text) == (i == 1)
    saved = torch.load(cache, weights_only=True)
    assert saved["train"]["features"].shape == (8, T, 4) and saved["stamp"]["sizes"] == [8, 8]
    net.head[1].bias.data += 1  # another teacher: the cache is not reused
    torch.save(net.state_dict(), path)
    with caplog.at_level("INFO", logger="monai_das.engines.staged_sampler_training"):
        caplog.clear()
        train_sampler_staged(classifier("das"), path, train, val, tmp_path / "again.pt", epochs=1, feature_cache=cache)
    assert "frame features read from" not in caplog.text
