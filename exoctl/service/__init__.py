"""The daemon side of exoctl: recording, local control API, clinician CLI, systemd glue."""
