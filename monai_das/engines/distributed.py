"""Ending a ``torch.distributed`` bundle run cleanly (the ``finalize`` of ``multi_gpu_train.json``)."""

from __future__ import annotations

import gc
import logging

import torch
import torch.distributed as dist

__all__ = ["teardown_distributed"]

logger = logging.getLogger(__name__)

# the attributes through which a DistributedDataParallel model keeps the process group (and its threads) alive
_DDP_LINKS = ("reducer", "logger", "process_group")


def teardown_distributed(*networks: torch.nn.Module) -> None:
    """Release the DDP models in ``networks``, wait for every rank, and destroy the default process group.

    A ``DistributedDataParallel`` model that has run ``backward()`` holds the process group through its C++ reducer,
    so ``destroy_process_group()`` alone does not end the group: its gloo threads live on until interpreter exit,
    where a fraction of processes (measured: 1 in 20 to 1 in 4) abort with ``terminate called without an active
    exception`` (SIGABRT; torchrun reports ``exitcode: -6`` and fails although the training finished). Deleting the
    model first avoids it, but in a bundle the config parser keeps a reference to every object it built, so this
    function cuts the model's links to the group instead (its ``reducer``, ``logger`` and ``process_group``
    attributes: the wrapper cannot run again afterwards; its ``module`` and weights stay usable), collects garbage,
    then runs ``barrier()`` and ``destroy_process_group()``. Ranks log when they are done.

    Does nothing but release the models when no process group is initialised (a single-process run).

    Args:
        networks: models to release; any that is not a ``DistributedDataParallel`` is left alone.
    """
    for network in networks:
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            for name in _DDP_LINKS:
                network.__dict__.pop(name, None)
    gc.collect()
    if not (dist.is_available() and dist.is_initialized()):
        return
    rank = dist.get_rank()
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()
    logger.info(f"rank {rank}: released the distributed model and destroyed the process group")
