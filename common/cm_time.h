/* cm_time: the clocks and the timed condition wait, written once.
 *
 * Deadlines inside a process run on CLOCK_MONOTONIC, so a wall-clock step (NTP, an operator)
 * neither fires a wait early nor stretches it. Times that leave the process (expiry instants in
 * messages or on disk) are wall-clock milliseconds since the Unix epoch. */
#ifndef CM_TIME_H
#define CM_TIME_H

#include <pthread.h>
#include <stdint.h>

/* Wall clock, milliseconds since the Unix epoch. */
int64_t cm_time_wall_ms(void);

/* Monotonic clock, milliseconds from an arbitrary start: for durations and deadlines. */
int64_t cm_time_mono_ms(void);

/* Initialises |c| so that cm_cond_wait_ms measures on the monotonic clock. 0 or an errno. */
int cm_cond_init(pthread_cond_t *c);

/* With |mu| held, waits on |c| (made by cm_cond_init) at most |ms| milliseconds (<= 0: does
 * not block beyond a check). Returns 0 when woken (a signal, a broadcast or a spurious wake-up:
 * the caller rechecks its condition), ETIMEDOUT when the time passed. */
int cm_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *mu, int64_t ms);

#endif
