/*
 * The timing wheel and its keeper (timer.c).
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include "base.h"
#include "spin.h"

/* ---- timers (timer.c) ---------------------------------------------------- */

#define WEFT__TICK_SHIFT 14u /* 16.384 us ticks */
#define WEFT__TICK_NS (UINT64_C(1) << WEFT__TICK_SHIFT)
#define WEFT__TIMER_LEVELS 6u

/* Timer node states; the protocol is argued in timer.c. */
enum {
	WEFT__TM_IDLE = 0,
	WEFT__TM_PENDING,
	WEFT__TM_FIRING,
	WEFT__TM_FIRED
};

/* One pending deadline; lives in its owner's memory (a waiting task's
 * stack). The firer wakes `task`. */
struct weft__timer {
	struct weft__timer *next, *prev; /* slot list, under the wheel lock */
	struct weft__timer *fnext;       /* the firer's private list */
	struct weft__tcb *task;
	uint64_t when; /* deadline in ticks, rounded up */
	atomic_int state;
	uint8_t lvl, slot;
};

struct weft__wheel {
	weft__spin lock;
	uint64_t elapsed; /* ticks processed so far */
	unsigned long count;
	uint64_t occupied[WEFT__TIMER_LEVELS];
	struct weft__timer *slot[WEFT__TIMER_LEVELS][64];
};

struct weft__tcb;
struct weft__worker;

/* timer.c */
void weft__timer_init(struct weft_runtime *rt);
/* Files n to wake task at deadline (ns). False, with nothing filed, if the
 * deadline's tick has already been processed: it is due. */
bool weft__timer_add(struct weft_runtime *rt, struct weft__timer *n,
		     struct weft__tcb *task, uint64_t deadline);
/* Takes n out of the wheel; true if it had fired (or was firing: waits
 * until the firer is done with it). n is IDLE afterwards. */
bool weft__timer_cancel(struct weft_runtime *rt, struct weft__timer *n);
static inline bool weft__timer_fired(const struct weft__timer *n)
{
	return atomic_load_explicit(&n->state, memory_order_acquire) ==
	       WEFT__TM_FIRED;
}
/* Fires every timer due at `now`; returns how many. */
unsigned weft__timer_run(struct weft_runtime *rt, uint64_t now);
/* Fires what is due, reading the clock only if a timer is pending. */
unsigned weft__timer_poll(struct weft_runtime *rt);
/* weft__timer_poll() with the clock already read. */
unsigned weft__timer_poll_at(struct weft_runtime *rt, uint64_t now);
/* Keeper role for a parking worker: the ns deadline to sleep until, or 0
 * if it did not take the role (nobody needs it, or someone has it). */
uint64_t weft__timer_keep(struct weft__worker *w);
void weft__timer_unkeep(struct weft__worker *w);

#endif /* WEFT_TIMER_H */
