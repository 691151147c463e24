/*
 * Wait queues: parking on a queue, giving up, granting and retiring (the
 * protocol is argued in wq.h).
 */
#include <errno.h>

#include "base.h"
#include "futex.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

/*
 * A thread's wait (one outside the runtime) on its node until DONE, or
 * false once deadline (WEFT_NEVER: none) has passed while the node was not
 * claimed. A short bounded spin (WEFT__SPIN_BEFORE_SLEEP: a grant often
 * comes within it, and then neither side makes a system call), then a
 * sleep on the state's futex with the SLEEPER bit set, which makes the
 * granter's exchange of DONE wake it (wq.h). Once a granter has claimed
 * the node (GRANTING) the deadline no longer counts: the grant is a few
 * instructions from DONE, and is reported.
 */
static bool thread_wait(struct weft__wnode *n, uint64_t deadline)
{
	unsigned spin = 0;

	for (;;) {
		/* Acquire: pairs with the release exchange of DONE in
		 * weft__wq_grant(). */
		int s = atomic_load_explicit(&n->state, memory_order_acquire);

		if (s == WEFT__WN_DONE)
			return true;
		if (!(s & WEFT__WN_GRANTING) && deadline != WEFT_NEVER &&
		    weft_now() >= deadline)
			return false;
		if (spin < WEFT__SPIN_BEFORE_SLEEP) {
			weft__spin_backoff(&spin);
			continue;
		}
		/* Relaxed: no data travels with the bit; that the CAS and
		 * the granter's claim and exchange are RMWs on this word is
		 * what makes the wake certain (wq.h). A failed CAS: the word
		 * moved on (claimed, or DONE); look again. */
		if (!(s & WEFT__WN_SLEEPER) &&
		    !atomic_compare_exchange_strong_explicit(
			    &n->state, &s, s | WEFT__WN_SLEEPER,
			    memory_order_relaxed, memory_order_relaxed))
			continue;
		weft__futex_wait(&n->state, s | WEFT__WN_SLEEPER,
				 (s & WEFT__WN_GRANTING) ? WEFT_NEVER : deadline);
	}
}

/*
 * Gives up on n (the wait failed with why): claims the node, then unlinks
 * it. A failed claim means a granter claimed it first: the grant is
 * reported (0) and the object is not touched, since the granting side may
 * destroy it as soon as its call returns (wq.h, Lifetime). keep: return
 * with the lock held after the unlink.
 */
static int give_up(weft__spin *lock, struct weft__wq *q, struct weft__wnode *n,
		   int why, bool keep)
{
	int s = atomic_load_explicit(&n->state, memory_order_relaxed);
	bool ours = false;

	/* Relaxed: only the outcome matters (one of this CAS and the
	 * granter's in weft__wq_take fails); see wq.h. WAITING, with or
	 * without a sleeping thread's bit. */
	while (!ours && (s & ~WEFT__WN_SLEEPER) == WEFT__WN_WAITING)
		ours = atomic_compare_exchange_strong_explicit(
			&n->state, &s, WEFT__WN_LEAVING, memory_order_relaxed,
			memory_order_relaxed);
	if (!ours) {
		/* GRANTING or DONE. A granter holds the lock between its
		 * claim and DONE and never suspends there; acquire pairs
		 * with the release in weft__wq_grant(). A thread may sleep,
		 * in case its granter has lost its CPU there. */
		unsigned spin = 0;

		if (!n->task)
			thread_wait(n, WEFT_NEVER); /* returns at DONE */
		else
			while (atomic_load_explicit(&n->state,
						    memory_order_acquire) !=
			       WEFT__WN_DONE)
				weft__spin_backoff(&spin);
		return 0;
	}
	/* Ours: still linked (granters skip LEAVING nodes), so every destroy
	 * waits for the unlink below (weft__wq_retire): the object is
	 * there. */
	weft__spin_lock(lock);
	if (n->linked) /* not after a drop at shutdown */
		weft__wq_remove(q, n);
	if (!keep)
		weft__spin_unlock(lock);
	return why;
}

static int park_thread(weft__spin *lock, struct weft__wq *q,
		       struct weft__wnode *n, uint64_t deadline, bool keep)
{
	if (thread_wait(n, deadline))
		return 0;
	return give_up(lock, q, n, -ETIMEDOUT, keep);
}

/* A parked waiter's node and where it is linked, for a drop at shutdown
 * (weft__task_drop_all): the node leaves the program's object, unless it
 * was granted (a thread outside the runtime may have granted it and freed
 * the object since): the same claim as give_up(). */
struct wq_wait {
	struct weft__wait wt;
	struct weft__unwait unwait; /* the drop calls unwait.fn(&unwait) */
	weft__spin *lock;
	struct weft__wq *q;
	struct weft__wnode *n;
	bool keep;
};

static void wq_unwait(struct weft__unwait *arg)
{
	struct wq_wait *u = weft__container_of(arg, struct wq_wait, unwait);

	give_up(u->lock, u->q, u->n, -ECANCELED, false);
}

