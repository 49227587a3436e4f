"""Acquisition: EMG from an LSL inlet or a file, stamped and written into a preallocated ring."""
