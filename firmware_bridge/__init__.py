"""Serial protocol between the exoctl host and the actuator firmware, and an emulated firmware."""
