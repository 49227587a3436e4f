"""The valid messages of the vectors file: every type, limits and edge values.

Each is built through the codec (it must accept it); its wire bytes, the receiver it is meant
for and its fields go into ``frames`` with ``expect: ok``.
"""

from __future__ import annotations

from firmware_bridge import protocol as P


def valid_messages() -> list[tuple[str, P.Message, str]]:
    hip_knee = (
        P.JointInfo("hip_l", 4000, -5000, 18000),
        P.JointInfo("hip_r", 4000, -5000, 18000),
        P.JointInfo("knee_l", 3500, -500, 20000),
        P.JointInfo("knee_r", 3500, -500, 20000),
    )
    return [
        ("hello", P.Hello(0x12345678), "start a session"),
        ("hello_zero_nonce", P.Hello(0), "nonce 0: the body is mostly zeros (COBS)"),
        ("enable", P.Enable(1), ""),
        ("disable", P.Disable(0xBEEF), ""),
        ("clear_faults", P.ClearFaults(7), ""),
        (
            "torque_4_joints",
            P.TorqueCommand(42, 1_000_000, (1250, -1250, 0, 3500)),
            "12.5, -12.5, 0, 35 N m",
        ),
        (
            "torque_zero",
            P.TorqueCommand(1, 0, (0, 0, 0, 0)),
            "all-zero torque: many COBS zero runs",
        ),
        (
            "torque_extremes",
            P.TorqueCommand(0xFFFFFFFF, 0xFFFFFFFF, (32767, -32768, -1, 1)),
            "largest seq and time, int16 extremes",
        ),
        ("torque_1_joint", P.TorqueCommand(2, 5, (-100,)), "single joint"),
        ("torque_seq_1", P.TorqueCommand(1, 0, (0,)), "seq 1: the smallest a host sends"),
        (
            "torque_8_joints",
            P.TorqueCommand(3, 6, (1, -2, 3, -4, 5, -6, 7, -8)),
            "MAX_JOINTS",
        ),
        ("heartbeat", P.Heartbeat(123456, 41), ""),
        (
            "device_info_4_joints",
            P.DeviceInfo(0x12345678, 100, 2000, "exo-emulator", hip_knee),
            "the default bilateral hip/knee exoskeleton",
        ),
        (
            "device_info_full_id",
            P.DeviceInfo(1, 65535, 65535, "ABCDEFGHIJKLMNOP", (P.JointInfo("abcdefgh", 1, -1, 1),)),
            "16-byte id and 8-byte name: no NUL terminator",
        ),
        (
            "device_info_name_bytes_at_the_bounds",
            P.DeviceInfo(2, 1, 1, "!~", (P.JointInfo("~", 65535, -32768, 32767),)),
            "names use 0x21 '!' .. 0x7e '~'; torque_limit 65535 = 655.35 N m (u16)",
        ),
        ("ack_enable_ok", P.Ack(1, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0), ""),
        (
            "ack_bad_request_unpaired",
            P.Ack(3, P.T_CLEAR_FAULTS, P.ACK_BAD_REQUEST, P.STATE_UNPAIRED, 0x00FF),
            "the largest value of request_type, result, fault_bits; state 0",
        ),
        (
            "ack_enable_refused",
            P.Ack(2, P.T_ENABLE, P.ACK_FAULT_LATCHED, P.STATE_DISABLED, P.FAULT_HOST_TIMEOUT),
            "refused: host timeout latched",
        ),
        (
            "telemetry_4_joints",
            P.Telemetry(
                1000,
                2_000_000,
                42,
                P.FLAG_ENABLED | P.FLAG_HANDSHAKEN,
                P.FAULT_TORQUE_CLAMPED,
                (3333, -1000, 12000, 500),
                (100, -2500, 0, 32767),
                (1250, -1250, 0, 3500),
                (28, -28, 0, 78),
                (305, 310, 402, -100),
                (0, 0, 0, P.JFAULT_TORQUE_CLAMPED),
            ),
            "",
        ),
        (
            "telemetry_estop",
            P.Telemetry(
                7,
                0,
                0,
                P.FLAG_ESTOP | P.FLAG_HANDSHAKEN,
                P.FAULT_ESTOP,
                (0,),
                (0,),
                (0,),
                (0,),
                (250,),
                (0,),
            ),
            "",
        ),
        (
            "telemetry_all_defined_bits",
            P.Telemetry(
                1, 2, 3, P.FLAGS_DEFINED, P.FAULTS_DEFINED, (0,), (0,), (0,), (0,), (0,), (0x0F,)
            ),
            "every defined flag, fault and joint-fault bit set",
        ),
        (
            "fault_report_host_timeout",
            P.FaultReport(5_000_000, 0, 1, P.JOINT_DEVICE, P.FAULT_HOST_TIMEOUT),
            "",
        ),
        (
            "fault_report_latched_code_3",
            P.FaultReport(6, 3, 1, 0, P.FAULT_OVERCURRENT),
            "code 3 (OVERCURRENT) is the last latched one: latched 1, joint 0",
        ),
        (
            "fault_report_status_code_7",
            P.FaultReport(7, 7, 0, 7, P.FAULT_BAD_COMMAND),
            "code 7 (BAD_COMMAND) is a status fault: latched 0; joint 7",
        ),
        ("estop_pressed", P.EstopState(99, 1), ""),
        ("estop_released", P.EstopState(100, 0), ""),
    ]


def receiver_of(m: P.Message) -> str:
    return P.meant_for(m.TYPE)
