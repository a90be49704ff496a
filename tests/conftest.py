"""
Shared fixtures and markers for the sunpy-momfbd tests.

* ``rng``: a seeded `numpy.random.Generator`; every test that draws random numbers uses it.
* ``torch_generator``: a seeded `torch.Generator` on the CPU; torch's global generators are
  also re-seeded before every test.
* Tests marked ``@pytest.mark.gpu`` are skipped unless CUDA is available.
"""

import os

import numpy as np
import pytest

SEED = 1234


def pytest_configure(config):
    # Keep the tests quick and reproducible on small CI machines (2 cores).
    os.environ.setdefault("MPLBACKEND", "agg")


def _torch():
    import torch

    return torch


@pytest.fixture(autouse=True)
def _seed_torch():
    """
    Seed torch's global generators before every test, so results do not depend on test order.

    cuDNN is made deterministic too. ``torch.use_deterministic_algorithms`` is *not* switched on:
    some CUDA kernels (e.g. the backward of bilinear interpolation) only have non-deterministic
    versions, and its warnings would fail under ``filterwarnings = error``.
    """
    torch = _torch()
    torch.manual_seed(SEED)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@pytest.fixture
def rng():
    """A freshly seeded `numpy.random.Generator`."""
    return np.random.default_rng(SEED)


@pytest.fixture
def torch_generator():
    """A freshly seeded CPU `torch.Generator`."""
    return _torch().Generator().manual_seed(SEED)


def _cuda_available():
    try:
        torch = _torch()
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
