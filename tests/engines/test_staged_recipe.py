"""``StagedRecipe`` in this process on the tiny task, from a given teacher: which stages run for which sampler, the
features shared by runs of one teacher, and what it refuses."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import DataLoader
from tiny_staged import FrameMeans, classifier, data

from monai_das.engines import StagedRecipe
from monai_das.networks.nets import SubsampledClassifier, get_sampler

pytest.importorskip("ignite")


@pytest.fixture
def teacher(tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save(classifier("full").state_dict(), path)
    return path


def recipe(name, out, teacher, **kwargs):
    train, val = data(16, seed=1), data(16, seed=2)
    return StagedRecipe(classifier(name), train, DataLoader(val, batch_size=8), str(out), teacher_ckpt=str(teacher),
                        epochs=2, batch_size=8, num_bootstrap=20, **kwargs)


def test_a_sampler_without_parameters_trains_only_the_head_and_runs_share_the_features(teacher, tmp_path, caplog):
    cache = str(tmp_path / "features.pt")
    with caplog.at_level("INFO", logger="monai_das.engines.staged_recipe"):
        summary = recipe("uniform", tmp_path / "uniform", teacher, feature_cache=cache).run()
        assert "frame features read from" not in caplog.text
        recipe("das", tmp_path / "das", teacher, feature_cache=cache, sampler_lr_scale=0).run()
        assert "frame features read from" in caplog.text  # the same teacher: stage 2 skipped
    for name in ("uniform", "das"):
        assert sorted(p.name for p in (tmp_path / name).iterdir() if p.is_dir()) == ["prior"]  # no teacher, sampler
    assert summary == {"kept": "prior", "reason": "the sampler has nothing to learn"}
    assert json.loads((tmp_path / "uniform" / "selection.json").read_text())["model"] == "prior/model.pt"
    saved = torch.load(tmp_path / "uniform" / "model.pt", weights_only=True)
    assert 0.0 < saved["network_config"]["decision_threshold"] < 1.0
    teacher_state = torch.load(teacher, weights_only=True)
    for key, value in teacher_state.items():
        if key.startswith("backbone."):
            assert torch.equal(saved["model"][key], value), key  # the frozen backbone, statistics included


def test_refusals(teacher, tmp_path):
    torch.manual_seed(0)
    net = SubsampledClassifier(get_sampler("das", 2), FrameMeans(), num_classes=2, feature_dim=4, pooling="max")
    with pytest.raises(ValueError, match="mean pooling"):
        StagedRecipe(net, data(4, 1), DataLoader(data(4, 2)), str(tmp_path), teacher_ckpt=str(teacher))
    with pytest.raises(ValueError, match="give teacher_network and teacher_train_loader"):
        StagedRecipe(classifier("das"), data(4, 1), DataLoader(data(4, 2)), str(tmp_path))
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        recipe("das", tmp_path, teacher, teacher_epochs=0)
    with pytest.raises(ValueError, match="median"):
        recipe("das", tmp_path, teacher, selection="median")
    # a finished run's model is never replaced by a fresh run
    out = tmp_path / "finished"
    out.mkdir()
    (out / "model.pt").write_bytes(b"a user's model")
    with pytest.raises(FileExistsError, match=r"holds a finished run \(model.pt\)"):
        recipe("das", out, teacher).run()
    assert (out / "model.pt").read_bytes() == b"a user's model"
