"""Property-based checks of the kernels with hypothesis (marked 'qpulib')."""

from __future__ import annotations

import pytest
import torch

import torch_qpu

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.qpulib

# database=None: no .hypothesis folder in the repo root when CI runs from there.
# The fixtures used here only name the backend and restore global settings:
# sharing them across generated inputs is intended.
FAST = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)


@FAST
@given(
    n=st.integers(0, 600),
    op=st.sampled_from(["add", "sub", "mul"]),
    num_qpus=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_elementwise_matches_torch(backend: str, n: int, op: str, num_qpus: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    result = getattr(torch_qpu, op)(a, b, backend=backend, num_qpus=num_qpus)
    torch.testing.assert_close(result, getattr(torch, op)(a, b))


@FAST
@given(
    h=st.integers(0, 40),
    w=st.integers(0, 300),
    num_qpus=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_mv_matches_torch(backend: str, h: int, w: int, num_qpus: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    m, v = torch.randn(h, w, generator=gen), torch.randn(w, generator=gen)
    result = torch_qpu.mv(m, v, backend=backend, num_qpus=num_qpus)
    tolerance = 1e-5 * (m.abs() @ v.abs()) + 1e-6
    assert bool(((result - m @ v).abs() <= tolerance).all())
