/*
 * Coordination objects of runtime/sync.c, against the contracts in
 * weft.h ("coordination between tasks"): future, event, lock, semaphore
 * and condition. Each is checked for its result codes, its wake-ups
 * (who, how many, in which order), timeouts (own and deadline scope),
 * cancellation (nothing taken), and, where the header promises it, waits
 * from a thread outside the runtime.
 *
 * "Parked" without a way to see it. Several tests need a task to be
 * waiting inside a call before the test acts (a lock's FIFO order, a
 * close that must wake it). The waiter bumps a counter just before the
 * call; the test polls the counter, then sleeps SETTLE_NS more, so that
 * the waiter has linked itself by then on any sane machine. Where the
 * order matters (FIFO of the lock and the semaphore), the waiters are
 * pinned to the test's own worker and the run is repeated with one
 * worker, where it is exact; with four workers, each waiter is seen
 * queued through a witness task pinned to its worker, which runs only
 * once the waiter has suspended (fifo_mw_run). Waiting on a condition needs no such delay:
 * a waiter links itself before it lets the lock go, so a test that then
 * takes the lock knows it is queued.
 *
 * Races between giving up (timeout, cancel) and being granted are
 * provoked with an adaptive aim (lock_give_up_racing_a_hand_over...):
 * the window is a few instructions wide.
 *
 * Timing checks: never early (exact); "at once" (a timeout's end after
 * its timer, a cancel reaching a waiter) is QUICK_NS for the best of
 * WT_TRIES measurements (late_by), with PROMPT_NS on each as a hang
 * guard only (sanitizers, a loaded 2-core machine).
 */
#include <pthread.h>
#include <sched.h>

#include "weft_test.h"

WT_SUITE(sync, 120);

static const unsigned worker_counts[] = { 1, 2, 4 };
#define N_COUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

static void note_max(atomic_int *max, int v)
{
	int cur = atomic_load(max);

	while (v > cur && !atomic_compare_exchange_weak(max, &cur, v))
		;
}

/* Spins until *started is set (by a task another worker stole), yielding
 * after a while in case none does. */
static void wait_started(atomic_ullong *started)
{
	uint64_t b = weft_now();

	while (!atomic_load(started))
		if (weft_now() - b > WEFT_NSEC_PER_MSEC)
			weft_yield();
}

static void release_all(weft_task **ts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ts[i])
			weft_task_release(ts[i]);
}

/* For WT_BEST_OF: how late a wait due to end `want` ns after it began (a
 * timeout, a deadline) came back; 0 when on time. Every try is checked
 * never to end early, and to end within PROMPT_NS past its time (a hang
 * guard only); the caller checks the best try against QUICK_NS. */
static uint64_t late_by(uint64_t elapsed, uint64_t want)
{
	CHECK_NOT_EARLY(elapsed, want);
	CHECK_BELOW(elapsed, want + PROMPT_NS);
	return elapsed > want ? elapsed - want : 0;
}

/* ======================================================================
 * future
 * ====================================================================== */

static void *future_basics_main(void *arg)
{
	weft_future *f, *g;
	void *v = (void *)0x1;

	(void)arg;
	if (!WT_CHECK_EQ(weft_future_create(&f), 0))
		return NULL;
	WT_CHECK_EQ(weft_future_done(f), 0);
	WT_CHECK_EQ(weft_future_await_timeout(f, &v, 0), -ETIMEDOUT);
	WT_CHECK_PTR_EQ(v, 0x1); /* nothing stored */
	WT_CHECK_EQ(weft_future_set(f, (void *)0x1234), 0);
	WT_CHECK_EQ(weft_future_done(f), 1);
	WT_CHECK_EQ(weft_future_await(f, &v), 0);
	WT_CHECK_PTR_EQ(v, 0x1234);
	/* Done is final: a second set or a fail changes nothing. */
	WT_CHECK_EQ(weft_future_set(f, (void *)0x5678), -EALREADY);
	WT_CHECK_EQ(weft_future_fail(f, -EIO), -EALREADY);
	v = NULL;
	WT_CHECK_EQ(weft_future_await_timeout(f, &v, 0), 0);
	WT_CHECK_PTR_EQ(v, 0x1234);
	WT_CHECK_EQ(weft_future_await(f, NULL), 0);
	weft_future_destroy(f);

	/* A failed future reports its error to every await. */
	if (!WT_CHECK_EQ(weft_future_create(&g), 0))
		return NULL;
	WT_CHECK_EQ(weft_future_fail(g, 0), -EINVAL);
	WT_CHECK_EQ(weft_future_fail(g, 5), -EINVAL);
	WT_CHECK_EQ(weft_future_done(g), 0);
	WT_CHECK_EQ(weft_future_fail(g, -EIO), 0);
	WT_CHECK_EQ(weft_future_done(g), 1);
	WT_CHECK_EQ(weft_future_await(g, &v), -EIO);
	WT_CHECK_EQ(weft_future_await(g, NULL), -EIO);
	WT_CHECK_EQ(weft_future_set(g, (void *)1), -EALREADY);
	weft_future_destroy(g);

	WT_CHECK_EQ(weft_future_create(NULL), -EINVAL);
	WT_CHECK_EQ(weft_future_set(NULL, NULL), -EINVAL);
	WT_CHECK_EQ(weft_future_await(NULL, NULL), -EINVAL);
	return NULL;
}

Test(sync, future_set_or_fail_once_and_await_returns_it,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(future_basics_main, NULL, 2);
}

/* Many awaiters, parked on several workers; one set wakes them all with
 * the value. Rounds alternate between awaiters known to be parked and
 * awaiters racing the set (fast path against park). */
#define FUT_AWAITERS 48
#define FUT_ROUNDS 40

struct fut_many {
	weft_future *f;
	atomic_int entered;
	atomic_int got;
	atomic_int workers_seen; /* bitmask of worker indices */
};

static void *fut_awaiter(void *arg)
{
	struct fut_many *m = arg;
	void *v = NULL;
	int w = weft_worker_index();

	if (w >= 0 && w < 31)
		atomic_fetch_or(&m->workers_seen, 1 << w);
	atomic_fetch_add(&m->entered, 1);
	if (WT_CHECK_EQ(weft_future_await(m->f, &v), 0) &&
	    WT_CHECK_PTR_EQ(v, 0xf00d))
		atomic_fetch_add(&m->got, 1);
	return NULL;
}

static void *fut_many_main(void *arg)
{
	struct fut_many *m = arg;
	weft_task *ts[FUT_AWAITERS];

	for (int r = 0; r < FUT_ROUNDS; r++) {
		if (!WT_CHECK_EQ(weft_future_create(&m->f), 0))
			return NULL;
		atomic_store(&m->entered, 0);
		atomic_store(&m->got, 0);
		for (int i = 0; i < FUT_AWAITERS; i++)
			ts[i] = weft_spawn(fut_awaiter, m);
		if (r % 2 == 0) {
			settle_count(&m->entered, FUT_AWAITERS);
			/* They are all parked: nobody got anything yet. */
			WT_CHECK_EQ(atomic_load(&m->got), 0);
		}
		WT_CHECK_EQ(weft_future_set(m->f, (void *)0xf00d), 0);
		WT_CHECK_EQ(weft_gather(ts, FUT_AWAITERS, NULL), 0);
		WT_CHECK_EQ(atomic_load(&m->got), FUT_AWAITERS);
		release_all(ts, FUT_AWAITERS);
		weft_future_destroy(m->f);
	}
	return NULL;
}

Test(sync, future_set_wakes_every_awaiter_on_every_worker,
     .timeout = WT_TIMEOUT(30))
{
	struct fut_many m;

	memset(&m, 0, sizeof(m));
	wt_run(fut_many_main, &m, 4);
	cr_log_info("awaiters ran on workers mask 0x%x",
		    atomic_load(&m.workers_seen));
}

/* An await of a future nobody sets, cut after 20 ms by its own timeout
 * or (scope) by a deadline scope; returns how late. */
static uint64_t fut_timeout_try(weft_future *f, int scope)
{
	void *v = (void *)0x1;
	uint64_t b = weft_now(), saved, late;

	if (scope) {
		saved = weft_timeout_begin(20 * MS);
		WT_CHECK_EQ(weft_future_await(f, &v), -ETIMEDOUT);
		weft_timeout_end(saved);
	} else {
		WT_CHECK_EQ(weft_future_await_timeout(f, &v, 20 * MS),
			    -ETIMEDOUT);
	}
	late = late_by(weft_now() - b, 20 * MS);
	WT_CHECK_PTR_EQ(v, 0x1);
	return late;
}

static void *fut_timeout_main(void *arg)
{
	weft_future *f;
	void *v = (void *)0x1;
	uint64_t late;

	(void)arg;
	if (!WT_CHECK_EQ(weft_future_create(&f), 0))
		return NULL;
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, fut_timeout_try(f, 0));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_future_done(f), 0);

	/* The deadline scope cuts a wait without a timeout of its own. */
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, fut_timeout_try(f, 1));
	CHECK_BELOW(late, QUICK_NS);

	/* A timed-out await left nothing behind: set, then await works. */
	WT_CHECK_EQ(weft_future_set(f, (void *)0x77), 0);
	WT_CHECK_EQ(weft_future_await_timeout(f, &v, 20 * MS), 0);
	WT_CHECK_PTR_EQ(v, 0x77);
	weft_future_destroy(f);
	return NULL;
}

Test(sync, future_await_timeout_returns_etimedout, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(fut_timeout_main, NULL, worker_counts[c]);
}

struct fut_cancel {
	weft_future *f;
	atomic_int entered;
	int rc;
	void *v;
};

static void *fut_cancel_victim(void *arg)
{
	struct fut_cancel *c = arg;

	c->v = (void *)0x1;
	atomic_store(&c->entered, 1);
	c->rc = weft_future_await(c->f, &c->v);
	return NULL;
}

/* Returns how long a cancel took to end an awaiter of a future. */
static uint64_t fut_cancel_try(struct fut_cancel *c)
{
	weft_task *t;
	uint64_t b, took;

	memset(c, 0, sizeof(*c));
	if (!WT_CHECK_EQ(weft_future_create(&c->f), 0))
		return 0;
	t = weft_spawn(fut_cancel_victim, c);
	settle_count(&c->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	b = weft_now();
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	took = weft_now() - b;
	CHECK_BELOW(took, PROMPT_NS);
	WT_CHECK_EQ(c->rc, -ECANCELED);
	WT_CHECK_PTR_EQ(c->v, 0x1);
	/* The future is untouched and its waiter gone: set and destroy
	 * (destroy aborts on waiters left). */
	WT_CHECK_EQ(weft_future_done(c->f), 0);
	WT_CHECK_EQ(weft_future_set(c->f, NULL), 0);
	weft_task_release(t);
	weft_future_destroy(c->f);
	return took;
}

static void *fut_cancel_main(void *arg)
{
	uint64_t took = WT_BEST_OF(WT_TRIES, QUICK_NS, fut_cancel_try(arg));

	CHECK_BELOW(took, QUICK_NS);
	return NULL;
}

Test(sync, future_await_cancelled_returns_ecanceled, .timeout = WT_TIMEOUT(20))
{
	struct fut_cancel fc;

	wt_run_each(fut_cancel_main, &fc, sizeof(fc));
}

/* A thread outside the runtime blocks in weft_future_await() until a task
 * sets the future. */
struct fut_foreign {
	weft_future *f;
	atomic_int entered;
	atomic_int set_called;
	atomic_int returned;
	int set_before_return;
	int rc;
	void *v;
};

static void *fut_foreign_thread(void *arg)
{
	struct fut_foreign *ff = arg;

	atomic_store(&ff->entered, 1);
	ff->rc = weft_future_await(ff->f, &ff->v);
	ff->set_before_return = atomic_load(&ff->set_called);
	atomic_store(&ff->returned, 1);
	return NULL;
}

static void *fut_foreign_main(void *arg)
{
	struct fut_foreign *ff = arg;
	pthread_t th;

	if (!WT_CHECK_EQ(weft_future_create(&ff->f), 0))
		return NULL;
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, fut_foreign_thread, ff),
			 0))
		return NULL;
	settle_count(&ff->entered, 1);
	weft_sleep(20 * MS);
	/* Still blocked. */
	WT_CHECK_EQ(atomic_load(&ff->returned), 0);
	atomic_store(&ff->set_called, 1);
	WT_CHECK_EQ(weft_future_set(ff->f, (void *)0xabc), 0);
	settle_count(&ff->returned, 1);
	pthread_join(th, NULL);
	WT_CHECK_EQ(ff->rc, 0);
	WT_CHECK_PTR_EQ(ff->v, 0xabc);
	WT_CHECK_EQ(ff->set_before_return, 1);
	weft_future_destroy(ff->f);
	return NULL;
}

Test(sync, future_await_from_a_foreign_thread_blocks_until_set,
     .timeout = WT_TIMEOUT(20))
{
	struct fut_foreign ff;

	memset(&ff, 0, sizeof(ff));
	wt_run(fut_foreign_main, &ff, 2);
}

/* ======================================================================
 * event
 * ====================================================================== */

/* 2000 waits on a set event; returns how long they took together. */
static uint64_t event_set_waits_try(weft_event *e)
{
	uint64_t b = weft_now(), took;

	for (int i = 0; i < 1000; i++) {
		WT_CHECK_EQ(weft_event_wait(e), 0);
		WT_CHECK_EQ(weft_event_wait_timeout(e, 0), 0);
	}
	took = weft_now() - b;
	CHECK_BELOW(took, PROMPT_NS);
	return took;
}

/* A 20 ms wait on a clear event; returns how late it timed out. */
static uint64_t event_timeout_try(weft_event *e)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_event_wait_timeout(e, 20 * MS), -ETIMEDOUT);
	return late_by(weft_now() - b, 20 * MS);
}

