"""Hardware-in-the-loop simulator: a synthetic patient, EMG over LSL, firmware on a pty."""
