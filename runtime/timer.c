/*
 * The timer service: one hierarchical timing wheel for the whole runtime,
 * deadlines in 16.384 us ticks, O(1) insert and cancel, any worker fires.
 *
 * Wheel
 *   Six levels of 64 slots. Level L slots are 64^L ticks wide, so level 0
 *   covers 1.05 ms at tick precision and level 5 about 13 days; a deadline
 *   further out is parked in level 5 and re-filed when its slot comes up.
 *   A timer goes to the level of the highest bit in which its deadline
 *   differs from `elapsed` (the tick processed so far), as in Tokio's and
 *   Linux's wheels; when a slot of level L > 0 comes due, its timers are
 *   re-filed into lower levels, so each timer moves at most six times and
 *   fires from level 0 within one tick of its deadline. Every level keeps a
 *   64-bit occupancy mask, so the next expiration is found with six
 *   count-trailing-zeros, never by walking empty slots.
 *   Deadlines are rounded up to whole ticks, so a timer never fires early;
 *   it fires at most one tick (16.384 us) plus a wake-up late while a
 *   worker is free to fire it (io_uring waits have nanosecond precision and
 *   workers run with a 1 ns timer slack, see runtime.c).
 *
 * Who may touch what
 *   The wheel (slots, masks, elapsed, each pending node's links) is guarded
 *   by wheel.lock. A node's state moves
 *     IDLE -> PENDING    weft__timer_add(), under the lock
 *     PENDING -> IDLE    weft__timer_cancel(), under the lock
 *     PENDING -> FIRING  the firer, under the lock (node moved to its
 *                        private list through fnext)
 *     FIRING -> FIRED    the firer, after the lock, release store
 *   A node lives in its owner's memory (a waiting task's stack), so the
 *   firer must be done with it before the owner may return: the firer
 *   reads task and fnext before the FIRED store and never touches the node
 *   after it; an owner that finds FIRING spins until FIRED (a few
 *   instructions away). The owner sees FIRED with acquire, then the firer
 *   wakes the task. A wake may therefore reach a task that has already
 *   left the wait (even ended): the park protocol (wait.h) allows spurious
 *   wakes, and control blocks are type-stable.
 *
 * Who fires, and no timer is late because of a sleeping worker
 *   rt->timer_next holds the earliest slot expiration in ns (WEFT_NEVER if
 *   the wheel is empty), stored seq_cst under the lock. Busy workers compare
 *   it with the clock about every WEFT__SERVE_NS of run time (at most
 *   every WEFT__INJECT_INTERVAL picks) and before parking (worker.c).
 *   Among parked workers one holds the keeper role (rt->keeper) and
 *   sleeps in its ring no longer than timer_next; the others sleep
 *   without timeout. An insert whose expiration is earlier than the
 *   keeper's wake-up time wakes the keeper; with no keeper, it notifies the
 *   idle protocol, which wakes a sleeper unless one is searching (and a
 *   searcher claims the role when it parks).
 *   Dekker pairs: the inserter stores timer_next then loads keeper and
 *   keeper_until; the keeper stores keeper (CAS) and keeper_until, then
 *   loads timer_next. All seq_cst: one of the two sees the other.
 *   A keeper that wakes gives the role up; if timers are still pending it
 *   notifies so that a sleeper takes the role over, in case it is about to
 *   run a long task.
 */
#include <errno.h>
#include <time.h>

#include "idle.h"
#include "ring.h"
#include "runtime.h"
#include "spin.h"
#include "task.h"
#include "timer.h"
#include "wait.h"
#include "worker.h"

#define LVL_BITS 6u
#define LVL_SLOTS (1u << LVL_BITS)
#define LVL_MASK (LVL_SLOTS - 1u)
/* Ticks the whole wheel covers. */
#define WHEEL_SPAN (UINT64_C(1) << (LVL_BITS * WEFT__TIMER_LEVELS))

uint64_t weft_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WEFT_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tick_ceil(uint64_t ns)
{
	if (ns >= WEFT_NEVER - WEFT__TICK_NS)
		return WEFT_NEVER >> WEFT__TICK_SHIFT;
	return (ns + WEFT__TICK_NS - 1) >> WEFT__TICK_SHIFT;
}

static inline uint64_t tick_ns(uint64_t tick)
{
	return tick << WEFT__TICK_SHIFT;
}

void weft__timer_init(struct weft_runtime *rt)
{
	struct weft__wheel *wh = &rt->wheel;
	unsigned l, s;

	atomic_init(&wh->lock.word, 0);
	wh->elapsed = weft_now() >> WEFT__TICK_SHIFT;
	wh->count = 0;
	for (l = 0; l < WEFT__TIMER_LEVELS; l++) {
		wh->occupied[l] = 0;
		for (s = 0; s < LVL_SLOTS; s++)
			wh->slot[l][s] = NULL;
	}
	atomic_init(&rt->timer_next, WEFT_NEVER);
	atomic_init(&rt->keeper, NULL);
	atomic_init(&rt->keeper_until, WEFT_NEVER);
}