static void *event_basics_main(void *arg)
{
	weft_event *e;
	uint64_t t;

	(void)arg;
	if (!WT_CHECK_EQ(weft_event_create(&e), 0))
		return NULL;
	WT_CHECK_EQ(weft_event_is_set(e), 0);
	WT_CHECK_EQ(weft_event_wait_timeout(e, 0), -ETIMEDOUT);
	weft_event_set(e);
	WT_CHECK_EQ(weft_event_is_set(e), 1);
	/* "At once": 2000 waits of a set event take well under a
	 * millisecond; QUICK_NS for the best of WT_TRIES. */
	t = WT_BEST_OF(WT_TRIES, QUICK_NS, event_set_waits_try(e));
	CHECK_BELOW(t, QUICK_NS);
	weft_event_set(e); /* idempotent */
	WT_CHECK_EQ(weft_event_is_set(e), 1);
	weft_event_clear(e);
	WT_CHECK_EQ(weft_event_is_set(e), 0);
	t = WT_BEST_OF(WT_TRIES, QUICK_NS, event_timeout_try(e));
	CHECK_BELOW(t, QUICK_NS);
	weft_event_destroy(e);
	WT_CHECK_EQ(weft_event_create(NULL), -EINVAL);
	WT_CHECK_EQ(weft_event_wait(NULL), -EINVAL);
	return NULL;
}

Test(sync, event_wait_returns_at_once_while_set, .timeout = WT_TIMEOUT(10))
{
	wt_run(event_basics_main, NULL, 2);
}

#define EV_WAITERS 40

struct ev_many {
	weft_event *e;
	atomic_int entered;
	atomic_int woke;
};

static void *ev_waiter(void *arg)
{
	struct ev_many *m = arg;

	atomic_fetch_add(&m->entered, 1);
	if (WT_CHECK_EQ(weft_event_wait(m->e), 0))
		atomic_fetch_add(&m->woke, 1);
	return NULL;
}

static void *ev_timed_waiter(void *arg)
{
	struct ev_many *m = arg;

	atomic_fetch_add(&m->entered, 1);
	return (void *)(intptr_t)weft_event_wait_timeout(m->e, 30 * MS);
}

static void *ev_many_main(void *arg)
{
	struct ev_many *m = arg;
	weft_task *ts[EV_WAITERS];
	void *rs[EV_WAITERS];

	if (!WT_CHECK_EQ(weft_event_create(&m->e), 0))
		return NULL;
	for (int round = 0; round < 3; round++) {
		atomic_store(&m->entered, 0);
		atomic_store(&m->woke, 0);
		for (int i = 0; i < EV_WAITERS; i++)
			ts[i] = weft_spawn(ev_waiter, m);
		settle_count(&m->entered, EV_WAITERS);
		WT_CHECK_EQ(atomic_load(&m->woke), 0);
		weft_event_set(m->e);
		WT_CHECK_EQ(weft_gather(ts, EV_WAITERS, NULL), 0);
		WT_CHECK_EQ(atomic_load(&m->woke), EV_WAITERS);
		release_all(ts, EV_WAITERS);
		/* Cleared, the event holds waiters again. */
		weft_event_clear(m->e);
		atomic_store(&m->entered, 0);
		for (int i = 0; i < 4; i++)
			ts[i] = weft_spawn(ev_timed_waiter, m);
		WT_CHECK_EQ(weft_gather(ts, 4, rs), 0);
		for (int i = 0; i < 4; i++)
			WT_CHECK_EQ((intptr_t)rs[i], -ETIMEDOUT);
		release_all(ts, 4);
	}
	weft_event_destroy(m->e);
	return NULL;
}

Test(sync, event_set_wakes_every_waiter_and_clear_makes_them_wait,
     .timeout = WT_TIMEOUT(30))
{
	struct ev_many m;

	wt_run_each(ev_many_main, &m, sizeof(m));
}

struct ev_cancel {
	weft_event *e;
	atomic_int entered;
	int rc;
};

static void *ev_cancel_victim(void *arg)
{
	struct ev_cancel *c = arg;

	atomic_store(&c->entered, 1);
	c->rc = weft_event_wait(c->e);
	return NULL;
}

static void *ev_cancel_main(void *arg)
{
	struct ev_cancel *c = arg;
	weft_task *t;
	uint64_t b, saved;

	if (!WT_CHECK_EQ(weft_event_create(&c->e), 0))
		return NULL;
	t = weft_spawn(ev_cancel_victim, c);
	settle_count(&c->entered, 1);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(c->rc, -ECANCELED);
	WT_CHECK_EQ(weft_event_is_set(c->e), 0);
	weft_task_release(t);

	/* The deadline scope applies to event waits. */
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_event_wait(c->e), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);
	weft_event_destroy(c->e); /* aborts if the cancelled node stayed */
	return NULL;
}

Test(sync, event_wait_cancelled_returns_ecanceled, .timeout = WT_TIMEOUT(20))
{
	struct ev_cancel ec;

	wt_run_each(ev_cancel_main, &ec, sizeof(ec));
}

/* ======================================================================
 * lock
 * ====================================================================== */

#define LOCK_TASKS 8
#define LOCK_ITERS 10000

struct lock_count {
	weft_lock *l;
	int counter; /* plain int: only the lock protects it */
	atomic_int inside;
	atomic_int max_inside;
};

static void *lock_incrementer(void *arg)
{
	struct lock_count *lc = arg;

	for (int i = 0; i < LOCK_ITERS; i++) {
		if (!WT_CHECK_EQ(weft_lock_acquire(lc->l), 0))
			return NULL;
		note_max(&lc->max_inside, atomic_fetch_add(&lc->inside, 1) + 1);
		lc->counter++;
		/* Suspend with the lock held now and then, so that others
		 * queue up and release hands the lock over. */
		if (i % 97 == 0)
			weft_yield();
		atomic_fetch_sub(&lc->inside, 1);
		WT_CHECK_EQ(weft_lock_release(lc->l), 0);
	}
	return NULL;
}

static void *lock_count_main(void *arg)
{
	struct lock_count *lc = arg;
	weft_task *ts[LOCK_TASKS];

	if (!WT_CHECK_EQ(weft_lock_create(&lc->l), 0))
		return NULL;
	for (int i = 0; i < LOCK_TASKS; i++)
		ts[i] = weft_spawn(lock_incrementer, lc);
	WT_CHECK_EQ(weft_gather(ts, LOCK_TASKS, NULL), 0);
	release_all(ts, LOCK_TASKS);
	WT_CHECK_EQ(weft_lock_locked(lc->l), 0);
	weft_lock_destroy(lc->l);
	return NULL;
}

Test(sync, lock_excludes_eight_tasks_incrementing_a_plain_int,
     .timeout = WT_TIMEOUT(60))
{
	struct lock_count lc;

	memset(&lc, 0, sizeof(lc));
	wt_run(lock_count_main, &lc, 4);
	cr_assert_eq(lc.counter, LOCK_TASKS * LOCK_ITERS);
	cr_assert_eq(atomic_load(&lc.max_inside), 1,
		     "%d tasks inside the lock at once",
		     atomic_load(&lc.max_inside));
}

/* FIFO: waiters queued one at a time, in a known order, get the lock (or
 * the semaphore's one permit) in that order, and no newcomer overtakes
 * them. */
#define FIFO_N 8

struct fifo {
	int use_sem; /* else the lock */
	weft_lock *l;
	weft_sem *s;
	atomic_int queued[FIFO_N];
	int order[FIFO_N];
	int norder; /* under the lock */
};

struct fifo_arg {
	struct fifo *f;
	int i;
};

static void *fifo_waiter(void *arg)
{
	struct fifo_arg *a = arg;
	struct fifo *f = a->f;

	atomic_store(&f->queued[a->i], 1);
	if (!WT_CHECK_EQ(f->use_sem ? weft_sem_acquire(f->s)
				    : weft_lock_acquire(f->l),
			 0))
		return NULL;
	if (f->norder < FIFO_N)
		f->order[f->norder] = a->i;
	f->norder++;
	WT_CHECK_EQ(f->use_sem ? weft_sem_release(f->s)
			       : weft_lock_release(f->l),
		    0);
	return NULL;
}

static void *fifo_main(void *arg)
{
	struct fifo *f = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };
	struct fifo_arg args[FIFO_N];
	weft_task *ts[FIFO_N];

	if (!WT_CHECK_EQ(weft_lock_create(&f->l), 0) ||
	    !WT_CHECK_EQ(weft_sem_create(&f->s, 1, WEFT_SEM_BOUNDED), 0))
		return NULL;
	WT_CHECK_EQ(f->use_sem ? weft_sem_acquire(f->s)
			       : weft_lock_acquire(f->l),
		    0);
	for (int i = 0; i < FIFO_N; i++) {
		args[i].f = f;
		args[i].i = i;
		/* Pinned to this worker, which it gets as soon as we
		 * sleep: it runs into the lock before we go on. */
		if (!WT_CHECK_EQ(weft_spawn_opts(&ts[i], fifo_waiter, &args[i],
						 &o),
				 0))
			return NULL;
		settle_count(&f->queued[i], 1);
	}
	WT_CHECK_EQ(f->norder, 0);
	if (f->use_sem) {
		WT_CHECK_EQ(weft_sem_release(f->s), 0);
		/* Handed to waiter 0: no newcomer gets it. */
		WT_CHECK_EQ(weft_sem_value(f->s), 0);
		WT_CHECK_EQ(weft_sem_try_acquire(f->s), -EAGAIN);
	} else {
		WT_CHECK_EQ(weft_lock_release(f->l), 0);
		WT_CHECK_EQ(weft_lock_locked(f->l), 1);
		WT_CHECK_EQ(weft_lock_try_acquire(f->l), -EBUSY);
	}
	WT_CHECK_EQ(weft_gather(ts, FIFO_N, NULL), 0);
	release_all(ts, FIFO_N);
	WT_CHECK_EQ(weft_lock_locked(f->l), 0);
	WT_CHECK_EQ(weft_sem_value(f->s), 1);
	weft_lock_destroy(f->l);
	weft_sem_destroy(f->s);
	return NULL;
}

/* One worker: the waiters are pinned there and each runs into the wait as
 * soon as the main task sleeps, so the queue order is known exactly. With
 * more workers it would rest on a settle time, which a loaded machine
 * (sanitizers, CI) can overrun. */
static void fifo_run(int use_sem)
{
	static const unsigned worker_counts[] = { 1 };

	for (unsigned c = 0; c < 1; c++) {
		struct fifo f;
		char got[4 * FIFO_N + 1] = "";

		memset(&f, 0, sizeof(f));
		f.use_sem = use_sem;
		wt_run(fifo_main, &f, 1);
		cr_assert_eq(f.norder, FIFO_N);
		for (int i = 0; i < FIFO_N; i++) {
			char b[8];

			snprintf(b, sizeof(b), "%d ", f.order[i]);
			strcat(got, b);
		}
		for (int i = 0; i < FIFO_N; i++)
			cr_assert_eq(f.order[i], i,
				     "%s, workers=%u: acquisition order %s",
				     use_sem ? "sem" : "lock",
				     worker_counts[c], got);
	}
}

Test(sync, lock_goes_to_waiters_in_the_order_they_queued,
     .timeout = WT_TIMEOUT(30))
{
	fifo_run(0);
}

Test(sync, sem_goes_to_waiters_in_the_order_they_queued,
     .timeout = WT_TIMEOUT(30))
{
	fifo_run(1);
}

/*
 * The same order with four workers, the waiters on several of them and
 * the hand-offs crossing between workers. Without one worker to make the
 * order exact, each waiter is seen parked before the next one starts: a
 * waiter spawns a witness pinned to its own worker and then calls
 * acquire; that worker can run the witness only once the waiter has
 * suspended, and acquire suspends only after linking the waiter into the
 * queue (runtime/sync.c, wait_on). So when the witness has run, the
 * waiter is queued, whatever the load. The main task spins (does not
 * suspend) until each waiter has started, so that another worker steals
 * it rather than the main task's own running it.
 */
#define FIFO_MW_WORKERS 4

struct fifo_mw {
	struct fifo f;
	atomic_int started[FIFO_N];
	atomic_int parked[FIFO_N]; /* set by the waiter's witness */
	int worker[FIFO_N];        /* where each waiter queued */
	int workers_used;
};

struct fifo_mw_arg {
	struct fifo_mw *m;
	int i;
};

static void *fifo_witness(void *arg)
{
	atomic_store((atomic_int *)arg, 1);
	return NULL;
}

static void *fifo_mw_waiter(void *arg)
{
	struct fifo_mw_arg *a = arg;
	struct fifo_mw *m = a->m;
	struct fifo *f = &m->f;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED |
					      WEFT_SPAWN_DETACHED };

	atomic_store(&m->started[a->i], 1);
	m->worker[a->i] = weft_worker_index();
	if (!WT_CHECK_EQ(weft_spawn_opts(NULL, fifo_witness,
					 &m->parked[a->i], &o),
			 0))
		return NULL;
	if (!WT_CHECK_EQ(f->use_sem ? weft_sem_acquire(f->s)
				    : weft_lock_acquire(f->l),
			 0))
		return NULL;
	if (f->norder < FIFO_N)
		f->order[f->norder] = a->i;
	f->norder++;
	WT_CHECK_EQ(f->use_sem ? weft_sem_release(f->s)
			       : weft_lock_release(f->l),
		    0);
	return NULL;
}

