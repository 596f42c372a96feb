"""``last_sampler_output`` and ``unwrap_network`` under the wrappers: DistributedDataParallel, DataParallel,
torch.compile."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

from monai_das.networks import unwrap_network
from monai_das.networks.nets import MobileNetV3Small, SubsampledClassifier, get_sampler


def classifier() -> SubsampledClassifier:
    torch.manual_seed(0)
    return SubsampledClassifier(get_sampler("das", 3, num_frames=8), MobileNetV3Small(1, 0), 2).eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_keeps_the_picks_on_the_wrapped_module():
    net, x = classifier(), torch.rand(2, 1, 8, 16, 16)
    with torch.no_grad():
        expected = net.sampler(x).indices
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(net)
        with torch.no_grad():
            ddp(x)
        assert unwrap_network(ddp) is net
        assert torch.equal(unwrap_network(ddp).last_sampler_output.indices, expected)
    finally:
        dist.destroy_process_group()


def test_data_parallel_without_replicas_keeps_the_picks():
    net, x = classifier(), torch.rand(2, 1, 8, 16, 16)
    wrapped = nn.DataParallel(net)  # no GPU, or one: the module itself runs
    if torch.cuda.device_count() > 1:
        pytest.skip("several GPUs: DataParallel makes replicas here")
    with torch.no_grad():
        wrapped(x)
    assert unwrap_network(wrapped).last_sampler_output.indices.shape == (2, 3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DataParallel replicates only over several GPUs")
def test_data_parallel_replicas_are_refused():
    wrapped = nn.DataParallel(classifier().cuda())
    with pytest.raises(RuntimeError, match="DataParallel replica"):
        wrapped(torch.rand(4, 1, 8, 16, 16, device="cuda"))


def test_torch_compile_wrapper_is_unwrapped_without_compiling():
    net = classifier()
    assert unwrap_network(torch.compile(net)) is net
    assert unwrap_network(nn.DataParallel(torch.compile(net))) is net
    assert unwrap_network(net) is net and unwrap_network("not a module") == "not a module"
