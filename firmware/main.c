/*
 * exofw: the reference firmware for the exoctl serial protocol (docs/protocol.md).
 *
 * One main loop, no RTOS, no heap: the UART interrupts fill receive rings, the 1 kHz tick
 * interrupt counts periods, and the loop (1) feeds every received byte to the protocol codec's
 * receiver and hands each valid frame to the device state machine, (2) acts on an e-stop input
 * change, (3) runs the control period (joint model, watchdogs, telemetry) once per tick and
 * feeds the hardware watchdog, (4) answers the bench channel, then sleeps until the next
 * interrupt. The hardware watchdog is fed only from (3): a loop that stops running resets the
 * board, and the device boots with torque off.
 */
#include <string.h>

#include "board.h"
#include "device.h"
#include "exoctl_proto.h"

#ifndef EXOFW_VERSION
#define EXOFW_VERSION "0.0.0-dev"
#endif

static exo_rx_t rx;
static exo_msg_t msg;
static volatile int estop_dirty = 1; /* read the input once at boot */

/* work accounting, in processor cycles (instructions under QEMU's -icount shift=0) */
typedef struct {
    uint32_t n;
    uint64_t sum;
    uint32_t max;
} work_t;
static work_t tick_work, cmd_work, rx_work;
static uint32_t periods;
static uint64_t idle_cycles;

static void account(work_t *w, uint64_t cycles)
{
    w->n++;
    w->sum += cycles;
    if (cycles > w->max) w->max = (uint32_t)cycles;
}

void estop_changed(void) { estop_dirty = 1; } /* from the e-stop pin's edge interrupt */

/* ------------------------------------------------------------------ bench channel */
static char line[1024];
static size_t line_n;

static void put_str(const char *s)
{
    size_t n = strlen(s);
    if (line_n + n < sizeof line) {
        memcpy(line + line_n, s, n);
        line_n += n;
    }
}

static void put_u64(uint64_t v)
{
    char buf[21];
    size_t i = sizeof buf - 1;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && i > 0);
    put_str(buf + i);
}

static void put_i32(int32_t v)
{
    if (v < 0) {
        put_str("-");
        put_u64((uint64_t)(-(int64_t)v));
    } else {
        put_u64((uint64_t)v);
    }
}

static void put_kv(const char *key, uint64_t v)
{
    put_str(" ");
    put_str(key);
    put_str("=");
    put_u64(v);
}

static void put_work(const char *key, const work_t *w)
{
    put_str(" ");
    put_str(key);
    put_str("=");
    put_u64(w->n);
    put_str(":");
    put_u64(w->sum);
    put_str(":");
    put_u64(w->max);
}