static void *fifo_mw_main(void *arg)
{
	struct fifo_mw *m = arg;
	struct fifo *f = &m->f;
	struct fifo_mw_arg args[FIFO_N];
	weft_task *ts[FIFO_N];
	unsigned used = 0;

	if (!WT_CHECK_EQ(weft_lock_create(&f->l), 0) ||
	    !WT_CHECK_EQ(weft_sem_create(&f->s, 1, WEFT_SEM_BOUNDED), 0))
		return NULL;
	WT_CHECK_EQ(f->use_sem ? weft_sem_acquire(f->s)
			       : weft_lock_acquire(f->l),
		    0);
	for (int i = 0; i < FIFO_N; i++) {
		uint64_t b = weft_now();

		args[i].m = m;
		args[i].i = i;
		ts[i] = weft_spawn(fifo_mw_waiter, &args[i]);
		if (!WT_CHECK(ts[i] != NULL))
			return NULL;
		/* Spin, then yield (no idle worker took it in 1 ms). */
		while (!atomic_load(&m->started[i]))
			if (weft_now() - b > MS)
				weft_yield();
		/* Queued before the next one starts. */
		while (!atomic_load(&m->parked[i]) &&
		       weft_now() - b < 10 * SEC * WT_SLOW)
			weft_sleep(50 * US);
		if (!WT_CHECK_EQ(atomic_load(&m->parked[i]), 1))
			return NULL;
		if (m->worker[i] >= 0 && m->worker[i] < 32)
			used |= 1u << m->worker[i];
	}
	m->workers_used = __builtin_popcount(used);
	WT_CHECK_EQ(f->norder, 0);
	WT_CHECK_EQ(f->use_sem ? weft_sem_release(f->s)
			       : weft_lock_release(f->l),
		    0);
	WT_CHECK_EQ(weft_gather(ts, FIFO_N, NULL), 0);
	release_all(ts, FIFO_N);
	WT_CHECK_EQ(weft_lock_locked(f->l), 0);
	WT_CHECK_EQ(weft_sem_value(f->s), 1);
	weft_lock_destroy(f->l);
	weft_sem_destroy(f->s);
	return NULL;
}

static void fifo_mw_run(int use_sem)
{
	struct fifo_mw m;
	char got[4 * FIFO_N + 1] = "", where[4 * FIFO_N + 1] = "";

	memset(&m, 0, sizeof(m));
	m.f.use_sem = use_sem;
	wt_run(fifo_mw_main, &m, FIFO_MW_WORKERS);
	for (int i = 0; i < FIFO_N; i++) {
		char b[8];

		snprintf(b, sizeof(b), "%d ", m.f.order[i]);
		strcat(got, b);
		snprintf(b, sizeof(b), "%d ", m.worker[i]);
		strcat(where, b);
	}
	cr_log_info("%s: waiters queued on workers %s(%d distinct)",
		    use_sem ? "sem" : "lock", where, m.workers_used);
	cr_assert_eq(m.f.norder, FIFO_N);
	for (int i = 0; i < FIFO_N; i++)
		cr_assert_eq(m.f.order[i], i,
			     "%s, %d workers: waiters queued in order 0..%d "
			     "(on workers %s) got it in the order %s",
			     use_sem ? "sem" : "lock", FIFO_MW_WORKERS,
			     FIFO_N - 1, where, got);
}

Test(sync, lock_goes_to_waiters_in_queue_order_across_workers,
     .timeout = WT_TIMEOUT(30))
{
	fifo_mw_run(0);
}

Test(sync, sem_goes_to_waiters_in_queue_order_across_workers,
     .timeout = WT_TIMEOUT(30))
{
	fifo_mw_run(1);
}

static void *releaser(void *arg)
{
	return (void *)(intptr_t)weft_lock_release(arg);
}

static void *lock_errors_main(void *arg)
{
	weft_lock *l;

	(void)arg;
	if (!WT_CHECK_EQ(weft_lock_create(&l), 0))
		return NULL;
	WT_CHECK_EQ(weft_lock_locked(l), 0);
	WT_CHECK_EQ(weft_lock_release(l), -EPERM);
	WT_CHECK_EQ(weft_lock_try_acquire(l), 0);
	WT_CHECK_EQ(weft_lock_locked(l), 1);
	WT_CHECK_EQ(weft_lock_try_acquire(l), -EBUSY);
	/* Not recursive: the holder's own acquire waits (and times out). */
	WT_CHECK_EQ(weft_lock_acquire_timeout(l, 0), -ETIMEDOUT);
	WT_CHECK_EQ(weft_lock_acquire_timeout(l, MS), -ETIMEDOUT);
	WT_CHECK_EQ(weft_lock_locked(l), 1);
	WT_CHECK_EQ(weft_lock_release(l), 0);
	WT_CHECK_EQ(weft_lock_locked(l), 0);
	WT_CHECK_EQ(weft_lock_release(l), -EPERM);
	WT_CHECK_EQ(weft_lock_acquire_timeout(l, 0), 0); /* free: at once */
	WT_CHECK_EQ(weft_lock_release(l), 0);
	/* Any task may release it (asyncio.Lock). */
	WT_CHECK_EQ(weft_lock_acquire(l), 0);
	{
		weft_task *t = weft_spawn(releaser, l);
		void *r = NULL;

		WT_CHECK_EQ(weft_await(t, &r), 0);
		WT_CHECK_EQ((intptr_t)r, 0);
		weft_task_release(t);
	}
	WT_CHECK_EQ(weft_lock_locked(l), 0);
	weft_lock_destroy(l);
	WT_CHECK_EQ(weft_lock_create(NULL), -EINVAL);
	WT_CHECK_EQ(weft_lock_acquire(NULL), -EINVAL);
	WT_CHECK_EQ(weft_lock_release(NULL), -EINVAL);
	WT_CHECK_EQ(weft_lock_try_acquire(NULL), -EINVAL);
	return NULL;
}

Test(sync, lock_try_acquire_is_ebusy_and_release_of_unheld_is_eperm,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(lock_errors_main, NULL, 1);
}

/* Non-waiting lock calls from a thread outside any runtime. */
Test(sync, lock_try_acquire_and_release_work_outside_a_runtime)
{
	weft_lock *l;

	cr_assert_eq(weft_lock_create(&l), 0);
	cr_assert_eq(weft_lock_try_acquire(l), 0);
	cr_assert_eq(weft_lock_try_acquire(l), -EBUSY);
	cr_assert_eq(weft_lock_release(l), 0);
	cr_assert_eq(weft_lock_release(l), -EPERM);
	/* A blocking acquire of a free lock from a thread does not block. */
	cr_assert_eq(weft_lock_acquire(l), 0);
	cr_assert_eq(weft_lock_acquire_timeout(l, 10 * MS), -ETIMEDOUT);
	cr_assert_eq(weft_lock_release(l), 0);
	weft_lock_destroy(l);
}

/* A timed-out waiter takes nothing and leaves the queue intact: the
 * holder still holds the lock, and a waiter queued behind it gets it. */
/* Longer than the settling after each spawn, so that the second waiter
 * queues behind the first while the first still waits. */
#define LOCK_TO_NS (4 * SETTLE_NS + 10 * MS)

struct lock_to {
	weft_lock *l;
	atomic_int entered;
	int rc_timed, rc_next;
	uint64_t timed_took;
	atomic_int next_got;
};

static void *lock_timed_waiter(void *arg)
{
	struct lock_to *t = arg;
	uint64_t b;

	atomic_fetch_add(&t->entered, 1);
	b = weft_now();
	t->rc_timed = weft_lock_acquire_timeout(t->l, LOCK_TO_NS);
	t->timed_took = weft_now() - b;
	if (t->rc_timed == 0)
		weft_lock_release(t->l);
	return NULL;
}

static void *lock_next_waiter(void *arg)
{
	struct lock_to *t = arg;

	atomic_fetch_add(&t->entered, 1);
	t->rc_next = weft_lock_acquire(t->l);
	if (t->rc_next == 0) {
		atomic_store(&t->next_got, 1);
		weft_lock_release(t->l);
	}
	return NULL;
}

/* The holder's own timed acquire (the lock is not recursive) with a
 * waiter queued; returns how late its timeout ended it. */
static uint64_t lock_timeout_try(weft_lock *l)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_lock_acquire_timeout(l, LOCK_TO_NS), -ETIMEDOUT);
	return late_by(weft_now() - b, LOCK_TO_NS);
}

static void *lock_timeout_main(void *arg)
{
	struct lock_to *t = arg;
	weft_task *a, *b;
	uint64_t saved, t0, late;

	if (!WT_CHECK_EQ(weft_lock_create(&t->l), 0))
		return NULL;
	WT_CHECK_EQ(weft_lock_acquire(t->l), 0);
	a = weft_spawn(lock_timed_waiter, t);
	settle_count(&t->entered, 1);
	b = weft_spawn(lock_next_waiter, t);
	settle_count(&t->entered, 2);
	WT_CHECK_EQ(weft_await(a, NULL), 0);
	WT_CHECK_EQ(t->rc_timed, -ETIMEDOUT);
	CHECK_NOT_EARLY(t->timed_took, LOCK_TO_NS);
	CHECK_BELOW(t->timed_took, LOCK_TO_NS + PROMPT_NS);
	/* Still ours, and the second waiter still waits. */
	WT_CHECK_EQ(weft_lock_locked(t->l), 1);
	WT_CHECK_EQ(atomic_load(&t->next_got), 0);
	WT_CHECK_EQ(weft_task_done(b), 0);
	/* Timeouts end acquires at their time, best of WT_TRIES (one try
	 * above, measured in the waiter; more here). */
	late = t->timed_took > LOCK_TO_NS ? t->timed_took - LOCK_TO_NS : 0;
	if (late >= QUICK_NS)
		late = WT_BEST_OF(WT_TRIES - 1, QUICK_NS,
				  lock_timeout_try(t->l));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(atomic_load(&t->next_got), 0);

	/* Our own deadline scope cuts an acquire too. */
	t0 = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_lock_acquire(t->l), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - t0, 20 * MS);
	WT_CHECK_EQ(weft_lock_locked(t->l), 1);

	WT_CHECK_EQ(weft_lock_release(t->l), 0);
	WT_CHECK_EQ(weft_await(b, NULL), 0);
	WT_CHECK_EQ(t->rc_next, 0);
	WT_CHECK_EQ(atomic_load(&t->next_got), 1);
	WT_CHECK_EQ(weft_lock_locked(t->l), 0);
	weft_task_release(a);
	weft_task_release(b);
	weft_lock_destroy(t->l);
	return NULL;
}

Test(sync, lock_acquire_timeout_leaves_the_lock_and_queue_intact,
     .timeout = WT_TIMEOUT(20))
{
	struct lock_to t;

	wt_run_each(lock_timeout_main, &t, sizeof(t));
}

/* A waiter inside a deadline scope of its own. */
static void *lock_scoped_waiter(void *arg)
{
	weft_lock *l = arg;
	uint64_t saved = weft_timeout_begin(20 * MS);
	uint64_t b = weft_now();
	int rc = weft_lock_acquire(l);

	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);
	if (rc == 0)
		weft_lock_release(l);
	return (void *)(intptr_t)rc;
}

static void *lock_scope_main(void *arg)
{
	weft_lock *l;
	weft_task *t;
	void *r = NULL;

	(void)arg;
	if (!WT_CHECK_EQ(weft_lock_create(&l), 0))
		return NULL;
	WT_CHECK_EQ(weft_lock_acquire(l), 0);
	t = weft_spawn(lock_scoped_waiter, l);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_EQ((intptr_t)r, -ETIMEDOUT);
	WT_CHECK_EQ(weft_lock_locked(l), 1);
	WT_CHECK_EQ(weft_lock_release(l), 0);
	weft_task_release(t);
	weft_lock_destroy(l);
	return NULL;
}

Test(sync, lock_acquire_honours_the_deadline_scope, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(lock_scope_main, NULL, worker_counts[c]);
}

/* A cancelled waiter does not get the lock; the one behind it does. */
struct lock_cancel {
	weft_lock *l;
	atomic_int entered;
	atomic_int got[2];
	int rc[2];
};

struct lock_cancel_arg {
	struct lock_cancel *c;
	int i;
};

static void *lock_cancel_waiter(void *arg)
{
	struct lock_cancel_arg *a = arg;
	struct lock_cancel *c = a->c;

	atomic_fetch_add(&c->entered, 1);
	c->rc[a->i] = weft_lock_acquire(c->l);
	if (c->rc[a->i] == 0) {
		atomic_store(&c->got[a->i], 1);
		weft_lock_release(c->l);
	}
	return NULL;
}

static void *lock_cancel_main(void *arg)
{
	struct lock_cancel *c = arg;
	struct lock_cancel_arg args[2] = { { c, 0 }, { c, 1 } };
	weft_task *t[2];

	if (!WT_CHECK_EQ(weft_lock_create(&c->l), 0))
		return NULL;
	WT_CHECK_EQ(weft_lock_acquire(c->l), 0);
	t[0] = weft_spawn(lock_cancel_waiter, &args[0]);
	settle_count(&c->entered, 1);
	t[1] = weft_spawn(lock_cancel_waiter, &args[1]);
	settle_count(&c->entered, 2);
	WT_CHECK_EQ(weft_cancel(t[0]), 0);
	WT_CHECK_EQ(weft_await(t[0], NULL), -ECANCELED);
	WT_CHECK_EQ(c->rc[0], -ECANCELED);
	WT_CHECK_EQ(atomic_load(&c->got[0]), 0);
	WT_CHECK_EQ(weft_lock_locked(c->l), 1);
	WT_CHECK_EQ(weft_lock_release(c->l), 0);
	WT_CHECK_EQ(weft_await(t[1], NULL), 0);
	WT_CHECK_EQ(c->rc[1], 0);
	WT_CHECK_EQ(atomic_load(&c->got[1]), 1);
	WT_CHECK_EQ(weft_lock_locked(c->l), 0);
	release_all(t, 2);
	weft_lock_destroy(c->l);
	return NULL;
}

Test(sync, cancelled_lock_waiter_does_not_get_the_lock_the_next_does,
     .timeout = WT_TIMEOUT(20))
{
	struct lock_cancel lc;

	wt_run_each(lock_cancel_main, &lc, sizeof(lc));
}

