"""Control: the fixed-rate loop, the assist law, and the safety layer that is last before the wire."""
