"""Estimation: the ONNX torque model contract and the per-tick estimator that feeds it."""
