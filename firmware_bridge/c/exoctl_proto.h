/*
 * exoctl serial protocol, version 1: C99 reference codec for the firmware side.
 *
 * Normative description: docs/protocol.md. No allocation, no global state, no libc beyond
 * <stdint.h>/<stddef.h>/<string.h>. All multi-byte fields are little-endian on the wire and
 * are assembled byte by byte, so the code is independent of the CPU's byte order and alignment.
 *
 * Typical firmware use:
 *   exo_rx_t rx; exo_rx_init(&rx, EXO_RECEIVER_DEVICE);
 *   on each received byte b:
 *     switch (exo_rx_byte(&rx, b, &msg)) {
 *     case 1: handle(&msg); break;                            a valid message for the device
 *     case 2: answer_foreign_hello(msg.u.hello.nonce); break; HELLO of another version (5.1)
 *     }
 *   to send:  exo_encode(&msg, buf, sizeof buf, &n); uart_write(buf, n);
 *   SI -> wire: exo_to_i16(angle_rad, EXO_ANGLE_COUNTS_PER_RAD, &count) (ties to even, +-32767)
 */
#ifndef EXOCTL_PROTO_H
#define EXOCTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EXO_PROTO_VERSION 1u
#define EXO_MAX_JOINTS 8u
#define EXO_HEADER_SIZE 4u
#define EXO_CRC_SIZE 2u
#define EXO_MAX_PAYLOAD 240u
#define EXO_MIN_BODY (EXO_HEADER_SIZE + EXO_CRC_SIZE)                    /* 6 */
#define EXO_MAX_BODY (EXO_HEADER_SIZE + EXO_MAX_PAYLOAD + EXO_CRC_SIZE)  /* 246 */
#define EXO_MAX_ENCODED (EXO_MAX_BODY + 1u)                              /* 247 */
#define EXO_MAX_WIRE (EXO_MAX_ENCODED + 1u)                              /* with 0x00 */
#define EXO_DEVICE_ID_LEN 16u
#define EXO_JOINT_NAME_LEN 8u
/* name bytes: 1..N visible ASCII characters (no space, no control character), then NULs */
#define EXO_NAME_FIRST_BYTE 0x21u
#define EXO_NAME_LAST_BYTE 0x7Eu

/* fixed point: count = round_half_even(value * COUNTS_PER_UNIT) in binary64 (section 3) */
#define EXO_TORQUE_COUNTS_PER_NM 100u
#define EXO_ANGLE_COUNTS_PER_RAD 10000u
#define EXO_VELOCITY_COUNTS_PER_RAD_S 1000u
#define EXO_CURRENT_COUNTS_PER_A 100u
#define EXO_TEMPERATURE_COUNTS_PER_C 10u
#define EXO_I16_SATURATION 32767

/* which end a receiver runs at (check 8 of docs/protocol.md section 2) */
#define EXO_RECEIVER_ANY 0u    /* a line sniffer or a test: both directions */
#define EXO_RECEIVER_DEVICE 1u /* accepts types below 0x80 */
#define EXO_RECEIVER_HOST 2u   /* accepts types from 0x80 */

/* message types */
#define EXO_T_HELLO 0x01u
#define EXO_T_ENABLE 0x02u
#define EXO_T_DISABLE 0x03u
#define EXO_T_CLEAR_FAULTS 0x04u
#define EXO_T_TORQUE_CMD 0x05u
#define EXO_T_HEARTBEAT 0x06u
#define EXO_T_DEVICE_INFO 0x81u
#define EXO_T_ACK 0x82u
#define EXO_T_TELEMETRY 0x83u
#define EXO_T_FAULT_REPORT 0x84u
#define EXO_T_ESTOP_STATE 0x85u

/* device state, ack results, telemetry flags */
#define EXO_STATE_UNPAIRED 0u
#define EXO_STATE_DISABLED 1u
#define EXO_STATE_ENABLED 2u
#define EXO_ACK_OK 0u
#define EXO_ACK_NOT_HANDSHAKEN 1u
#define EXO_ACK_FAULT_LATCHED 2u
#define EXO_ACK_ESTOP_ACTIVE 3u
#define EXO_ACK_BAD_REQUEST 4u
#define EXO_FLAG_ENABLED 0x01u
#define EXO_FLAG_ESTOP 0x02u
#define EXO_FLAG_HANDSHAKEN 0x04u

