/* Device state machine of docs/protocol.md section 5: see device.h. */
#include "device.h"

#include <string.h>

#include "board.h"
#include "exofw_config.h"
#include "joint.h"

#define N EXOFW_N_JOINTS
#define TORQUE_SCALE 0.01f
#define ANGLE_SCALE 0.0001f

typedef struct {
    const char *name;
    uint16_t torque_limit;
    int16_t angle_min;
    int16_t angle_max;
} joint_config_t;

static const joint_config_t JOINTS[N] = {EXOFW_JOINTS};

/* all device state; no heap, nothing else keeps state */
static struct {
    int handshaken, enabled, estop;
    uint16_t latched, status;
    uint16_t joint_faults[N];
    int16_t cmd_counts[N]; /* applied, after clamping and zeroing */
    joint_state_t joints[N];
    uint32_t last_applied;
    uint32_t last_rx_ms, last_cmd_ms, last_tel_us;
    uint32_t tel_seq;
    dev_counters_t c;
    dev_applied_t applied[DEV_APPLIED_LOG];
    uint32_t applied_n;
} d;

static exo_msg_t out; /* the message being sent: static, so the stack stays small */
static uint8_t wire[EXO_MAX_WIRE];

static void send(void)
{
    size_t n;
    if (exo_encode(&out, wire, sizeof wire, &n) != EXO_OK || !board_wire_write(wire, n))
        d.c.tx_frames_dropped++;
}

static uint16_t bits(void) { return (uint16_t)(d.latched | d.status); }

static uint8_t state(void)
{
    if (d.enabled) return EXO_STATE_ENABLED;
    return d.handshaken ? EXO_STATE_DISABLED : EXO_STATE_UNPAIRED;
}

static void zero_and_disable(void)
{
    d.enabled = 0;
    memset(d.cmd_counts, 0, sizeof d.cmd_counts);
}

static uint8_t bit_index(uint16_t bit)
{
    uint8_t i = 0;
    while (bit > 1u) {
        bit >>= 1;
        ++i;
    }
    return i;
}

static void raise_fault(uint16_t bit, int latched, uint8_t joint)
{
    if (latched) d.latched |= bit;
    else d.status |= bit;
    out.type = EXO_T_FAULT_REPORT;
    out.u.fault_report.fw_time_us = board_us();
    out.u.fault_report.code = bit_index(bit);
    out.u.fault_report.latched = latched ? 1u : 0u;
    out.u.fault_report.joint = joint;
    out.u.fault_report.fault_bits = bits();
    send();
}

static void send_telemetry(void)
{
    uint32_t k;
    exo_telemetry_t *t = &out.u.telemetry;
    d.last_tel_us = board_us();
    d.tel_seq++;
    out.type = EXO_T_TELEMETRY;
    t->telemetry_seq = d.tel_seq;
    t->fw_time_us = d.last_tel_us;
    t->last_seq_applied = d.last_applied;
    t->flags = (uint8_t)((d.enabled ? EXO_FLAG_ENABLED : 0u) | (d.estop ? EXO_FLAG_ESTOP : 0u) |
                         (d.handshaken ? EXO_FLAG_HANDSHAKEN : 0u));
    t->fault_bits = bits();
    t->n_joints = (uint8_t)N;
    for (k = 0; k < N; ++k) {
        exo_joint_telemetry_t *j = &t->joints[k];
        float torque = (float)d.cmd_counts[k] * TORQUE_SCALE;
        /* SI -> counts as every sender must (section 3); a refusal (NaN) sends 0 */
        j->angle = j->velocity = j->current = j->temperature = 0;
        (void)exo_to_i16((double)d.joints[k].theta, EXO_ANGLE_COUNTS_PER_RAD, &j->angle);
        (void)exo_to_i16((double)d.joints[k].omega, EXO_VELOCITY_COUNTS_PER_RAD_S, &j->velocity);
        (void)exo_to_i16((double)joint_current(torque), EXO_CURRENT_COUNTS_PER_A, &j->current);
        (void)exo_to_i16((double)d.joints[k].temp_c, EXO_TEMPERATURE_COUNTS_PER_C,
                         &j->temperature);
        j->torque = d.cmd_counts[k];
        j->joint_faults = d.joint_faults[k];
    }
    send();
}

static void send_device_info(uint32_t nonce)
{
    uint32_t k;
    exo_device_info_t *i = &out.u.device_info;
    out.type = EXO_T_DEVICE_INFO;
    i->nonce = nonce;
    i->command_timeout_ms = EXOFW_COMMAND_TIMEOUT_MS;
    i->telemetry_period_us = EXOFW_TELEMETRY_PERIOD_US;
    memset(i->device_id, 0, sizeof i->device_id);
    strncpy(i->device_id, EXOFW_DEVICE_ID, EXO_DEVICE_ID_LEN);
    i->n_joints = (uint8_t)N;
    for (k = 0; k < N; ++k) {
        memset(i->joints[k].name, 0, sizeof i->joints[k].name);
        strncpy(i->joints[k].name, JOINTS[k].name, EXO_JOINT_NAME_LEN);
        i->joints[k].torque_limit = JOINTS[k].torque_limit;
        i->joints[k].angle_min = JOINTS[k].angle_min;
        i->joints[k].angle_max = JOINTS[k].angle_max;
    }
    send();
}

