"""Generate ``frames.json``: protocol test vectors (valid and invalid frames, byte streams).

Run ``.venv/bin/python -m firmware_bridge.vectors.generate`` after a protocol change; the test
suite fails when the committed file differs from what this produces, so the file and the codec
cannot drift apart. The vectors come from one module per section of the file (in the order of
docs/protocol.md section 6): ``valid_frames``, ``invalid_frames`` (built by hand, bytes and not
through the encoder, where the encoder would refuse to produce them), ``streams``,
``fixed_point`` and ``sequences``; ``fields`` maps a message to its JSON fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware_bridge import protocol as P
from firmware_bridge.vectors.fields import to_fields as to_fields
from firmware_bridge.vectors.fixed_point import fixed_point
from firmware_bridge.vectors.invalid_frames import ANSWERS, invalid_frames
from firmware_bridge.vectors.sequences import sequences
from firmware_bridge.vectors.streams import streams
from firmware_bridge.vectors.valid_frames import receiver_of, valid_messages

VECTORS_PATH = Path(__file__).with_name("frames.json")


def build() -> dict:
    frames: list[dict] = []
    for name, m, note in valid_messages():
        frames.append(
            {
                "name": name,
                "hex": P.encode(m).hex(),
                "receiver": receiver_of(m),
                "expect": "ok",
                "type": m.TYPE,
                "fields": to_fields(m),
                "note": note,
            }
        )

    tq = P.encode_body(P.TorqueCommand(42, 1_000_000, (1250, -1250, 0, 3500)))
    for name, hexstr, receiver, expect, note in invalid_frames(tq):
        f: dict[str, Any] = {
            "name": name,
            "hex": hexstr,
            "receiver": receiver,
            "expect": expect,
            "must": f"drop the frame, count it as '{expect}', change no state, send nothing",
            "note": note,
        }
        if expect == "version":
            nonce = ANSWERS.get(name) if receiver == P.DEVICE else None
            f["answer_nonce"] = nonce
            if nonce is not None:
                f["must"] = (
                    "count it as 'version'; answer DEVICE_INFO (own version) with this nonce; "
                    "zero torque, become UNPAIRED, forget last_seq_applied"
                )
        frames.append(f)

    by_name = {f["name"]: bytes.fromhex(f["hex"]) for f in frames}
    return {
        "protocol_version": P.PROTOCOL_VERSION,
        "description": "exoctl serial protocol test vectors; see docs/protocol.md section 6",
        "crc_check": {"input_ascii": "123456789", "crc": f"0x{P.crc16(b'123456789'):04x}"},
        "frames": frames,
        "streams": streams(by_name),
        "fixed_point": fixed_point(),
        "sequences": sequences(),
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    VECTORS_PATH.write_text(render())
    print(f"wrote {VECTORS_PATH}")


if __name__ == "__main__":
    main()
