/*
 * The timer service: one hierarchical timing wheel per worker, deadlines in
 * 16.384 us ticks, O(1) insert and cancel; a task files its timers in the
 * wheel of the worker it runs on, any worker may cancel or fire them.
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
 *   Slot lists are FIFO (appended at the tail, the head's prev being the
 *   tail) and a slot is fired and re-filed in list order: timers of one
 *   tick in one wheel fire in the order they were filed.
 *
 * One wheel per worker
 *   The wheel used to be one for the runtime, behind one lock that every
 *   worker took for every sleep and every firer held while it moved up to
 *   50,000 due nodes out. Now each worker has its own (worker->wheel) and
 *   only its owner files timers in it (weft__timer_add() uses the calling
 *   worker's), so the lock of a wheel is taken, in the common case, only
 *   by its owner: filing, and firing from its own loop. Others take it
 *   rarely: a task that migrated cancels its timer in the wheel it was
 *   filed in (n->wheel), and a worker fires another's wheel only when the
 *   owner cannot (asleep, or stuck in a long task; below). A lock rather
 *   than a lock-free state protocol on the node: a cancel must unlink the
 *   node from a doubly linked slot list, which the owner may be changing,
 *   and an uncontended spinlock is one RMW on a line the owner already
 *   holds (sleep_many, docs/benchmarks.md).
 *
 * Who may touch what
 *   A wheel (slots, masks, elapsed, count, each of its pending nodes'
 *   links) is guarded by its lock. A node's state moves
 *     IDLE -> PENDING    weft__timer_add(), under the wheel's lock
 *     PENDING -> IDLE    weft__timer_cancel(), under the wheel's lock
 *     PENDING -> FIRING  a firer, under the lock (node moved to its
 *                        private list through fnext)
 *     FIRING -> FIRED    the firer, after the lock, release store
 *   n->wheel is written by add() before the node is published (the lock's
 *   release), and read by a cancel that saw PENDING: the task's own
 *   earlier write, or, after a migration, ordered by the park/wake
 *   hand-over that moved the task.
 *   A node lives in its owner's memory (a waiting task's stack), so the
 *   firer must be done with it before the owner may return: the firer
 *   reads task and fnext before the FIRED store and never touches the node
 *   after it; an owner that finds FIRING spins until FIRED (a few
 *   instructions away). The owner sees FIRED with acquire, then the firer
 *   wakes the task. A wake may therefore reach a task that has already
 *   left the wait (even ended): the park protocol (wait.h) allows spurious
 *   wakes, and control blocks are type-stable.
 *   A firer holds the lock for one batch: whole slots until at least
 *   WEFT__TIMER_BATCH nodes moved (fired or re-filed); it wakes that batch
 *   outside the lock, then takes the next. A batch's nodes are still in
 *   cache when they are woken, and a cancel or a second firer waits for
 *   one batch, not for 50,000 nodes. Two firers of one wheel take batches
 *   in turn; each node is moved to FIRING once, under the lock.
 *   (tests/model/timer_node.pml checks the state protocol.)
 *
 * Who fires, and no timer is late because of a sleeping worker
 *   wheel->next holds the wheel's earliest slot expiration in ns
 *   (WEFT_NEVER if empty), stored seq_cst under its lock; it only moves
 *   earlier in add(), which only the owner calls. Busy workers compare the
 *   clock with their own wheel's next about every WEFT__SERVE_NS of run
 *   time (at most every WEFT__INJECT_INTERVAL picks) and fire it, and fire
 *   another's wheel when it is WEFT__TIMER_GRACE_NS late (its owner is
 *   stuck in a task, or asleep without being the keeper); a worker that
 *   runs out of tasks fires every due wheel before searching.
 *   Among parked workers one holds the keeper role (rt->keeper) and
 *   sleeps in its ring no longer than the earliest next of all wheels; the
 *   others sleep without timeout. When it wakes it fires every due wheel,
 *   its own first; the notify of its first batch wakes a sleeper, whose
 *   own wheel is then fired by its owner alongside (sleep_many: two
 *   workers fire 50,000 nodes each rather than one 100,000). An insert
 *   that makes its wheel's next earlier than the keeper's wake-up time
 *   wakes the keeper; with no keeper, it notifies the idle protocol,
 *   which wakes a sleeper unless one is searching (and a searcher claims
 *   the role when it parks).
 *   Dekker pairs: the inserter stores its wheel's next then loads keeper
 *   and keeper_until; the keeper stores keeper (CAS) and keeper_until,
 *   then loads every wheel's next. All seq_cst: one of the two sees the
 *   other. The inserter is the wheel's owner, running, so no other
 *   inserter of that wheel races with it; a firer's or a canceller's
 *   store of next only makes it later, which can wake someone early,
 *   never late.
 *   A keeper that wakes keeps the role while it idles (fires what is due,
 *   searches) and parks again: its next weft__timer_keep() publishes
 *   keeper_until afresh (the same store-then-load-every-next as a claim;
 *   an inserter that saw the stale value wakes it, or is seen by it). It
 *   gives the role up only when it is about to run a task (worker.c),
 *   which may be long: then, if timers are still pending in any wheel, it
 *   notifies so that a sleeper takes the role over. (Giving it up at each
 *   wake-up handed it to a second worker, a notify and its wake-up, at
 *   every watch timeout while a timer was pending: about 70 a second.)
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
	atomic_init(&rt->keeper, NULL);
	atomic_init(&rt->keeper_until, WEFT_NEVER);
}

void weft__timer_wheel_init(struct weft__wheel *wh)
{
	unsigned l, s;

	atomic_init(&wh->lock.word, 0);
	wh->elapsed = weft_now() >> WEFT__TICK_SHIFT;
	wh->count = 0;
	for (l = 0; l < WEFT__TIMER_LEVELS; l++) {
		wh->occupied[l] = 0;
		for (s = 0; s < LVL_SLOTS; s++)
			wh->slot[l][s] = NULL;
	}
	atomic_init(&wh->next, WEFT_NEVER);
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

/* Appends n to its slot's list (FIFO: the head's prev is the tail). */
static void link_node(struct weft__wheel *wh, struct weft__timer *n)
{
	struct weft__timer **head;
	unsigned l, s;

	place(wh, n->when, &l, &s);
	n->lvl = (uint8_t)l;
	n->slot = (uint8_t)s;
	n->next = NULL;
	head = &wh->slot[l][s];
	if (*head) {
		n->prev = (*head)->prev;
		n->prev->next = n;
		(*head)->prev = n;
	} else {
		n->prev = n;
		*head = n;
		wh->occupied[l] |= UINT64_C(1) << s;
	}
}

