"""Offline estimation: a data set's trials as the estimator's per-tick features, and a model's
estimate over them (numpy and onnxruntime, no PyTorch).

One floor below both the HIL bench and training, which both use it: training fits and scores
on tick sets; the bench's replay score compares the controller's live estimate with the same
model's estimate over the replayed trial.

- ``features``: per-tick features through the controller's own streaming chain; windows.
- ``tick_sets``: a data set's trials (any EMG rate) as tick sets at the control rate.
- ``predict``: a model's estimate over a tick set through onnxruntime.
"""
