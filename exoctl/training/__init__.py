"""Training of the torque model (the ``train`` extra: PyTorch on the CPU).

The controller and the daemon never import this package's PyTorch parts: only
``exoctl.training.commands`` is imported by the CLI, and it imports torch inside the commands.

- ``features``: per-tick features through the controller's own streaming chain; windows.
- ``network``: the multi-scale, self-attention network; gradient reversal; domain classifier.
- ``fit``: training, adversarial adaptation, ONNX export.
- ``evaluation``: scores, the lagged-ridge baseline, batch inference through onnxruntime.
- ``pipeline``: datasets to tick sets, model metadata and sidecar files.
- ``experiment``: the multi-session drift experiment; ``default_model``: the shipped network.
- ``plot``: a PNG of estimated against true torque (no matplotlib).
"""
