/*
 * The timing wheels, one per worker, and their keeper (timer.c).
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include "base.h"
#include "spin.h"

/* ---- timers (timer.c) ---------------------------------------------------- */

#define WEFT__TICK_SHIFT 14u /* 16.384 us ticks */
#define WEFT__TICK_NS (UINT64_C(1) << WEFT__TICK_SHIFT)
#define WEFT__TIMER_LEVELS 6u
/* A firer moves due nodes out of a wheel, under its lock, a batch at a
 * time: whole slots until at least this many nodes (timer.c). */
#define WEFT__TIMER_BATCH 256u
/* A busy worker fires another worker's wheel only once its earliest slot
 * is this late: the owner fires its own on time, and two firers of one
 * wheel only contend on its lock (timer.c, "Who fires"). */
#define WEFT__TIMER_GRACE_NS (100 * WEFT_NSEC_PER_USEC)

/* Timer node states; the protocol is argued in timer.c. */
enum {
	WEFT__TM_IDLE = 0,
	WEFT__TM_PENDING,
	WEFT__TM_FIRING,
	WEFT__TM_FIRED
};

struct weft__wheel;

/* One pending deadline; lives in its owner's memory (a waiting task's
 * stack). The firer wakes `task`. */
struct weft__timer {
	/* What a firer's walk of a slot reads and writes first, in the
	 * first 32 bytes: a node on a task's stack then spans one cache
	 * line more often than not (the walk is a chain of misses). */
	/* Slot list, under the wheel's lock: NULL-terminated through next;
	 * the head's prev is the tail (appends keep a slot FIFO). */
	struct weft__timer *next;
	uint64_t when; /* deadline in ticks, rounded up */
	atomic_int state;
	uint8_t lvl, slot;
	struct weft__timer *fnext; /* the firer's private list */
	struct weft__timer *prev;
	struct weft__tcb *task;
	struct weft__wheel *wheel; /* the wheel add() filed it in */
};

/* A worker's wheel (worker->wheel). Only its owner files timers in it;
 * anyone may cancel or fire under its lock. */
struct weft__wheel {
	weft__spin lock;
	uint64_t elapsed; /* ticks processed so far */
	unsigned long count;
	uint64_t occupied[WEFT__TIMER_LEVELS];
	struct weft__timer *slot[WEFT__TIMER_LEVELS][64];
	/* The earliest slot expiration in ns, WEFT_NEVER if empty: stored
	 * under the lock, read by anyone (the keeper, other workers' polls).
	 * On a line of its own: readers do not pull the slots' line. */
	_Alignas(WEFT__CACHELINE) _Atomic(uint64_t) next;
};

struct weft__tcb;
struct weft__worker;

/* timer.c */
void weft__timer_init(struct weft_runtime *rt);
void weft__timer_wheel_init(struct weft__wheel *wh);
/* Files n, in the calling worker's wheel, to wake task at deadline (ns).
 * False, with nothing filed, if the deadline's tick has already been
 * processed: it is due. Called by a task of rt. */
bool weft__timer_add(struct weft_runtime *rt, struct weft__timer *n,
		     struct weft__tcb *task, uint64_t deadline);
/* Takes n out of its wheel, wherever the caller runs; true if it had
 * fired (or was firing: waits until the firer is done with it). n is
 * IDLE afterwards. */
bool weft__timer_cancel(struct weft_runtime *rt, struct weft__timer *n);
static inline bool weft__timer_fired(const struct weft__timer *n)
{
	return atomic_load_explicit(&n->state, memory_order_acquire) ==
	       WEFT__TM_FIRED;
}
/* Fires what is due for w: its own wheel, and the others' that are due
 * (idle: any; busy, `late`: WEFT__TIMER_GRACE_NS late). Reads the clock
 * only if a timer is pending. Returns how many fired. */
unsigned weft__timer_poll(struct weft__worker *w, bool late);
/* weft__timer_poll() with the clock already read. */
unsigned weft__timer_poll_at(struct weft__worker *w, uint64_t now, bool late);
/* Is a timer pending in any wheel of rt? A relaxed hint. */
bool weft__timer_pending(struct weft_runtime *rt);
/* Keeper role for a parking worker: the ns deadline to sleep until, or 0
 * if it did not take the role (nobody needs it, or someone has it). */
uint64_t weft__timer_keep(struct weft__worker *w);
void weft__timer_unkeep(struct weft__worker *w);

#endif /* WEFT_TIMER_H */
