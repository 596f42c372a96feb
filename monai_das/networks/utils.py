"""Utilities for the networks of monai_das."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["unwrap_network"]


def unwrap_network(network: Any) -> Any:
    """The module inside ``DistributedDataParallel``/``DataParallel`` (``.module``) and ``torch.compile`` wrappers,
    however they nest: the one that owns the weights' names and ``last_sampler_output`` (under ``DataParallel`` over
    several devices a ``SubsampledClassifier`` refuses to run, see its docstring).

    Anything that is not such a wrapper (a plain module, an optimizer) is returned as it is.
    """
    net = network
    for _ in range(8):  # wrappers nest at most a few levels deep
        if isinstance(net, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            net = net.module
        elif type(net).__name__ == "OptimizedModule":  # torch.compile's wrapper: its one child is the compiled module
            net = next(net.children())
        else:
            break
    return net
