"""The device's sequence-number cases of the vectors file (docs/protocol.md section 5.3)."""

from __future__ import annotations


def sequences() -> list[dict]:
    """Device sequence-number behaviour (docs/protocol.md section 5.3), as event lists.

    Events: "hello", "hello_v2" (a HELLO of protocol version 2), "enable", "disable", or a
    TORQUE_CMD's seq (an int). Outcomes: the seqs applied in order, and counts of commands
    ignored as not newer, refused (not enabled), dropped (seq 0, a value error), and the
    commands missing between applied ones (gaps; 0 is never sent, so 0xFFFFFFFF -> 1 is none).
    """
    h = 0x80000000

    def seq(
        name: str,
        events: list,
        applied: list[int],
        note: str,
        *,
        not_newer: int = 0,
        refused: int = 0,
        dropped: int = 0,
        gaps: int = 0,
    ) -> dict:
        return {
            "name": name,
            "events": events,
            "applied": applied,
            "not_newer": not_newer,
            "refused": refused,
            "dropped_seq_0": dropped,
            "seq_gaps": gaps,
            "last_seq_applied": applied[-1] if applied else 0,
            "note": note,
        }

    return [
        seq(
            "first_command_sets_the_reference",
            ["hello", "enable", 0xFFFFFFF0, 0xFFFFFFF1],
            [0xFFFFFFF0, 0xFFFFFFF1],
            "after HELLO any seq but 0 is accepted",
        ),
        seq(
            "seq_0_is_never_applied",
            ["hello", "enable", 0, 0, 5, 0, 6],
            [5, 6],
            "seq 0 is dropped as a value error before the device looks at it",
            dropped=3,
        ),
        seq(
            "seq_0_first_then_older",
            ["hello", "enable", 0, 0, 0xFFFFFFF0, 0xFFFFFFEF],
            [0xFFFFFFF0],
            "a fault once seen: an earlier emulator applied both seq-0 commands and "
            "then 0xFFFFFFF0 (seq 0 had become 'no reference')",
            not_newer=1,
            dropped=2,
        ),
        seq(
            "seq_0_mid_session_changes_nothing",
            ["hello", "enable", 100, 0, 0xFFFFFFF0, 101],
            [100, 101],
            "a seq-0 frame between commands: dropped; 0xFFFFFFF0 is older than 100",
            not_newer=1,
            dropped=1,
        ),
        seq(
            "duplicates_and_reordered",
            ["hello", "enable", 100, 100, 99, 105],
            [100, 105],
            "",
            not_newer=2,
            gaps=4,
        ),
        seq(
            "wrap_skips_zero",
            ["hello", "enable", 0xFFFFFFFE, 0xFFFFFFFF, 1, 2],
            [0xFFFFFFFE, 0xFFFFFFFF, 1, 2],
            "0xFFFFFFFF is followed by 1: no gap",
        ),
        seq(
            "wrap_with_a_gap",
            ["hello", "enable", 0xFFFFFFFE, 2],
            [0xFFFFFFFE, 2],
            "missing: 0xFFFFFFFF and 1 (not 0)",
            gaps=2,
        ),
        seq(
            "half_range_is_not_newer",
            ["hello", "enable", 5, 5 + h, 4 + h],
            [5, 4 + h],
            "(a - b) mod 2^32 = 2^31 is not newer; 2^31 - 1 is",
            not_newer=1,
            gaps=h - 2,
        ),
        seq(
            "hello_resets_the_reference",
            ["hello", "enable", 1000, "hello", "enable", 3],
            [1000, 3],
            "",
        ),
        seq(
            "foreign_hello_resets_the_reference",
            ["hello", "enable", 1000, "hello_v2", "hello", "enable", 3],
            [1000, 3],
            "a HELLO of another version is answered and unpairs the device",
        ),
        seq(
            "disable_and_enable_keep_the_reference",
            ["hello", "enable", 1000, "disable", "enable", 999, 1001],
            [1000, 1001],
            "only HELLO (and a reboot) resets it",
            not_newer=1,
        ),
        seq(
            "refused_commands_set_no_reference",
            ["hello", 50, "enable", 10],
            [10],
            "a command before ENABLE is refused and does not become the reference",
            refused=1,
        ),
    ]
