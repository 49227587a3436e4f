"""Hardware-in-the-loop simulator: a synthetic patient, EMG over LSL, firmware on a pty."""

MAX_DURATION_S = 3600.0
"""Longest HIL run: the controller keeps every tick of a run in memory (~300 B per tick). Here,
not in the runner, so that the command line can check ``--duration`` without importing it."""