static void bench_stats(void)
{
    const dev_counters_t *c = dev_counters();
    const dev_applied_t *ring;
    uint32_t first, n, i;
    line_n = 0;
    put_str("stats");
    put_kv("commands_received", c->commands_received);
    put_kv("commands_applied", c->commands_applied);
    put_kv("commands_refused", c->commands_refused);
    put_kv("commands_out_of_order", c->commands_out_of_order);
    put_kv("limit_violations", c->limit_violations);
    put_kv("seq_gaps", c->seq_gaps);
    put_kv("timeouts", c->timeouts);
    put_kv("tx_frames_dropped", c->tx_frames_dropped);
    put_kv("frames_good", rx.good);
    put_kv("framing", rx.errors[EXO_ERR_FRAMING]);
    put_kv("crc", rx.errors[EXO_ERR_CRC]);
    put_kv("length", rx.errors[EXO_ERR_LENGTH]);
    put_kv("version", rx.errors[EXO_ERR_VERSION]);
    put_kv("type", rx.errors[EXO_ERR_TYPE]);
    put_kv("direction", rx.errors[EXO_ERR_DIRECTION]);
    put_kv("value", rx.errors[EXO_ERR_VALUE]);
    put_kv("rx_stalls", board_rx_stalls());
    put_kv("fault_bits", dev_fault_bits());
    put_kv("enabled", (uint64_t)dev_enabled());
    put_kv("handshaken", (uint64_t)dev_handshaken());
    put_kv("estop", (uint64_t)dev_estop());
    put_str(" applied_counts=");
    for (i = 0; i < EXO_MAX_JOINTS; ++i) {
        if (i) put_str(",");
        put_i32(dev_applied_count(i));
    }
    put_kv("fw_ms", board_ms());
    put_kv("cpu_hz", board_cpu_hz());
    put_kv("periods", periods);
    put_kv("idle_cycles", idle_cycles);
    put_work("tick_work", &tick_work);
    put_work("cmd_work", &cmd_work);
    put_work("rx_work", &rx_work);
    put_kv("stack_used", board_stack_used());
    put_kv("stack_size", board_stack_size());
    put_str(" applied=");
    n = dev_applied_log(&ring, &first);
    for (i = 0; i < n; ++i) {
        const dev_applied_t *a = &ring[(first + i) % DEV_APPLIED_LOG];
        if (i) put_str(",");
        put_u64(a->seq);
        put_str(":");
        put_i32(a->torque0);
    }
    put_str("\n");
    line[line_n] = '\0';
    board_bench_puts(line);
}

static void banner(void)
{
    board_bench_puts(board_reset_by_watchdog() ? "exofw " EXOFW_VERSION " boot watchdog\n"
                                               : "exofw " EXOFW_VERSION " boot\n");
}

/* One byte per command: the bench's hooks for what a person or the hardware would do. */
static void bench_command(uint8_t b)
{
    switch (b) {
    case 'S': bench_stats(); break;
    case 'V': banner(); break;
    case 'E': board_estop_force(1); estop_dirty = 1; break;
    case 'e': board_estop_force(0); estop_dirty = 1; break;
    case 'T': dev_inject_fault(EXO_FAULT_OVER_TEMPERATURE, EXO_JOINT_DEVICE); break;
    case 'C': dev_inject_fault(EXO_FAULT_OVERCURRENT, EXO_JOINT_DEVICE); break;
    case 'H': /* hang the main loop: the watchdog must reset the board */
        (void)board_irq_save();
        for (;;) {
        }
    default: break;
    }
}

/* ------------------------------------------------------------------ main loop */
static int work_pending(void)
{
    return estop_dirty || board_rx_pending();
}

int main(void)
{
    uint8_t b;
    board_init();
    dev_init();
    exo_rx_init(&rx, EXO_RECEIVER_DEVICE);
    banner();
    for (;;) {
        uint32_t ticks, budget = 256u; /* bytes per pass: ticks are never starved */
        uint64_t t0, t1;
        t0 = board_cycles();
        while (budget-- && board_wire_getc(&b)) {
            int r = exo_rx_byte(&rx, b, &msg);
            if (r == 1) {
                dev_handle(&msg);
                if (msg.type == EXO_T_TORQUE_CMD) {
                    t1 = board_cycles();
                    account(&cmd_work, t1 - t0);
                    t0 = t1;
                }
            } else if (r == 2) {
                dev_foreign_hello(msg.u.hello.nonce);
            }
        }
        t1 = board_cycles();
        if (t1 != t0) account(&rx_work, t1 - t0);
        if (estop_dirty) {
            estop_dirty = 0;
            dev_estop_input(board_estop_input());
        }
        ticks = board_take_ticks();
        if (ticks) {
            t0 = board_cycles();
            if (board_estop_input() != dev_estop()) dev_estop_input(board_estop_input());
            dev_tick(ticks);
            board_watchdog_feed();
            periods += ticks;
            account(&tick_work, board_cycles() - t0);
        }
        while (board_bench_getc(&b)) bench_command(b);
        t0 = board_cycles();
        board_idle(work_pending);
        idle_cycles += board_cycles() - t0;
    }
}
