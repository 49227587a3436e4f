"""The SI value -> wire count cases of the vectors file (docs/protocol.md section 3)."""

from __future__ import annotations

from firmware_bridge import protocol as P


def fixed_point() -> list[dict]:
    """SI value -> count cases: ties to even on the binary64 product, saturation, range."""
    cases = [
        ("torque", "i16", "0.125", "product 12.5, a tie: to even (12)"),
        ("torque", "i16", "0.375", "product 37.5, a tie: to even (38)"),
        ("torque", "i16", "-0.125", "ties are symmetric about zero"),
        ("torque", "i16", "-0.375", ""),
        ("torque", "i16", "0.005", "product 0.5: to even (0)"),
        ("torque", "i16", "0.015", "product 1.5: to even (2)"),
        ("torque", "i16", "12.345", "product 1234.5: 1234 (half away from zero gives 1235)"),
        (
            "torque",
            "i16",
            "-39.955",
            "value * 100 is exactly -3995.5 -> -3996; value / 0.01 would be -3995.4999999999995",
        ),
        (
            "torque",
            "i16",
            "-39.825",
            "value * 100 is -3982.5000000000005 in binary64: not a tie, -3983 (the decimal "
            "tie rule would give -3982)",
        ),
        ("torque", "i16", "327.67", "largest count"),
        ("torque", "i16", "327.675", "product 32767.5: saturated at 32767"),
        ("torque", "i16", "400", "saturated"),
        ("torque", "i16", "-327.68", "saturated at -32767: -32768 is never sent"),
        ("torque", "i16", "-400", "saturated"),
        ("torque", "i16", "nan", "not finite: refused, never encoded"),
        ("torque", "i16", "inf", "not finite: refused"),
        ("torque", "i16", "-inf", "not finite: refused"),
        ("angle", "i16", "0.00005", "product 0.5: 0"),
        ("angle", "i16", "0.00015", "product 1.4999999999999998 in binary64: 1, not a tie"),
        ("angle", "i16", "-0.00025", "product -2.5: -2"),
        ("angle", "i16", "0.00035", "product 3.5: 4"),
        ("velocity", "i16", "0.0015", "product 1.5: 2"),
        ("velocity", "i16", "-0.0025", "product -2.5: -2"),
        ("current", "i16", "0.125", "product 12.5: 12"),
        ("temperature", "i16", "36.25", "product 362.5: 362"),
        ("temperature", "i16", "36.35", "product 363.5: 364"),
        ("temperature", "i16", "-0.05", "product -0.5: 0"),
        ("torque_limit", "u16", "40", ""),
        ("torque_limit", "u16", "655.35", "largest limit: 65535"),
        ("torque_limit", "u16", "655.354", "product 65535.4: 65535"),
        ("torque_limit", "u16", "655.355", "product 65535.5 rounds to 65536: refused"),
        ("torque_limit", "u16", "700", "refused, never saturated"),
        ("torque_limit", "u16", "0", "0 is on the wire (a device may refuse it)"),
        ("torque_limit", "u16", "-0.005", "product -0.5 rounds to 0: accepted"),
        ("torque_limit", "u16", "-0.006", "product -0.6 rounds to -1: refused"),
        ("torque_limit", "u16", "nan", "refused"),
    ]
    per_unit = {
        "torque": P.TORQUE_COUNTS_PER_NM,
        "torque_limit": P.TORQUE_COUNTS_PER_NM,
        "angle": P.ANGLE_COUNTS_PER_RAD,
        "velocity": P.VELOCITY_COUNTS_PER_RAD_S,
        "current": P.CURRENT_COUNTS_PER_A,
        "temperature": P.TEMPERATURE_COUNTS_PER_C,
    }
    out = []
    for quantity, wire, si, note in cases:
        k = per_unit[quantity]
        try:
            if wire == "u16":
                count: int | None = P.to_u16_count(float(si), k, quantity)
            else:
                count = P.to_count(float(si), k)
        except ValueError:
            count = None
        product = float(si) * k
        out.append(
            {
                "quantity": quantity,
                "wire_type": wire,
                "counts_per_unit": k,
                "si": si,
                "product": repr(product),
                "count": count,
                "note": note,
            }
        )
    return out
