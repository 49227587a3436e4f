"""The signal chain: EMG conditioning, activation dynamics, muscle synergies."""
