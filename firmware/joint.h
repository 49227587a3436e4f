/*
 * A simple joint model so that telemetry moves: each joint an inertia on a spring and a damper
 * about its rest angle (mid-range), driven by the applied torque, and a first-order winding
 * temperature. The constants of the Python emulator's default plant
 * (firmware_bridge/emulator.py). On a real board this file is replaced by the motor driver
 * (torque -> current set-point) and the joint encoders and temperature sensors.
 */
#ifndef EXOFW_JOINT_H
#define EXOFW_JOINT_H

#include <stdint.h>

typedef struct {
    float theta;  /* rad */
    float omega;  /* rad/s */
    float rest;   /* rad */
    float temp_c; /* winding temperature */
} joint_state_t;

void joint_init(joint_state_t *j, float angle_min_rad, float angle_max_rad);
/* Advance by dt seconds under the applied torque (N m). */
void joint_step(joint_state_t *j, float torque_nm, float dt);
/* Motor current for a joint torque (A). */
float joint_current(float torque_nm);

#endif
