/*
 * The device's configuration: its joints with their limits, its timeouts and its identity.
 * This file matches configs/default.yaml; `exoctl hil --firmware qemu` generates one
 * from the configuration it runs with (firmware_bridge/qemu_firmware.py) and builds with it.
 * Limits are wire counts: torque 0.01 N m, angles 1e-4 rad (docs/protocol.md section 3).
 */
#ifndef EXOFW_CONFIG_H
#define EXOFW_CONFIG_H

#define EXOFW_DEVICE_ID "exofw-qemu"
#define EXOFW_COMMAND_TIMEOUT_MS 100u
#define EXOFW_TELEMETRY_PERIOD_US 2000u
#define EXOFW_N_JOINTS 4u
/* name, torque limit (0.01 N m), angle min, angle max (1e-4 rad) */
#define EXOFW_JOINTS                                                                              \
    {"hip_l", 4000u, -5000, 18000}, {"hip_r", 4000u, -5000, 18000},                               \
        {"knee_l", 3500u, -500, 20000}, {"knee_r", 3500u, -500, 20000},

#endif
