"""The bundle options that shape a network, saved in its checkpoint next to the weights.

A bundle's best checkpoint (``model.pt``) is ``{"model": state dict, "network_config": {key: value}}``, where the
values are the resolved config options that decide the network's shape and inputs (sampler name, number of frames,
frame size, sampling ratio, pooling, input channels, class names, backbone class...). ``monai-das predict`` and the
MONAI Label task read them, so the checkpoint alone rebuilds its network. Old checkpoints (a plain state dict) still
load: they carry no options, and the config's (or the user's) apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NETWORK_CONFIG_KEY", "NetworkConfig", "split_checkpoint"]

#: the checkpoint entry holding the options
NETWORK_CONFIG_KEY = "network_config"


def _plain(value: Any) -> Any:
    """``value`` as numbers, strings, lists and dicts only (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"a network option must be a number, string, list or dict, got {type(value).__name__}: {value!r}.")


class NetworkConfig:
    """Options to save with a network's weights: give it to an ignite ``Checkpoint`` / ``CheckpointSaver``
    ``save_dict`` under :data:`NETWORK_CONFIG_KEY` (it has ``state_dict`` and ``load_state_dict``).

    Args:
        values: option name -> resolved value (numbers, strings, lists, dicts).

    Raises:
        TypeError: for a value of another type.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = _plain(dict(values))

    def state_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = _plain(dict(state))


def split_checkpoint(state: Any) -> tuple[Any, dict[str, Any]]:
    """``(weights, options)`` of a loaded checkpoint: ``{"model": weights[, "network_config": options]}``, or a plain
    state dict (no options)."""
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        return state["model"], dict(state.get(NETWORK_CONFIG_KEY) or {})
    return state, {}
