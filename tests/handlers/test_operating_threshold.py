"""``OperatingThreshold`` in a MONAI evaluator: chosen on the epoch's validation cases, saved with the best model of
that epoch, used by evaluate's decisions."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedEvaluator

from monai_das.engines import decisions_and_labels, probabilities_and_labels
from monai_das.handlers import BestModelCheckpoint, NetworkConfig, OperatingThreshold
from monai_das.utils import choose_threshold

pytest.importorskip("ignite")


def evaluator_on(cases, network_config, tmp_path):
    """An evaluator whose 'network' outputs the given positive-class probabilities, in batches of 4."""
    probs = torch.tensor([[1 - p, p] for p, _ in cases])
    labels = torch.tensor([y for _, y in cases])
    batches = [slice(i, i + 4) for i in range(0, len(cases), 4)]

    def step(engine, part):
        return [{"pred": probs[i], "label": labels[i]} for i in range(len(cases))[part]]

    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=batches, epoch_length=len(batches),
                                    network=torch.nn.Linear(1, 1), iteration_update=step,
                                    key_val_metric={"val_threshold": OperatingThreshold(
                                        network_config, output_transform=probabilities_and_labels)})
    return evaluator, probs, labels


def test_the_threshold_of_the_epoch_goes_into_network_config_and_the_best_model(tmp_path):
    cases = [(0.55, 0), (0.6, 0), (0.58, 0), (0.7, 1), (0.72, 1), (0.52, 0), (0.9, 1), (0.61, 0)]
    config = NetworkConfig({"sampler_name": "das"})
    evaluator, probs, labels = evaluator_on(cases, config, tmp_path)
    BestModelCheckpoint(str(tmp_path), {"network_config": config}, "val_threshold").attach(evaluator)
    evaluator.run()
    expected = choose_threshold(probs[:, 1], labels)
    assert expected == pytest.approx(0.655)  # between the highest negative (0.61) and the lowest positive (0.7)
    assert evaluator.state.metrics["val_threshold"] == pytest.approx(expected)
    assert config.values["decision_threshold"] == pytest.approx(expected)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)  # one object: saved as its state dict
    assert saved == {"sampler_name": "das", "decision_threshold": pytest.approx(expected)}

    # evaluate: the decisions at the stored threshold (every case right here), not at 0.5 (five false positives)
    output = [{"pred": probs[i], "label": labels[i]} for i in range(len(cases))]
    onehot, y = decisions_and_labels(config)(output)
    assert torch.equal(onehot.argmax(dim=1), labels) and torch.equal(y, labels)
    assert int((probs.argmax(dim=1) != labels).sum()) == 5


def test_more_than_two_classes_is_refused(tmp_path):
    config = NetworkConfig({})
    metric = OperatingThreshold(config)
    with pytest.raises(ValueError, match="binary tasks"):
        metric.update((torch.softmax(torch.randn(4, 3), dim=1), torch.tensor([0, 1, 2, 0])))
    assert "decision_threshold" not in config.values