/*
 * A give-up racing a hand-over. The waiter's timeout fires, or a foreign
 * thread cancels it, at about the moment the holder releases: the release
 * may grant the lock to the waiter just as it gives up. Whatever wins,
 * the waiter must report what happened (0 with the lock, or the error
 * without it), so the lock is free after every round; a grant lost in
 * the race leaves it held for ever. The window is a few instructions
 * wide, so the release time adapts: a round the waiter won moves the next
 * release later, a round it gave up moves it earlier, and the releases
 * settle around the moment of the give-up.
 */
#if defined(__SANITIZE_THREAD__)
#define RACE_ROUNDS 600
#else
#define RACE_ROUNDS 3000
#endif
#define RACE_WAIT_NS (100 * US * WT_SLOW)
#define EDGE_STEP (1 * US)

struct lock_race {
	weft_lock *l;
	atomic_int ran, got, gave_up;
	atomic_ullong started; /* by the waiter, just before its call */
	/* The foreign canceller: cancels `victim` at cancel_at for each
	 * new seq, then acknowledges it. */
	weft_task *_Atomic victim;
	atomic_ullong cancel_at;
	atomic_int seq, acked, stop;
	int mode; /* of the round: 0 timeout, 1 foreign cancel */
};

static void *lock_race_waiter(void *arg)
{
	struct lock_race *r = arg;
	int rc;

	atomic_fetch_add(&r->ran, 1);
	atomic_store(&r->started, weft_now());
	rc = r->mode ? weft_lock_acquire(r->l)
		     : weft_lock_acquire_timeout(r->l, RACE_WAIT_NS);

	if (rc == 0) {
		atomic_fetch_add(&r->got, 1);
		WT_CHECK_EQ(weft_lock_release(r->l), 0);
	} else {
		WT_CHECK_EQ(rc, r->mode ? -ECANCELED : -ETIMEDOUT);
		atomic_fetch_add(&r->gave_up, 1);
	}
	return NULL;
}

static void *lock_race_canceller(void *arg)
{
	struct lock_race *r = arg;
	int seen = 0;

	while (!atomic_load(&r->stop)) {
		int s = atomic_load(&r->seq);

		if (s == seen) {
			sched_yield();
			continue;
		}
		while (weft_now() < atomic_load(&r->cancel_at))
			;
		weft_cancel(atomic_load(&r->victim));
		seen = s;
		atomic_store(&r->acked, s);
	}
	return NULL;
}

static void spin_until(uint64_t t)
{
	while (weft_now() < t)
		;
}

static void *lock_race_main(void *arg)
{
	struct lock_race *r = arg;
	/* Per mode: when to release after the spawn (ns). */
	uint64_t edge[2] = { RACE_WAIT_NS, RACE_WAIT_NS };
	pthread_t th;

	if (!WT_CHECK_EQ(weft_lock_create(&r->l), 0))
		return NULL;
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, lock_race_canceller, r),
			 0))
		return NULL;
	for (int i = 0; i < RACE_ROUNDS; i++) {
		uint64_t t0, release_at;
		int got_before = atomic_load(&r->got);
		weft_task *t;

		r->mode = i % 2;
		/* Aim at the edge, with a little noise: -2 .. +2 us. */
		release_at = edge[r->mode] + (uint64_t)((i * 37) % 41) * 100;
		release_at = release_at > 2 * US ? release_at - 2 * US : 0;
		WT_CHECK_EQ(weft_lock_acquire(r->l), 0);
		atomic_store(&r->started, 0);
		t = weft_spawn(lock_race_waiter, r);
		/* Busy, so that the waiter runs on another worker; times
		 * count from its call, not from its (slower) start. */
		wait_started(&r->started);
		t0 = atomic_load(&r->started);
		if (r->mode) {
			atomic_store(&r->victim, t);
			atomic_store(&r->cancel_at, t0 + RACE_WAIT_NS);
			atomic_fetch_add(&r->seq, 1);
		}
		spin_until(t0 + release_at);
		WT_CHECK_EQ(weft_lock_release(r->l), 0);
		weft_await(t, NULL);
		/* Released before the give-up: aim later next time; after
		 * it: earlier. The aim settles on the edge between them. */
		if (atomic_load(&r->got) != got_before)
			edge[r->mode] += EDGE_STEP;
		else if (edge[r->mode] > EDGE_STEP)
			edge[r->mode] -= EDGE_STEP;
		if (r->mode)
			while (atomic_load(&r->acked) != atomic_load(&r->seq))
				weft_yield();
		weft_task_release(t);
		/* Free again, whoever won. */
		if (!WT_CHECK_EQ(weft_lock_locked(r->l), 0))
			break;
	}
	atomic_store(&r->stop, 1);
	pthread_join(th, NULL);
	weft_lock_destroy(r->l);
	return NULL;
}

Test(sync, lock_give_up_racing_a_hand_over_loses_no_grant,
     .timeout = WT_TIMEOUT(60))
{
	struct lock_race r;

	memset(&r, 0, sizeof(r));
	wt_run(lock_race_main, &r, 4);
	cr_log_info("waiter got the lock in %d rounds, gave up in %d, ran "
		    "in %d of %d",
		    atomic_load(&r.got), atomic_load(&r.gave_up),
		    atomic_load(&r.ran), RACE_ROUNDS);
	cr_assert_eq(atomic_load(&r.ran), RACE_ROUNDS);
	cr_assert_eq(atomic_load(&r.got) + atomic_load(&r.gave_up),
		     RACE_ROUNDS);
}

/* A thread outside the runtime blocks in acquire until a task releases. */
struct lock_foreign {
	weft_lock *l;
	atomic_int entered;
	atomic_int released;
	int released_before;
	int rc;
};

static void *lock_foreign_thread(void *arg)
{
	struct lock_foreign *lf = arg;

	atomic_store(&lf->entered, 1);
	lf->rc = weft_lock_acquire(lf->l);
	lf->released_before = atomic_load(&lf->released);
	if (lf->rc == 0)
		weft_lock_release(lf->l);
	return NULL;
}

static void *lock_foreign_main(void *arg)
{
	struct lock_foreign *lf = arg;
	pthread_t th;

	if (!WT_CHECK_EQ(weft_lock_create(&lf->l), 0))
		return NULL;
	WT_CHECK_EQ(weft_lock_acquire(lf->l), 0);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, lock_foreign_thread, lf),
			 0))
		return NULL;
	settle_count(&lf->entered, 1);
	weft_sleep(10 * MS);
	atomic_store(&lf->released, 1);
	WT_CHECK_EQ(weft_lock_release(lf->l), 0);
	/* The thread has it now (handed over), or has had it. */
	while (weft_lock_locked(lf->l))
		weft_sleep(100 * US);
	pthread_join(th, NULL);
	WT_CHECK_EQ(lf->rc, 0);
	WT_CHECK_EQ(lf->released_before, 1);
	weft_lock_destroy(lf->l);
	return NULL;
}

Test(sync, lock_acquire_from_a_foreign_thread_blocks_until_released,
     .timeout = WT_TIMEOUT(20))
{
	struct lock_foreign lf;

	memset(&lf, 0, sizeof(lf));
	wt_run(lock_foreign_main, &lf, 2);
}

/* ======================================================================
 * non-waiting calls from a thread outside the runtime
 * ====================================================================== */

/* set, release and notify from a plain thread wake the tasks parked on
 * the objects (the wake goes to the runtime from outside it). */
enum { NW_EVENT, NW_FUTURE, NW_SEM, NW_LOCK, NW_COND, NW_N };

struct nw {
	weft_event *e;
	weft_future *f;
	weft_sem *s;
	weft_lock *l, *cl;
	weft_cond *c;
	atomic_int entered;
	atomic_int returned[NW_N];
	int rc[NW_N];
	void *fv;
	int thread_lock_rc;
	int early;
};

struct nw_arg {
	struct nw *n;
	int kind;
};

static void *nw_waiter(void *arg)
{
	struct nw_arg *a = arg;
	struct nw *n = a->n;
	int rc = -1;

	switch (a->kind) {
	case NW_EVENT:
		atomic_fetch_add(&n->entered, 1);
		rc = weft_event_wait(n->e);
		break;
	case NW_FUTURE:
		atomic_fetch_add(&n->entered, 1);
		rc = weft_future_await(n->f, &n->fv);
		break;
	case NW_SEM:
		atomic_fetch_add(&n->entered, 1);
		rc = weft_sem_acquire(n->s);
		break;
	case NW_LOCK:
		atomic_fetch_add(&n->entered, 1);
		rc = weft_lock_acquire(n->l);
		if (rc == 0)
			weft_lock_release(n->l);
		break;
	case NW_COND:
		if (weft_lock_acquire(n->cl) != 0)
			break;
		atomic_fetch_add(&n->entered, 1);
		rc = weft_cond_wait(n->c, n->cl);
		weft_lock_release(n->cl);
		break;
	}
	n->rc[a->kind] = rc;
	atomic_store(&n->returned[a->kind], 1);
	return NULL;
}

static void *nw_thread(void *arg)
{
	struct nw *n = arg;

	while (atomic_load(&n->entered) < NW_N)
		wt_sleep_ms(1);
	wt_sleep_ms(10);
	for (int k = 0; k < NW_N; k++)
		if (atomic_load(&n->returned[k]))
			n->early = 1; /* woke before anything was set */
	weft_event_set(n->e);
	weft_future_set(n->f, (void *)0xf00);
	weft_sem_release(n->s);
	n->thread_lock_rc = weft_lock_release(n->l);
	/* A notify finds only linked waiters: repeat until it returned. */
	while (!atomic_load(&n->returned[NW_COND])) {
		weft_cond_notify_all(n->c);
		wt_sleep_ms(1);
	}
	return NULL;
}

static void *nw_main(void *arg)
{
	struct nw *n = arg;
	struct nw_arg args[NW_N];
	weft_task *ts[NW_N];
	pthread_t th;

	WT_CHECK_EQ(weft_event_create(&n->e), 0);
	WT_CHECK_EQ(weft_future_create(&n->f), 0);
	WT_CHECK_EQ(weft_sem_create(&n->s, 0, 0), 0);
	WT_CHECK_EQ(weft_lock_create(&n->l), 0);
	WT_CHECK_EQ(weft_lock_create(&n->cl), 0);
	WT_CHECK_EQ(weft_cond_create(&n->c), 0);
	/* Taken here, released by the thread. */
	WT_CHECK_EQ(weft_lock_try_acquire(n->l), 0);
	for (int k = 0; k < NW_N; k++) {
		args[k].n = n;
		args[k].kind = k;
		ts[k] = weft_spawn(nw_waiter, &args[k]);
	}
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, nw_thread, n), 0))
		return NULL;
	WT_CHECK_EQ(weft_gather(ts, NW_N, NULL), 0);
	release_all(ts, NW_N);
	pthread_join(th, NULL);
	for (int k = 0; k < NW_N; k++)
		WT_CHECK_EQ(n->rc[k], 0);
	WT_CHECK_PTR_EQ(n->fv, 0xf00);
	WT_CHECK_EQ(n->thread_lock_rc, 0);
	WT_CHECK_EQ(n->early, 0);
	WT_CHECK_EQ(weft_sem_value(n->s), 0);
	weft_event_destroy(n->e);
	weft_future_destroy(n->f);
	weft_sem_destroy(n->s);
	weft_lock_destroy(n->l);
	weft_lock_destroy(n->cl);
	weft_cond_destroy(n->c);
	return NULL;
}

Test(sync, set_release_and_notify_from_a_foreign_thread_wake_tasks,
     .timeout = WT_TIMEOUT(20))
{
	struct nw n;

	wt_run_each(nw_main, &n, sizeof(n));
}

/* ======================================================================
 * semaphore
 * ====================================================================== */

#define SEM_TASKS 32
#define SEM_ITERS 200
#define SEM_VALUE 3

struct sem_limit {
	weft_sem *s;
	atomic_int inside;
	atomic_int max_inside;
	atomic_int done;
};

static void *sem_user(void *arg)
{
	struct sem_limit *sl = arg;

	for (int i = 0; i < SEM_ITERS; i++) {
		if (!WT_CHECK_EQ(weft_sem_acquire(sl->s), 0))
			return NULL;
		note_max(&sl->max_inside, atomic_fetch_add(&sl->inside, 1) + 1);
		weft_yield(); /* let others try meanwhile */
		atomic_fetch_sub(&sl->inside, 1);
		atomic_fetch_add(&sl->done, 1);
		WT_CHECK_EQ(weft_sem_release(sl->s), 0);
	}
	return NULL;
}

static void *sem_limit_main(void *arg)
{
	struct sem_limit *sl = arg;
	weft_task *ts[SEM_TASKS];

	if (!WT_CHECK_EQ(weft_sem_create(&sl->s, SEM_VALUE, WEFT_SEM_BOUNDED),
			 0))
		return NULL;
	WT_CHECK_EQ(weft_sem_value(sl->s), SEM_VALUE);
	for (int i = 0; i < SEM_TASKS; i++)
		ts[i] = weft_spawn(sem_user, sl);
	WT_CHECK_EQ(weft_gather(ts, SEM_TASKS, NULL), 0);
	release_all(ts, SEM_TASKS);
	WT_CHECK_EQ(weft_sem_value(sl->s), SEM_VALUE);
	weft_sem_destroy(sl->s);
	return NULL;
}

Test(sync, sem_admits_at_most_its_value_at_once, .timeout = WT_TIMEOUT(60))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct sem_limit sl;

		memset(&sl, 0, sizeof(sl));
		wt_run(sem_limit_main, &sl, worker_counts[c]);
		cr_assert_eq(atomic_load(&sl.done), SEM_TASKS * SEM_ITERS);
		cr_assert_leq(atomic_load(&sl.max_inside), SEM_VALUE,
			      "workers=%u: %d holders at once (value %d)",
			      worker_counts[c], atomic_load(&sl.max_inside),
			      SEM_VALUE);
		/* One worker: every holder yields, so the others fill the
		 * semaphore up exactly. */
		if (worker_counts[c] == 1)
			cr_assert_eq(atomic_load(&sl.max_inside), SEM_VALUE);
	}
}

