/*
 * The one wait primitive (in the spirit of libdill's dill_wait): every call
 * that suspends a task until something happens (an I/O completion, a timer,
 * a grant on a wait queue, a select, an awaited task, a waitset, a blocking
 * pool job) runs weft__wait(), which follows the park protocol below and
 * checks the conditions every wait shares (cancellation, the deadline); the
 * call supplies two small hooks for what is its own.
 *
 * Park/wake protocol (task->park)
 * -------------------------------
 * Every suspension is "wait until a condition holds", and every one goes
 * through weft__wait() below. A waiting task:
 *   1. exchanges park to PARKING (acq_rel),
 *   2. publishes itself where a waker will find it (a waiter list, a
 *      timer, an I/O request) and checks its condition,
 *   3. if the condition does not hold, switches away with WEFT__SW_PARK;
 *      the context it lands on, now that the old stack is idle, does
 *      CAS(park, PARKING -> PARKED). If that CAS fails the state was
 *      NOTIFIED, i.e. a waker came in between, and the lander queues the
 *      task itself.
 *   4. on resuming, loops back to 1 (exchanges PARKING again) and re-checks,
 *      leaving with park = RUNNING once the condition holds.
 * Every condition that may end the wait, cancellation included, must be
 * checked after step 1 and before step 3: a wake that came before step 1
 * left NOTIFIED, which step 1 overwrites, so the check is all that is left
 * of it. (Checking the cancel flag only before step 1 lost cancellations:
 * bench/wake_latency hung on it under load.)
 * A waker first makes the condition true, then moves park to NOTIFIED:
 *   RUNNING or PARKING -> NOTIFIED: the task is still on its stack; it will
 *      see the condition at its next check (the exchange in step 1/4 reads
 *      NOTIFIED and so synchronises with the waker's release CAS), or the
 *      lander of step 3 queues it;
 *   PARKED -> NOTIFIED: the task is off its stack; the waker queues it.
 *   NOTIFIED or FREE: nothing to do.
 * Exactly one party queues a parked task, because only one CAS can take
 * PARKING or PARKED to another state, and a task is never queued while it
 * is still on its stack: the waker queues only from PARKED, which only the
 * lander (after the switch) sets. No wake is lost: a waker that runs before
 * step 1 is followed by the check in step 2; one that runs after step 1 finds
 * PARKING or PARKED and either the lander or the waker queues the task.
 * Wakes may be spurious (a late waker of an earlier wait): every wait loops
 * on its condition, so a spurious wake costs a pass through the loop.
 *
 * Why every waker writes park (store buffering)
 * ---------------------------------------------
 * Waker: store the condition (C), then an RMW on park. Task: the exchange
 * of step 1/4 (acq_rel, an RMW on park), then a load of C. Two threads that
 * each store one location and then load the other are the store-buffering
 * shape: with a plain load of park on the waker's side, both loads may read
 * the old values (x86-TSO allows it: the waker's store of C may still sit
 * in its store buffer), so a waker that found NOTIFIED and returned at once
 * could leave the task re-checking an old C and parking for good (bug 1 of
 * issue 9: a shielded task woken by a cancel, its future set meanwhile).
 * With an RMW in every case but FREE, C11 orders them: all RMWs on park
 * are in one modification order, and only the task moves park out of
 * NOTIFIED (its exchange); the lander moves it only out of PARKING.
 *   - The waker's RMW comes first: the task's next exchange reads it, or a
 *     later waker's RMW (RMWs continue its release sequence), so the
 *     exchange (acquire) synchronises with the waker's release and the
 *     load of C that follows sees C.
 *   - The task's exchange comes first: the waker's RMW reads PARKING,
 *     PARKED or RUNNING and turns it into NOTIFIED, so the task is queued
 *     or re-checks after an exchange that reads it (first case again);
 *     or it reads NOTIFIED from another waker that came after the
 *     exchange, whose wake makes the task run another exchange, after
 *     this waker's RMW (first case).
 * The model in tests/model/park_wake.pml checks this protocol with store
 * buffers, and finds the lost wake-up when the NOTIFIED case only loads.
 */
#ifndef WEFT_WAIT_H
#define WEFT_WAIT_H

#include "base.h"
#include "task.h"
#include "timer.h"
#include "worker.h"

/*
 * A wait in progress: on the waiting task's stack, usually embedded first
 * in a record of the call's own, which the hooks reach through it.
 * The call fills the first five fields; weft__wait() owns the rest.
 */
struct weft__wait {
	struct weft__worker *w;  /* the calling worker; after the wait, the
				    one the task last woke on */
	struct weft__tcb *self;  /* the waiting task (w->current) */
	uint64_t deadline;       /* ns on weft_now(); WEFT_NEVER: none */
	bool nocancel;           /* neither cancellation nor the deadline
				    ends this wait (a close, a cancel) */
	struct weft__unwait *unwait; /* how a drop at shutdown takes the
					task's wait nodes back, or NULL */
#ifdef WEFT__REGISTRY
	/* The registry's words for the wait (debug.h): kind and object or
	 * number, set by every call of weft__wait() with weft__wait_for()
	 * (tools/layers' one-wait-loop rule keeps the calls few). */
	unsigned why;
	uint64_t what;
#endif
	/* weft__wait()'s own. */
	struct weft__timer tm;   /* the deadline's timer */
	bool armed;              /* tm is filed (cancel it afterwards) */
	bool due;                /* the deadline had passed before the
				    first park: nothing was filed */
	bool held;               /* give_up() kept waiting: the common
				    conditions are checked no more */
	int res;                 /* what weft__wait() returns */
};

