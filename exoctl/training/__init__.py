"""Training of the torque model (the ``train`` extra: PyTorch on the CPU).

The controller and the daemon never import this package's PyTorch parts: only
``exoctl.training.commands`` is imported by the CLI, and it imports torch inside the commands.

- ``features``: per-tick features (the module is ``exoctl.offline.features``, a floor below
  this package and the HIL bench, which share it, with ``exoctl.offline.tick_sets`` and
  ``exoctl.offline.predict``).
- ``network``: the multi-scale, self-attention network; gradient reversal; domain classifier.
- ``fit``: training and ONNX export; ``adapt``: adversarial adaptation to a later session.
- ``evaluation``: the lagged-ridge baseline (batch inference: ``exoctl.offline.predict``).
- ``pipeline``: model metadata and provenance (data sets to tick sets: ``exoctl.offline``).
- ``workflow``: fit, export, score and adapt models (shared by the commands and the protocol).
- ``real_protocol``: the evaluation protocol on real recorded data (``exoctl evaluate
  --protocol real``); its later-session cases and guard rates in ``later_session``, its table
  in ``protocol_table``, trial parts in ``trial_slices``.
- ``experiment``: the multi-session drift experiment (synthetic); ``default_model``: the
  shipped network.
- ``plot``: a PNG of estimated against true torque (no matplotlib).
"""