/* device fault bits (latched: HOST_TIMEOUT, ESTOP, OVER_TEMPERATURE, OVERCURRENT) */
#define EXO_FAULT_HOST_TIMEOUT 0x0001u
#define EXO_FAULT_ESTOP 0x0002u
#define EXO_FAULT_OVER_TEMPERATURE 0x0004u
#define EXO_FAULT_OVERCURRENT 0x0008u
#define EXO_FAULT_COMMAND_STALE 0x0010u
#define EXO_FAULT_TORQUE_CLAMPED 0x0020u
#define EXO_FAULT_ANGLE_LIMIT 0x0040u
#define EXO_FAULT_BAD_COMMAND 0x0080u
#define EXO_LATCHED_FAULTS 0x000Fu
#define EXO_JFAULT_TORQUE_CLAMPED 0x0001u
#define EXO_JFAULT_ANGLE_LIMIT 0x0002u
#define EXO_JFAULT_OVER_TEMPERATURE 0x0004u
#define EXO_JFAULT_OVERCURRENT 0x0008u
#define EXO_JOINT_DEVICE 0xFFu
/* defined bits; a frame setting any other bit is dropped (counter "value") */
#define EXO_FLAGS_DEFINED 0x07u
#define EXO_FAULTS_DEFINED 0x00FFu
#define EXO_JFAULTS_DEFINED 0x000Fu
#define EXO_N_FAULT_CODES 8u

/* Result of decoding; the error values are the receiver counters of docs/protocol.md. */
typedef enum {
    EXO_OK = 0,
    EXO_ERR_FRAMING = 1,
    EXO_ERR_CRC = 2,
    EXO_ERR_LENGTH = 3,
    EXO_ERR_VERSION = 4,
    EXO_ERR_TYPE = 5,
    EXO_ERR_DIRECTION = 6, /* a known type meant for the other end */
    EXO_ERR_VALUE = 7,     /* a field outside its allowed values (section 4, "Field values") */
    EXO_ERR_ARG = 8        /* encoder: bad field or output buffer too small */
} exo_status_t;
#define EXO_N_COUNTERS 8u /* exo_rx_t.errors[EXO_ERR_FRAMING .. EXO_ERR_VALUE] */

typedef struct { uint32_t nonce; } exo_hello_t;
typedef struct { uint16_t request_id; } exo_request_t; /* ENABLE, DISABLE, CLEAR_FAULTS */
typedef struct {
    uint32_t seq;
    uint32_t host_time_us;
    uint8_t n_joints;
    int16_t torque[EXO_MAX_JOINTS]; /* 0.01 N m */
} exo_torque_cmd_t;
typedef struct { uint32_t host_time_us; uint32_t last_seq_sent; } exo_heartbeat_t;
typedef struct {
    char name[EXO_JOINT_NAME_LEN + 1]; /* NUL-terminated here, NUL-padded on the wire */
    uint16_t torque_limit;             /* 0.01 N m */
    int16_t angle_min;                 /* 1e-4 rad */
    int16_t angle_max;                 /* 1e-4 rad */
} exo_joint_info_t;
typedef struct {
    uint32_t nonce;
    uint16_t command_timeout_ms;
    uint16_t telemetry_period_us;
    char device_id[EXO_DEVICE_ID_LEN + 1];
    uint8_t n_joints;
    exo_joint_info_t joints[EXO_MAX_JOINTS];
} exo_device_info_t;
typedef struct {
    uint16_t request_id;
    uint8_t request_type;
    uint8_t result;
    uint8_t state;
    uint16_t fault_bits;
} exo_ack_t;
typedef struct {
    int16_t angle;        /* 1e-4 rad */
    int16_t velocity;     /* 1e-3 rad/s */
    int16_t torque;       /* 0.01 N m, applied */
    int16_t current;      /* 0.01 A */
    int16_t temperature;  /* 0.1 degC */
    uint16_t joint_faults;
} exo_joint_telemetry_t;
typedef struct {
    uint32_t telemetry_seq;
    uint32_t fw_time_us;
    uint32_t last_seq_applied;
    uint8_t flags;
    uint16_t fault_bits;
    uint8_t n_joints;
    exo_joint_telemetry_t joints[EXO_MAX_JOINTS];
} exo_telemetry_t;
typedef struct {
    uint32_t fw_time_us;
    uint8_t code;
    uint8_t latched;
    uint8_t joint;
    uint16_t fault_bits;
} exo_fault_report_t;
typedef struct { uint32_t fw_time_us; uint8_t pressed; } exo_estop_state_t;

