"""Block state-space runner for small causal linear filters on multi-channel streams.

Why not ``scipy.signal.sosfilt`` with carried ``zi``: it is exact and simple, but each call costs
~20 us of Python-side validation, and a control tick only brings 2-4 samples for 16 channels.
Here a filter (any cascade of second-order sections, or any state-space system) is rewritten
once, at construction, as the exact linear map from (state, r input samples) to (next state, r
output samples):

    [ s' ]   [ A^r   B_r ] [ s ]
    [ y  ] = [ C_r   D_r ] [ x ]      (one (S+r) x (S+r) matrix per chunk length r <= block)

so a chunk costs one small matrix product on a preallocated buffer. The recursion is the same
as the transposed direct form II that ``sosfilt`` runs (the state vector is the concatenation
of every section's two ``zi`` values), so results agree with ``sosfilt`` to rounding, and they
do not depend on how the input is chunked: longer inputs are cut into blocks of ``block``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BlockLti", "sos_to_ss"]


def sos_to_ss(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """State space of a cascade of SOS sections, in sosfilt's transposed-DF-II coordinates.

    One section (b0, b1, b2, 1, a1, a2) with state (z1, z2):
        y = b0 x + z1;  z1' = b1 x - a1 y + z2;  z2' = b2 x - a2 y.
    Returns (A (S,S), B (S,), C (S,), D) with S = 2 * n_sections.
    """
    sos = np.asarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.allclose(sos[:, 3], 1.0):
        raise ValueError("sos sections must be normalised (a0 == 1)")
    A = np.zeros((0, 0))
    B = np.zeros(0)
    C = np.zeros(0)
    D = 1.0
    for b0, b1, b2, _a0, a1, a2 in sos:
        As = np.array([[-a1, 1.0], [-a2, 0.0]])
        Bs = np.array([b1 - a1 * b0, b2 - a2 * b0])
        Cs = np.array([1.0, 0.0])
        Ds = float(b0)
        # series connection: previous system's output feeds this section's input
        n = A.shape[0]
        A_new = np.zeros((n + 2, n + 2))
        A_new[:n, :n] = A
        A_new[n:, :n] = np.outer(Bs, C)
        A_new[n:, n:] = As
        B = np.concatenate([B, Bs * D])
        C = np.concatenate([Ds * C, Cs])
        D = Ds * D
        A = A_new
    return A, B, C, D


class BlockLti:
    """Runs one single-input single-output linear system on every channel independently.

    The system is (A, B, C, D); state shape (S, n_channels). ``run(x, out, rectify=...)``
    filters x (n, ch) into out (n, ch), carrying the state. For chunks up to ``block`` samples
    the caller can avoid every copy: write the input into ``input_rows(r)`` (e.g. with an
    ``out=`` ufunc) and take the output view from ``advance(r)``. Nothing is allocated per call.
    """

    def __init__(
        self,
        A: np.ndarray,
        B: np.ndarray,
        C: np.ndarray,
        D: float,
        n_channels: int,
        *,
        block: int = 32,
        output_gain: float = 1.0,
    ) -> None:
        A = np.atleast_2d(np.asarray(A, dtype=np.float64))
        B = np.asarray(B, dtype=np.float64).reshape(-1)
        C = np.asarray(C, dtype=np.float64).reshape(-1)
        S = A.shape[0]
        if A.shape != (S, S) or B.shape != (S,) or C.shape != (S,):
            raise ValueError("inconsistent state-space shapes")
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.n_states = S
        self.n_channels = int(n_channels)
        self.block = int(block)
        # impulse response h[0] = D, h[i] = C A^(i-1) B; and powers of A
        powers = [np.eye(S)]
        for _ in range(block):
            powers.append(A @ powers[-1])
        h = np.empty(block)
        h[0] = D
        for i in range(1, block):
            h[i] = C @ powers[i - 1] @ B
        self._mats: list[np.ndarray] = [np.zeros((S, S))]
        for r in range(1, block + 1):
            M = np.zeros((S + r, S + r))
            M[:S, :S] = powers[r]
            for j in range(r):
                M[:S, S + j] = powers[r - 1 - j] @ B
            for i in range(r):
                M[S + i, :S] = C @ powers[i]
                M[S + i, S : S + i + 1] = h[i::-1]
            M[S:, :] *= output_gain  # a constant gain on the output rows costs nothing
            self._mats.append(M)
        # steady state for a constant unit input: s = A s + B  ->  (I - A) s = B
        try:
            self._dc_state = np.linalg.solve(np.eye(S) - A, B) if S else np.zeros(0)
        except np.linalg.LinAlgError:  # integrator: no steady state, start from zero
            self._dc_state = np.zeros(S)
        # two ping-pong buffers: rows [0, S) hold the state, rows [S, S + r) the input,
        # and after the product the other buffer holds [next state; output].
        self._buf = [np.zeros((S + block, self.n_channels)) for _ in range(2)]
        self._cur = 0

    @property
    def state(self) -> np.ndarray:
        """The current state (S, n_channels), a view."""
        return self._buf[self._cur][: self.n_states]

    def reset(self) -> None:
        self._buf[self._cur][: self.n_states] = 0.0

    def set_steady_state(self, x0: np.ndarray) -> None:
        """Put the filter in the state it would have after a long constant input x0 (ch,)."""
        np.multiply(self._dc_state[:, None], x0[None, :], out=self.state)

    def input_rows(self, r: int) -> np.ndarray:
        """Where the next ``r`` (<= block) input samples go, before ``advance(r)``."""
        S = self.n_states
        return self._buf[self._cur][S : S + r]

    def advance(self, r: int) -> np.ndarray:
        """Run ``r`` (<= block) samples already written to ``input_rows(r)``.

        Returns the r outputs (times ``output_gain``) as a view that stays valid until the next
        ``input_rows``/``advance``/``run``; the caller may modify it in place (it is not state).
        """
        S = self.n_states
        z = self._buf[self._cur]
        w = self._buf[1 - self._cur]
        np.matmul(self._mats[r], z[: S + r], out=w[: S + r])
        self._cur = 1 - self._cur
        return w[S : S + r]

    def run(self, x: np.ndarray, out: np.ndarray, *, rectify: bool = False) -> None:
        """Filter x (n, ch), any n, into out (n, ch); with rectify, filter |x| instead."""
        n = x.shape[0]
        start = 0
        while start < n:
            r = min(self.block, n - start)
            xin = self.input_rows(r)
            if rectify:
                np.abs(x[start : start + r], out=xin)
            else:
                np.copyto(xin, x[start : start + r])
            np.copyto(out[start : start + r], self.advance(r))
            start += r
