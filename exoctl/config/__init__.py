"""Configuration: the typed, validated schema and the one YAML reader every file goes through."""
