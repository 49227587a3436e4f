"""The streaming form of the torque network: the same function, fed segment sums, few ONNX nodes.

Why: the window form (``fit.export_onnx(form="window")``) takes the raw window of the last N
ticks (400 ms, 200 rows at 500 Hz) every tick, average-pools it again in every branch and runs
~105 onnxruntime nodes; on a small model each node costs about a microsecond of dispatch, so
that graph spent ~120 us of thread CPU per tick, most of it not arithmetic.

What changes: every branch of :class:`~exoctl.training.network.MultiScaleNet` averages its window
in blocks of ``pool`` ticks that end at the newest tick, so each block mean is a difference of
two *trailing sums*. The estimator carries one running sum of the per-tick features from tick
to tick (the branches' state, see :mod:`exoctl.estimation.input_kinds`) and hands the model,
instead of the window, the sums over a few segments of the past: ``features[0, i]`` is the sum
of the features of the ticks aged ``[lags[i-1], lags[i])`` (``lags[-1]`` = 0, age 0 = the
newest tick). For branches of 25/50/100/200 ticks in 5 steps that is 16 rows instead of 200.

The graph, written out node by node (onnx.helper) so that nothing in it is incidental:

* block sums of every branch from the segments: one MatMul with a constant 0/1 matrix;
* each branch's two convolutions as block-Toeplitz matrices (the zero padding at both ends is
  in the matrices), one batched MatMul per layer for all branches; the input normalisation and
  the pooling's 1/pool folded into the first, the projection's channel-major flatten folded
  into the projection's matrix;
* attention with the heads as a batch axis (query scale folded into the weights), the output
  projection per head then summed;
* the bounded head and the linear skip path (the newest tick, or with ``skip_lags`` the
  one-tick segments at those lags) with the output de-normalisation folded in.

About 35 nodes. The arithmetic equals the window form's up to float32 rounding (tested through
onnxruntime: ``tests/training/test_stream_export.py``). The window form stays exportable for
comparison (``bench/bench_tick.py`` runs both).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np

from exoctl.estimation.input_kinds import Sums
from exoctl.estimation.torque_model import save_model

from .network import MultiScaleNet

__all__ = ["STREAM_OPSET", "export_stream_onnx", "stream_graph", "stream_lags"]

STREAM_OPSET = 20  # Gelu is an operator from opset 20 (one node, not five)


def stream_lags(net: MultiScaleNet) -> list[int]:
    """The segment boundaries (ticks) the streaming graph needs: 1 (the newest tick, for the
    linear skip path), ``v`` and ``v + 1`` for every other lag ``v`` the skip path reads (the
    one-tick segment aged ``[v, v + 1)``) and every block edge ``k * pool`` of every branch."""
    steps = int(net.config["steps"])
    edges = {1}
    edges.update(e for v in net.skip_lags for e in (v, v + 1) if e > 0)
    for length in net.scales:
        pool = length // steps
        edges.update(pool * k for k in range(1, steps + 1))
    return sorted(edges)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def stream_graph(module: MultiScaleNet):
    """An onnx ModelProto (no metadata) computing ``module`` from segment sums ``(B, L, F)``."""
    from onnx import TensorProto, helper, numpy_helper

    net: Any = cast(Any, module).eval()  # its submodules' attributes, untyped by torch
    lags = stream_lags(net)
    n_l, n_f, n_j = len(lags), net.n_features, net.n_joints
    steps = int(net.config["steps"])
    nb = len(net.branches)
    c = net.branches[0].conv1.out_channels
    d = net.scale_embed.shape[1]
    heads, dh = net.heads, net.dh
    mean, std = _np(net.x_mean), _np(net.x_std)
    y_mean, y_std = _np(net.y_mean), _np(net.y_std)
    pos = {lag: i for i, lag in enumerate(lags)}

    # Block sums in im2col order: row (b, j, k) = the block at position j + k - 1 of branch b,
    # the sum of the ticks aged [(steps-1-i)*pool, (steps-i)*pool) for i = j + k - 1; a row
    # outside [0, steps) is the convolution's zero padding (a zero row).
    seg = np.zeros((nb * steps * 3, n_l))
    w1s = np.zeros((nb, 3 * n_f, c))  # conv1 as (positions, 3F) @ (3F, C) per branch
    bias1 = np.zeros((nb, steps, c))
    t2 = np.zeros((nb, steps * c, steps * c))  # conv2 as a block-Toeplitz matrix per branch
    bias2 = np.zeros((nb, 1, steps * c))
    tp = np.zeros((nb, steps * c, d))
    biasp = np.zeros((nb, 1, d))
    embed = _np(net.scale_embed)
    lo_edges = [0, *lags[:-1]]
    for b, br in enumerate(net.branches):
        pool = br.pool
        w1, b1 = _np(br.conv1.weight), _np(br.conv1.bias)  # (C, F, 3), (C,)
        w2, b2 = _np(br.conv2.weight), _np(br.conv2.bias)  # (C, C, 3)
        for k in range(3):
            # pooled normalised input = (block_sum / pool - mean) / std
            w1s[b, k * n_f : (k + 1) * n_f, :] = (w1[:, :, k] / (std * pool)).T
        for j in range(steps):
            bias1[b, j] = b1
            bias2[b, 0, j * c : (j + 1) * c] = b2
            for k in range(3):
                i = j + k - 1
                if not 0 <= i < steps:
                    continue
                bias1[b, j] -= w1[:, :, k] @ (mean / std)
                t2[b, i * c : (i + 1) * c, j * c : (j + 1) * c] = w2[:, :, k].T
                lo, hi = (steps - 1 - i) * pool, (steps - i) * pool
                for s_, lag in enumerate(lags):
                    if lo <= lo_edges[s_] and lag <= hi:
                        seg[(b * steps + j) * 3 + k, s_] = 1.0
        wp = _np(br.proj.weight)  # (D, C * steps), input index ch * steps + j
        for j in range(steps):
            for ch in range(c):
                tp[b, j * c + ch, :] = wp[:, ch * steps + j]
        biasp[b, 0] = _np(br.proj.bias) + embed[b]

    # Attention with 2-D products only (a batched product per head costs ~1.5 us per head in
    # onnxruntime): the queries of all heads side by side, each masked to its head's columns
    # and scaled by 1/sqrt(dh), reshaped so that row (i, h) is token i's query of head h; the
    # scores of all heads are then one product with the keys, and the output projection of
    # the heads' contexts one product with Wout stacked per head (masked likewise).
    wqkv, bqkv = _np(net.qkv.weight), _np(net.qkv.bias)  # (3D, D), (3D,)
    mask = np.zeros((heads, d))
    for h in range(heads):
        mask[h, h * dh : (h + 1) * dh] = 1.0
    scale = 1.0 / math.sqrt(dh)
    wq = np.concatenate([(wqkv[:d].T * mask[h]) * scale for h in range(heads)], axis=1)
    bq = np.concatenate([bqkv[:d] * mask[h] * scale for h in range(heads)])
    w_all = np.concatenate([wq, wqkv[d:].T], axis=1)  # (D, H*D + 2D)
    b_all = np.concatenate([bq, bqkv[d:]])
    wout, bout = _np(net.out.weight), _np(net.out.bias)  # (D, D)
    wo_st = np.concatenate([wout.T * mask[h][:, None] for h in range(heads)], axis=0)  # (H*D, D)
    ffn1, ffn2 = net.ffn[0], net.ffn[2]
    fuse = net.fuse[0]
    bound = float(net.residual_bound)
    wh, bh = _np(net.head.weight), _np(net.head.bias)
    if bound > 0:
        wh, bh, out_scale = wh / bound, bh / bound, bound * y_std
    else:
        wh, bh, out_scale = wh * y_std[:, None], bh * y_std, None
    # skip on the normalised ticks at its lags (lag-major, as MultiScaleNet.embed), then
    # de-normalised: x -> ((x - m)/s) Ws^T + bs) ys + ym
    skip_lags = list(net.skip_lags)
    ws, bs = _np(net.skip.weight), _np(net.skip.bias)
    std_l, mean_l = np.tile(std, len(skip_lags)), np.tile(mean, len(skip_lags))
    wskip = (ws / std_l[None, :]).T * y_std[None, :]
    bskip = (bs - ws @ (mean_l / std_l)) * y_std + y_mean

    inits = []

    def const(name: str, a, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.array(a, dtype=dtype), name))
        return name

    nodes = []

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def shape(name: str, dims: list[int]) -> str:
        return const(name, dims, np.int64)

    x = "features"
    q = node("MatMul", [const("seg", seg), x], "block_sums")  # (B, nb*steps*3, F)
    q = node("Reshape", [q, shape("shape_im2col", [0, nb, steps, 3 * n_f])], "im2col")
    h1 = node("MatMul", [q, const("conv1_w", w1s)], "conv1_mm")  # (B, nb, steps, C)
    h1 = node("Gelu", [node("Add", [h1, const("conv1_b", bias1)], "conv1_pre")], "conv1")
    h1 = node("Reshape", [h1, shape("shape_flat_c", [0, nb, 1, steps * c])], "conv1_flat")
    h2 = node("MatMul", [h1, const("conv2_t", t2)], "conv2_mm")
    h2 = node("Gelu", [node("Add", [h2, const("conv2_b", bias2)], "conv2_pre")], "conv2")
    tok = node("MatMul", [h2, const("proj_t", tp)], "proj_mm")
    tok = node("Add", [tok, const("proj_b", biasp)], "proj")
    tok = node("Reshape", [tok, shape("shape_tokens", [0, nb, d])], "tokens")

    def layer_norm(inp: str, ln, name: str) -> str:
        return node(
            "LayerNormalization",
            [inp, const(f"{name}_w", _np(ln.weight)), const(f"{name}_b", _np(ln.bias))],
            name,
            axis=-1,
            epsilon=float(ln.eps),
        )

    n1 = layer_norm(tok, net.norm1, "norm1")
    qkv = node("Add", [node("MatMul", [n1, const("qkv_w", w_all)], "qkv_mm"),
                       const("qkv_b", b_all)], "qkv")  # fmt: skip
    nodes.append(helper.make_node("Split", [qkv, shape("qkv_sizes", [heads * d, d, d])],
                                  ["q", "k", "v"], name="split_qkv", axis=-1))  # fmt: skip
    qh = node("Reshape", ["q", shape("shape_q", [0, nb * heads, d])], "q_heads")  # rows (i, h)
    kt = node("Transpose", ["k"], "k_t", perm=[0, 2, 1])
    att = node("Softmax", [node("MatMul", [qh, kt], "scores")], "attention", axis=-1)
    ctx = node("MatMul", [att, "v"], "context")  # (B, nb*H, D), row (i, h)
    ctx = node("Reshape", [ctx, shape("shape_ctx", [0, nb, heads * d])], "context_heads")
    o = node("MatMul", [ctx, const("out_w", wo_st)], "out_mm")
    tok = node("Sum", [tok, o, const("out_b", bout)], "tokens_att")
    n2 = layer_norm(tok, net.norm2, "norm2")
    f = node("MatMul", [n2, const("ffn1_w", _np(ffn1.weight).T)], "ffn1_mm")
    f = node("Gelu", [node("Add", [f, const("ffn1_b", _np(ffn1.bias))], "ffn1_pre")], "ffn1")
    f = node("MatMul", [f, const("ffn2_w", _np(ffn2.weight).T)], "ffn2_mm")
    tok = node("Sum", [tok, f, const("ffn2_b", _np(ffn2.bias))], "tokens_ffn")
    flat = node("Reshape", [tok, shape("shape_flat", [0, nb * d])], "tokens_flat")
    z = node("Gemm", [flat, const("fuse_w", _np(fuse.weight).T), const("fuse_b", _np(fuse.bias))],
             "fuse_mm")  # fmt: skip
    z = node("Gelu", [z], "z")
    r = node("Gemm", [z, const("head_w", wh.T), const("head_b", bh)], "head")
    if out_scale is not None:
        r = node("Mul", [node("Tanh", [r], "head_tanh"), const("out_scale", out_scale)], "residual")
    if skip_lags == [0]:
        newest = node("Gather", [x, const("newest_row", pos[1], np.int64)], "newest", axis=1)
    else:  # the one-tick segments at the skip lags, side by side
        rows = [pos[v + 1] for v in skip_lags]
        newest = node("Gather", [x, const("skip_rows", rows, np.int64)], "skip_ticks", axis=1)
        newest = node(
            "Reshape", [newest, shape("shape_skip", [0, len(rows) * n_f])], "skip_ticks_flat"
        )
    s = node("Gemm", [newest, const("skip_w", wskip), const("skip_b", bskip)], "skip")
    node("Add", [r, s], "torque")

    graph = helper.make_graph(
        nodes,
        "exoctl_multiscale_stream",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_l, n_f])],
        [helper.make_tensor_value_info("torque", TensorProto.FLOAT, ["batch", n_j])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", STREAM_OPSET)])
    model.ir_version = 9
    return model


def export_stream_onnx(net: MultiScaleNet, path: Path, metadata: dict) -> None:
    """Write the streaming form with the exoctl metadata (its ``input`` entry set to the
    segment-sums contract at the metadata's tick rate)."""
    meta = dict(metadata)
    meta["input"] = Sums(tuple(stream_lags(net)), float(meta["input"]["tick_rate_hz"])).entry()
    save_model(stream_graph(net), Path(path), "exoctl.training", meta)


def restream(model: Path, out: Path | None = None) -> Path:
    """Re-export a network model (its ``.pt`` weights beside it) in the streaming form, with the
    same metadata and weights: no retraining, the same function up to float32 rounding. The
    provenance file beside it keeps its history and says so."""
    import json

    import onnx
    import torch

    from exoctl.estimation.torque_model import METADATA_KEY

    from .pipeline import sidecar, write_provenance

    model = Path(model)
    out = Path(out) if out is not None else model
    doc = torch.load(sidecar(model, "pt"), map_location="cpu", weights_only=False)
    net = MultiScaleNet(doc["n_features"], doc["n_joints"], doc["scales"], **doc["config"])
    net.load_state_dict(doc["state_dict"])
    proto = onnx.load(str(model))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    export_stream_onnx(net.eval(), out, meta)
    prov_path = sidecar(model, "json")
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    for k in ("model", "sha256", "made_at"):
        prov.pop(k, None)
    prov["stream_export"] = (
        f"re-exported in the streaming form from {sidecar(model, 'pt').name} (same weights, no "
        f"retraining): python -m exoctl.training.stream_export {model.name}"
    )
    write_provenance(out, prov)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m exoctl.training.stream_export",
        description="Re-export a network model (with its .pt weights beside it) in the "
        "streaming form, in place or to --out.",
    )
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    print(restream(a.model, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
