/*
 * What the firmware needs from a board. Everything behind this header is board-specific
 * (board_lm3s6965.c for QEMU's lm3s6965evb); everything in front of it (device.c, joint.c,
 * main.c and the protocol codec) is plain C99 and ports unchanged. A port to a real board
 * implements these functions for its UART, tick timer, watchdog and e-stop input, and
 * replaces joint.c's model by the motor driver and the joint encoders.
 */
#ifndef EXOFW_BOARD_H
#define EXOFW_BOARD_H

#include <stddef.h>
#include <stdint.h>

/* Clocks, UARTs, tick timer, watchdog and the e-stop input; interrupts enabled on return. */
void board_init(void);

/* The host link (the protocol's UART). RX is interrupt-driven into a ring the main loop
 * drains; TX queues into a ring the TX interrupt empties. board_wire_write queues all n bytes
 * or none (returns 0 when the ring lacks room: the caller counts a dropped frame). */
int board_wire_getc(uint8_t *byte);
/* Times the receive ring was full and reception paused (the UART FIFO then holds the
 * bytes, or drops them on overrun). */
uint32_t board_rx_stalls(void);
/* 1 while received bytes (host link or bench channel) wait for the main loop. */
int board_rx_pending(void);
int board_wire_write(const uint8_t *data, size_t n);

/* The bench channel (a second UART): test hooks and counters, never in the control path. */
int board_bench_getc(uint8_t *byte);
void board_bench_puts(const char *s);

/* Milliseconds since boot, advanced by the 1 kHz tick interrupt. */
uint32_t board_ms(void);
/* Microseconds since boot (wraps after 71.6 min, as the protocol's fw_time_us). */
uint32_t board_us(void);
/* Processor clock cycles since boot (64-bit: no wrap). Under QEMU's -icount shift=0 a clock
 * cycle is one instruction, which is how the firmware counts its instructions per period. */
uint64_t board_cycles(void);
uint32_t board_cpu_hz(void);

/* Number of 1 ms ticks not yet handled by the main loop (taken and cleared atomically). */
uint32_t board_take_ticks(void);

/* Sleep until the next interrupt, unless one is already pending work for the main loop. */
void board_idle(int (*work_pending)(void));

/* Feed the hardware watchdog. Not fed for its period (a hung main loop), it resets the MCU. */
void board_watchdog_feed(void);
/* 1 if the last reset came from the watchdog. */
int board_reset_by_watchdog(void);

/* E-stop input: 1 pressed. Read on every change of the pin (edge interrupt) and every tick. */
int board_estop_input(void);
/* Bench only: QEMU cannot drive a GPIO input from outside, so the bench channel forces the
 * e-stop input's level here; on a real board this is never called. */
void board_estop_force(int pressed);

/* Interrupt masking around state shared with interrupt handlers (held for a copy only). */
uint32_t board_irq_save(void);
void board_irq_restore(uint32_t state);

/* Stack high-water mark: bytes of the stack ever used since boot. */
uint32_t board_stack_used(void);
uint32_t board_stack_size(void);

#endif