Test(sync, sem_try_acquire_eagain_and_bounded_release_eoverflow)
{
	weft_sem *s;

	/* Non-waiting calls from a plain thread. */
	cr_assert_eq(weft_sem_create(&s, 2, 0x80), -EINVAL);
	cr_assert_eq(weft_sem_create(NULL, 2, 0), -EINVAL);
	cr_assert_eq(weft_sem_create(&s, 2, WEFT_SEM_BOUNDED), 0);
	cr_assert_eq(weft_sem_release(s), -EOVERFLOW);
	cr_assert_eq(weft_sem_value(s), 2);
	cr_assert_eq(weft_sem_try_acquire(s), 0);
	cr_assert_eq(weft_sem_value(s), 1);
	cr_assert_eq(weft_sem_try_acquire(s), 0);
	cr_assert_eq(weft_sem_value(s), 0);
	cr_assert_eq(weft_sem_try_acquire(s), -EAGAIN);
	cr_assert_eq(weft_sem_release(s), 0);
	cr_assert_eq(weft_sem_release(s), 0);
	cr_assert_eq(weft_sem_release(s), -EOVERFLOW);
	cr_assert_eq(weft_sem_value(s), 2);
	weft_sem_destroy(s);

	/* Unbounded: a release above the initial value just counts. */
	cr_assert_eq(weft_sem_create(&s, 1, 0), 0);
	cr_assert_eq(weft_sem_release(s), 0);
	cr_assert_eq(weft_sem_release(s), 0);
	cr_assert_eq(weft_sem_value(s), 3);
	weft_sem_destroy(s);

	/* Zero permits. */
	cr_assert_eq(weft_sem_create(&s, 0, 0), 0);
	cr_assert_eq(weft_sem_try_acquire(s), -EAGAIN);
	cr_assert_eq(weft_sem_acquire_timeout(s, 5 * MS), -ETIMEDOUT);
	weft_sem_destroy(s);
}

/* Timeouts, the deadline scope and cancellation take no permit; a waiter
 * that is there when a permit comes back gets it directly, so try_acquire
 * sees none meanwhile. */
struct sem_wait {
	weft_sem *s;
	atomic_int entered;
	int rc;
	atomic_int got;
};

static void *sem_waiter(void *arg)
{
	struct sem_wait *sw = arg;

	atomic_fetch_add(&sw->entered, 1);
	sw->rc = weft_sem_acquire(sw->s);
	if (sw->rc == 0)
		atomic_store(&sw->got, 1);
	return NULL;
}

/* A 20 ms acquire of a semaphore without permits; returns how late. */
static uint64_t sem_timeout_try(weft_sem *s)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_sem_acquire_timeout(s, 20 * MS), -ETIMEDOUT);
	return late_by(weft_now() - b, 20 * MS);
}

static void *sem_wait_main(void *arg)
{
	struct sem_wait *sw = arg;
	weft_task *t;
	uint64_t b, saved, late;

	if (!WT_CHECK_EQ(weft_sem_create(&sw->s, 0, WEFT_SEM_BOUNDED), 0))
		return NULL;
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, sem_timeout_try(sw->s));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_sem_acquire_timeout(sw->s, 0), -ETIMEDOUT);
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_sem_acquire(sw->s), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);
	WT_CHECK_EQ(weft_sem_value(sw->s), 0);

	/* Cancelled waiter: no permit taken. */
	t = weft_spawn(sem_waiter, sw);
	settle_count(&sw->entered, 1);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(sw->rc, -ECANCELED);
	WT_CHECK_EQ(atomic_load(&sw->got), 0);
	weft_task_release(t);
	/* The bounded semaphore (initial 0) has no room for a release: the
	 * cancelled waiter's node must be gone, or the release would have
	 * been handed to it. */
	WT_CHECK_EQ(weft_sem_release(sw->s), -EOVERFLOW);
	WT_CHECK_EQ(weft_sem_value(sw->s), 0);
	weft_sem_destroy(sw->s);

	/* Hand-off: a release with a waiter queued goes to the waiter. */
	if (!WT_CHECK_EQ(weft_sem_create(&sw->s, 0, 0), 0))
		return NULL;
	atomic_store(&sw->entered, 0);
	t = weft_spawn(sem_waiter, sw);
	settle_count(&sw->entered, 1);
	WT_CHECK_EQ(weft_sem_release(sw->s), 0);
	WT_CHECK_EQ(weft_sem_value(sw->s), 0);
	WT_CHECK_EQ(weft_sem_try_acquire(sw->s), -EAGAIN);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	WT_CHECK_EQ(sw->rc, 0);
	WT_CHECK_EQ(atomic_load(&sw->got), 1);
	weft_task_release(t);
	weft_sem_destroy(sw->s);
	return NULL;
}

Test(sync, sem_timeout_scope_and_cancel_take_no_permit,
     .timeout = WT_TIMEOUT(20))
{
	struct sem_wait sw;

	wt_run_each(sem_wait_main, &sw, sizeof(sw));
}

/* ======================================================================
 * condition
 * ====================================================================== */

#define PC_CAP 4
#define PC_PRODUCERS 2
#define PC_CONSUMERS 2
#define PC_ITEMS 5000 /* per producer */

struct pc {
	weft_lock *l;
	weft_cond *not_empty, *not_full;
	long buf[PC_CAP];
	int head, len; /* under l */
	int producers_left;
	long sum, count; /* under l */
};

static void *pc_producer(void *arg)
{
	struct pc *p = arg;

	for (long i = 1; i <= PC_ITEMS; i++) {
		if (!WT_CHECK_EQ(weft_lock_acquire(p->l), 0))
			return NULL;
		while (p->len == PC_CAP)
			if (!WT_CHECK_EQ(weft_cond_wait(p->not_full, p->l), 0))
				break;
		WT_CHECK(p->len < PC_CAP);
		p->buf[(p->head + p->len) % PC_CAP] = i;
		p->len++;
		weft_cond_notify(p->not_empty, 1);
		WT_CHECK_EQ(weft_lock_release(p->l), 0);
	}
	WT_CHECK_EQ(weft_lock_acquire(p->l), 0);
	if (--p->producers_left == 0)
		weft_cond_notify_all(p->not_empty);
	WT_CHECK_EQ(weft_lock_release(p->l), 0);
	return NULL;
}

static void *pc_consumer(void *arg)
{
	struct pc *p = arg;

	for (;;) {
		long v;

		if (!WT_CHECK_EQ(weft_lock_acquire(p->l), 0))
			return NULL;
		while (p->len == 0 && p->producers_left > 0)
			if (!WT_CHECK_EQ(weft_cond_wait(p->not_empty, p->l),
					 0))
				break;
		if (p->len == 0) {
			WT_CHECK_EQ(weft_lock_release(p->l), 0);
			return NULL;
		}
		v = p->buf[p->head];
		p->head = (p->head + 1) % PC_CAP;
		p->len--;
		p->sum += v;
		p->count++;
		weft_cond_notify(p->not_full, 1);
		WT_CHECK_EQ(weft_lock_release(p->l), 0);
	}
}

static void *pc_main(void *arg)
{
	struct pc *p = arg;
	weft_task *ts[PC_PRODUCERS + PC_CONSUMERS];

	WT_CHECK_EQ(weft_lock_create(&p->l), 0);
	WT_CHECK_EQ(weft_cond_create(&p->not_empty), 0);
	WT_CHECK_EQ(weft_cond_create(&p->not_full), 0);
	p->producers_left = PC_PRODUCERS;
	for (int i = 0; i < PC_CONSUMERS; i++)
		ts[i] = weft_spawn(pc_consumer, p);
	for (int i = 0; i < PC_PRODUCERS; i++)
		ts[PC_CONSUMERS + i] = weft_spawn(pc_producer, p);
	WT_CHECK_EQ(weft_gather(ts, PC_PRODUCERS + PC_CONSUMERS, NULL), 0);
	release_all(ts, PC_PRODUCERS + PC_CONSUMERS);
	WT_CHECK_EQ(weft_lock_locked(p->l), 0);
	weft_cond_destroy(p->not_empty);
	weft_cond_destroy(p->not_full);
	weft_lock_destroy(p->l);
	return NULL;
}

Test(sync, cond_producer_consumer_with_a_predicate_loop,
     .timeout = WT_TIMEOUT(60))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct pc p;

		memset(&p, 0, sizeof(p));
		wt_run(pc_main, &p, worker_counts[c]);
		cr_assert_eq(p.count, (long)PC_PRODUCERS * PC_ITEMS);
		cr_assert_eq(p.sum, (long)PC_PRODUCERS * PC_ITEMS *
					    (PC_ITEMS + 1) / 2);
	}
}

/* notify(1) wakes exactly one waiter; notify_all the rest. */
#define CN_WAITERS 4

struct cond_notify {
	weft_lock *l;
	weft_cond *c;
	int waiting; /* under l */
	atomic_int woke;
};

static void *cn_waiter(void *arg)
{
	struct cond_notify *cn = arg;
	int rc;

	if (!WT_CHECK_EQ(weft_lock_acquire(cn->l), 0))
		return NULL;
	cn->waiting++;
	rc = weft_cond_wait(cn->c, cn->l);
	WT_CHECK_EQ(rc, 0);
	/* Returned holding the lock. */
	WT_CHECK_EQ(weft_lock_locked(cn->l), 1);
	atomic_fetch_add(&cn->woke, 1);
	WT_CHECK_EQ(weft_lock_release(cn->l), 0);
	return NULL;
}

/* Takes the lock until `want` waiters have linked themselves. */
static void cn_wait_for_waiters(struct cond_notify *cn, int want)
{
	uint64_t until = weft_now() + (uint64_t)10 * SEC * WT_SLOW;

	for (;;) {
		WT_CHECK_EQ(weft_lock_acquire(cn->l), 0);
		if (cn->waiting >= want || weft_now() > until)
			return; /* with the lock held */
		WT_CHECK_EQ(weft_lock_release(cn->l), 0);
		weft_sleep(100 * US);
	}
}

static void *cond_notify_main(void *arg)
{
	struct cond_notify *cn = arg;
	weft_task *ts[CN_WAITERS];

	WT_CHECK_EQ(weft_lock_create(&cn->l), 0);
	WT_CHECK_EQ(weft_cond_create(&cn->c), 0);
	/* Nobody waits: notify wakes nobody. */
	WT_CHECK_EQ(weft_cond_notify(cn->c, 1), 0);
	WT_CHECK_EQ(weft_cond_notify_all(cn->c), 0);
	for (int i = 0; i < CN_WAITERS; i++)
		ts[i] = weft_spawn(cn_waiter, cn);
	/* Holding the lock with all counted means all are linked (a
	 * waiter links itself before it lets the lock go). */
	cn_wait_for_waiters(cn, CN_WAITERS);
	WT_CHECK_EQ(cn->waiting, CN_WAITERS);
	WT_CHECK_EQ(weft_cond_notify(cn->c, 1), 1);
	WT_CHECK_EQ(weft_lock_release(cn->l), 0);
	/* The one notified wakes; after a while, still only it. */
	settle_count(&cn->woke, 1);
	weft_sleep(10 * MS);
	WT_CHECK_EQ(atomic_load(&cn->woke), 1);
	/* Two more. */
	WT_CHECK_EQ(weft_lock_acquire(cn->l), 0);
	WT_CHECK_EQ(weft_cond_notify(cn->c, 2), 2);
	WT_CHECK_EQ(weft_lock_release(cn->l), 0);
	settle_count(&cn->woke, 3);
	weft_sleep(10 * MS);
	WT_CHECK_EQ(atomic_load(&cn->woke), 3);
	/* All that are left: one. */
	WT_CHECK_EQ(weft_lock_acquire(cn->l), 0);
	WT_CHECK_EQ(weft_cond_notify_all(cn->c), CN_WAITERS - 3);
	WT_CHECK_EQ(weft_lock_release(cn->l), 0);
	WT_CHECK_EQ(weft_gather(ts, CN_WAITERS, NULL), 0);
	WT_CHECK_EQ(atomic_load(&cn->woke), CN_WAITERS);
	release_all(ts, CN_WAITERS);

	/* notify_all wakes every waiter. */
	cn->waiting = 0;
	atomic_store(&cn->woke, 0);
	for (int i = 0; i < CN_WAITERS; i++)
		ts[i] = weft_spawn(cn_waiter, cn);
	cn_wait_for_waiters(cn, CN_WAITERS);
	WT_CHECK_EQ(weft_cond_notify_all(cn->c), CN_WAITERS);
	WT_CHECK_EQ(weft_cond_notify_all(cn->c), 0);
	WT_CHECK_EQ(weft_lock_release(cn->l), 0);
	WT_CHECK_EQ(weft_gather(ts, CN_WAITERS, NULL), 0);
	WT_CHECK_EQ(atomic_load(&cn->woke), CN_WAITERS);
	release_all(ts, CN_WAITERS);

	weft_cond_destroy(cn->c);
	weft_lock_destroy(cn->l);
	return NULL;
}

Test(sync, cond_notify_one_wakes_one_and_notify_all_wakes_all,
     .timeout = WT_TIMEOUT(30))
{
	struct cond_notify cn;

	wt_run_each(cond_notify_main, &cn, sizeof(cn));
}

/* Cancelled or timed out, wait still returns with the lock held, and
 * only after the lock's holder let it go. */
struct cond_cancel {
	weft_lock *l;
	weft_cond *c;
	int waiting; /* under l */
	atomic_int released; /* set by main just before its release */
	int rc;
	int locked_after;
	int released_before;
	int release_rc;
};

static void *cc_victim(void *arg)
{
	struct cond_cancel *cc = arg;

	if (!WT_CHECK_EQ(weft_lock_acquire(cc->l), 0))
		return NULL;
	cc->waiting++;
	cc->rc = weft_cond_wait(cc->c, cc->l);
	cc->locked_after = weft_lock_locked(cc->l);
	cc->released_before = atomic_load(&cc->released);
	cc->release_rc = weft_lock_release(cc->l);
	return NULL;
}

