"""Shared fixture: a short recording of the synthetic patient (the lead's exoctl.data.patient)."""

from __future__ import annotations

import pytest

from exoctl.config.schema import load_config
from exoctl.data.patient import SyntheticPatient


def make_recording(duration_s: float = 6.0, session: int = 0, muscles=None, joints=None):
    cfg = load_config(None)
    s = cfg.simulator
    patient = SyntheticPatient(
        muscles or cfg.emg.muscles,
        joints or cfg.joint_names,
        cfg.emg.sampling_rate_hz,
        seed=s.seed,
        session=session,
        stride_s=s.stride_s,
        body_mass_kg=s.body_mass_kg,
        emg_noise_uv=s.emg_noise_uv,
        electromechanical_delay_s=s.electromechanical_delay_s,
    )
    return patient.generate(duration_s)


@pytest.fixture(scope="session")
def recording():
    return make_recording()


@pytest.fixture(scope="session")
def recording_factory():
    return make_recording