/* Level and slot for a deadline, given what has been processed. */
static void place(const struct weft__wheel *wh, uint64_t when, unsigned *lvl,
		  unsigned *slot)
{
	uint64_t pos = when, masked;
	unsigned sig;

	/* Too far out: file it in the last level, re-filed when it comes
	 * up (its real deadline stays in the node). */
	if (pos - wh->elapsed >= WHEEL_SPAN)
		pos = wh->elapsed + WHEEL_SPAN - 1;
	masked = (wh->elapsed ^ pos) | LVL_MASK;
	/* elapsed + span - 1 can cross a boundary above the top level:
	 * the top level's slots still hold it within one turn. */
	if (masked >= WHEEL_SPAN)
		masked = WHEEL_SPAN - 1;
	sig = 63u - (unsigned)__builtin_clzll(masked);
	*lvl = sig / LVL_BITS;
	*slot = (unsigned)(pos >> (*lvl * LVL_BITS)) & LVL_MASK;
}

static void link_node(struct weft__wheel *wh, struct weft__timer *n)
{
	unsigned l, s;

	place(wh, n->when, &l, &s);
	n->lvl = (uint8_t)l;
	n->slot = (uint8_t)s;
	n->prev = NULL;
	n->next = wh->slot[l][s];
	if (n->next)
		n->next->prev = n;
	wh->slot[l][s] = n;
	wh->occupied[l] |= UINT64_C(1) << s;
}

static void unlink_node(struct weft__wheel *wh, struct weft__timer *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		wh->slot[n->lvl][n->slot] = n->next;
	if (n->next)
		n->next->prev = n->prev;
	if (!wh->slot[n->lvl][n->slot])
		wh->occupied[n->lvl] &= ~(UINT64_C(1) << n->slot);
}

/*
 * The earliest slot with timers: its level, slot and the tick it comes due.
 * Lower levels always come due first: a level-L timer differs from elapsed
 * above level L-1's span, so it lies beyond every lower-level slot.
 * Returns false if the wheel is empty.
 */
static bool next_due(const struct weft__wheel *wh, unsigned *lvl,
		     unsigned *slot, uint64_t *due)
{
	unsigned l;

	for (l = 0; l < WEFT__TIMER_LEVELS; l++) {
		uint64_t occ = wh->occupied[l], range, lstart;
		unsigned shift = l * LVL_BITS, pos, s;

		if (!occ)
			continue;
		pos = (unsigned)(wh->elapsed >> shift) & LVL_MASK;
		/* First occupied slot at or after pos, wrapping. */
		s = (pos + (unsigned)__builtin_ctzll(
				   (occ >> pos) | (pos ? occ << (64 - pos) : 0))) &
		    LVL_MASK;
		range = UINT64_C(1) << (shift + LVL_BITS);
		lstart = wh->elapsed & ~(range - 1);
		*due = lstart + ((uint64_t)s << shift);
		if (*due < wh->elapsed)
			*due += range;
		*lvl = l;
		*slot = s;
		return true;
	}
	return false;
}

/* Recomputes timer_next; under the lock. */
static void publish_next(struct weft_runtime *rt)
{
	unsigned l, s;
	uint64_t due;

	atomic_store_explicit(&rt->timer_next,
			      next_due(&rt->wheel, &l, &s, &due)
				      ? tick_ns(due)
				      : WEFT_NEVER,
			      memory_order_seq_cst);
}

bool weft__timer_add(struct weft_runtime *rt, struct weft__timer *n,
		     struct weft__tcb *task, uint64_t deadline)
{
	struct weft__wheel *wh = &rt->wheel;
	struct weft__worker *k;
	uint64_t before, after;

	n->task = task;
	n->when = tick_ceil(deadline);
	/* A busy worker adding a timer looks at the timers from its next
	 * pick on (worker.c, serve()). */
	if ((k = weft__worker_self()) && k->rt == rt)
		weft__worker_serve_soon(k);
	weft__spin_lock(&wh->lock);
	if (n->when <= wh->elapsed) {
		/* That tick has been processed: it is due now. */
		weft__spin_unlock(&wh->lock);
		atomic_store_explicit(&n->state, WEFT__TM_IDLE,
				      memory_order_relaxed);
		return false;
	}
	link_node(wh, n);
	wh->count++;
	weft__metrics_timer(rt, false, 1);
	atomic_store_explicit(&n->state, WEFT__TM_PENDING,
			      memory_order_relaxed);
	before = atomic_load_explicit(&rt->timer_next, memory_order_relaxed);
	publish_next(rt);
	after = atomic_load_explicit(&rt->timer_next, memory_order_relaxed);
	weft__spin_unlock(&wh->lock);