/* Returns how long the cancelled waiter took to end once the lock was
 * let go (it takes the lock, then returns). */
static uint64_t cond_cancel_try(struct cond_cancel *cc)
{
	weft_task *t;
	uint64_t b, took;

	memset(cc, 0, sizeof(*cc));
	WT_CHECK_EQ(weft_lock_create(&cc->l), 0);
	WT_CHECK_EQ(weft_cond_create(&cc->c), 0);
	t = weft_spawn(cc_victim, cc);
	/* Once we hold the lock with the victim counted, it is linked. */
	for (;;) {
		WT_CHECK_EQ(weft_lock_acquire(cc->l), 0);
		if (cc->waiting)
			break;
		WT_CHECK_EQ(weft_lock_release(cc->l), 0);
		weft_sleep(100 * US);
	}
	WT_CHECK_EQ(weft_cancel(t), 0);
	/* The victim must wait for the lock even though cancelled. */
	weft_sleep(20 * MS);
	WT_CHECK_EQ(weft_task_done(t), 0);
	atomic_store(&cc->released, 1);
	WT_CHECK_EQ(weft_lock_release(cc->l), 0);
	b = weft_now();
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	took = weft_now() - b;
	CHECK_BELOW(took, PROMPT_NS);
	WT_CHECK_EQ(cc->rc, -ECANCELED);
	WT_CHECK_EQ(cc->locked_after, 1);
	WT_CHECK_EQ(cc->released_before, 1);
	WT_CHECK_EQ(cc->release_rc, 0);
	WT_CHECK_EQ(weft_lock_locked(cc->l), 0);
	/* Its node is gone. */
	WT_CHECK_EQ(weft_cond_notify_all(cc->c), 0);
	weft_task_release(t);
	weft_cond_destroy(cc->c);
	weft_lock_destroy(cc->l);
	return took;
}

static void *cond_cancel_main(void *arg)
{
	uint64_t took = WT_BEST_OF(WT_TRIES, QUICK_NS, cond_cancel_try(arg));

	CHECK_BELOW(took, QUICK_NS);
	return NULL;
}

Test(sync, cond_wait_cancelled_returns_with_the_lock_held,
     .timeout = WT_TIMEOUT(20))
{
	struct cond_cancel cc;

	wt_run_each(cond_cancel_main, &cc, sizeof(cc));
}

struct cond_to {
	weft_lock *l;
	weft_cond *c;
	atomic_int hold; /* 1: the waiter holds the lock, about to wait */
	atomic_int released;
	int rc, locked_after, released_before, release_rc;
	uint64_t took;
};

static void *ct_waiter(void *arg)
{
	struct cond_to *ct = arg;
	uint64_t b;

	if (!WT_CHECK_EQ(weft_lock_acquire(ct->l), 0))
		return NULL;
	atomic_store(&ct->hold, 1);
	b = weft_now();
	ct->rc = weft_cond_wait_timeout(ct->c, ct->l, 20 * MS);
	ct->took = weft_now() - b;
	ct->locked_after = weft_lock_locked(ct->l);
	ct->released_before = atomic_load(&ct->released);
	ct->release_rc = weft_lock_release(ct->l);
	return NULL;
}

static void *ct_scoped_waiter(void *arg)
{
	struct cond_to *ct = arg;
	uint64_t saved, b;

	if (!WT_CHECK_EQ(weft_lock_acquire(ct->l), 0))
		return NULL;
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	ct->rc = weft_cond_wait(ct->c, ct->l);
	weft_timeout_end(saved);
	ct->took = weft_now() - b;
	ct->locked_after = weft_lock_locked(ct->l);
	ct->release_rc = weft_lock_release(ct->l);
	return NULL;
}

/* A waiter times out with the lock free; returns how late it was back
 * (holding the lock). */
static uint64_t cond_timeout_try(struct cond_to *ct)
{
	weft_task *t = weft_spawn(ct_waiter, ct);
	uint64_t late;

	if (!WT_CHECK(t != NULL))
		return 0;
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(ct->rc, -ETIMEDOUT);
	late = late_by(ct->took, 20 * MS);
	WT_CHECK_EQ(ct->locked_after, 1);
	WT_CHECK_EQ(ct->release_rc, 0);
	WT_CHECK_EQ(weft_lock_locked(ct->l), 0);
	return late;
}

static void *cond_timeout_main(void *arg)
{
	struct cond_to *ct = arg;
	weft_task *t;
	uint64_t late;

	WT_CHECK_EQ(weft_lock_create(&ct->l), 0);
	WT_CHECK_EQ(weft_cond_create(&ct->c), 0);

	/* Timed out with the lock free: back at once, holding it. */
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, cond_timeout_try(ct));
	CHECK_BELOW(late, QUICK_NS);

	/* Timed out while another task holds the lock: it waits for it. */
	atomic_store(&ct->hold, 0);
	atomic_store(&ct->released, 0);
	t = weft_spawn(ct_waiter, ct);
	/* Set with the lock held: our acquire then completes only when the
	 * waiter lets the lock go inside its wait (before its timeout). */
	while (!atomic_load(&ct->hold))
		weft_sleep(100 * US);
	WT_CHECK_EQ(weft_lock_acquire(ct->l), 0);
	weft_sleep(40 * MS * WT_SLOW); /* past its timeout */
	WT_CHECK_EQ(weft_task_done(t), 0);
	atomic_store(&ct->released, 1);
	WT_CHECK_EQ(weft_lock_release(ct->l), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(ct->rc, -ETIMEDOUT);
	WT_CHECK_EQ(ct->locked_after, 1);
	WT_CHECK_EQ(ct->released_before, 1);
	WT_CHECK_EQ(ct->release_rc, 0);

	/* The deadline scope ends a cond wait the same way. */
	t = weft_spawn(ct_scoped_waiter, ct);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(ct->rc, -ETIMEDOUT);
	CHECK_NOT_EARLY(ct->took, 20 * MS);
	WT_CHECK_EQ(ct->locked_after, 1);
	WT_CHECK_EQ(ct->release_rc, 0);

	WT_CHECK_EQ(weft_cond_notify_all(ct->c), 0);
	weft_cond_destroy(ct->c);
	weft_lock_destroy(ct->l);
	return NULL;
}

Test(sync, cond_wait_timed_out_returns_with_the_lock_held,
     .timeout = WT_TIMEOUT(20))
{
	struct cond_to ct;

	wt_run_each(cond_timeout_main, &ct, sizeof(ct));
}

static void *cond_eperm_main(void *arg)
{
	weft_lock *l;
	weft_cond *c;

	(void)arg;
	WT_CHECK_EQ(weft_lock_create(&l), 0);
	WT_CHECK_EQ(weft_cond_create(&c), 0);
	WT_CHECK_EQ(weft_cond_wait(c, l), -EPERM);
	WT_CHECK_EQ(weft_cond_wait_timeout(c, l, 10 * MS), -EPERM);
	WT_CHECK_EQ(weft_lock_locked(l), 0);
	WT_CHECK_EQ(weft_cond_notify(c, 1), 0);
	weft_cond_destroy(c);
	weft_lock_destroy(l);
	WT_CHECK_EQ(weft_cond_create(NULL), -EINVAL);
	return NULL;
}

Test(sync, cond_wait_without_the_lock_is_eperm, .timeout = WT_TIMEOUT(10))
{
	wt_run(cond_eperm_main, NULL, 1);
}

/* A second destroy is reported (abort with a message), never a double
 * free or a spin on a reused lock byte. */
static void future_destroy_twice(void)
{
	weft_future *f;

	if (weft_future_create(&f))
		return;
	weft_future_destroy(f);
	weft_future_destroy(f);
}

static void lock_destroy_twice(void)
{
	weft_lock *l;

	if (weft_lock_create(&l))
		return;
	weft_lock_destroy(l);
	weft_lock_destroy(l);
}

Test(sync, destroying_a_future_or_a_lock_twice_aborts_with_a_message,
     .timeout = WT_TIMEOUT(10))
{
	wt_assert_misuse_reported(future_destroy_twice,
				  "weft_future_destroy(): not a live future");
	wt_assert_misuse_reported(lock_destroy_twice,
				  "weft_lock_destroy(): not a live lock");
}

/* ======================================================================
 * Issue 15: grant, then destroy
 * ====================================================================== */

/* A future's awaiter read the value and error back from the future after
 * its grant, and the setter may destroy the future as soon as its set
 * has returned (weft.h: lifetime of the objects): heap-use-after-free
 * under ASan. One worker: the awaiter resumes only after the destroy. */
struct fut_reply {
	weft_future *f;
	atomic_int entered;
	int rc;
	void *value;
};

static void *fut_reply_awaiter(void *arg)
{
	struct fut_reply *r = arg;

	atomic_store(&r->entered, 1);
	r->rc = weft_future_await(r->f, &r->value);
	return NULL;
}

static void *fut_reply_main(void *arg)
{
	struct fut_reply *r = arg;

	for (int fail = 0; fail < 2; fail++) {
		weft_task *t;

		atomic_store(&r->entered, 0);
		if (!WT_CHECK_EQ(weft_future_create(&r->f), 0))
			return NULL;
		t = weft_spawn(fut_reply_awaiter, r);
		while (!atomic_load(&r->entered))
			weft_yield();
		if (fail)
			WT_CHECK_EQ(weft_future_fail(r->f, -EIO), 0);
		else
			WT_CHECK_EQ(weft_future_set(r->f, (void *)0x5a), 0);
		weft_future_destroy(r->f);
		WT_CHECK_EQ(weft_await(t, NULL), 0);
		weft_task_release(t);
		WT_CHECK_EQ(r->rc, fail ? -EIO : 0);
		WT_CHECK_PTR_EQ(r->value, fail ? NULL : (void *)0x5a);
	}
	return NULL;
}

Test(sync, future_awaiter_takes_its_result_from_the_grant_not_the_destroyed_future,
     .timeout = WT_TIMEOUT(10))
{
	struct fut_reply r;

	memset(&r, 0, sizeof(r));
	wt_run(fut_reply_main, &r, 1);
}

/*
 * Every kind of object destroyed by the side that granted its waiter, as
 * soon as the granting call returned, with the waiter's timeout racing the
 * grant. The waiter W runs in a runtime of one worker with a helper H:
 * when H runs after W announced its call, W is suspended, and the only
 * suspension in its call is the park after it linked its node, so W is
 * queued on the object (or has returned). H then lets the granter G go:
 * a thread outside the runtime, or a task of a second runtime, so that G
 * runs truly in parallel with W's give-up path. G grants (try_send,
 * try_recv, set, release, notify; for a group: the last member ends and
 * G, released by it like W, destroys the group) and destroys the object
 * at once. G aims at the moment W's timeout fires, moving its aim by the
 * outcome of the previous round (adaptive, like lock_give_up_racing...).
 * Before the fix W's give-up locked the object after the grant (ASan:
 * give_up <- weft__wq_park), a select relocked the channel that completed
 * it, a future's and a group's waiters read the object after the grant.
 * Each round also checks that nothing granted was lost: the waiter got
 * the grant exactly when the granter's call says it gave one.
 */
enum {
	GD_CHAN0,      /* rendezvous: receive vs try_send */
	GD_CHAN1_RECV, /* buffered: receive vs try_send */
	GD_CHAN1_SEND, /* buffered, full: send vs try_recv */
	GD_SELECT,     /* select of two receives vs try_send on one */
	GD_FUTURE,
	GD_EVENT,
	GD_LOCK,
	GD_SEM,
	GD_COND,
	GD_GROUP,      /* group wait vs the last member's end */
	GD_KINDS
};

static const char *const gd_names[GD_KINDS] = {
	"chan0", "chan1-recv", "chan1-send", "select", "future",
	"event", "lock",       "sem",        "cond",   "group",
};

#define GD_WAIT_NS (50 * US * WT_SLOW)

struct gd_round {
	int kind;
	weft_chan *c, *c2;
	weft_future *f;
	weft_event *e;
	weft_lock *l;
	weft_sem *s;
	weft_cond *cv;
	weft_group *g;
	uint64_t aim;      /* G grants at t0 + aim */
	atomic_ullong t0;  /* W, just before its call */
	atomic_int go;     /* H: W is in its call, linked (or returned) */
	atomic_int g_done; /* G: granted and destroyed */
	int w_rc, g_rc;
	void *w_val;
	size_t g_len;
};

struct gd_rig {
	struct gd_round *_Atomic job;
	atomic_int stop;
	int from_task; /* G is a task of a second runtime */
	long granted[GD_KINDS], gave_up[GD_KINDS];
};

static void *gd_waiter(void *arg)
{
	struct gd_round *r = arg;
	struct weft_sel k[2];
	uint64_t saved = WEFT_NEVER;
	void *v = NULL;
	int rc = -1;

	if (r->kind == GD_COND)
		WT_CHECK_EQ(weft_lock_acquire(r->l), 0);
	if (r->kind == GD_GROUP)
		saved = weft_timeout_begin(GD_WAIT_NS);
	k[0] = (struct weft_sel){ r->c, WEFT_SEL_RECV, NULL, 0 };
	k[1] = (struct weft_sel){ r->c2, WEFT_SEL_RECV, NULL, 0 };
	/* Nothing suspends from here to the link inside the call. */
	atomic_store(&r->t0, weft_now());
	switch (r->kind) {
	case GD_CHAN0:
	case GD_CHAN1_RECV:
		rc = weft_chan_recv_timeout(r->c, &v, GD_WAIT_NS);
		break;
	case GD_CHAN1_SEND:
		rc = weft_chan_send_timeout(r->c, (void *)2, GD_WAIT_NS);
		break;
	case GD_SELECT:
		rc = weft_select(k, 2, GD_WAIT_NS);
		if (rc >= 0) {
			WT_CHECK_EQ(rc, 0);
			WT_CHECK_EQ(k[0].result, 0);
			v = k[0].value;
			rc = 0;
		}
		break;
	case GD_FUTURE:
		rc = weft_future_await_timeout(r->f, &v, GD_WAIT_NS);
		break;
	case GD_EVENT:
		rc = weft_event_wait_timeout(r->e, GD_WAIT_NS);
		break;
	case GD_LOCK:
		rc = weft_lock_acquire_timeout(r->l, GD_WAIT_NS);
		break;
	case GD_SEM:
		rc = weft_sem_acquire_timeout(r->s, GD_WAIT_NS);
		break;
	case GD_COND:
		rc = weft_cond_wait_timeout(r->cv, r->l, GD_WAIT_NS);
		WT_CHECK_EQ(weft_lock_release(r->l), 0);
		break;
	case GD_GROUP:
		rc = weft_group_wait(r->g);
		weft_timeout_end(saved);
		break;
	}
	r->w_rc = rc;
	r->w_val = v;
	return NULL;
}

