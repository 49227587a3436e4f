"""Shared fixture: a short recording of the synthetic patient (exoctl.data.patient)."""

from __future__ import annotations

import pytest

from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config


def make_recording(duration_s: float = 6.0, session: int = 0, muscles=None, joints=None):
    patient = patient_from_config(load_config(None), session, muscles=muscles, joints=joints)
    return patient.generate(duration_s)


@pytest.fixture(scope="session")
def recording():
    return make_recording()


@pytest.fixture(scope="session")
def recording_factory():
    return make_recording