	if (after >= before)
		return true; /* nobody waits for a later time than before */
	/* The seq_cst store of timer_next (publish_next) comes before these
	 * seq_cst loads; see the file comment. */
	k = atomic_load_explicit(&rt->keeper, memory_order_seq_cst);
	if (k) {
		if (after < atomic_load_explicit(&rt->keeper_until,
						 memory_order_seq_cst))
			weft__ring_wake(weft__worker_self(), k);
	} else {
		weft__idle_notify(rt, true);
	}
	return true;
}

bool weft__timer_cancel(struct weft_runtime *rt, struct weft__timer *n)
{
	int s = atomic_load_explicit(&n->state, memory_order_acquire);

	if (s == WEFT__TM_IDLE)
		return false;
	if (s == WEFT__TM_PENDING) {
		weft__spin_lock(&rt->wheel.lock);
		s = atomic_load_explicit(&n->state, memory_order_relaxed);
		if (s == WEFT__TM_PENDING) {
			unlink_node(&rt->wheel, n);
			rt->wheel.count--;
			atomic_store_explicit(&n->state, WEFT__TM_IDLE,
					      memory_order_relaxed);
		}
		weft__spin_unlock(&rt->wheel.lock);
		if (s == WEFT__TM_PENDING)
			return false;
	}
	/* FIRING: the firer is between its unlock and the FIRED store
	 * (backing off to yields: it may have been preempted there). */
	unsigned spin = 0;
	while (atomic_load_explicit(&n->state, memory_order_acquire) !=
	       WEFT__TM_FIRED)
		weft__spin_backoff(&spin);
	atomic_store_explicit(&n->state, WEFT__TM_IDLE, memory_order_relaxed);
	return true;
}

unsigned weft__timer_run(struct weft_runtime *rt, uint64_t now)
{
	struct weft__wheel *wh = &rt->wheel;
	struct weft__timer *fire = NULL, **fire_tail = &fire, *n;
	uint64_t now_tick = now >> WEFT__TICK_SHIFT, due;
	unsigned lvl, slot, fired = 0;

	weft__spin_lock(&wh->lock);
	while (next_due(wh, &lvl, &slot, &due) && due <= now_tick) {
		n = wh->slot[lvl][slot];
		wh->slot[lvl][slot] = NULL;
		wh->occupied[lvl] &= ~(UINT64_C(1) << slot);
		wh->elapsed = due;
		while (n) {
			struct weft__timer *next = n->next;

			if (n->when <= due) {
				atomic_store_explicit(&n->state,
						      WEFT__TM_FIRING,
						      memory_order_relaxed);
				/* In deadline order: slots are
				 * visited in order, and within a
				 * level-0 slot all share one tick. */
				n->fnext = NULL;
				*fire_tail = n;
				fire_tail = &n->fnext;
				wh->count--;
			} else {
				link_node(wh, n); /* a lower level now */
			}
			n = next;
		}
	}
	if (now_tick > wh->elapsed)
		wh->elapsed = now_tick;
	publish_next(rt);
	weft__spin_unlock(&wh->lock);

	while (fire) {
		struct weft__tcb *t = fire->task;

		n = fire;
		fire = fire->fnext;
		/* Last touch of the node: its owner may return after this. */
		atomic_store_explicit(&n->state, WEFT__TM_FIRED,
				      memory_order_release);
		/* The earliest into the next slot: it runs next, not behind
		 * every task queued on a busy worker (issue 17: a sleep(1 ms)
		 * overshot by as many slices as tasks were queued). The rest
		 * at the back: a batch runs in deadline order, not reversed
		 * by the next slot. */
		if (fired == 0)
			weft__task_wake(t);
		else
			weft__task_wake_back(t);
		fired++;
	}
	if (fired)
		weft__idle_notify(rt, false);
	weft__metrics_timer(rt, true, fired);
	return fired;
}

/* Relaxed loads of timer_next: a busy worker's look is opportunistic. A
 * stale value only defers the firing to its next look or to the keeper,
 * whose protocol (the seq_cst pairs above) is what guarantees it. */
unsigned weft__timer_poll_at(struct weft_runtime *rt, uint64_t now)
{
	if (atomic_load_explicit(&rt->timer_next, memory_order_relaxed) > now)
		return 0;
	return weft__timer_run(rt, now);
}

unsigned weft__timer_poll(struct weft_runtime *rt)
{
	/* No clock read while no timer is pending. */
	if (atomic_load_explicit(&rt->timer_next, memory_order_relaxed) ==
	    WEFT_NEVER)
		return 0;
	return weft__timer_poll_at(rt, weft_now());
}

/* ---- the keeper role ---------------------------------------------------- */

