"""The pieces of the staged recipe: teacher loading, cached features (with the frame mask), the exact subset loss,
the ranking term, the BatchNorm re-estimation."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_staged import SIZE, T, FrameMeans, classifier, data
from torch import nn

from monai_das.engines.batchnorm_recalibration import recalibrate_batchnorm
from monai_das.engines.staged_sampler_training import (
    cache_frame_features,
    load_teacher,
    ranking_loss,
    subset_logits,
    teacher_frame_scores,
)
from monai_das.networks.nets import SubsampledClassifier, get_sampler

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
    # padding picks (frame_mask False at the pick) are left out of the mean, as SubsampledClassifier pools them
    real = torch.tensor([[True, False], [True, True]])
    expected = head(torch.stack([features[0, 1], features[1, [0, 2]].mean(0)]))
    assert torch.allclose(subset_logits(head, weights, features, real), expected, atol=1e-6)


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
    assert cache["frame_mask"].shape == (6, T) and bool(cache["frame_mask"].all())
    masked = [{**item, "image_frame_mask": torch.arange(T) < 3 + i} for i, item in enumerate(items)]
    cache = cache_frame_features(net, masked, batch_size=4, frame_mask_key="image_frame_mask")
    assert cache["frame_mask"].sum(dim=1).tolist() == [3, 4, 5, 6, 7, 8]


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
