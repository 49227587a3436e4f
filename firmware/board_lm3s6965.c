/*
 * Board support for the TI Stellaris LM3S6965 (Cortex-M3), as QEMU's lm3s6965evb emulates it:
 * vector table and start-up, 50 MHz system clock from the PLL, UART0 = host link, UART1 =
 * bench channel (both interrupt-driven, 1 000 000 baud, 8N1, FIFOs on), SysTick = 1 kHz tick,
 * the watchdog timer (reset on its second time-out), and the e-stop input on PF1 (pressed
 * when high: a normally-closed contact to ground opened, or its wire cut, reads high through
 * the pull-up; fail-safe). This is the only file a port to another board rewrites.
 */
#include "board.h"

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* system control */
#define SYSCTL_RIS REG(0x400FE050u)
#define SYSCTL_RESC REG(0x400FE05Cu)
#define SYSCTL_RCC REG(0x400FE060u)
#define SYSCTL_RCGC0 REG(0x400FE100u)
#define SYSCTL_RCGC1 REG(0x400FE104u)
#define SYSCTL_RCGC2 REG(0x400FE108u)
#define RESC_WDT 0x08u

/* UARTs (PL011 with Stellaris extensions) */
#define UART0_BASE 0x4000C000u
#define UART1_BASE 0x4000D000u
#define UART_DR(b) REG((b) + 0x000u)
#define UART_FR(b) REG((b) + 0x018u)
#define UART_IBRD(b) REG((b) + 0x024u)
#define UART_FBRD(b) REG((b) + 0x028u)
#define UART_LCRH(b) REG((b) + 0x02Cu)
#define UART_CTL(b) REG((b) + 0x030u)
#define UART_IFLS(b) REG((b) + 0x034u)
#define UART_IM(b) REG((b) + 0x038u)
#define UART_MIS(b) REG((b) + 0x040u)
#define UART_ICR(b) REG((b) + 0x044u)
#define FR_RXFE 0x10u
#define FR_TXFF 0x20u
#define INT_RX 0x10u
#define INT_TX 0x20u
#define INT_RT 0x40u

/* GPIO port F: the e-stop input on PF1 */
#define GPIOF_BASE 0x40025000u
#define ESTOP_PIN 0x02u
#define GPIO_DATA(b, mask) REG((b) + ((uint32_t)(mask) << 2))
#define GPIO_DIR(b) REG((b) + 0x400u)
#define GPIO_IS(b) REG((b) + 0x404u)
#define GPIO_IBE(b) REG((b) + 0x408u)
#define GPIO_IM(b) REG((b) + 0x410u)
#define GPIO_ICR(b) REG((b) + 0x41Cu)
#define GPIO_PUR(b) REG((b) + 0x510u)
#define GPIO_DEN(b) REG((b) + 0x51Cu)

/* watchdog */
#define WDT_LOAD REG(0x40000000u)
#define WDT_CTL REG(0x40000008u)
#define WDT_ICR REG(0x4000000Cu)
#define WDT_LOCK REG(0x40000C00u)
#define WDT_UNLOCK 0x1ACCE551u

/* Cortex-M3 core */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ISPR0 REG(0xE000E200u)
#define SCB_ICSR REG(0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)

#define IRQ_UART0 5u
#define IRQ_UART1 6u
#define IRQ_GPIOF 30u

#define CPU_HZ 50000000u
#define TICK_HZ 1000u
#define CYCLES_PER_TICK (CPU_HZ / TICK_HZ)
#define WATCHDOG_PERIOD_CYCLES (CPU_HZ / 10u) /* interrupt at 100 ms, reset at 200 ms */


/* ------------------------------------------------------------------ rings */
#define RING_SIZE 1024u /* power of two */
typedef struct {
    volatile uint32_t head; /* written by the producer */
    volatile uint32_t tail; /* written by the consumer */
    uint8_t data[RING_SIZE];
} ring_t;

static ring_t wire_rx, wire_tx, bench_rx, bench_tx;
static volatile uint32_t ms_ticks, ticks_pending, rx_overruns;
static volatile int estop_forced;
static uint32_t reset_cause;

static int ring_put(ring_t *r, uint8_t b)
{
    uint32_t h = r->head;
    if (h - r->tail >= RING_SIZE) return 0;
    r->data[h & (RING_SIZE - 1u)] = b;
    r->head = h + 1u;
    return 1;
}

static int ring_get(ring_t *r, uint8_t *b)
{
    uint32_t t = r->tail;
    if (t == r->head) return 0;
    *b = r->data[t & (RING_SIZE - 1u)];
    r->tail = t + 1u;
    return 1;
}

uint32_t board_irq_save(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    return primask;
}

void board_irq_restore(uint32_t state)
{
    __asm volatile("msr primask, %0" ::"r"(state) : "memory");
}

