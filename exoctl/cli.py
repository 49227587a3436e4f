"""Command-line entry point (filled in by the HIL runner commit)."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("exoctl: not built yet")
