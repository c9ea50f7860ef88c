"""Learning tests: tiny seeded training runs that must pass a measured floor.

Each test trains a small model for real (tens to hundreds of steps) on CPU, so a loss that
stops teaching the model fails the suite, not only a loss that crashes. One intra-op
thread: on a busy 2-core machine several threads per process thrash (measured: a training
step 4x slower with 2 threads than with 1 while other jobs ran), and one thread keeps the
runs bit-for-bit repeatable.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