typedef struct {
    uint8_t type;    /* EXO_T_* */
    uint8_t version; /* header version; on EXO_ERR_VERSION the frame's (foreign) version */
    union {
        exo_hello_t hello;
        exo_request_t request;
        exo_torque_cmd_t torque_cmd;
        exo_heartbeat_t heartbeat;
        exo_device_info_t device_info;
        exo_ack_t ack;
        exo_telemetry_t telemetry;
        exo_fault_report_t fault_report;
        exo_estop_state_t estop_state;
    } u;
} exo_msg_t;

/* CRC-16/CCITT-FALSE, continue from `crc` (start with 0xFFFF). crc("123456789") == 0x29B1. */
uint16_t exo_crc16(const uint8_t *data, size_t len, uint16_t crc);

/* COBS; return the output length, 0 on error (output too small / malformed input). */
size_t exo_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);
size_t exo_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/*
 * Check and parse a decoded body (header + payload + crc), checks in the order of
 * docs/protocol.md section 2; `receiver` is EXO_RECEIVER_DEVICE, _HOST or _ANY.
 * On EXO_ERR_VERSION, msg->version and msg->type hold the frame's; msg->type is EXO_T_HELLO
 * (with msg->u.hello.nonce) only for a HELLO a device must answer: see exo_foreign_hello().
 */
exo_status_t exo_decode_body(const uint8_t *body, size_t len, uint8_t receiver, exo_msg_t *msg);
/* Decode one frame as received between delimiters (COBS bytes, without the 0x00). */
exo_status_t exo_decode_frame(const uint8_t *frame, size_t len, uint8_t receiver,
                              exo_msg_t *msg);
/* 1 if a decode that returned `st` saw a HELLO of another protocol version carrying a nonce:
 * a device answers it with DEVICE_INFO (its own version, that nonce) and stays UNPAIRED. */
int exo_foreign_hello(exo_status_t st, const exo_msg_t *msg);
/* Encode a complete wire frame (COBS + 0x00) into out; *out_len receives its length.
 * EXO_ERR_ARG for a message a receiver would drop (e.g. seq 0, a bad name, a reserved bit). */
exo_status_t exo_encode(const exo_msg_t *msg, uint8_t *out, size_t out_cap, size_t *out_len);

/*
 * SI value -> wire count (docs/protocol.md section 3): value * counts_per_unit in binary64,
 * rounded to nearest with ties to even. exo_to_i16 saturates at +-32767; exo_to_u16 (the
 * torque limit) refuses a result outside 0..65535. Both refuse NaN and infinities
 * (EXO_ERR_ARG, *out unchanged).
 */
exo_status_t exo_to_i16(double value, uint32_t counts_per_unit, int16_t *out);
exo_status_t exo_to_u16(double value, uint32_t counts_per_unit, uint16_t *out);

/* Byte-at-a-time receiver with resynchronisation and the counters of docs/protocol.md. */
typedef struct {
    uint8_t buf[EXO_MAX_ENCODED];
    size_t n;
    uint8_t overflow; /* a 248th byte came without 0x00: dropping until the next 0x00 */
    uint8_t receiver; /* EXO_RECEIVER_* */
    uint32_t good;
    uint32_t errors[EXO_N_COUNTERS]; /* indexed by exo_status_t, [EXO_ERR_FRAMING] .. */
} exo_rx_t;

void exo_rx_init(exo_rx_t *rx, uint8_t receiver);
/* Feed one byte. Returns 1 when *msg holds a new valid message; 2 (device receivers only)
 * when *msg holds a HELLO of another version to answer (counted as a version error: see
 * exo_foreign_hello); else 0. An over-long run is counted once, at the 0x00 that ends it. */
int exo_rx_byte(exo_rx_t *rx, uint8_t byte, exo_msg_t *msg);

#ifdef __cplusplus
}
#endif
#endif /* EXOCTL_PROTO_H */
