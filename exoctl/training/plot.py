"""A PNG of estimated against true torque, written with numpy and zlib only.

Why no matplotlib: it would be the only reason for a large dependency (and its font cache) in
the training extra, for one plain figure. The figure needs little: one panel per joint, the
truth in black, the estimate in red, a zero line, and a label with the joint, its R^2 and the
panel's torque range. Lines are drawn by dense sampling, text with a 3x5 pixel font.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_torques", "write_png"]

# 3x5 glyphs, rows top to bottom, '#' = ink.
_FONT_ROWS = {
    "0": "###|#.#|#.#|#.#|###", "1": ".#.|##.|.#.|.#.|###", "2": "###|..#|###|#..|###",
    "3": "###|..#|.##|..#|###", "4": "#.#|#.#|###|..#|..#", "5": "###|#..|###|..#|###",
    "6": "###|#..|###|#.#|###", "7": "###|..#|..#|.#.|.#.", "8": "###|#.#|###|#.#|###",
    "9": "###|#.#|###|..#|###", ".": "...|...|...|...|.#.", "-": "...|...|###|...|...",
    "_": "...|...|...|...|###", "=": "...|###|...|###|...", ":": "...|.#.|...|.#.|...",
    "/": "..#|..#|.#.|#..|#..", " ": "...|...|...|...|...", "^": ".#.|#.#|...|...|...",
    "(": ".#.|#..|#..|#..|.#.", ")": ".#.|..#|..#|..#|.#.", "+": "...|.#.|###|.#.|...",
    "A": ".#.|#.#|###|#.#|#.#", "B": "##.|#.#|##.|#.#|##.", "C": "###|#..|#..|#..|###",
    "D": "##.|#.#|#.#|#.#|##.", "E": "###|#..|##.|#..|###", "F": "###|#..|##.|#..|#..",
    "G": "###|#..|#.#|#.#|###", "H": "#.#|#.#|###|#.#|#.#", "I": "###|.#.|.#.|.#.|###",
    "J": "..#|..#|..#|#.#|###", "K": "#.#|#.#|##.|#.#|#.#", "L": "#..|#..|#..|#..|###",
    "M": "#.#|###|###|#.#|#.#", "N": "##.|#.#|#.#|#.#|#.#", "O": "###|#.#|#.#|#.#|###",
    "P": "###|#.#|###|#..|#..", "Q": "###|#.#|#.#|###|..#", "R": "##.|#.#|##.|#.#|#.#",
    "S": "###|#..|###|..#|###", "T": "###|.#.|.#.|.#.|.#.", "U": "#.#|#.#|#.#|#.#|###",
    "V": "#.#|#.#|#.#|#.#|.#.", "W": "#.#|#.#|###|###|#.#", "X": "#.#|#.#|.#.|#.#|#.#",
    "Y": "#.#|#.#|.#.|.#.|.#.", "Z": "###|..#|.#.|#..|###",
}  # fmt: skip
_FONT = {
    c: np.array([[ch == "#" for ch in row] for row in rows.split("|")])
    for c, rows in _FONT_ROWS.items()
}


def write_png(path: Path | str, rgb: np.ndarray) -> Path:
    """8-bit RGB image (h, w, 3) as PNG (filter 0 on every row, zlib level 6)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = np.hstack([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)]).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(png)
    return path


def _text(img: np.ndarray, x: int, y: int, s: str, color, scale: int = 2) -> None:
    for i, c in enumerate(s.upper()):
        g = _FONT.get(c, _FONT[" "])
        big = np.kron(g, np.ones((scale, scale), bool))
        x0 = x + i * 4 * scale
        hh, ww = big.shape
        if x0 + ww > img.shape[1] or y + hh > img.shape[0]:
            return
        img[y : y + hh, x0 : x0 + ww][big] = color


def _polyline(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color) -> None:
    if len(xs) < 2:
        return
    d = np.hypot(np.diff(xs), np.diff(ys))
    n = int(np.ceil(d.sum())) * 2 + 2
    s = np.concatenate([[0.0], np.cumsum(d)])
    t = np.linspace(0.0, s[-1], n)
    px = np.round(np.interp(t, s, xs)).astype(int)
    py = np.round(np.interp(t, s, ys)).astype(int)
    ok = (px >= 0) & (px < img.shape[1]) & (py >= 0) & (py < img.shape[0])
    img[py[ok], px[ok]] = color


def plot_torques(
    path: Path | str,
    t: np.ndarray,
    y: np.ndarray,
    yhat: np.ndarray,
    joints: Sequence[str],
    r2: dict[str, float] | None = None,
    *,
    seconds: float = 10.0,
    width: int = 1000,
    panel_h: int = 180,
) -> Path:
    """Estimated (red) against true (black) torque, one panel per joint, the first ``seconds``."""
    n = int(np.searchsorted(t, t[0] + seconds)) if len(t) else 0
    n = max(n, min(len(t), 2))
    t, y, yhat = t[:n], y[:n], yhat[:n]
    margin, top = 12, 26
    img = np.full((len(joints) * (panel_h + top) + margin, width, 3), 255, np.uint8)
    for j, name in enumerate(joints):
        y0 = j * (panel_h + top) + top
        lo = float(min(y[:, j].min(), yhat[:, j].min()))
        hi = float(max(y[:, j].max(), yhat[:, j].max()))
        if hi - lo < 1e-9:
            hi, lo = hi + 1.0, lo - 1.0
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        x_px = margin + (t - t[0]) / max(t[-1] - t[0], 1e-9) * (width - 2 * margin - 1)

        def ypx(v, y0=y0, lo=lo, hi=hi):
            return y0 + (hi - np.asarray(v)) / (hi - lo) * (panel_h - 1)

        img[y0 : y0 + panel_h, margin] = 160
        img[y0 : y0 + panel_h, width - margin - 1] = 160
        img[y0, margin : width - margin] = 160
        img[y0 + panel_h - 1, margin : width - margin] = 160
        if lo < 0 < hi:
            img[int(ypx(0.0)), margin : width - margin] = 200
        _polyline(img, x_px, ypx(y[:, j]), (0, 0, 0))
        _polyline(img, x_px, ypx(yhat[:, j]), (220, 30, 30))
        label = f"{name}  R^2 {r2[name]:.3f}" if r2 and name in r2 else name
        label += f"   {lo:.0f} TO {hi:.0f} N M   {t[-1] - t[0]:.1f} S   BLACK TRUE RED ESTIMATE"
        _text(img, margin, y0 - 16, label, (0, 0, 0))
    return write_png(path, img)
