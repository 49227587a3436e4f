/* exoctl serial protocol v1: C99 reference codec. See exoctl_proto.h and docs/protocol.md. */
#include "exoctl_proto.h"

#include <string.h>

/* ------------------------------------------------------------------ CRC */
uint16_t exo_crc16(const uint8_t *data, size_t len, uint16_t crc)
{
    /* CRC-16/CCITT-FALSE: poly 0x1021, MSB first, no reflection, no xorout. Four bits at a
     * time from a 16-entry table (32 bytes): on a Cortex-M3 about a quarter of the bitwise
     * loop's instructions, without the 512 bytes of a byte-wide table. */
    static const uint16_t nibble[16] = {0x0000u, 0x1021u, 0x2042u, 0x3063u, 0x4084u, 0x50A5u,
                                        0x60C6u, 0x70E7u, 0x8108u, 0x9129u, 0xA14Au, 0xB16Bu,
                                        0xC18Cu, 0xD1ADu, 0xE1CEu, 0xF1EFu};
    size_t i;
    uint32_t c = crc;
    for (i = 0; i < len; ++i) {
        c = ((c << 4) ^ nibble[((c >> 12) ^ (uint32_t)(data[i] >> 4)) & 0xFu]) & 0xFFFFu;
        c = ((c << 4) ^ nibble[((c >> 12) ^ (uint32_t)(data[i] & 0xFu)) & 0xFu]) & 0xFFFFu;
    }
    return (uint16_t)c;
}

/* ------------------------------------------------------------------ COBS */
size_t exo_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t o = 1, code_pos = 0, i;
    uint8_t code = 1;
    if (out_cap < 1) return 0;
    for (i = 0; i < len; ++i) {
        if (in[i] == 0) {
            out[code_pos] = code;
            code_pos = o++;
            code = 1;
            if (o > out_cap) return 0;
        } else {
            if (o >= out_cap) return 0;
            out[o++] = in[i];
            ++code;
            if (code == 0xFF) {
                out[code_pos] = code;
                if (o >= out_cap) return 0;
                code_pos = o++;
                code = 1;
            }
        }
    }
    out[code_pos] = code;
    return o;
}

size_t exo_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t i = 0, o = 0, k;
    if (len == 0) return 0;
    while (i < len) {
        uint8_t code = in[i];
        if (code == 0 || (size_t)code > len - i) return 0; /* zero byte or past the end */
        for (k = 1; k < code; ++k) {
            if (in[i + k] == 0 || o >= out_cap) return 0;
            out[o++] = in[i + k];
        }
        i += code;
        if (code != 0xFF && i < len) {
            if (o >= out_cap) return 0;
            out[o++] = 0;
        }
    }
    return o;
}

