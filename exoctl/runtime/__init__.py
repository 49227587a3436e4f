"""Runtime: the controller that wires acquisition, estimation, control and the link; deadlines
and the real-time set-up of its threads."""