/* Move queued bytes into the UART's TX FIFO while it has room. Called from the writer (so a
 * short frame that never crosses the FIFO's interrupt level still leaves) and from the TX
 * interrupt. */
static void tx_fill(uint32_t base, ring_t *r)
{
    uint8_t b;
    while (!(UART_FR(base) & FR_TXFF) && ring_get(r, &b)) UART_DR(base) = b;
}

/* RX: FIFO -> ring. With the ring full the bytes stay in the FIFO and the RX interrupt is
 * masked until the main loop has made room (rx_resume): the UART's own overrun then drops
 * bytes, as it would with no ring at all, and a receiver that resynchronises at the next
 * 0x00 handles that. At 1 000 000 baud (100 kB/s) a main loop that keeps up never gets
 * here; under QEMU, whose UART delivers bytes as fast as they are read, it is the flow
 * control that keeps the ring from overflowing. */
static void uart_isr(uint32_t base, ring_t *rx, ring_t *tx)
{
    uint32_t mis = UART_MIS(base);
    UART_ICR(base) = mis;
    while (!(UART_FR(base) & FR_RXFE)) {
        if (rx->head - rx->tail >= RING_SIZE) {
            UART_IM(base) &= ~(INT_RX | INT_RT);
            rx_overruns++;
            break;
        }
        (void)ring_put(rx, (uint8_t)UART_DR(base));
    }
    tx_fill(base, tx);
}

void uart0_isr(void) { uart_isr(UART0_BASE, &wire_rx, &wire_tx); }
void uart1_isr(void) { uart_isr(UART1_BASE, &bench_rx, &bench_tx); }

static int rx_get(uint32_t base, uint32_t irq, ring_t *r, uint8_t *byte)
{
    int got = ring_get(r, byte);
    if (!got && !(UART_IM(base) & INT_RX)) {
        /* drained: take bytes again, and pend the interrupt by hand, since the FIFO's bytes
         * raised theirs while it was masked and it was cleared then */
        uint32_t s = board_irq_save();
        UART_IM(base) |= INT_RX | INT_RT;
        NVIC_ISPR0 = 1u << irq;
        board_irq_restore(s);
    }
    return got;
}

int board_wire_getc(uint8_t *byte) { return rx_get(UART0_BASE, IRQ_UART0, &wire_rx, byte); }
int board_bench_getc(uint8_t *byte) { return rx_get(UART1_BASE, IRQ_UART1, &bench_rx, byte); }
uint32_t board_rx_stalls(void) { return rx_overruns; }
int board_rx_pending(void) { return wire_rx.head != wire_rx.tail || bench_rx.head != bench_rx.tail; }

int board_wire_write(const uint8_t *data, size_t n)
{
    size_t i;
    uint32_t s;
    if (RING_SIZE - (wire_tx.head - wire_tx.tail) < n) return 0;
    for (i = 0; i < n; ++i) (void)ring_put(&wire_tx, data[i]);
    s = board_irq_save();
    tx_fill(UART0_BASE, &wire_tx);
    board_irq_restore(s);
    return 1;
}

void board_bench_puts(const char *str)
{
    uint32_t s;
    while (*str) {
        if (!ring_put(&bench_tx, (uint8_t)*str)) { /* bench output is not urgent: wait */
            s = board_irq_save();
            tx_fill(UART1_BASE, &bench_tx);
            board_irq_restore(s);
            continue;
        }
        ++str;
    }
    s = board_irq_save();
    tx_fill(UART1_BASE, &bench_tx);
    board_irq_restore(s);
}

/* ------------------------------------------------------------------ time */
void systick_isr(void)
{
    ms_ticks++;
    ticks_pending++;
}

uint64_t board_cycles(void)
{
    uint32_t s = board_irq_save();
    uint32_t ms = ms_ticks;
    uint32_t cvr = SYST_CVR;
    /* the counter wrapped but the tick interrupt has not run yet (interrupts masked) */
    if (SCB_ICSR & ICSR_PENDSTSET) {
        cvr = SYST_CVR;
        ms++;
    }
    board_irq_restore(s);
    return (uint64_t)ms * CYCLES_PER_TICK + (CYCLES_PER_TICK - 1u - cvr);
}

uint32_t board_ms(void) { return ms_ticks; }
uint32_t board_us(void) { return (uint32_t)(board_cycles() / (CPU_HZ / 1000000u)); }
uint32_t board_cpu_hz(void) { return CPU_HZ; }

uint32_t board_take_ticks(void)
{
    uint32_t s = board_irq_save();
    uint32_t n = ticks_pending;
    ticks_pending = 0;
    board_irq_restore(s);
    return n;
}

void board_idle(int (*work_pending)(void))
{
    uint32_t s = board_irq_save();
    /* WFI wakes on a pending interrupt even while they are masked: no lost wake-up */
    if (!work_pending() && ticks_pending == 0) __asm volatile("wfi" ::: "memory");
    board_irq_restore(s);
}