uint64_t weft__timer_keep(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	struct weft__worker *none = NULL;
	uint64_t d, again;

	if (atomic_load_explicit(&rt->timer_next, memory_order_relaxed) ==
		    WEFT_NEVER ||
	    !atomic_compare_exchange_strong_explicit(&rt->keeper, &none, w,
						     memory_order_seq_cst,
						     memory_order_relaxed))
		return 0;
	d = atomic_load_explicit(&rt->timer_next, memory_order_seq_cst);
	for (;;) {
		atomic_store_explicit(&rt->keeper_until, d,
				      memory_order_seq_cst);
		again = atomic_load_explicit(&rt->timer_next,
					     memory_order_seq_cst);
		if (again >= d)
			break;
		d = again;
	}
	return d;
}

void weft__timer_unkeep(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	atomic_store_explicit(&rt->keeper_until, WEFT_NEVER,
			      memory_order_relaxed);
	atomic_store_explicit(&rt->keeper, NULL, memory_order_seq_cst);
	/* Timers still pending: make sure someone holds the role while we
	 * may be running tasks (see the file comment). Fenced: the notify's
	 * check of idle_state is a relaxed load, which C11 lets pass our
	 * seq_cst store of keeper; with the fence, it and a parking
	 * searcher's RMW + fence (idle_park) are a Dekker pair: either we see
	 * the searcher (its park then finds keeper NULL and claims the role
	 * in weft__timer_keep) or it has slept and we wake one sleeper. x86
	 * and ARMv8 (STLR then LDAR) order the pair anyway; C11 does not. */
	if (atomic_load_explicit(&rt->timer_next, memory_order_seq_cst) !=
	    WEFT_NEVER)
		weft__idle_notify(rt, true);
}

/* ---- sleeping and deadline scopes --------------------------------------- */

/* A sleep is a wait whose own condition is its timer: it ends when the
 * timer has fired, which inside a deadline scope that ends first is the
 * scope's -ETIMEDOUT. */
struct sleep_wait {
	struct weft__wait wt;
	bool scope; /* the scope's deadline, not the sleep's, is the timer's */
};

static bool sleep_ready(struct weft__wait *wt)
{
	if (!wt->armed || !weft__timer_fired(&wt->tm))
		return false;
	wt->res = ((struct sleep_wait *)wt)->scope ? -ETIMEDOUT : 0;
	return true;
}

/* Cancelled; or due before anything was filed (the caller yields). */
static bool sleep_give_up(struct weft__wait *wt, int why)
{
	wt->res = why == -ETIMEDOUT && !((struct sleep_wait *)wt)->scope
			  ? 0
			  : why;
	return true;
}

int weft_sleep_until(uint64_t deadline)
{
	struct weft__worker *w = weft__worker_self();
	struct sleep_wait s;
	int res;

	if (!w || !w->current)
		return -EPERM;
	s.scope = w->current->deadline < deadline;
	weft__wait_init(&s.wt, w, s.scope ? w->current->deadline : deadline);
	weft__wait_for(&s.wt, WEFT__W_SLEEP, NULL, (int64_t)deadline);
	res = weft__wait(&s.wt, sleep_ready, sleep_give_up);
	if (s.wt.due) {
		/* Due already: asyncio.sleep(0) still lets others run. */
		weft__worker_switch_out(s.wt.w, WEFT__SW_YIELD);
		if (weft__task_cancel_pending(s.wt.self))
			return -ECANCELED;
	}
	return res;
}

int weft_sleep(uint64_t ns)
{
	uint64_t now = weft_now();

	return weft_sleep_until(ns >= WEFT_NEVER - now ? WEFT_NEVER : now + ns);
}

int weft_sleep_ms(uint64_t ms)
{
	return weft_sleep(ms >= WEFT_NEVER / WEFT_NSEC_PER_MSEC
				  ? WEFT_NEVER
				  : ms * WEFT_NSEC_PER_MSEC);
}

uint64_t weft_deadline_begin(uint64_t deadline)
{
	struct weft__worker *w = weft__worker_self();
	uint64_t saved;

	if (!w || !w->current)
		return WEFT_NEVER;
	saved = w->current->deadline;
	if (deadline < saved)
		w->current->deadline = deadline;
	return saved;
}

uint64_t weft_timeout_begin(uint64_t timeout_ns)
{
	uint64_t now = weft_now();

	return weft_deadline_begin(timeout_ns >= WEFT_NEVER - now
					   ? WEFT_NEVER
					   : now + timeout_ns);
}

void weft_timeout_end(uint64_t saved)
{
	struct weft__worker *w = weft__worker_self();

	if (w && w->current)
		w->current->deadline = saved;
}

uint64_t weft_deadline(void)
{
	struct weft__worker *w = weft__worker_self();

	return w && w->current ? w->current->deadline : WEFT_NEVER;
}