static void ack(const exo_msg_t *m, uint8_t result)
{
    uint16_t rid = m->u.request.request_id;
    uint8_t type = m->type;
    out.type = EXO_T_ACK;
    out.u.ack.request_id = rid;
    out.u.ack.request_type = type;
    out.u.ack.result = result;
    out.u.ack.state = state();
    out.u.ack.fault_bits = bits();
    send();
}

static int serial_newer(uint32_t a, uint32_t b)
{
    uint32_t diff = a - b;
    return diff != 0u && diff < 0x80000000u;
}

static void on_torque(const exo_torque_cmd_t *t)
{
    uint32_t k, over_any = 0;
    uint32_t now = board_ms();
    d.c.commands_received++;
    if (t->n_joints == N) {
        for (k = 0; k < N; ++k) {
            int32_t c = t->torque[k];
            if (c > (int32_t)JOINTS[k].torque_limit || -c > (int32_t)JOINTS[k].torque_limit)
                over_any = 1;
        }
        if (over_any) d.c.limit_violations++; /* counted on receipt, applied or not */
    }
    if (!d.enabled) {
        d.c.commands_refused++;
        return;
    }
    if (t->n_joints != N) {
        d.c.commands_refused++;
        if (!(d.status & EXO_FAULT_BAD_COMMAND)) raise_fault(EXO_FAULT_BAD_COMMAND, 0, EXO_JOINT_DEVICE);
        return;
    }
    if (d.last_applied != 0u && !serial_newer(t->seq, d.last_applied)) {
        d.c.commands_out_of_order++; /* duplicate or reordered: never apply an old command */
        return;
    }
    if (d.last_applied != 0u) {
        uint32_t gap = t->seq - d.last_applied - 1u;
        d.c.seq_gaps += (t->seq < d.last_applied) ? gap - 1u : gap; /* 0 is never sent */
    }
    for (k = 0; k < N; ++k) {
        int32_t c = t->torque[k], lim = (int32_t)JOINTS[k].torque_limit;
        d.joint_faults[k] &= (uint16_t)~EXO_JFAULT_TORQUE_CLAMPED;
        if (c > lim || c < -lim) {
            c = c > lim ? lim : -lim;
            d.joint_faults[k] |= EXO_JFAULT_TORQUE_CLAMPED;
        }
        d.cmd_counts[k] = (int16_t)c;
    }
    if (over_any) d.status |= EXO_FAULT_TORQUE_CLAMPED;
    else d.status &= (uint16_t)~EXO_FAULT_TORQUE_CLAMPED;
    d.last_applied = t->seq;
    d.last_cmd_ms = now;
    d.status &= (uint16_t)~EXO_FAULT_COMMAND_STALE;
    d.c.commands_applied++;
    d.applied[d.applied_n % DEV_APPLIED_LOG].seq = t->seq;
    d.applied[d.applied_n % DEV_APPLIED_LOG].torque0 = d.cmd_counts[0];
    d.applied_n++;
    send_telemetry(); /* the echo the host times its round trip by */
}

void dev_init(void)
{
    uint32_t k;
    memset(&d, 0, sizeof d);
    for (k = 0; k < N; ++k)
        joint_init(&d.joints[k], (float)JOINTS[k].angle_min * ANGLE_SCALE,
                   (float)JOINTS[k].angle_max * ANGLE_SCALE);
}

void dev_handle(const exo_msg_t *m)
{
    uint32_t now = board_ms();
    if (m->type == EXO_T_HELLO) {
        d.last_rx_ms = now;
        zero_and_disable();
        d.handshaken = 1;
        d.last_applied = 0;
        d.status &= (uint16_t)~(EXO_FAULT_COMMAND_STALE | EXO_FAULT_BAD_COMMAND);
        send_device_info(m->u.hello.nonce);
        return;
    }
    if (!d.handshaken) { /* nothing else counts as host activity before HELLO */
        if (m->type == EXO_T_TORQUE_CMD) {
            on_torque(&m->u.torque_cmd); /* not enabled: refused and counted */
        } else if (m->type == EXO_T_ENABLE || m->type == EXO_T_CLEAR_FAULTS) {
            ack(m, EXO_ACK_NOT_HANDSHAKEN);
        } else if (m->type == EXO_T_DISABLE) {
            zero_and_disable();
            ack(m, EXO_ACK_OK);
        }
        return;
    }
    d.last_rx_ms = now; /* the host-silence watchdog: only frames that passed every check */
    switch (m->type) {
    case EXO_T_TORQUE_CMD:
        on_torque(&m->u.torque_cmd);
        break;
    case EXO_T_ENABLE:
        if (d.estop) {
            ack(m, EXO_ACK_ESTOP_ACTIVE);
        } else if (d.latched) {
            ack(m, EXO_ACK_FAULT_LATCHED);
        } else {
            d.enabled = 1;
            d.last_cmd_ms = now; /* the stale-command clock starts at enable */
            memset(d.cmd_counts, 0, sizeof d.cmd_counts);
            ack(m, EXO_ACK_OK);
        }
        break;
    case EXO_T_DISABLE:
        zero_and_disable();
        ack(m, EXO_ACK_OK);
        break;
    case EXO_T_CLEAR_FAULTS:
        if (d.estop) {
            d.latched &= (uint16_t)~(EXO_LATCHED_FAULTS & ~EXO_FAULT_ESTOP);
            ack(m, EXO_ACK_ESTOP_ACTIVE);
        } else {
            d.latched = 0;
            d.status &= (uint16_t)~EXO_FAULT_BAD_COMMAND;
            ack(m, EXO_ACK_OK);
        }
        break;
    default: /* HEARTBEAT: the watchdog reset above is all it does */
        break;
    }
}

