/*
 * Host-compiled check of the C reference codec against the protocol test vectors.
 *
 * Input (file named on the command line, written by tests/firmware_bridge/test_c_codec.py from
 * firmware_bridge/vectors/frames.json): one vector per line, <r> the receiver (d = device,
 * h = host, a = any direction),
 *   F <r> <hex>             a single wire frame (with its 0x00)
 *   S <r> <hex>             a byte stream for the byte-at-a-time receiver
 *   R <i16|u16> <k> <value> SI value -> wire count with k counts per unit (strtod'd value)
 * Output, one line per input line (S: several):
 *   F: "ok <key=value ...> reencode=<1|0>"  or  "err <kind>", kind one of framing crc length
 *      version type direction value; a version error on a HELLO the device must answer adds
 *      " answer_nonce=<n>"
 *   S: "stream good=<n> framing=<n> crc=<n> length=<n> version=<n> type=<n> direction=<n>
 *      value=<n>" followed by one "msg <key=value ...>" line per message, then one
 *      "answer nonce=<n>" line per foreign-version HELLO to answer (device receiver)
 *   R: "count <n>" or "err arg"
 * Keys are the field names of docs/protocol.md, arrays flattened as name.<i> and
 * joints.<i>.<field>. The Python test compares this output with the vectors' decoded fields.
 * Exit status 0 unless the input is unreadable or the CRC check value is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exoctl_proto.h"

static const char *const kind[] = {"ok",   "framing",   "crc",   "length", "version",
                                   "type", "direction", "value", "arg"};

static uint8_t receiver_of(char c)
{
    return c == 'd' ? EXO_RECEIVER_DEVICE : c == 'h' ? EXO_RECEIVER_HOST : EXO_RECEIVER_ANY;
}

static void print_msg(const exo_msg_t *m)
{
    unsigned k;
    printf(" type=%u", (unsigned)m->type);
    switch (m->type) {
    case EXO_T_HELLO:
        printf(" nonce=%lu", (unsigned long)m->u.hello.nonce);
        break;
    case EXO_T_ENABLE:
    case EXO_T_DISABLE:
    case EXO_T_CLEAR_FAULTS:
        printf(" request_id=%u", (unsigned)m->u.request.request_id);
        break;
    case EXO_T_TORQUE_CMD:
        printf(" seq=%lu host_time_us=%lu n_joints=%u", (unsigned long)m->u.torque_cmd.seq,
               (unsigned long)m->u.torque_cmd.host_time_us, (unsigned)m->u.torque_cmd.n_joints);
        for (k = 0; k < m->u.torque_cmd.n_joints; ++k)
            printf(" torque.%u=%d", k, (int)m->u.torque_cmd.torque[k]);
        break;
    case EXO_T_HEARTBEAT:
        printf(" host_time_us=%lu last_seq_sent=%lu", (unsigned long)m->u.heartbeat.host_time_us,
               (unsigned long)m->u.heartbeat.last_seq_sent);
        break;
    case EXO_T_DEVICE_INFO: {
        const exo_device_info_t *d = &m->u.device_info;
        printf(" nonce=%lu command_timeout_ms=%u telemetry_period_us=%u device_id=%s n_joints=%u",
               (unsigned long)d->nonce, (unsigned)d->command_timeout_ms,
               (unsigned)d->telemetry_period_us, d->device_id, (unsigned)d->n_joints);
        for (k = 0; k < d->n_joints; ++k)
            printf(" joints.%u.name=%s joints.%u.torque_limit=%u joints.%u.angle_min=%d"
                   " joints.%u.angle_max=%d",
                   k, d->joints[k].name, k, (unsigned)d->joints[k].torque_limit, k,
                   (int)d->joints[k].angle_min, k, (int)d->joints[k].angle_max);
        break;
    }
    case EXO_T_ACK:
        printf(" request_id=%u request_type=%u result=%u state=%u fault_bits=%u",
               (unsigned)m->u.ack.request_id, (unsigned)m->u.ack.request_type,
               (unsigned)m->u.ack.result, (unsigned)m->u.ack.state, (unsigned)m->u.ack.fault_bits);
        break;
    case EXO_T_TELEMETRY: {
        const exo_telemetry_t *t = &m->u.telemetry;
        printf(" telemetry_seq=%lu fw_time_us=%lu last_seq_applied=%lu flags=%u fault_bits=%u"
               " n_joints=%u",
               (unsigned long)t->telemetry_seq, (unsigned long)t->fw_time_us,
               (unsigned long)t->last_seq_applied, (unsigned)t->flags, (unsigned)t->fault_bits,
               (unsigned)t->n_joints);
        for (k = 0; k < t->n_joints; ++k)
            printf(" joints.%u.angle=%d joints.%u.velocity=%d joints.%u.torque=%d"
                   " joints.%u.current=%d joints.%u.temperature=%d joints.%u.joint_faults=%u",
                   k, (int)t->joints[k].angle, k, (int)t->joints[k].velocity, k,
                   (int)t->joints[k].torque, k, (int)t->joints[k].current, k,
                   (int)t->joints[k].temperature, k, (unsigned)t->joints[k].joint_faults);
        break;
    }
    case EXO_T_FAULT_REPORT:
        printf(" fw_time_us=%lu code=%u latched=%u joint=%u fault_bits=%u",
               (unsigned long)m->u.fault_report.fw_time_us, (unsigned)m->u.fault_report.code,
               (unsigned)m->u.fault_report.latched, (unsigned)m->u.fault_report.joint,
               (unsigned)m->u.fault_report.fault_bits);
        break;
    case EXO_T_ESTOP_STATE:
        printf(" fw_time_us=%lu pressed=%u", (unsigned long)m->u.estop_state.fw_time_us,
               (unsigned)m->u.estop_state.pressed);
        break;
    default:
        break;
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (s[0] && s[1] && n < cap) {
        int hi = hexval(s[0]), lo = hexval(s[1]);
        if (hi < 0 || lo < 0) break;
        out[n++] = (uint8_t)(hi * 16 + lo);
        s += 2;
    }
    return n;
}

int main(int argc, char **argv)
{
    static char line[1 << 16];
    static uint8_t bytes[1 << 15];
    FILE *f;
    if (exo_crc16((const uint8_t *)"123456789", 9, 0xFFFFu) != 0x29B1u) {
        printf("crc_check FAILED\n");
        return 2;
    }
    printf("crc_check 29b1\n");
    if (argc != 2 || !(f = fopen(argv[1], "r"))) {
        fprintf(stderr, "usage: %s VECTORS.txt\n", argv[0]);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        size_t n;
        exo_msg_t msg;
        if (line[0] == 'R') {
            char wtype[4] = {0};
            unsigned long k = 0;
            char num[64] = {0};
            if (sscanf(line + 2, "%3s %lu %63s", wtype, &k, num) != 3) {
                printf("err input\n");
                continue;
            }
            if (strcmp(wtype, "u16") == 0) {
                uint16_t c = 0;
                if (exo_to_u16(strtod(num, NULL), (uint32_t)k, &c) == EXO_OK)
                    printf("count %u\n", (unsigned)c);
                else
                    printf("err arg\n");
            } else {
                int16_t c = 0;
                if (exo_to_i16(strtod(num, NULL), (uint32_t)k, &c) == EXO_OK)
                    printf("count %d\n", (int)c);
                else
                    printf("err arg\n");
            }
            continue;
        }
        if (strlen(line) < 4) continue;
        n = unhex(line + 4, bytes, sizeof bytes);
        if (line[0] == 'F') {
            exo_status_t st;
            if (n == 0 || bytes[n - 1] != 0) {
                printf("err framing\n");
                continue;
            }
            st = exo_decode_frame(bytes, n - 1, receiver_of(line[2]), &msg);
            if (st != EXO_OK) {
                printf("err %s", kind[st]);
                if (receiver_of(line[2]) == EXO_RECEIVER_DEVICE && exo_foreign_hello(st, &msg))
                    printf(" answer_nonce=%lu", (unsigned long)msg.u.hello.nonce);
                printf("\n");
                continue;
            }
            printf("ok");
            print_msg(&msg);
            {
                uint8_t wire[EXO_MAX_WIRE];
                size_t wn = 0;
                int same = exo_encode(&msg, wire, sizeof wire, &wn) == EXO_OK && wn == n &&
                           memcmp(wire, bytes, n) == 0;
                printf(" reencode=%d\n", same);
            }
        } else if (line[0] == 'S') {
            exo_rx_t rx;
            size_t i;
            static exo_msg_t got[256];
            static uint32_t answers[256];
            unsigned ngot = 0, nans = 0, k;
            exo_rx_init(&rx, receiver_of(line[2]));
            for (i = 0; i < n; ++i) {
                int r = exo_rx_byte(&rx, bytes[i], &msg);
                if (r == 1 && ngot < 256) got[ngot++] = msg;
                if (r == 2 && nans < 256) answers[nans++] = msg.u.hello.nonce;
            }
            printf("stream good=%lu framing=%lu crc=%lu length=%lu version=%lu type=%lu"
                   " direction=%lu value=%lu\n",
                   (unsigned long)rx.good, (unsigned long)rx.errors[EXO_ERR_FRAMING],
                   (unsigned long)rx.errors[EXO_ERR_CRC], (unsigned long)rx.errors[EXO_ERR_LENGTH],
                   (unsigned long)rx.errors[EXO_ERR_VERSION], (unsigned long)rx.errors[EXO_ERR_TYPE],
                   (unsigned long)rx.errors[EXO_ERR_DIRECTION],
                   (unsigned long)rx.errors[EXO_ERR_VALUE]);
            for (k = 0; k < ngot; ++k) {
                printf("msg");
                print_msg(&got[k]);
                printf("\n");
            }
            for (k = 0; k < nans; ++k) printf("answer nonce=%lu\n", (unsigned long)answers[k]);
        }
    }
    fclose(f);
    return 0;
}
