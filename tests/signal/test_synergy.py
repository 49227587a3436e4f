"""Online NNLS against scipy.optimize.nnls; NMF orientation, VAF, choice of K."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls

from exoctl.signal.synergy import OnlineNNLS, choose_k, nmf, vaf, vaf_per_muscle


@settings(deadline=None, max_examples=60)
@given(
    m=st.integers(3, 16),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    jump=st.floats(0.0, 1.0),
)
def test_online_nnls_equals_scipy(m, k, seed, jump):
    k = min(k, m)
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, (m, k))
    solver = OnlineNNLS(W)
    a = rng.uniform(0.0, 1.0, m)
    for _ in range(40):
        # mostly small moves (warm start), sometimes jumps and negative entries
        jumped = rng.random() < jump
        a = rng.uniform(-0.5, 1.0, m) if jumped else a + rng.normal(0.0, 0.05, m)
        h = solver.solve(a)
        ref = nnls(W, a)[0]
        np.testing.assert_allclose(h, ref, rtol=0, atol=1e-6)
        assert h.min() >= 0.0


def test_warm_start_takes_no_iterations_when_the_set_holds():
    rng = np.random.default_rng(0)
    W = rng.uniform(0.0, 1.0, (16, 4))
    h_true = np.array([0.3, 0.0, 0.5, 0.2])
    solver = OnlineNNLS(W)
    solver.solve(W @ h_true)
    assert solver.iterations_last > 0
    h = solver.solve(W @ (h_true * 1.01))
    assert solver.iterations_last == 0
    np.testing.assert_allclose(h, h_true * 1.01, atol=1e-12)


def test_rank_deficient_w_refused():
    W = np.array([[1.0, 2.0], [1.0, 2.0], [0.5, 1.0]])
    with pytest.raises(ValueError, match="full column rank"):
        OnlineNNLS(W)
    with pytest.raises(ValueError, match="shape"):
        OnlineNNLS(np.eye(3)[:, :2]).solve(np.ones(4))


def _synthetic(rng, n=3000, m=12, k=4, noise=0.0):
    W = rng.uniform(0.0, 1.0, (m, k)) ** 2
    H = (
        np.abs(
            np.sin(
                np.outer(np.arange(1, k + 1), np.linspace(0, 6 * np.pi, n))
                + rng.uniform(0, 3, (k, 1))
            )
        )
        ** 3
    )
    A = (W @ H).T + noise * rng.uniform(0, 1, (n, m))
    return A, W, H


def test_nmf_orientation_and_recovery():
    rng = np.random.default_rng(5)
    A, W_true, _ = _synthetic(rng)
    W, H = nmf(A, 4, seed=0)
    assert W.shape == (12, 4) and H.shape == (4, 3000)
    assert W.min() >= 0 and H.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0)
    assert vaf(A, W, H) > 0.995
    # each true synergy is found (cosine similarity after matching)
    Wt = W_true / np.linalg.norm(W_true, axis=0)
    sim = Wt.T @ W
    assert np.all(sim.max(axis=1) > 0.95)


def test_nmf_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    A, _, _ = _synthetic(rng, n=500)
    W1, H1 = nmf(A, 3, seed=2)
    W2, H2 = nmf(A, 3, seed=2)
    np.testing.assert_array_equal(W1, W2)
    np.testing.assert_array_equal(H1, H2)


def test_vaf_definition():
    A = np.array([[1.0, 0.0], [0.0, 2.0]])
    W = np.eye(2)
    assert vaf(A, W, A.T) == pytest.approx(1.0)
    assert vaf(A, W, np.zeros((2, 2))) == pytest.approx(0.0)
    per = vaf_per_muscle(A, W, np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(per, [1.0, 0.75])


def test_choose_k_finds_the_smallest_k_over_threshold():
    rng = np.random.default_rng(9)
    A, _, _ = _synthetic(rng, k=3, noise=0.01)
    choice = choose_k(A, vaf_threshold=0.99, k_max=6)
    assert choice.reached_threshold
    assert choice.vaf_by_k[choice.k] >= 0.99
    assert all(choice.vaf_by_k[kk] < 0.99 for kk in range(1, choice.k))
    assert choice.k <= 3
    assert set(choice.vaf_by_k) == set(range(1, 7))
    assert choice.vaf_muscle_by_k[2].shape == (12,)
    fixed = choose_k(A, k=5)
    assert fixed.k == 5 and fixed.W.shape == (12, 5)
    unreachable = choose_k(A, vaf_threshold=1.0, k_max=2)
    assert not unreachable.reached_threshold and unreachable.k == 2


def test_nmf_refuses_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        nmf(-np.ones((10, 3)), 2)
    with pytest.raises(ValueError, match="between 1"):
        nmf(np.ones((10, 3)), 4)
    with pytest.raises(ValueError, match="all zero"):
        nmf(np.zeros((10, 3)), 2)