void dev_foreign_hello(uint32_t nonce)
{
    zero_and_disable();
    d.handshaken = 0;
    d.last_applied = 0;
    d.status &= (uint16_t)~(EXO_FAULT_COMMAND_STALE | EXO_FAULT_BAD_COMMAND);
    send_device_info(nonce);
}

static void watchdogs(void)
{
    uint32_t k, any_out = 0, now = board_ms();
    if (d.handshaken && now - d.last_rx_ms > EXOFW_COMMAND_TIMEOUT_MS) {
        /* host silent: remove torque, latch, require a new handshake */
        d.c.timeouts++;
        zero_and_disable();
        d.handshaken = 0;
        raise_fault(EXO_FAULT_HOST_TIMEOUT, 1, EXO_JOINT_DEVICE);
    } else if (d.enabled && now - d.last_cmd_ms > EXOFW_COMMAND_TIMEOUT_MS &&
               !(d.status & EXO_FAULT_COMMAND_STALE)) {
        /* heartbeats but no torque command: the host's loop stalled; hold zero torque */
        memset(d.cmd_counts, 0, sizeof d.cmd_counts);
        raise_fault(EXO_FAULT_COMMAND_STALE, 0, EXO_JOINT_DEVICE);
    }
    /* angle limits: never push a joint further out of its range of motion */
    for (k = 0; k < N; ++k) {
        float th = d.joints[k].theta;
        float lo = (float)JOINTS[k].angle_min * ANGLE_SCALE;
        float hi = (float)JOINTS[k].angle_max * ANGLE_SCALE;
        int out_hi = th > hi, out_lo = th < lo;
        if ((out_hi && d.cmd_counts[k] > 0) || (out_lo && d.cmd_counts[k] < 0))
            d.cmd_counts[k] = 0;
        d.joint_faults[k] &= (uint16_t)~EXO_JFAULT_ANGLE_LIMIT;
        if (out_hi || out_lo) {
            d.joint_faults[k] |= EXO_JFAULT_ANGLE_LIMIT;
            any_out = 1;
        }
    }
    if (any_out) d.status |= EXO_FAULT_ANGLE_LIMIT;
    else d.status &= (uint16_t)~EXO_FAULT_ANGLE_LIMIT;
}

void dev_tick(uint32_t ticks)
{
    uint32_t k, s;
    if (ticks > 20u) ticks = 20u; /* as the emulator: never integrate more than 20 ms at once */
    for (s = 0; s < ticks; ++s)
        for (k = 0; k < N; ++k)
            joint_step(&d.joints[k], (float)d.cmd_counts[k] * TORQUE_SCALE, 0.001f);
    watchdogs();
    /* Half a tick of tolerance puts the period on the tick grid: without it a telemetry sent a
     * few microseconds late in its tick would make the next one wait a whole extra tick. */
    if (board_us() - d.last_tel_us + 500u >= EXOFW_TELEMETRY_PERIOD_US) send_telemetry();
}

void dev_estop_input(int pressed)
{
    if (pressed == d.estop) return;
    d.estop = pressed;
    if (pressed) {
        zero_and_disable();
        raise_fault(EXO_FAULT_ESTOP, 1, EXO_JOINT_DEVICE);
    }
    out.type = EXO_T_ESTOP_STATE;
    out.u.estop_state.fw_time_us = board_us();
    out.u.estop_state.pressed = pressed ? 1u : 0u;
    send();
}

void dev_inject_fault(uint16_t bit, uint8_t joint)
{
    zero_and_disable();
    raise_fault(bit, 1, joint);
}

const dev_counters_t *dev_counters(void) { return &d.c; }
uint16_t dev_fault_bits(void) { return bits(); }
int dev_enabled(void) { return d.enabled; }
int dev_handshaken(void) { return d.handshaken; }
int dev_estop(void) { return d.estop; }
int16_t dev_applied_count(uint32_t joint) { return joint < N ? d.cmd_counts[joint] : 0; }

uint32_t dev_applied_log(const dev_applied_t **ring, uint32_t *first)
{
    *ring = d.applied;
    *first = d.applied_n > DEV_APPLIED_LOG ? d.applied_n - DEV_APPLIED_LOG : 0u;
    return d.applied_n - *first;
}
