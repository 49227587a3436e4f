/*
 * The device's half of docs/protocol.md: handshake, enable/disable/clear, torque commands with
 * sequence numbers and per-joint limits, the host-silence and stale-command watchdogs, fault
 * bits and reports, the e-stop, and telemetry at the configured period. Board-independent:
 * it sends through board_wire_write and reads time through board_ms/board_us.
 * Behaviour and counters match the Python emulator (firmware_bridge/emulator.py).
 */
#ifndef EXOFW_DEVICE_H
#define EXOFW_DEVICE_H

#include <stdint.h>

#include "exoctl_proto.h"

#define DEV_APPLIED_LOG 32u /* the last applied commands, for the bench's checks */

typedef struct {
    uint32_t commands_received;
    uint32_t commands_applied;
    uint32_t commands_refused;
    uint32_t commands_out_of_order;
    uint32_t limit_violations;
    uint32_t seq_gaps;
    uint32_t timeouts;
    uint32_t tx_frames_dropped; /* TX ring full: the host was not reading */
} dev_counters_t;

typedef struct {
    uint32_t seq;
    int16_t torque0; /* the first joint's applied torque, counts */
} dev_applied_t;

void dev_init(void);
/* A frame that passed every receiver check. */
void dev_handle(const exo_msg_t *m);
/* A HELLO of another protocol version (section 5.1): answer, unpair. */
void dev_foreign_hello(uint32_t nonce);
/* `ticks` 1 ms periods elapsed: joint model, watchdogs, telemetry. */
void dev_tick(uint32_t ticks);
/* The e-stop input's level (1 pressed); acts on a change only. */
void dev_estop_input(int pressed);
/* A latched hardware fault (FAULT_OVER_TEMPERATURE or FAULT_OVERCURRENT). */
void dev_inject_fault(uint16_t bit, uint8_t joint);

const dev_counters_t *dev_counters(void);
uint16_t dev_fault_bits(void);
int dev_enabled(void);
int dev_handshaken(void);
int dev_estop(void);
int16_t dev_applied_count(uint32_t joint);
/* The applied-command log, oldest first; returns how many entries (at most DEV_APPLIED_LOG). */
uint32_t dev_applied_log(const dev_applied_t **ring, uint32_t *first);

#endif