/* One worker with W: when this runs after W's t0, W is parked in its
 * call, linked (a timer that fired only queued it), or has returned. */
static void *gd_helper(void *arg)
{
	struct gd_round *r = arg;

	while (!atomic_load(&r->t0))
		weft_yield();
	atomic_store(&r->go, 1);
	return NULL;
}

/* The group's last member: ends at t0 + aim, yielding meanwhile so that
 * W (same worker) can give up first. */
static void *gd_member(void *arg)
{
	struct gd_round *r = arg;

	while (!atomic_load(&r->go) ||
	       weft_now() < atomic_load(&r->t0) + r->aim)
		weft_yield();
	return NULL;
}

static void gd_grant(struct gd_round *r)
{
	uint64_t at;
	void *v;

	while (!atomic_load(&r->go))
		sched_yield();
	at = atomic_load(&r->t0) + r->aim;
	while (weft_now() < at)
		;
	switch (r->kind) {
	case GD_CHAN0:
	case GD_CHAN1_RECV:
	case GD_SELECT:
		r->g_rc = weft_chan_try_send(r->c, (void *)1);
		weft_chan_destroy(r->c);
		break;
	case GD_CHAN1_SEND:
		r->g_rc = weft_chan_try_recv(r->c, &v);
		r->g_len = weft_chan_len(r->c);
		weft_chan_destroy(r->c);
		break;
	case GD_FUTURE:
		r->g_rc = weft_future_set(r->f, (void *)1);
		weft_future_destroy(r->f);
		break;
	case GD_EVENT:
		weft_event_set(r->e);
		weft_event_destroy(r->e);
		break;
	case GD_LOCK:
		r->g_rc = weft_lock_release(r->l);
		weft_lock_destroy(r->l);
		break;
	case GD_SEM:
		r->g_rc = weft_sem_release(r->s);
		weft_sem_destroy(r->s);
		break;
	case GD_COND:
		r->g_rc = (int)weft_cond_notify(r->cv, 1);
		weft_cond_destroy(r->cv);
		break;
	case GD_GROUP:
		r->g_rc = weft_group_wait(r->g);
		weft_group_destroy(r->g);
		break;
	}
	atomic_store(&r->g_done, 1);
}

static void gd_serve(struct gd_rig *rig)
{
	while (!atomic_load(&rig->stop)) {
		struct gd_round *r = atomic_load(&rig->job);

		if (!r) {
			sched_yield();
			continue;
		}
		gd_grant(r);
		atomic_store(&rig->job, NULL);
	}
}

static void *gd_serve_thread(void *arg)
{
	gd_serve(arg);
	return NULL;
}

static void *gd_serve_task(void *arg)
{
	gd_serve(arg);
	return NULL;
}

static void *gd_runtime_thread(void *arg)
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 1;
	WT_CHECK_EQ(weft_run(gd_serve_task, arg, &cfg, NULL), 0);
	return NULL;
}

static int gd_setup(struct gd_round *r)
{
	switch (r->kind) {
	case GD_CHAN0:
		return weft_chan_create(&r->c, 0);
	case GD_CHAN1_RECV:
		return weft_chan_create(&r->c, 1);
	case GD_CHAN1_SEND:
		return weft_chan_create(&r->c, 1) ?:
		       weft_chan_try_send(r->c, (void *)9);
	case GD_SELECT:
		return weft_chan_create(&r->c, 0) ?:
		       weft_chan_create(&r->c2, 0);
	case GD_FUTURE:
		return weft_future_create(&r->f);
	case GD_EVENT:
		return weft_event_create(&r->e);
	case GD_LOCK:
		return weft_lock_create(&r->l) ?: weft_lock_acquire(r->l);
	case GD_SEM:
		return weft_sem_create(&r->s, 0, 0);
	case GD_COND:
		return weft_lock_create(&r->l) ?: weft_cond_create(&r->cv);
	case GD_GROUP:
		return weft_group_create(&r->g) ?:
		       weft_group_spawn(r->g, NULL, gd_member, r);
	}
	return -EINVAL;
}

/* The waiter got the grant exactly when the granter gave one. */
static void gd_check(const struct gd_round *r)
{
	bool got = r->w_rc == 0;

	if (!got)
		WT_CHECK_EQ(r->w_rc, -ETIMEDOUT);
	switch (r->kind) {
	case GD_CHAN0:
	case GD_SELECT:
		WT_CHECK_EQ(r->g_rc, got ? 0 : -EAGAIN);
		if (got)
			WT_CHECK_PTR_EQ(r->w_val, 1);
		break;
	case GD_CHAN1_RECV:
	case GD_FUTURE:
		WT_CHECK_EQ(r->g_rc, 0);
		if (got)
			WT_CHECK_PTR_EQ(r->w_val, 1);
		break;
	case GD_CHAN1_SEND:
		WT_CHECK_EQ(r->g_rc, 0);
		WT_CHECK_EQ(r->g_len, got ? 1 : 0);
		break;
	case GD_COND:
		WT_CHECK_EQ(r->g_rc, got ? 1 : 0);
		break;
	default:
		WT_CHECK_EQ(r->g_rc, 0);
	}
}

static void *gd_main(void *arg)
{
	struct gd_rig *rig = arg;
	uint64_t aim[GD_KINDS];
	long rounds = 30L * GD_KINDS * wt_scale();
	pthread_t th;

	for (int k = 0; k < GD_KINDS; k++)
		aim[k] = GD_WAIT_NS;
	if (!WT_CHECK_EQ(pthread_create(&th, NULL,
					rig->from_task ? gd_runtime_thread
						       : gd_serve_thread,
					rig),
			 0))
		return NULL;
	for (long i = 0; i < rounds; i++) {
		struct gd_round r;
		weft_task *tw, *th2;
		int k = (int)(i % GD_KINDS);

		memset(&r, 0, sizeof(r));
		r.kind = k;
		/* Around the edge, -2 .. +2 us. */
		r.aim = aim[k] + (uint64_t)((i * 37) % 41) * 100;
		r.aim = r.aim > 2 * US ? r.aim - 2 * US : 0;
		if (!WT_CHECK_EQ(gd_setup(&r), 0))
			break;
		atomic_store(&rig->job, &r);
		tw = weft_spawn(gd_waiter, &r);
		th2 = weft_spawn(gd_helper, &r);
		WT_CHECK_EQ(weft_await(tw, NULL), 0);
		WT_CHECK_EQ(weft_await(th2, NULL), 0);
		weft_task_release(tw);
		weft_task_release(th2);
		while (atomic_load(&rig->job))
			weft_sleep(10 * US);
		gd_check(&r);
		if (r.w_rc == 0) {
			rig->granted[k]++;
			aim[k] += 1 * US; /* granted first: later next time */
		} else {
			rig->gave_up[k]++;
			if (aim[k] > 1 * US)
				aim[k] -= 1 * US;
		}
		/* What the granter does not own. */
		if (r.c2)
			weft_chan_destroy(r.c2);
		if (k == GD_COND)
			weft_lock_destroy(r.l);
	}
	atomic_store(&rig->stop, 1);
	pthread_join(th, NULL);
	return NULL;
}

static void gd_run(int from_task)
{
	struct gd_rig rig;
	char buf[512];
	size_t n = 0;

	memset(&rig, 0, sizeof(rig));
	rig.from_task = from_task;
	wt_run(gd_main, &rig, 1);
	for (int k = 0; k < GD_KINDS; k++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s %ld/%ld",
				      gd_names[k], rig.granted[k],
				      rig.gave_up[k]);
	cr_log_info("granter %s; granted/gave up:%s",
		    from_task ? "a task" : "a thread", buf);
}

Test(sync, every_object_may_be_destroyed_once_the_call_that_granted_its_waiter_returns,
     .timeout = WT_TIMEOUT(120))
{
	gd_run(0);
	gd_run(1);
}

/* Issue 15 #8: a broadcast (notify_all, event set, future set) grants
 * its waiters first come first served, and they must resume in that
 * order, at the back of the queue, as asyncio's call_soon runs them.
 * Each wake went to the waker's next slot, displacing the previous one,
 * and batches of 32 were woken in reverse: 5 waiters resumed 4 0 1 2 3,
 * 40 resumed 39 31 30 ... 0 32 ... 38. One worker, so the order is
 * exact. */
#define BCAST_MAX 40

enum { BC_COND, BC_EVENT, BC_FUTURE, BC_KINDS };

struct bcast {
	int kind;
	weft_cond *c;
	weft_lock *l;
	weft_event *e;
	weft_future *f;
	int waited[BCAST_MAX], resumed[BCAST_MAX];
	int nw, nr;
	struct bcast_arg {
		struct bcast *b;
		int id;
	} args[BCAST_MAX];
};

static void *bcast_waiter(void *arg)
{
	struct bcast_arg *a = arg;
	struct bcast *b = a->b;

	switch (b->kind) {
	case BC_COND:
		WT_CHECK_EQ(weft_lock_acquire(b->l), 0);
		b->waited[b->nw++] = a->id;
		WT_CHECK_EQ(weft_cond_wait(b->c, b->l), 0);
		b->resumed[b->nr++] = a->id;
		WT_CHECK_EQ(weft_lock_release(b->l), 0);
		break;
	case BC_EVENT:
		b->waited[b->nw++] = a->id;
		WT_CHECK_EQ(weft_event_wait(b->e), 0);
		b->resumed[b->nr++] = a->id;
		break;
	case BC_FUTURE:
		b->waited[b->nw++] = a->id;
		WT_CHECK_EQ(weft_future_await(b->f, NULL), 0);
		b->resumed[b->nr++] = a->id;
		break;
	}
	return NULL;
}

static void *bcast_main(void *arg)
{
	struct bcast *b = arg;
	static const int sizes[] = { 5, BCAST_MAX };

	for (int kind = 0; kind < BC_KINDS; kind++) {
		for (size_t z = 0; z < 2; z++) {
			weft_task *ts[BCAST_MAX];
			int n = sizes[z];
			char got[BCAST_MAX * 4 + 1], want[BCAST_MAX * 4 + 1];
			size_t gl = 0, wl = 0;

			memset(b, 0, sizeof(*b));
			b->kind = kind;
			WT_CHECK_EQ(weft_cond_create(&b->c), 0);
			WT_CHECK_EQ(weft_lock_create(&b->l), 0);
			WT_CHECK_EQ(weft_event_create(&b->e), 0);
			WT_CHECK_EQ(weft_future_create(&b->f), 0);
			for (int i = 0; i < n; i++) {
				b->args[i] = (struct bcast_arg){ b, i };
				ts[i] = weft_spawn(bcast_waiter, &b->args[i]);
			}
			/* One worker: each runs until it parks. */
			while (b->nw < n)
				weft_yield();
			if (kind == BC_COND)
				WT_CHECK_EQ(weft_cond_notify_all(b->c),
					    (unsigned)n);
			else if (kind == BC_EVENT)
				weft_event_set(b->e);
			else
				WT_CHECK_EQ(weft_future_set(b->f, NULL), 0);
			WT_CHECK_EQ(weft_gather(ts, (size_t)n, NULL), 0);
			release_all(ts, (size_t)n);
			WT_CHECK_EQ(b->nr, n);
			for (int i = 0; i < n; i++) {
				gl += (size_t)snprintf(got + gl,
						       sizeof(got) - gl, " %d",
						       b->resumed[i]);
				wl += (size_t)snprintf(want + wl,
						       sizeof(want) - wl, " %d",
						       b->waited[i]);
			}
			if (!WT_CHECK(strcmp(got, want) == 0))
				fprintf(stderr,
					"%s, %d waiters: waited%s, resumed%s\n",
					kind == BC_COND	   ? "notify_all"
					: kind == BC_EVENT ? "event set"
							   : "future set",
					n, want, got);
			weft_cond_destroy(b->c);
			weft_lock_destroy(b->l);
			weft_event_destroy(b->e);
			weft_future_destroy(b->f);
		}
	}
	return NULL;
}

Test(sync, broadcast_wakes_resume_waiters_in_the_order_they_waited,
     .timeout = WT_TIMEOUT(10))
{
	static struct bcast b;

	wt_run(bcast_main, &b, 1);
}

/* ======================================================================
 * Misuse: destroy under a waiter, destroy twice; waits from plain threads
 * ====================================================================== */

/* A destroy with a task parked on the object aborts with a message naming
 * the call (weft.h). Each case runs in a child process
 * (wt_assert_misuse_reported) with one worker: the waiter has parked by
 * the time main, having yielded to it, destroys the object. */
enum parked_kind { PK_FUTURE, PK_EVENT, PK_LOCK, PK_SEM, PK_COND };

struct parked {
	enum parked_kind kind;
	weft_future *f;
	weft_event *e;
	weft_lock *l;
	weft_sem *s;
	weft_cond *c;
	atomic_int entered;
};

static struct parked parked_case;

