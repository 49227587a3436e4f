/* Joint model: see joint.h. Semi-implicit Euler, stable at the 1 kHz tick. */
#include "joint.h"

#define INERTIA 0.3f
#define DAMPING 3.0f
#define STIFFNESS 30.0f
#define KT_GEAR_NM_PER_A 4.5f
#define WINDING_R_OHM 0.5f
#define THERMAL_R_K_PER_W 2.0f
#define THERMAL_TAU_S 60.0f
#define AMBIENT_C 30.0f

void joint_init(joint_state_t *j, float angle_min_rad, float angle_max_rad)
{
    /* at rest mid-range: the host's assist torques then move the joints without pushing them
     * out of range (the angle-limit fault bits would stop the run) */
    float rest = 0.5f * (angle_min_rad + angle_max_rad);
    j->theta = rest;
    j->omega = 0.0f;
    j->rest = rest;
    j->temp_c = AMBIENT_C;
}

float joint_current(float torque_nm) { return torque_nm * (1.0f / KT_GEAR_NM_PER_A); }

/* Multiplications by reciprocals: a Cortex-M3 has no FPU, and a software division costs
 * several times a multiplication. */
void joint_step(joint_state_t *j, float torque_nm, float dt)
{
    float acc = (torque_nm - DAMPING * j->omega - STIFFNESS * (j->theta - j->rest)) *
                (1.0f / INERTIA);
    float cur = joint_current(torque_nm);
    float target = AMBIENT_C + cur * cur * WINDING_R_OHM * THERMAL_R_K_PER_W;
    j->omega += acc * dt;
    j->theta += j->omega * dt;
    j->temp_c += (target - j->temp_c) * dt * (1.0f / THERMAL_TAU_S);
}