/* Fills the call's fields of wt for the calling task of w. */
static inline void weft__wait_init(struct weft__wait *wt,
				   struct weft__worker *w, uint64_t deadline)
{
	wt->w = w;
	wt->self = w->current;
	wt->deadline = deadline;
	wt->nocancel = false;
	wt->unwait = NULL;
	/* why and what: every call names its wait (weft__wait_for); no
	 * default is stored, a store a wait saved. Builds with assertions
	 * store one that weft__wait() refuses, so that a call that forgets
	 * to name its wait fails its tests instead of recording a stack
	 * word (weft_listener_accept() did). */
#if defined(WEFT__REGISTRY) && \
	(!defined(NDEBUG) || defined(WEFT__ASAN) || defined(WEFT__TSAN))
	wt->why = WEFT__W_COUNT;
#endif
}

/* What the wait is for, in the registry's words (debug.h): a kind
 * (WEFT__W_*) and its object or number (a kind has one; the other is
 * NULL / 0). After weft__wait_init(); weft__wait() stores them. */
static inline void weft__wait_for(struct weft__wait *wt, unsigned kind,
				  const void *obj, int64_t arg)
{
#ifdef WEFT__REGISTRY
	wt->why = kind;
	wt->what = obj ? (uint64_t)(uintptr_t)obj : (uint64_t)arg;
#else
	(void)wt;
	(void)kind;
	(void)obj;
	(void)arg;
#endif
}

/* The common conditions, checked after the park is prepared: -ECANCELED
 * if a cancellation is pending, -ETIMEDOUT if the deadline has passed,
 * else 0. Arms wt->tm on first use. Inline: out of line, its call was a
 * twentieth of a sleep's instructions (bench/sleep_many). */
static inline int weft__wait_why(struct weft__wait *wt)
{
	struct weft__tcb *self = wt->self;

	if (weft__task_cancel_pending(self))
		return -ECANCELED;
	if (wt->deadline == WEFT_NEVER)
		return 0;
	if (!wt->armed) {
		if (wt->deadline <= weft_now() ||
		    !weft__timer_add(self->rt, &wt->tm, self, wt->deadline)) {
			wt->due = true;
			return -ETIMEDOUT;
		}
		wt->armed = true;
		weft__task_waits_timed(self);
		return 0;
	}
	return weft__timer_fired(&wt->tm) ? -ETIMEDOUT : 0;
}

/* Deadline for a call with its own relative timeout (WEFT_NEVER: none),
 * combined with the calling task's deadline scope (wait.c). */
uint64_t weft__wait_deadline(uint64_t timeout_ns);

/*
 * Waits until ready(wt) says the wait is over, running the park protocol
 * above: each pass prepares the park (step 1), asks ready(), then the
 * common conditions, and parks (step 3) if none ended it. Returns wt->res.
 *
 *   ready(wt):        the call's own condition, read after the prepare
 *                     (with acquire, pairing with its waker's release).
 *                     True ends the wait; it sets wt->res first.
 *   give_up(wt, why): a cancellation or the deadline (why: -ECANCELED,
 *                     -ETIMEDOUT) came first. True ends the wait (wt->res
 *                     set: why, or the outcome that won the race with
 *                     it); false keeps waiting, for ready() alone (the
 *                     request was asked to stop, and its completion is
 *                     what ends the wait: I/O, a blocking job already
 *                     running). Runs with the park prepared: it may spin
 *                     and take locks, never suspend.
 *
 * While the task is parked its unwait record is published (weft__tcb
 * unwait); the deadline's timer is taken back before returning. Inline,
 * so that each call's hooks are direct calls; the park protocol is here
 * once.
 */
static inline __attribute__((always_inline)) int
weft__wait(struct weft__wait *wt, bool (*ready)(struct weft__wait *),
	   bool (*give_up)(struct weft__wait *, int))
{
	struct weft__tcb *self = wt->self;

	atomic_init(&wt->tm.state, WEFT__TM_IDLE);
	wt->armed = wt->due = wt->held = false;
	wt->res = 0;
	self->unwait = wt->unwait;
#ifdef WEFT__REGISTRY
	weft__assert(wt->why < WEFT__W_COUNT); /* weft__wait_for() called */
	weft__task_waits_begin(self, wt->w->dbg_now, wt->why, wt->what);
#endif
	for (;;) {
		weft__task_park_prepare(self);
		if (ready(wt))
			break;
		if (!wt->held && !wt->nocancel) {
			int why = weft__wait_why(wt);

			if (why) {
				/* Done with: it fired, or the wait ends (or
				 * is held) on why. Before give_up(), which
				 * may return holding the object's lock. */
				if (wt->armed) {
					weft__timer_cancel(self->rt, &wt->tm);
					wt->armed = false;
				}
				if (give_up(wt, why))
					break;
				wt->held = true;
			}
		}
		wt->w = weft__task_park(wt->w);
	}
	self->unwait = NULL;
	weft__task_park_done(self);
	if (wt->armed)
		weft__timer_cancel(self->rt, &wt->tm);
	return wt->res;
}

#endif /* WEFT_WAIT_H */