static void *parked_waiter(void *arg)
{
	struct parked *p = arg;

	atomic_store(&p->entered, 1);
	switch (p->kind) {
	case PK_FUTURE:
		weft_future_await(p->f, NULL);
		break;
	case PK_EVENT:
		weft_event_wait(p->e);
		break;
	case PK_LOCK: /* main holds it */
		if (weft_lock_acquire(p->l) == 0)
			weft_lock_release(p->l);
		break;
	case PK_SEM:
		weft_sem_acquire(p->s);
		break;
	case PK_COND:
		if (weft_lock_acquire(p->l) == 0) {
			weft_cond_wait(p->c, p->l);
			weft_lock_release(p->l);
		}
		break;
	}
	return NULL;
}

static void *parked_main(void *arg)
{
	struct parked *p = arg;
	weft_task *t;

	if (weft_future_create(&p->f) || weft_event_create(&p->e) ||
	    weft_lock_create(&p->l) || weft_sem_create(&p->s, 0, 0) ||
	    weft_cond_create(&p->c))
		return NULL;
	if (p->kind == PK_LOCK)
		weft_lock_acquire(p->l);
	t = weft_spawn(parked_waiter, p);
	settle_count(&p->entered, 1); /* parked by now: one worker */
	switch (p->kind) {
	case PK_FUTURE:
		weft_future_destroy(p->f);
		break;
	case PK_EVENT:
		weft_event_destroy(p->e);
		break;
	case PK_LOCK:
		weft_lock_destroy(p->l);
		break;
	case PK_SEM:
		weft_sem_destroy(p->s);
		break;
	case PK_COND:
		weft_cond_destroy(p->c);
		break;
	}
	/* Not reached when the misuse is reported: the parent fails. */
	weft_cancel(t);
	weft_await(t, NULL);
	weft_task_release(t);
	return NULL;
}

static void parked_destroy(enum parked_kind kind)
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 1;
	memset(&parked_case, 0, sizeof(parked_case));
	parked_case.kind = kind;
	weft_run(parked_main, &parked_case, &cfg, NULL);
}

static void future_destroy_parked(void) { parked_destroy(PK_FUTURE); }
static void event_destroy_parked(void) { parked_destroy(PK_EVENT); }
static void lock_destroy_parked(void) { parked_destroy(PK_LOCK); }
static void sem_destroy_parked(void) { parked_destroy(PK_SEM); }
static void cond_destroy_parked(void) { parked_destroy(PK_COND); }

Test(sync, destroying_an_object_a_task_is_parked_on_aborts_with_a_message,
     .timeout = WT_TIMEOUT(20))
{
	wt_assert_misuse_reported(future_destroy_parked,
				  "weft_future_destroy() with waiters");
	wt_assert_misuse_reported(event_destroy_parked,
				  "weft_event_destroy() with waiters");
	wt_assert_misuse_reported(lock_destroy_parked,
				  "weft_lock_destroy() with waiters");
	wt_assert_misuse_reported(sem_destroy_parked,
				  "weft_sem_destroy() with waiters");
	wt_assert_misuse_reported(cond_destroy_parked,
				  "weft_cond_destroy() with waiters");
}

static void event_destroy_twice(void)
{
	weft_event *e;

	if (weft_event_create(&e))
		return;
	weft_event_destroy(e);
	weft_event_destroy(e);
}

static void sem_destroy_twice(void)
{
	weft_sem *s;

	if (weft_sem_create(&s, 1, 0))
		return;
	weft_sem_destroy(s);
	weft_sem_destroy(s);
}

static void cond_destroy_twice(void)
{
	weft_cond *c;

	if (weft_cond_create(&c))
		return;
	weft_cond_destroy(c);
	weft_cond_destroy(c);
}

Test(sync, destroying_an_event_a_semaphore_or_a_condition_twice_aborts_with_a_message,
     .timeout = WT_TIMEOUT(10))
{
	wt_assert_misuse_reported(event_destroy_twice,
				  "weft_event_destroy(): not a live event");
	wt_assert_misuse_reported(sem_destroy_twice,
				  "weft_sem_destroy(): not a live semaphore");
	wt_assert_misuse_reported(cond_destroy_twice,
				  "weft_cond_destroy(): not a live condition");
}

/* Event, semaphore and condition waits from a thread outside any runtime
 * block that thread until a task acts (weft.h: every wait works from a
 * thread outside the runtime); their timeout variants time out there. */
enum foreign_kind { FK_EVENT, FK_EVENT_TIMEOUT, FK_SEM, FK_SEM_TIMEOUT,
		    FK_COND, FK_COND_TIMEOUT, FK_N };

static const char *const foreign_names[FK_N] = {
	"event_wait", "event_wait_timeout", "sem_acquire",
	"sem_acquire_timeout", "cond_wait", "cond_wait_timeout",
};

struct foreign_wait {
	enum foreign_kind kind;
	weft_event *e;
	weft_sem *s;
	weft_cond *c;
	weft_lock *l;
	int ready; /* the condition's predicate, under l */
	atomic_int entered, acted, returned;
	int acted_before_return, rc, short_rc, held_after;
	uint64_t short_took;
};

static void *foreign_wait_thread(void *arg)
{
	struct foreign_wait *fw = arg;
	uint64_t t0;

	/* First a short timeout with nobody acting: -ETIMEDOUT, not early. */
	t0 = wt_now_ns();
	switch (fw->kind) {
	case FK_EVENT_TIMEOUT:
		fw->short_rc = weft_event_wait_timeout(fw->e, 20 * MS);
		break;
	case FK_SEM_TIMEOUT:
		fw->short_rc = weft_sem_acquire_timeout(fw->s, 20 * MS);
		break;
	case FK_COND_TIMEOUT:
		if (weft_lock_acquire(fw->l) == 0) {
			fw->short_rc = weft_cond_wait_timeout(fw->c, fw->l,
							      20 * MS);
			weft_lock_release(fw->l);
		}
		break;
	default:
		break;
	}
	fw->short_took = wt_now_ns() - t0;

	switch (fw->kind) {
	case FK_EVENT:
		atomic_store(&fw->entered, 1);
		fw->rc = weft_event_wait(fw->e);
		break;
	case FK_EVENT_TIMEOUT:
		atomic_store(&fw->entered, 1);
		fw->rc = weft_event_wait_timeout(fw->e, 60 * SEC);
		break;
	case FK_SEM:
		atomic_store(&fw->entered, 1);
		fw->rc = weft_sem_acquire(fw->s);
		break;
	case FK_SEM_TIMEOUT:
		atomic_store(&fw->entered, 1);
		fw->rc = weft_sem_acquire_timeout(fw->s, 60 * SEC);
		break;
	case FK_COND:
	case FK_COND_TIMEOUT:
		fw->rc = weft_lock_acquire(fw->l);
		if (fw->rc)
			break;
		atomic_store(&fw->entered, 1);
		while (!fw->ready && fw->rc == 0)
			fw->rc = fw->kind == FK_COND
					 ? weft_cond_wait(fw->c, fw->l)
					 : weft_cond_wait_timeout(fw->c, fw->l,
								  60 * SEC);
		fw->held_after = weft_lock_locked(fw->l);
		weft_lock_release(fw->l);
		break;
	default:
		break;
	}
	fw->acted_before_return = atomic_load(&fw->acted);
	atomic_store(&fw->returned, 1);
	return NULL;
}

static void *foreign_wait_main(void *arg)
{
	struct foreign_wait *fw = arg;
	pthread_t th;

	if (!WT_CHECK_EQ(pthread_create(&th, NULL, foreign_wait_thread, fw),
			 0))
		return NULL;
	settle_count(&fw->entered, 1);
	weft_sleep(20 * MS);
	/* Still blocked. */
	if (atomic_load(&fw->returned)) {
		char b[160];

		snprintf(b, sizeof(b),
			 "%s from a plain thread returned %d (%s) before the "
			 "task acted",
			 foreign_names[fw->kind], fw->rc,
			 weft_strerror(fw->rc));
		wt_fail_(__FILE__, __LINE__, b);
	}
	atomic_store(&fw->acted, 1);
	switch (fw->kind) {
	case FK_EVENT:
	case FK_EVENT_TIMEOUT:
		weft_event_set(fw->e);
		break;
	case FK_SEM:
	case FK_SEM_TIMEOUT:
		WT_CHECK_EQ(weft_sem_release(fw->s), 0);
		break;
	default:
		if (WT_CHECK_EQ(weft_lock_acquire(fw->l), 0)) {
			fw->ready = 1;
			weft_cond_notify_all(fw->c);
			WT_CHECK_EQ(weft_lock_release(fw->l), 0);
		}
		break;
	}
	settle_count(&fw->returned, 1);
	pthread_join(th, NULL);
	return NULL;
}

Test(sync, event_sem_and_cond_waits_from_a_plain_thread_block_until_a_task_acts,
     .timeout = WT_TIMEOUT(60))
{
	for (int k = 0; k < FK_N; k++) {
		struct foreign_wait fw;

		memset(&fw, 0, sizeof(fw));
		fw.kind = (enum foreign_kind)k;
		cr_assert_eq(weft_event_create(&fw.e), 0);
		cr_assert_eq(weft_sem_create(&fw.s, 0, 0), 0);
		cr_assert_eq(weft_cond_create(&fw.c), 0);
		cr_assert_eq(weft_lock_create(&fw.l), 0);
		wt_run(foreign_wait_main, &fw, 2);
		if (k == FK_EVENT_TIMEOUT || k == FK_SEM_TIMEOUT ||
		    k == FK_COND_TIMEOUT) {
			cr_assert_eq(fw.short_rc, -ETIMEDOUT,
				     "%s(20 ms) from a plain thread: %d (%s)",
				     foreign_names[k], fw.short_rc,
				     weft_strerror(fw.short_rc));
			cr_assert_geq(fw.short_took, 20 * MS,
				      "%s(20 ms) from a plain thread returned "
				      "after %llu ns",
				      foreign_names[k],
				      (unsigned long long)fw.short_took);
		}
		cr_assert_eq(fw.rc, 0, "%s from a plain thread: %d (%s)",
			     foreign_names[k], fw.rc, weft_strerror(fw.rc));
		cr_assert_eq(fw.acted_before_return, 1,
			     "%s from a plain thread returned before the task "
			     "acted",
			     foreign_names[k]);
		if (k == FK_COND || k == FK_COND_TIMEOUT)
			cr_assert_eq(fw.held_after, 1,
				     "%s returned without the lock held",
				     foreign_names[k]);
		weft_event_destroy(fw.e);
		weft_sem_destroy(fw.s);
		weft_cond_destroy(fw.c);
		weft_lock_destroy(fw.l);
	}
}

/*
 * The cooperative budget (weft.h): an operation that completes without
 * suspending counts against it like one that suspends, so a task looping
 * on it still lets the other tasks of its worker run. Issue 17 found four
 * that did not count: an uncontended lock acquire, a wait on a set event,
 * an await of a finished future and a semaphore acquire with permits
 * free. On one worker a ticker yields in a loop while main makes 200,000
 * such calls: with the budget (one yield per 128) it runs about 1,562
 * times; without, not once.
 */
#define COOP_CALLS 200000

enum { CO_LOCK, CO_EVENT, CO_FUTURE, CO_SEM, CO_N };
static const char *const coop_names[CO_N] = {
	"weft_lock_acquire (uncontended)", "weft_event_wait (set)",
	"weft_future_await (done)", "weft_sem_acquire (permits free)"
};

struct coop {
	int kind;
	atomic_int stop;
	long ticks;
};

static void *coop_ticker(void *arg)
{
	struct coop *c = arg;

	while (!atomic_load(&c->stop)) {
		c->ticks++;
		weft_yield();
	}
	return NULL;
}

static void *coop_main(void *arg)
{
	struct coop *c = arg;
	weft_lock *l = NULL;
	weft_event *e = NULL;
	weft_future *f = NULL;
	weft_sem *s = NULL;
	weft_task *t;
	long ticks, i;

	WT_CHECK_EQ(weft_lock_create(&l), 0);
	WT_CHECK_EQ(weft_event_create(&e), 0);
	WT_CHECK_EQ(weft_future_create(&f), 0);
	WT_CHECK_EQ(weft_sem_create(&s, 1, 0), 0);
	weft_event_set(e);
	WT_CHECK_EQ(weft_future_set(f, f), 0);
	t = weft_spawn(coop_ticker, c);
	weft_yield(); /* the ticker has started */
	c->ticks = 0;
	for (i = 0; i < COOP_CALLS; i++) {
		int rc = 0;
		void *v;

		switch (c->kind) {
		case CO_LOCK:
			rc = weft_lock_acquire(l);
			weft_lock_release(l);
			break;
		case CO_EVENT:
			rc = weft_event_wait(e);
			break;
		case CO_FUTURE:
			rc = weft_future_await(f, &v);
			break;
		case CO_SEM:
			rc = weft_sem_acquire(s);
			weft_sem_release(s);
			break;
		}
		if (!WT_CHECK_EQ(rc, 0))
			break;
	}
	ticks = c->ticks;
	atomic_store(&c->stop, 1);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	c->ticks = ticks;
	weft_lock_destroy(l);
	weft_event_destroy(e);
	weft_future_destroy(f);
	weft_sem_destroy(s);
	return NULL;
}

Test(sync, calls_that_complete_at_once_count_against_the_budget,
     .timeout = WT_TIMEOUT(30))
{
	for (int k = 0; k < CO_N; k++) {
		struct coop c;

		memset(&c, 0, sizeof(c));
		c.kind = k;
		wt_run(coop_main, &c, 1);
		cr_log_info("%s: the ticker ran %ld times in %d calls",
			    coop_names[k], c.ticks, COOP_CALLS);
		/* 1,562 expected; well above 0 is the point. */
		cr_assert_geq(c.ticks, COOP_CALLS / 128 / 2,
			      "%s: the ticker ran %ld times in %d calls that "
			      "never suspended",
			      coop_names[k], c.ticks, COOP_CALLS);
	}
}