static void unlink_node(struct weft__wheel *wh, struct weft__timer *n)
{
	struct weft__timer **head = &wh->slot[n->lvl][n->slot];

	if (*head == n) {
		*head = n->next;
		if (n->next)
			n->next->prev = n->prev; /* the tail */
		else
			wh->occupied[n->lvl] &= ~(UINT64_C(1) << n->slot);
	} else {
		n->prev->next = n->next;
		if (n->next)
			n->next->prev = n->prev;
		else
			(*head)->prev = n->prev; /* n was the tail */
	}
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

/* The wheel's earliest expiration in ns; under the lock. */
static uint64_t earliest(const struct weft__wheel *wh)
{
	unsigned l, s;
	uint64_t due;

	return next_due(wh, &l, &s, &due) ? tick_ns(due) : WEFT_NEVER;
}

bool weft__timer_add(struct weft_runtime *rt, struct weft__timer *n,
		     struct weft__tcb *task, uint64_t deadline)
{
	struct weft__worker *w = weft__worker_self(), *k;
	struct weft__wheel *wh;
	uint64_t before, after;

	/* Timers are filed by the runtime's own tasks, on its workers: a
	 * foreign or blocking-pool thread gets -EPERM before it comes here. */
	weft__assert(w && w->rt == rt);
	(void)rt; /* read only by the assertion */
	wh = &w->wheel;
	n->task = task;
	n->when = tick_ceil(deadline);
	n->wheel = wh;
	/* A busy worker adding a timer looks at the timers from its next
	 * pick on (worker.c, serve()). */
	weft__worker_serve_soon(w);
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
	/* w is the calling worker (asserted above), the only writer of its
	 * counters: a relaxed load and store, no RMW (metrics.h). It pairs
	 * with nothing: weft_metrics() reads it relaxed, a count that only
	 * grows, and orders no other data by it. */
	WEFT__METRIC(w, timers_armed, 1);
	atomic_store_explicit(&n->state, WEFT__TM_PENDING,
			      memory_order_relaxed);
	/* Exact: next is only stored under the lock. */
	before = atomic_load_explicit(&wh->next, memory_order_relaxed);
	after = before;
	if (tick_ns(n->when) < before) {
		after = earliest(wh);
		if (after < before)
			atomic_store_explicit(&wh->next, after,
					      memory_order_seq_cst);
	}
	weft__spin_unlock(&wh->lock);

	if (after >= before)
		return true; /* nobody waits for a later time than before */
	/* The seq_cst store of next comes before these seq_cst loads; see
	 * the file comment. */
	k = atomic_load_explicit(&w->rt->keeper, memory_order_seq_cst);
	if (k) {
		if (after < atomic_load_explicit(&w->rt->keeper_until,
						 memory_order_seq_cst))
			weft__ring_wake(w, k);
	} else {
		weft__idle_notify(w->rt, true);
	}
	return true;
}

bool weft__timer_cancel(struct weft_runtime *rt, struct weft__timer *n)
{
	int s = atomic_load_explicit(&n->state, memory_order_acquire);

	(void)rt;
	if (s == WEFT__TM_IDLE)
		return false;
	if (s == WEFT__TM_PENDING) {
		/* Perhaps another worker's wheel: the task migrated since
		 * add() (its lock is the owner's, uncontended but for the
		 * moments the owner files or fires). */
		struct weft__wheel *wh = n->wheel;

		weft__spin_lock(&wh->lock);
		s = atomic_load_explicit(&n->state, memory_order_relaxed);
		if (s == WEFT__TM_PENDING) {
			unlink_node(wh, n);
			/* An emptied wheel says so: no timed sleep, no serve
			 * for it. A later value than the truth otherwise
			 * (the next run publishes it): early, never late. */
			if (--wh->count == 0)
				atomic_store_explicit(&wh->next, WEFT_NEVER,
						      memory_order_relaxed);
			atomic_store_explicit(&n->state, WEFT__TM_IDLE,
					      memory_order_relaxed);
		}
		weft__spin_unlock(&wh->lock);
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

/*
 * Fires every timer of wh due at `now`, a batch per lock hold (see the
 * file comment). Returns how many fired. `*first`: no task woken by this
 * firing pass yet (the first goes to the next slot; cleared here).
 */
static unsigned wheel_run(struct weft_runtime *rt, struct weft__wheel *wh,
			  uint64_t now, bool *first)
{
	uint64_t now_tick = now >> WEFT__TICK_SHIFT, due;
	unsigned lvl, slot, fired = 0;
	bool more;

	do {
		struct weft__timer *fire = NULL, **fire_tail = &fire, *n;
		unsigned moved = 0, batch = 0;

		weft__spin_lock(&wh->lock);
		while ((more = next_due(wh, &lvl, &slot, &due) &&
			       due <= now_tick) &&
		       moved < WEFT__TIMER_BATCH) {
			n = wh->slot[lvl][slot];
			wh->slot[lvl][slot] = NULL;
			wh->occupied[lvl] &= ~(UINT64_C(1) << slot);
			wh->elapsed = due;
			while (n) {
				struct weft__timer *next = n->next;

				/* The next node's line while this one is
				 * handled: a list of nodes on as many
				 * stacks is a chain of cache misses. */
				if (next)
					__builtin_prefetch(next, 1);
				if (n->when <= due) {
					atomic_store_explicit(
						&n->state, WEFT__TM_FIRING,
						memory_order_relaxed);
					/* In deadline order: slots are
					 * visited in order, a level-0
					 * slot's timers share one tick,
					 * and its list is FIFO. */
					n->fnext = NULL;
					*fire_tail = n;
					fire_tail = &n->fnext;
					wh->count--;
				} else {
					link_node(wh, n); /* lower now */
				}
				moved++;
				n = next;
			}
		}
		if (!more && now_tick > wh->elapsed)
			wh->elapsed = now_tick;
		/* Only ever later than before (firing takes the earliest
		 * slots): seq_cst for the inserters' pair all the same. */
		if (atomic_load_explicit(&wh->next, memory_order_relaxed) !=
		    (due = earliest(wh)))
			atomic_store_explicit(&wh->next, due,
					      memory_order_seq_cst);
		weft__spin_unlock(&wh->lock);

		while (fire) {
			struct weft__tcb *t = fire->task;

			n = fire;
			fire = fire->fnext;
			if (fire)
				__builtin_prefetch(fire->task, 1);
			/* Last touch of the node: its owner may return
			 * after this. */
			atomic_store_explicit(&n->state, WEFT__TM_FIRED,
					      memory_order_release);
			/* The earliest into the next slot: it runs next,
			 * not behind every task queued on a busy worker
			 * (issue 17: a sleep(1 ms) overshot by as many
			 * slices as tasks were queued). The rest at the
			 * back: a batch runs in deadline order, not
			 * reversed by the next slot. */
			if (*first) {
				weft__task_wake(t);
				*first = false;
			} else {
				weft__task_wake_back(t);
			}
			batch++;
		}
		/* After each batch: another worker may start on the tasks
		 * (and on its own wheel) while this one fires the next. */
		if (batch)
			weft__idle_notify(rt, false);
		fired += batch;
	} while (more);
	if (fired)
		weft__metrics_timers_fired(rt, fired);
	return fired;
}

static inline uint64_t wheel_next(struct weft__worker *o)
{
	return atomic_load_explicit(&o->wheel.next, memory_order_relaxed);
}

/* Relaxed loads of next: a worker's look is opportunistic. A stale value
 * only defers the firing to its next look or to the keeper, whose
 * protocol (the seq_cst pairs above) is what guarantees it. Its own
 * wheel first; then the others', at once when this worker is idle, or
 * once they are WEFT__TIMER_GRACE_NS late when it is busy (`late`). */
unsigned weft__timer_poll_at(struct weft__worker *w, uint64_t now, bool late)
{
	struct weft_runtime *rt = w->rt;
	uint64_t limit = now;
	unsigned i, fired = 0;
	bool first = true;

	if (wheel_next(w) <= now)
		fired += wheel_run(rt, &w->wheel, now, &first);
	if (late)
		limit = now > WEFT__TIMER_GRACE_NS ? now - WEFT__TIMER_GRACE_NS
						   : 0;
	for (i = 0; i < rt->nworkers; i++) {
		struct weft__worker *o = rt->workers[i];

		if (o != w && wheel_next(o) <= limit)
			fired += wheel_run(rt, &o->wheel, now, &first);
	}
	return fired;
}

bool weft__timer_pending(struct weft_runtime *rt)
{
	unsigned i;

	for (i = 0; i < rt->nworkers; i++)
		if (wheel_next(rt->workers[i]) != WEFT_NEVER)
			return true;
	return false;
}

unsigned weft__timer_poll(struct weft__worker *w, bool late)
{
	/* No clock read while no timer is pending. */
	if (!weft__timer_pending(w->rt))
		return 0;
	return weft__timer_poll_at(w, weft_now(), late);
}

/* ---- the keeper role ---------------------------------------------------- */

/* The earliest next of all wheels; seq_cst loads (the keeper's side of
 * the Dekker pairs). */
static uint64_t all_next(struct weft_runtime *rt)
{
	uint64_t d = WEFT_NEVER, x;
	unsigned i;

	for (i = 0; i < rt->nworkers; i++) {
		x = atomic_load_explicit(&rt->workers[i]->wheel.next,
					 memory_order_seq_cst);
		if (x < d)
			d = x;
	}
	return d;
}

uint64_t weft__timer_keep(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	struct weft__worker *none = NULL;
	uint64_t d, again;

	/* Still the keeper from an earlier park (it found no task to run
	 * since): its keeper_until is stale, so it is published afresh
	 * below whatever is pending (NEVER if nothing: an insert then wakes
	 * us). Otherwise claim the role if a timer is pending. */
	if (!w->keeping) {
		if (!weft__timer_pending(rt) ||
		    !atomic_compare_exchange_strong_explicit(
			    &rt->keeper, &none, w, memory_order_seq_cst,
			    memory_order_relaxed))
			return 0;
		w->keeping = true;
	}
	d = all_next(rt);
	for (;;) {
		atomic_store_explicit(&rt->keeper_until, d,
				      memory_order_seq_cst);
		again = all_next(rt);
		if (again >= d)
			break;
		d = again;
	}
	/* Every wheel emptied meanwhile: keep the role, with no timeout (an
	 * insert finds us and wakes us: keeper_until is NEVER). */
	return d == WEFT_NEVER ? 0 : d;
}

void weft__timer_unkeep(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	/* Only w stores w into keeper, and only w takes it out. */
	if (!w->keeping)
		return;
	w->keeping = false;
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
	if (all_next(rt) != WEFT_NEVER)
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