/* ------------------------------------------------------------------ little-endian access */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static int16_t rdi16(const uint8_t *p)
{
    uint16_t u = rd16(p);
    return (u & 0x8000u) ? (int16_t)(-(int32_t)(0x10000u - u)) : (int16_t)u;
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static int name_byte(uint8_t c) { return c >= EXO_NAME_FIRST_BYTE && c <= EXO_NAME_LAST_BYTE; }

/* NUL-padded name field -> C string; 0 if invalid: empty, a byte outside 0x21..0x7E, or a
 * non-NUL byte after the first NUL. */
static int rd_name(const uint8_t *p, size_t n, char *out)
{
    size_t i, end = n;
    for (i = 0; i < n; ++i) {
        if (p[i] == 0) { end = i; break; }
        if (!name_byte(p[i])) return 0;
    }
    if (end == 0) return 0;
    for (i = end; i < n; ++i) if (p[i] != 0) return 0;
    memcpy(out, p, end);
    out[end] = '\0';
    return 1;
}

static int wr_name(uint8_t *p, size_t n, const char *s)
{
    size_t len, i;
    for (len = 0; len <= n && s[len] != '\0'; ++len) {
    }
    if (len == 0 || len > n) return 0;
    for (i = 0; i < len; ++i) if (!name_byte((uint8_t)s[i])) return 0;
    memset(p, 0, n);
    memcpy(p, s, len);
    return 1;
}

/* ------------------------------------------------------------------ decode */
static exo_status_t parse_payload(uint8_t type, const uint8_t *p, size_t n, exo_msg_t *m)
{
    size_t k;
    m->type = type;
    switch (type) {
    case EXO_T_HELLO:
        if (n != 4) return EXO_ERR_LENGTH;
        m->u.hello.nonce = rd32(p);
        return EXO_OK;
    case EXO_T_ENABLE:
    case EXO_T_DISABLE:
    case EXO_T_CLEAR_FAULTS:
        if (n != 2) return EXO_ERR_LENGTH;
        m->u.request.request_id = rd16(p);
        return EXO_OK;
    case EXO_T_TORQUE_CMD: {
        exo_torque_cmd_t *t = &m->u.torque_cmd;
        if (n < 9) return EXO_ERR_LENGTH;
        t->n_joints = p[8];
        if (t->n_joints < 1 || t->n_joints > EXO_MAX_JOINTS || n != 9u + 2u * t->n_joints)
            return EXO_ERR_LENGTH;
        t->seq = rd32(p);
        t->host_time_us = rd32(p + 4);
        for (k = 0; k < t->n_joints; ++k) t->torque[k] = rdi16(p + 9 + 2 * k);
        return t->seq == 0 ? EXO_ERR_VALUE : EXO_OK; /* 0 is reserved: "none applied" */
    }
    case EXO_T_HEARTBEAT:
        if (n != 8) return EXO_ERR_LENGTH;
        m->u.heartbeat.host_time_us = rd32(p);
        m->u.heartbeat.last_seq_sent = rd32(p + 4);
        return EXO_OK;
    case EXO_T_DEVICE_INFO: {
        exo_device_info_t *d = &m->u.device_info;
        if (n < 25) return EXO_ERR_LENGTH;
        d->n_joints = p[24];
        if (d->n_joints < 1 || d->n_joints > EXO_MAX_JOINTS || n != 25u + 14u * d->n_joints)
            return EXO_ERR_LENGTH;
        d->nonce = rd32(p);
        d->command_timeout_ms = rd16(p + 4);
        d->telemetry_period_us = rd16(p + 6);
        if (d->command_timeout_ms == 0 || d->telemetry_period_us == 0) return EXO_ERR_VALUE;
        if (!rd_name(p + 8, EXO_DEVICE_ID_LEN, d->device_id)) return EXO_ERR_VALUE;
        for (k = 0; k < d->n_joints; ++k) {
            const uint8_t *q = p + 25 + 14 * k;
            if (!rd_name(q, EXO_JOINT_NAME_LEN, d->joints[k].name)) return EXO_ERR_VALUE;
            d->joints[k].torque_limit = rd16(q + 8);
            d->joints[k].angle_min = rdi16(q + 10);
            d->joints[k].angle_max = rdi16(q + 12);
        }
        return EXO_OK;
    }
    case EXO_T_ACK:
        if (n != 7) return EXO_ERR_LENGTH;
        m->u.ack.request_id = rd16(p);
        m->u.ack.request_type = p[2];
        m->u.ack.result = p[3];
        m->u.ack.state = p[4];
        m->u.ack.fault_bits = rd16(p + 5);
        if (p[2] < EXO_T_ENABLE || p[2] > EXO_T_CLEAR_FAULTS || p[3] > EXO_ACK_BAD_REQUEST ||
            p[4] > EXO_STATE_ENABLED || (m->u.ack.fault_bits & ~EXO_FAULTS_DEFINED) != 0)
            return EXO_ERR_VALUE;
        return EXO_OK;
    case EXO_T_TELEMETRY: {
        exo_telemetry_t *t = &m->u.telemetry;
        if (n < 16) return EXO_ERR_LENGTH;
        t->n_joints = p[15];
        if (t->n_joints < 1 || t->n_joints > EXO_MAX_JOINTS || n != 16u + 12u * t->n_joints)
            return EXO_ERR_LENGTH;
        t->telemetry_seq = rd32(p);
        t->fw_time_us = rd32(p + 4);
        t->last_seq_applied = rd32(p + 8);
        t->flags = p[12];
        t->fault_bits = rd16(p + 13);
        if ((t->flags & ~EXO_FLAGS_DEFINED) != 0 || (t->fault_bits & ~EXO_FAULTS_DEFINED) != 0)
            return EXO_ERR_VALUE;
        for (k = 0; k < t->n_joints; ++k) {
            const uint8_t *q = p + 16 + 12 * k;
            t->joints[k].angle = rdi16(q);
            t->joints[k].velocity = rdi16(q + 2);
            t->joints[k].torque = rdi16(q + 4);
            t->joints[k].current = rdi16(q + 6);
            t->joints[k].temperature = rdi16(q + 8);
            t->joints[k].joint_faults = rd16(q + 10);
            if ((t->joints[k].joint_faults & ~EXO_JFAULTS_DEFINED) != 0) return EXO_ERR_VALUE;
        }
        return EXO_OK;
    }
    case EXO_T_FAULT_REPORT:
        if (n != 9) return EXO_ERR_LENGTH;
        m->u.fault_report.fw_time_us = rd32(p);
        m->u.fault_report.code = p[4];
        m->u.fault_report.latched = p[5];
        m->u.fault_report.joint = p[6];
        m->u.fault_report.fault_bits = rd16(p + 7);
        if (p[4] >= EXO_N_FAULT_CODES) return EXO_ERR_VALUE;
        /* codes 0..3 are the latched faults: `latched` follows from the code */
        if (p[5] != ((((1u << p[4]) & EXO_LATCHED_FAULTS) != 0) ? 1u : 0u)) return EXO_ERR_VALUE;
        if (p[6] >= EXO_MAX_JOINTS && p[6] != EXO_JOINT_DEVICE) return EXO_ERR_VALUE;
        if ((m->u.fault_report.fault_bits & ~EXO_FAULTS_DEFINED) != 0) return EXO_ERR_VALUE;
        return EXO_OK;
    case EXO_T_ESTOP_STATE:
        if (n != 5) return EXO_ERR_LENGTH;
        m->u.estop_state.fw_time_us = rd32(p);
        m->u.estop_state.pressed = p[4];
        return p[4] > 1u ? EXO_ERR_VALUE : EXO_OK;
    default:
        return EXO_ERR_TYPE;
    }
}

exo_status_t exo_decode_body(const uint8_t *body, size_t len, uint8_t receiver, exo_msg_t *msg)
{
    uint16_t length;
    if (len < EXO_MIN_BODY || len > EXO_MAX_BODY) return EXO_ERR_FRAMING;      /* check 3 */
    if (exo_crc16(body, len - EXO_CRC_SIZE, 0xFFFFu) != rd16(body + len - EXO_CRC_SIZE))
        return EXO_ERR_CRC;                                                    /* check 4 */
    length = rd16(body + 2);
    if ((size_t)length != len - EXO_MIN_BODY) return EXO_ERR_LENGTH;           /* check 5 */
    msg->version = body[0];
    if (body[0] != EXO_PROTO_VERSION) {                                        /* check 6 */
        /* a HELLO of any version starts with nonce:u32; nothing else of a foreign frame
         * is looked at (its layout is unknown) */
        msg->type = body[1];
        if (body[1] == EXO_T_HELLO) {
            if (length >= 4u) msg->u.hello.nonce = rd32(body + EXO_HEADER_SIZE);
            else msg->type = 0; /* too short to answer */
        }
        return EXO_ERR_VERSION;
    }
    switch (body[1]) {                                                         /* check 7 */
    case EXO_T_HELLO: case EXO_T_ENABLE: case EXO_T_DISABLE: case EXO_T_CLEAR_FAULTS:
    case EXO_T_TORQUE_CMD: case EXO_T_HEARTBEAT: case EXO_T_DEVICE_INFO: case EXO_T_ACK:
    case EXO_T_TELEMETRY: case EXO_T_FAULT_REPORT: case EXO_T_ESTOP_STATE:
        break;
    default:
        return EXO_ERR_TYPE;
    }
    if ((receiver == EXO_RECEIVER_DEVICE && body[1] >= 0x80u) ||               /* check 8 */
        (receiver == EXO_RECEIVER_HOST && body[1] < 0x80u))
        return EXO_ERR_DIRECTION;
    return parse_payload(body[1], body + EXO_HEADER_SIZE, length, msg);       /* checks 9-10 */
}

exo_status_t exo_decode_frame(const uint8_t *frame, size_t len, uint8_t receiver,
                              exo_msg_t *msg)
{
    uint8_t body[EXO_MAX_BODY];
    size_t n;
    if (len == 0 || len > EXO_MAX_ENCODED) return EXO_ERR_FRAMING;
    n = exo_cobs_decode(frame, len, body, sizeof body);
    if (n == 0) {
        /* 0 is also the length of a valid but empty decoding ("01"): too short either way */
        return EXO_ERR_FRAMING;
    }
    return exo_decode_body(body, n, receiver, msg);
}

int exo_foreign_hello(exo_status_t st, const exo_msg_t *msg)
{
    return st == EXO_ERR_VERSION && msg->type == EXO_T_HELLO;
}

/* ------------------------------------------------------------------ fixed point */
/* nearest integer, ties to even; x finite with |x| < 2^31 (the callers check) */
static long round_half_even(double x)
{
    long t = (long)x;          /* toward zero */
    double frac = x - (double)t; /* exact: x and t share the exponent range */
    if (frac > 0.5 || (frac == 0.5 && t % 2 != 0)) ++t;
    else if (frac < -0.5 || (frac == -0.5 && t % 2 != 0)) --t;
    return t;
}

exo_status_t exo_to_i16(double value, uint32_t counts_per_unit, int16_t *out)
{
    double x = value * (double)counts_per_unit;
    if (x != x || x - x != 0.0) return EXO_ERR_ARG; /* NaN, or infinite (inf - inf is NaN) */
    if (x >= (double)EXO_I16_SATURATION) *out = EXO_I16_SATURATION;
    else if (x <= -(double)EXO_I16_SATURATION) *out = -EXO_I16_SATURATION;
    else *out = (int16_t)round_half_even(x);
    return EXO_OK;
}

exo_status_t exo_to_u16(double value, uint32_t counts_per_unit, uint16_t *out)
{
    double x = value * (double)counts_per_unit;
    if (x != x || x - x != 0.0) return EXO_ERR_ARG;
    /* -0.5 rounds to 0 (even); 65535.5 rounds to 65536 (even): out of range */
    if (x < -0.5 || x >= 65535.5) return EXO_ERR_ARG;
    *out = (uint16_t)round_half_even(x);
    return EXO_OK;
}

/* ------------------------------------------------------------------ encode */
static size_t build_payload(const exo_msg_t *m, uint8_t *p)
{
    size_t k;
    switch (m->type) {
    case EXO_T_HELLO:
        wr32(p, m->u.hello.nonce);
        return 4;
    case EXO_T_ENABLE:
    case EXO_T_DISABLE:
    case EXO_T_CLEAR_FAULTS:
        wr16(p, m->u.request.request_id);
        return 2;
    case EXO_T_TORQUE_CMD: {
        const exo_torque_cmd_t *t = &m->u.torque_cmd;
        if (t->n_joints < 1 || t->n_joints > EXO_MAX_JOINTS) return 0;
        wr32(p, t->seq);
        wr32(p + 4, t->host_time_us);
        p[8] = t->n_joints;
        for (k = 0; k < t->n_joints; ++k) wr16(p + 9 + 2 * k, (uint16_t)t->torque[k]);
        return 9 + 2 * (size_t)t->n_joints;
    }
    case EXO_T_HEARTBEAT:
        wr32(p, m->u.heartbeat.host_time_us);
        wr32(p + 4, m->u.heartbeat.last_seq_sent);
        return 8;
    case EXO_T_DEVICE_INFO: {
        const exo_device_info_t *d = &m->u.device_info;
        if (d->n_joints < 1 || d->n_joints > EXO_MAX_JOINTS) return 0;
        wr32(p, d->nonce);
        wr16(p + 4, d->command_timeout_ms);
        wr16(p + 6, d->telemetry_period_us);
        if (!wr_name(p + 8, EXO_DEVICE_ID_LEN, d->device_id)) return 0;
        p[24] = d->n_joints;
        for (k = 0; k < d->n_joints; ++k) {
            uint8_t *q = p + 25 + 14 * k;
            if (!wr_name(q, EXO_JOINT_NAME_LEN, d->joints[k].name)) return 0;
            wr16(q + 8, d->joints[k].torque_limit);
            wr16(q + 10, (uint16_t)d->joints[k].angle_min);
            wr16(q + 12, (uint16_t)d->joints[k].angle_max);
        }
        return 25 + 14 * (size_t)d->n_joints;
    }
    case EXO_T_ACK:
        wr16(p, m->u.ack.request_id);
        p[2] = m->u.ack.request_type;
        p[3] = m->u.ack.result;
        p[4] = m->u.ack.state;
        wr16(p + 5, m->u.ack.fault_bits);
        return 7;
    case EXO_T_TELEMETRY: {
        const exo_telemetry_t *t = &m->u.telemetry;
        if (t->n_joints < 1 || t->n_joints > EXO_MAX_JOINTS) return 0;
        wr32(p, t->telemetry_seq);
        wr32(p + 4, t->fw_time_us);
        wr32(p + 8, t->last_seq_applied);
        p[12] = t->flags;
        wr16(p + 13, t->fault_bits);
        p[15] = t->n_joints;
        for (k = 0; k < t->n_joints; ++k) {
            uint8_t *q = p + 16 + 12 * k;
            wr16(q, (uint16_t)t->joints[k].angle);
            wr16(q + 2, (uint16_t)t->joints[k].velocity);
            wr16(q + 4, (uint16_t)t->joints[k].torque);
            wr16(q + 6, (uint16_t)t->joints[k].current);
            wr16(q + 8, (uint16_t)t->joints[k].temperature);
            wr16(q + 10, t->joints[k].joint_faults);
        }
        return 16 + 12 * (size_t)t->n_joints;
    }
    case EXO_T_FAULT_REPORT:
        wr32(p, m->u.fault_report.fw_time_us);
        p[4] = m->u.fault_report.code;
        p[5] = m->u.fault_report.latched;
        p[6] = m->u.fault_report.joint;
        wr16(p + 7, m->u.fault_report.fault_bits);
        return 9;
    case EXO_T_ESTOP_STATE:
        wr32(p, m->u.estop_state.fw_time_us);
        p[4] = m->u.estop_state.pressed;
        return 5;
    default:
        return 0;
    }
}

exo_status_t exo_encode(const exo_msg_t *msg, uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t body[EXO_MAX_BODY];
    size_t plen, n;
    uint16_t crc;
    exo_msg_t check;
    plen = build_payload(msg, body + EXO_HEADER_SIZE);
    if (plen == 0 || plen > EXO_MAX_PAYLOAD) return EXO_ERR_ARG;
    body[0] = EXO_PROTO_VERSION;
    body[1] = msg->type;
    wr16(body + 2, (uint16_t)plen);
    crc = exo_crc16(body, EXO_HEADER_SIZE + plen, 0xFFFFu);
    wr16(body + EXO_HEADER_SIZE + plen, crc);
    /* never send what a receiver must drop: decode the body with the receiver's own checks */
    if (exo_decode_body(body, EXO_HEADER_SIZE + plen + EXO_CRC_SIZE, EXO_RECEIVER_ANY, &check) !=
        EXO_OK)
        return EXO_ERR_ARG;
    if (out_cap < 2) return EXO_ERR_ARG;
    n = exo_cobs_encode(body, EXO_HEADER_SIZE + plen + EXO_CRC_SIZE, out, out_cap - 1);
    if (n == 0) return EXO_ERR_ARG;
    out[n] = 0;
    *out_len = n + 1;
    return EXO_OK;
}

/* ------------------------------------------------------------------ receiver */
void exo_rx_init(exo_rx_t *rx, uint8_t receiver)
{
    memset(rx, 0, sizeof *rx);
    rx->receiver = receiver;
}

int exo_rx_byte(exo_rx_t *rx, uint8_t byte, exo_msg_t *msg)
{
    exo_status_t st;
    if (byte != 0) {
        if (rx->overflow) return 0;
        if (rx->n >= EXO_MAX_ENCODED) { /* too long without a delimiter: drop until 0x00 */
            rx->overflow = 1;
            rx->n = 0;
            return 0;
        }
        rx->buf[rx->n++] = byte;
        return 0;
    }
    if (rx->overflow) {
        rx->overflow = 0;
        rx->n = 0;
        rx->errors[EXO_ERR_FRAMING]++;
        return 0;
    }
    if (rx->n == 0) return 0; /* empty frame: idle fill */
    st = exo_decode_frame(rx->buf, rx->n, rx->receiver, msg);
    rx->n = 0;
    if (st == EXO_OK) {
        rx->good++;
        return 1;
    }
    rx->errors[st]++;
    return (rx->receiver == EXO_RECEIVER_DEVICE && exo_foreign_hello(st, msg)) ? 2 : 0;
}
