"""Shared by the discriminator-sampler tests: run them on one intra-op thread (their tensors are small; on a busy
machine two OpenMP threads per process are slower than one), restoring the setting afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