/* Acquire: pairs with the granter's release of DONE (weft__wq_grant). */
static bool wq_ready(struct weft__wait *wt)
{
	struct wq_wait *u = (struct wq_wait *)wt;

	return atomic_load_explicit(&u->n->state, memory_order_acquire) ==
	       WEFT__WN_DONE;
}

static bool wq_give_up(struct weft__wait *wt, int why)
{
	struct wq_wait *u = (struct wq_wait *)wt;

	wt->res = give_up(u->lock, u->q, u->n, why, u->keep);
	return true;
}

static int park(weft__spin *lock, struct weft__wq *q, struct weft__wnode *n,
		uint64_t deadline, bool keep)
{
	struct wq_wait u; /* field by field: an initialiser would zero the
			     whole record, timer included, on every park */

	if (!n->task)
		return park_thread(lock, q, n, deadline, keep);
	u.unwait.fn = wq_unwait;
	u.lock = lock;
	u.q = q;
	u.n = n;
	u.keep = keep;
	weft__wait_init(&u.wt, weft__worker_self(), deadline);
#ifdef WEFT__REGISTRY
	weft__wait_for(&u.wt, n->why, n->what, 0);
#endif
	u.wt.unwait = &u.unwait;
	return weft__wait(&u.wt, wq_ready, wq_give_up);
}

int weft__wq_park(weft__spin *lock, struct weft__wq *q, struct weft__wnode *n,
		  uint64_t deadline)
{
	return park(lock, q, n, deadline, false);
}

int weft__wq_park_locked(weft__spin *lock, struct weft__wq *q,
			 struct weft__wnode *n, uint64_t deadline)
{
	return park(lock, q, n, deadline, true);
}


/*
 * The nodes' tasks are collected before the wakes: after a grant the node
 * may be gone. Order: grants are first come first served, and so are the
 * wakes. A lone grant goes to the waker's next slot (a hand-off, as a
 * channel's); several go to the back of the queue one after the other
 * (weft__task_wake_back), as asyncio's call_soon queues them: waking each
 * into the next slot displaced the previous one, so 5 waiters resumed 4 0
 * 1 2 3 (issue 15 #8). A batch is woken in order too (it was reversed).
 */
static void wake_back(struct weft__wake k)
{
	if (k.task)
		weft__task_wake_back(k.task);
	else
		weft__wq_wake(k);
}

unsigned weft__wq_grant_all(weft__spin *lock, struct weft__wq *q, int result,
			    void *value, unsigned max)
{
	struct weft__wake batch[32];
	unsigned nb = 0, total = 0;
	struct weft__wnode *n;

	while (total < max && (n = weft__wq_take(q))) {
		n->value = value;
		batch[nb++] = weft__wq_grant(n, result);
		total++;
		if (nb == 32) {
			/* Wake a full batch under the lock: rare (32+
			 * waiters; a broadcast must not let later waiters
			 * in, so the lock stays held) and still correct.
			 * More follow, so to the back. */
			for (unsigned i = 0; i < nb; i++)
				wake_back(batch[i]);
			nb = 0;
		}
	}
	weft__spin_unlock(lock);
	for (unsigned i = 0; i < nb; i++) {
		if (total == 1)
			weft__wq_wake(batch[i]);
		else
			wake_back(batch[i]);
	}
	return total;
}

/* A node of a waiter that is on its way out: it unlinks itself without
 * suspending (wq.h, Lifetime). */
static bool leaving(const struct weft__wnode *n)
{
	if (n->sel)
		return atomic_load_explicit(&n->sel->winner,
					    memory_order_acquire) ==
		       WEFT__SEL_GAVE_UP;
	return atomic_load_explicit(&n->state, memory_order_acquire) ==
	       WEFT__WN_LEAVING;
}

/* 0: q empty; 1: only leavers linked; 2: someone else is linked. */
static int wq_census(const struct weft__wq *q)
{
	const struct weft__wnode *n;
	int r = 0;

	if (!q)
		return 0;
	for (n = q->head; n; n = n->next) {
		if (!leaving(n))
			return 2;
		r = 1;
	}
	return r;
}

void weft__wq_retire_n(weft__spin *lock, struct weft__wq *const *qs,
		       size_t nq, const char *msg)
{
	unsigned spin = 0;

	for (;;) {
		int most = 0;

		weft__spin_lock(lock);
		for (size_t i = 0; i < nq; i++) {
			int r = wq_census(qs[i]);

			if (r > most)
				most = r;
		}
		weft__check(most < 2, msg);
		if (!most)
			break;
		/* A leaver needs the lock to unlink itself. It does not
		 * suspend on the way, but its thread may have lost its CPU
		 * (to this one, say): the back-off ends in yields. */
		weft__spin_unlock(lock);
		weft__spin_backoff(&spin);
	}
	weft__spin_unlock(lock);
}