/* ------------------------------------------------------------------ watchdog, e-stop */
void board_watchdog_feed(void) { WDT_ICR = 1u; }
int board_reset_by_watchdog(void) { return (reset_cause & RESC_WDT) != 0; }

extern void estop_changed(void); /* main.c: read the input, act on a change */

void gpiof_isr(void)
{
    GPIO_ICR(GPIOF_BASE) = ESTOP_PIN;
    estop_changed();
}

int board_estop_input(void)
{
    return estop_forced || (GPIO_DATA(GPIOF_BASE, ESTOP_PIN) & ESTOP_PIN) != 0;
}

void board_estop_force(int pressed) { estop_forced = pressed; }

/* ------------------------------------------------------------------ init */
static void uart_init(uint32_t base)
{
    UART_CTL(base) = 0;
    UART_IBRD(base) = 3u; /* 50 MHz / (16 x 1 000 000) = 3.125: 3 + 8/64 */
    UART_FBRD(base) = 8u;
    UART_LCRH(base) = 0x70u; /* 8 data bits, FIFOs on, no parity, 1 stop bit */
    UART_IFLS(base) = 0x00u; /* interrupt at 1/8 full (RX) and 1/8 empty (TX) */
    UART_ICR(base) = 0x7FFu;
    UART_IM(base) = INT_RX | INT_RT | INT_TX;
    UART_CTL(base) = 0x301u; /* enable, TX, RX */
}

void board_init(void)
{
    reset_cause = SYSCTL_RESC;
    SYSCTL_RESC = 0;
    /* 8 MHz crystal, PLL (400 MHz / 2) divided by 4: 50 MHz */
    SYSCTL_RCC = 0x01C00380u | (1u << 11); /* still bypassing the PLL while it locks */
    while (!(SYSCTL_RIS & (1u << 6))) {
    }
    SYSCTL_RCC = 0x01C00380u;
    SYSCTL_RCGC0 |= 1u << 3;                 /* watchdog */
    SYSCTL_RCGC1 |= (1u << 0) | (1u << 1);   /* UART0, UART1 */
    SYSCTL_RCGC2 |= (1u << 0) | (1u << 5);   /* GPIO A (UART pins), F (e-stop) */

    uart_init(UART0_BASE);
    uart_init(UART1_BASE);

    GPIO_DIR(GPIOF_BASE) &= ~ESTOP_PIN;
    GPIO_PUR(GPIOF_BASE) |= ESTOP_PIN;
    GPIO_DEN(GPIOF_BASE) |= ESTOP_PIN;
    GPIO_IS(GPIOF_BASE) &= ~ESTOP_PIN; /* edge */
    GPIO_IBE(GPIOF_BASE) |= ESTOP_PIN; /* both edges */
    GPIO_ICR(GPIOF_BASE) = ESTOP_PIN;
    GPIO_IM(GPIOF_BASE) |= ESTOP_PIN;

    /* Left unlocked: a locked watchdog ignores writes to its interrupt-clear register too,
     * and that write is how the main loop feeds it. */
    WDT_LOCK = WDT_UNLOCK;
    WDT_LOAD = WATCHDOG_PERIOD_CYCLES;
    WDT_CTL = 0x3u; /* interrupt (not routed: the NVIC line stays disabled), then reset */

    SYST_RVR = CYCLES_PER_TICK - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt, enable */

    NVIC_ISER0 = (1u << IRQ_UART0) | (1u << IRQ_UART1) | (1u << IRQ_GPIOF);
    __asm volatile("cpsie i" ::: "memory");
}

/* ------------------------------------------------------------------ start-up, vectors */
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern int main(void);
#define STACK_PAINT 0xDEADBEEFu

uint32_t board_stack_size(void) { return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack); }

uint32_t board_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == STACK_PAINT) ++p;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void reset_handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata, *sp;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
    /* paint the stack below this frame, for the high-water mark */
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; ++dst) *dst = STACK_PAINT;
    (void)main();
    for (;;) {
    }
}

/* A fault stops the main loop; the watchdog then resets the board (torque is off at boot). */
static void fault_isr(void)
{
    for (;;) {
    }
}

typedef void (*vector_t)(void);
__attribute__((section(".vectors"), used)) static const vector_t vectors[16 + 32] = {
    [0] = (vector_t)(uintptr_t)&_estack,
    [1] = reset_handler,
    [2] = fault_isr, /* NMI */
    [3] = fault_isr, /* hard fault */
    [4] = fault_isr, /* memory management */
    [5] = fault_isr, /* bus fault */
    [6] = fault_isr, /* usage fault */
    [15] = systick_isr,
    [16 + IRQ_UART0] = uart0_isr,
    [16 + IRQ_UART1] = uart1_isr,
    [16 + IRQ_GPIOF] = gpiof_isr,
};
