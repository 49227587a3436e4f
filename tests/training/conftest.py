from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
torch.set_num_threads(1)  # two threads thrash on a loaded 2-core machine (fit.set_threads)
