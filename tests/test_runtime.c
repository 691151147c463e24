/*
 * Event-loop control: the graceful shutdown of weft_run() (tasks left are
 * cancelled, get the grace period, are dropped after it), weft_stop() from
 * a task, a foreign thread and a signal (WEFT_RUN_STOP_ON_SIGNALS),
 * explicit runtimes (create, run, run again, run_forever, close, destroy),
 * several runtimes at once, the errors of misuse, and races between
 * weft_stop() and the end of a run.
 *
 * Timing checks: "not before the grace" is exact (the drain cannot end
 * before its deadline while a task is live). "At once" (cancelled tasks
 * end, a stop or a close takes effect) is QUICK_NS, tens of milliseconds,
 * on the best of WT_TRIES runs (WT_BEST_OF): a loaded 2-core machine
 * running sanitizers may stall one run, not all of them; a shutdown that
 * waited for the grace (5 s by default) fails every run.
 */
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "weft_test.h"

WT_SUITE(runtime, 120);

/* How long a helper waits for a flag before it gives up (then a check
 * fails). */
#define GATE_WAIT_MS (10000u * WT_SLOW)

#define HOUR (3600 * SEC)

extern char **environ;

static const unsigned worker_counts[] = { 1, 2, 4 };
#define N_COUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

static void *ret_arg(void *arg)
{
	return arg;
}

static struct weft_config cfg_workers(unsigned n)
{
	struct weft_config c;

	memset(&c, 0, sizeof(c));
	c.workers = n;
	return c;
}

/* weft_run() whose result code the test checks itself; skips where the
 * kernel refuses io_uring. */
static int run_rc(weft_fn fn, void *arg, const struct weft_config *c,
		  void **res)
{
	int rc = weft_run(fn, arg, c, res);

	if (rc == -EPERM || rc == -ENOSYS)
		cr_skip_test("io_uring refused by the kernel: %s",
			     weft_strerror(rc));
	return rc;
}

/* wt_run_cfg() that returns wt_now_ns() as weft_run() returned, before
 * the checks that follow it (the leak check takes a while under ASan). */
static uint64_t run_ended_at(weft_fn fn, void *arg,
			     const struct weft_config *c, void **res)
{
	int rc = run_rc(fn, arg, c, res);
	uint64_t end = wt_now_ns();

	cr_assert_eq(rc, 0, "weft_run() = %d (%s)", rc, weft_strerror(rc));
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	return end;
}

static weft_runtime *create_or_skip(const struct weft_config *c)
{
	weft_runtime *rt = NULL;
	int rc = weft_runtime_create(&rt, c);

	if (rc == -EPERM || rc == -ENOSYS)
		cr_skip_test("io_uring refused by the kernel: %s",
			     weft_strerror(rc));
	cr_assert_eq(rc, 0, "weft_runtime_create() = %d (%s)", rc,
		     weft_strerror(rc));
	cr_assert_not_null(rt);
	return rt;
}

/* ---- graceful shutdown of weft_run() ----------------------------------- */

struct drain {
	atomic_long started, cancelled, cleaned, respawned;
	long n;
	uint64_t main_end; /* wt_now_ns() as main returned */
};

/* Sleeps for an hour; cancelled, it records -ECANCELED and cleans up. */
static void *hour_sleeper(void *arg)
{
	struct drain *d = arg;
	int rc;

	atomic_fetch_add(&d->started, 1);
	rc = weft_sleep(HOUR);
	if (rc == -ECANCELED)
		atomic_fetch_add(&d->cancelled, 1);
	atomic_fetch_add(&d->cleaned, 1);
	return NULL;
}

static void spawn_detached(weft_fn fn, void *arg)
{
	weft_task *t = weft_spawn(fn, arg);

	if (WT_CHECK(t != NULL))
		weft_detach(t);
}

/* Main: starts d->n sleepers, waits until all have started, returns. */
static void *sleepers_main(void *arg)
{
	struct drain *d = arg;

	for (long i = 0; i < d->n; i++)
		spawn_detached(hour_sleeper, d);
	WT_CHECK(wt_yield_until_count(&d->started, d->n, 10000000));
	d->main_end = wt_now_ns();
	return d;
}

/* One run with 100 sleepers left behind; returns how long weft_run()
 * took after main returned. */
static uint64_t drain_once(unsigned workers)
{
	struct weft_config c = cfg_workers(workers);
	struct drain d = { .n = 100 };
	void *res = NULL;
	uint64_t e = run_ended_at(sleepers_main, &d, &c, &res) - d.main_end;

	cr_assert_eq(res, &d);
	cr_assert_eq(atomic_load(&d.cancelled), 100,
		     "%ld of 100 sleeps saw -ECANCELED (%u workers)",
		     atomic_load(&d.cancelled), workers);
	cr_assert_eq(atomic_load(&d.cleaned), 100);
	return e;
}

Test(runtime, main_return_cancels_the_tasks_left_which_clean_up,
     .timeout = WT_TIMEOUT(30))
{
	for (size_t k = 0; k < N_COUNTS; k++) {
		uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS,
					   drain_once(worker_counts[k]));

		cr_assert_lt(best, QUICK_NS,
			     "weft_run() took at best %.3f ms after main "
			     "returned to cancel 100 sleepers, with %u "
			     "workers, in %d runs (bound %.3f ms)",
			     (double)best / 1e6, worker_counts[k], WT_TRIES,
			     (double)QUICK_NS / 1e6);
	}
}

/* Cancelled, spawns another sleeper in its cleanup: the drain's next
 * sweep must cancel that one too (it never runs if the sweep reaches it
 * before it started). */
struct respawn {
	struct drain first, second;
};

static void *second_sleeper(void *arg)
{
	return hour_sleeper(&((struct respawn *)arg)->second);
}

static void *respawning_sleeper(void *arg)
{
	struct respawn *r = arg;
	struct drain *d = &r->first;

	atomic_fetch_add(&d->started, 1);
	if (weft_sleep(HOUR) == -ECANCELED) {
		atomic_fetch_add(&d->cancelled, 1);
		spawn_detached(second_sleeper, r);
		atomic_fetch_add(&d->respawned, 1);
	}
	atomic_fetch_add(&d->cleaned, 1);
	return NULL;
}

static void *respawn_main(void *arg)
{
	struct respawn *r = arg;

	for (long i = 0; i < r->first.n; i++)
		spawn_detached(respawning_sleeper, r);
	WT_CHECK(wt_yield_until_count(&r->first.started, r->first.n,
				      10000000));
	r->first.main_end = wt_now_ns();
	return NULL;
}

/* One run; returns how long weft_run() took after main returned. */
static uint64_t respawn_once(struct respawn *r)
{
	struct weft_config c = cfg_workers(2);

	memset(r, 0, sizeof(*r));
	r->first.n = 20;
	/* A grace far beyond the bound: only cancellation can end the
	 * second sleepers in time. */
	c.shutdown_grace_ms = 600 * 1000;
	return run_ended_at(respawn_main, r, &c, NULL) - r->first.main_end;
}

Test(runtime, tasks_spawned_during_the_drain_are_cancelled_too,
     .timeout = WT_TIMEOUT(30))
{
	struct respawn r;
	uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS, respawn_once(&r));

	cr_assert_lt(best, QUICK_NS,
		     "the drain took at best %.3f ms in %d runs (bound %.3f "
		     "ms): the sleepers spawned during it were not cancelled",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
	cr_assert_eq(atomic_load(&r.first.cancelled), 20);
	cr_assert_eq(atomic_load(&r.first.respawned), 20);
	cr_assert_eq(atomic_load(&r.first.cleaned), 20);
	/* Those that ran saw -ECANCELED; the others never ran. */
	cr_assert_eq(atomic_load(&r.second.cancelled),
		     atomic_load(&r.second.started));
	cr_assert_eq(atomic_load(&r.second.cleaned),
		     atomic_load(&r.second.started));
}

/* Ignores cancellation for ever: sleeps in a loop under a shield. It is
 * dropped when the runtime stops (its stack is freed with the pool). */
static void *stubborn(void *arg)
{
	struct drain *d = arg;

	weft_shield_begin();
	atomic_fetch_add(&d->started, 1);
	for (;;)
		weft_sleep_ms(5);
	return NULL;
}

static void *stubborn_main(void *arg)
{
	struct drain *d = arg;

	spawn_detached(stubborn, d);
	for (long i = 0; i < d->n; i++)
		spawn_detached(hour_sleeper, d);
	WT_CHECK(wt_yield_until_count(&d->started, d->n + 1, 10000000));
	d->main_end = wt_now_ns();
	return NULL;
}

/* One run with a 100 ms grace; returns how long weft_run() took after
 * main returned, less the grace. */
static uint64_t stubborn_once(void)
{
	struct weft_config c = cfg_workers(2);
	struct drain d = { .n = 10 };
	uint64_t e;

	c.shutdown_grace_ms = 100;
	e = run_ended_at(stubborn_main, &d, &c, NULL) - d.main_end;
	cr_assert_geq(e, 100 * MS,
		      "returned %.3f ms after main, before the grace",
		      (double)e / 1e6);
	/* The others still got their cancellation and cleaned up. */
	cr_assert_eq(atomic_load(&d.cancelled), 10);
	cr_assert_eq(atomic_load(&d.cleaned), 10);
	return e - 100 * MS;
}

Test(runtime, a_task_ignoring_cancellation_is_dropped_after_the_grace,
     .timeout = WT_TIMEOUT(30))
{
	uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS, stubborn_once());

	cr_assert_lt(best, QUICK_NS,
		     "weft_run() returned at best %.3f ms after the 100 ms "
		     "grace in %d runs (bound %.3f ms): the stubborn task was "
		     "not dropped when the grace ended",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
}

/* One run with no grace; returns how long weft_run() took after main. */
static uint64_t no_grace_once(void)
{
	struct weft_config c = cfg_workers(2);
	struct drain d = { .n = 100 };
	uint64_t end;

	c.shutdown_grace_ms = -1;
	end = run_ended_at(sleepers_main, &d, &c, NULL);
	cr_assert_eq(atomic_load(&d.started), 100);
	cr_assert_eq(atomic_load(&d.cancelled), 0, "no task is cancelled");
	cr_assert_eq(atomic_load(&d.cleaned), 0, "no task runs again");
	return end - d.main_end;
}

Test(runtime, negative_grace_drops_the_tasks_left_at_once,
     .timeout = WT_TIMEOUT(30))
{
	uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS, no_grace_once());

	cr_assert_lt(best, QUICK_NS,
		     "weft_run() took at best %.3f ms after main in %d runs "
		     "(bound %.3f ms) with no grace",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
}

/*
 * Tasks dropped after the grace while waiting on objects the program owns:
 * their wait nodes lived on their stacks, which are unmapped, yet stayed
 * linked in the objects. The program's next use of a channel, lock,
 * future, event, semaphore or select channel after weft_run() returned
 * touched freed memory (SIGSEGV; ASan: use-after-free). Now the drop takes
 * every node out first; the objects are usable and destroyable, and a
 * thread in weft_join() on a dropped task returns -ECANCELED.
 */
struct dropped {
	weft_chan *full, *empty, *sel_chan;
	weft_lock *lock;
	weft_future *fut;
	weft_event *ev;
	weft_sem *sem;
	weft_task *joined; /* one reference for the joining thread */
	atomic_int waiting;
	atomic_int join_rc;
	pthread_t th;
};

static void *drop_send(void *arg)
{
	struct dropped *d = arg;

	weft_shield_begin();
	atomic_fetch_add(&d->waiting, 1);
	for (;;)
		weft_chan_send(d->full, (void *)2);
	return NULL;
}

static void *drop_recv(void *arg)
{
	struct dropped *d = arg;

	weft_shield_begin();
	atomic_fetch_add(&d->waiting, 1);
	for (;;)
		weft_chan_recv(d->empty, NULL);
	return NULL;
}

static void *drop_select(void *arg)
{
	struct dropped *d = arg;
	struct weft_sel k[2] = {
		{ .chan = d->sel_chan, .op = WEFT_SEL_RECV },
		{ .chan = d->empty, .op = WEFT_SEL_RECV },
	};

	weft_shield_begin();
	atomic_fetch_add(&d->waiting, 1);
	for (;;)
		weft_select(k, 2, WEFT_NEVER);
	return NULL;
}

static void *drop_others(void *arg)
{
	struct dropped *d = arg;

	weft_shield_begin();
	atomic_fetch_add(&d->waiting, 1);
	for (;;) {
		weft_lock_acquire(d->lock);
		weft_future_await(d->fut, NULL);
		weft_event_wait(d->ev);
		weft_sem_acquire(d->sem);
	}
	return NULL;
}

static void *joiner(void *arg)
{
	struct dropped *d = arg;

	atomic_store(&d->join_rc, weft_join(d->joined, NULL));
	return NULL;
}

static void *dropped_main(void *arg)
{
	struct dropped *d = arg;

	WT_CHECK_EQ(weft_chan_send(d->full, (void *)1), 0);
	WT_CHECK_EQ(weft_lock_acquire(d->lock), 0);
	spawn_detached(drop_send, d);
	spawn_detached(drop_recv, d);
	spawn_detached(drop_select, d);
	d->joined = weft_spawn(drop_others, d);
	WT_CHECK_EQ(pthread_create(&d->th, NULL, joiner, d), 0);
	for (int i = 0; i < 100000 && atomic_load(&d->waiting) < 4; i++)
		weft_yield();
	WT_CHECK_EQ(atomic_load(&d->waiting), 4);
	weft_sleep_ms(5); /* let them park */
	/* main ends holding the lock: drop_others stays parked on it */
	return NULL;
}

Test(runtime, tasks_dropped_at_shutdown_leave_the_objects_they_waited_on,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	struct dropped d;
	void *v = NULL;

	memset(&d, 0, sizeof(d));
	atomic_store(&d.join_rc, 1);
	cr_assert_eq(weft_chan_create(&d.full, 1), 0);
	cr_assert_eq(weft_chan_create(&d.empty, 0), 0);
	cr_assert_eq(weft_chan_create(&d.sel_chan, 2), 0);
	cr_assert_eq(weft_lock_create(&d.lock), 0);
	cr_assert_eq(weft_future_create(&d.fut), 0);
	cr_assert_eq(weft_event_create(&d.ev), 0);
	cr_assert_eq(weft_sem_create(&d.sem, 0, 0), 0);
	c.shutdown_grace_ms = 20;
	wt_run_cfg(dropped_main, &d, &c);

	/* The thread in weft_join() was told. */
	cr_assert_eq(pthread_join(d.th, NULL), 0);
	cr_assert_eq(atomic_load(&d.join_rc), -ECANCELED);
	/* The objects work without the dropped waiters. */
	cr_assert_eq(weft_chan_try_recv(d.full, &v), 0);
	cr_assert_eq(v, (void *)1);
	cr_assert_eq(weft_chan_try_recv(d.full, &v), -EAGAIN,
		     "a dropped sender's value was taken");
	cr_assert_eq(weft_chan_try_send(d.empty, (void *)3), -EAGAIN,
		     "a dropped receiver took a value");
	cr_assert_eq(weft_chan_try_send(d.sel_chan, (void *)4), 0);
	cr_assert_eq(weft_chan_try_recv(d.sel_chan, &v), 0,
		     "a dropped select took the value");
	cr_assert_eq(weft_lock_release(d.lock), 0);
	cr_assert_eq(weft_future_set(d.fut, NULL), 0);
	weft_event_set(d.ev);
	cr_assert_eq(weft_sem_release(d.sem), 0);
	weft_chan_destroy(d.full);
	weft_chan_destroy(d.empty);
	weft_chan_destroy(d.sel_chan);
	weft_lock_destroy(d.lock);
	weft_future_destroy(d.fut);
	weft_event_destroy(d.ev);
	weft_sem_destroy(d.sem);
	/* Its handle died with the runtime. */
	cr_assert_eq(weft_task_release(d.joined), -ESRCH);
}

/* A blocking-pool call waiting in weft_join() for a task that is dropped
 * at shutdown returns (-ECANCELED): the pool's shutdown used to wait for
 * that call while the drop that ends the join came after it (hang). */
struct pool_join {
	weft_task *stubborn;
	atomic_int started;
	atomic_int join_rc;
	atomic_int joining; /* the pool call is about to join */
};

static void *pj_stubborn(void *arg)
{
	struct pool_join *p = arg;

	weft_shield_begin();
	atomic_store(&p->started, 1);
	for (;;)
		weft_sleep_ms(5);
	return NULL;
}

static void *pj_join(void *arg)
{
	struct pool_join *p = arg;

	atomic_store(&p->joining, 1);
	atomic_store(&p->join_rc, weft_join(p->stubborn, NULL));
	return NULL;
}

static void *pj_caller(void *arg)
{
	weft_run_blocking(pj_join, arg, NULL);
	return NULL;
}

static void *pool_join_main(void *arg)
{
	struct pool_join *p = arg;

	p->stubborn = weft_spawn(pj_stubborn, p);
	spawn_detached(pj_caller, p);
	WT_CHECK(wt_yield_until(&p->started, 1000000));
	/* The call must be running when the shutdown comes: one still
	 * queued then is cancelled without running (ThreadSanitizer's slow
	 * thread start made that happen once), and never joins. */
	WT_CHECK(wt_yield_until(&p->joining, 1000000));
	weft_sleep_ms(5);
	return NULL;
}

Test(runtime, a_pool_call_joining_a_dropped_task_does_not_hang_shutdown,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	struct pool_join p;

	memset(&p, 0, sizeof(p));
	atomic_store(&p.join_rc, 1);
	c.shutdown_grace_ms = 20;
	wt_run_cfg(pool_join_main, &p, &c);
	cr_assert_eq(atomic_load(&p.join_rc), -ECANCELED);
}

/* ---- weft_stop() ---------------------------------------------------------- */

static void *stop_after_20ms(void *arg)
{
	uint64_t *stop_at = arg;

	weft_sleep_ms(20);
	*stop_at = wt_now_ns();
	WT_CHECK_EQ(weft_stop(NULL), 0);
	return NULL;
}

static void *stopped_main(void *arg)
{
	WT_CHECK_EQ(weft_stop_requested(), 0);
	WT_CHECK_EQ(weft_runtime_is_running(weft_runtime_self()), 1);
	spawn_detached(stop_after_20ms, arg);
	WT_CHECK_EQ(weft_sleep(HOUR), -ECANCELED);
	WT_CHECK_EQ(weft_stop_requested(), 1);
	/* Cleanup after the cancellation can still suspend (the
	 * cancellation stays pending, so it needs a shield). */
	weft_shield_begin();
	WT_CHECK_EQ(weft_sleep_ms(1), 0);
	weft_shield_end();
	return (void *)7;
}

/* One run; returns how long weft_run() took to return after the stop
 * (main's cleanup sleeps 1 ms of it). */
static uint64_t stop_from_task_once(void)
{
	struct weft_config c = cfg_workers(2);
	void *res = NULL;
	uint64_t stop_at = 0;
	int rc = run_rc(stopped_main, &stop_at, &c, &res);
	uint64_t end = wt_now_ns();

	/* Main was cancelled before it returned: weft_await's outcome. */
	cr_assert_eq(rc, -ECANCELED, "weft_run() = %d", rc);
	cr_assert_eq(res, (void *)7, "main's result is still returned");
	cr_assert_neq(stop_at, 0);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	return end - stop_at;
}

Test(runtime, stop_from_a_task_cancels_main, .timeout = WT_TIMEOUT(30))
{
	uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS, stop_from_task_once());

	cr_assert_lt(best, QUICK_NS,
		     "weft_run() returned at best %.3f ms after weft_stop() "
		     "in %d runs (bound %.3f ms): main's hour-long sleep was "
		     "not cancelled at once",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
}

struct foreign {
	weft_runtime *rt;
	pthread_t th;
	atomic_int done;
	int rc;
};

static void *foreign_stopper(void *arg)
{
	struct foreign *f = arg;

	wt_sleep_ms(20);
	/* Busy with weft_run(): neither runnable nor closable from here. */
	WT_CHECK_EQ(weft_runtime_is_running(f->rt), 1);
	WT_CHECK_EQ(weft_runtime_run(f->rt, ret_arg, NULL, NULL), -EBUSY);
	WT_CHECK_EQ(weft_runtime_run_forever(f->rt), -EBUSY);
	WT_CHECK_EQ(weft_runtime_close(f->rt), -EBUSY);
	f->rc = weft_stop(f->rt);
	/* Release: main reads rc after it saw done. */
	atomic_store(&f->done, 1);
	return NULL;
}

static void *foreign_stop_main(void *arg)
{
	struct foreign *f = arg;

	f->rt = weft_runtime_self();
	if (!WT_CHECK_EQ(pthread_create(&f->th, NULL, foreign_stopper, f), 0))
		return NULL;
	WT_CHECK_EQ(weft_sleep(HOUR), -ECANCELED);
	/* The thread must be out of weft_stop() before the runtime goes. */
	while (!atomic_load(&f->done))
		weft_yield();
	WT_CHECK_EQ(f->rc, 0);
	return f;
}

Test(runtime, stop_from_a_foreign_thread_cancels_main,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	struct foreign f;
	void *res = NULL;
	int rc;

	memset(&f, 0, sizeof(f));
	cr_assert_eq(weft_stop(NULL), -EINVAL, "outside a runtime");
	cr_assert_eq(weft_stop_requested(), 0);
	rc = run_rc(foreign_stop_main, &f, &c, &res);
	cr_assert_eq(pthread_join(f.th, NULL), 0);
	cr_assert_eq(rc, -ECANCELED, "weft_run() = %d", rc);
	cr_assert_eq(res, &f);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/* ---- signals -------------------------------------------------------------- */

static int same_disposition(const struct sigaction *a,
			    const struct sigaction *b)
{
	return a->sa_handler == b->sa_handler &&
	       (a->sa_flags & SA_SIGINFO) == (b->sa_flags & SA_SIGINFO);
}

struct sigrun {
	int sig;
	int by_thread; /* kill() from a foreign thread, else raise() */
	pthread_t th;
	int created; /* th was started (main's write, read after the run) */
};

static void *sig_sender(void *arg)
{
	struct sigrun *s = arg;

	wt_sleep_ms(10);
	WT_CHECK_EQ(kill(getpid(), s->sig), 0);
	return NULL;
}

static void *signalled_main(void *arg)
{
	struct sigrun *s = arg;
	struct sigaction sa;

	WT_CHECK_EQ(sigaction(s->sig, NULL, &sa), 0);
	WT_CHECK(sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
	if (s->by_thread) {
		if (!WT_CHECK_EQ(pthread_create(&s->th, NULL, sig_sender, s),
				 0))
			return NULL;
		s->created = 1;
	} else {
		WT_CHECK_EQ(raise(s->sig), 0);
	}
	WT_CHECK_EQ(weft_sleep(10 * SEC * WT_SLOW), -ECANCELED);
	WT_CHECK_EQ(weft_stop_requested(), 1);
	return (void *)3;
}

static void signal_stops_run(int sig, int by_thread)
{
	struct weft_config c = cfg_workers(2);
	struct sigaction before, after;
	struct sigrun s;
	void *res = NULL;
	int rc;

	memset(&s, 0, sizeof(s));
	s.sig = sig;
	s.by_thread = by_thread;
	c.flags = WEFT_RUN_STOP_ON_SIGNALS;
	cr_assert_eq(sigaction(sig, NULL, &before), 0);
	rc = run_rc(signalled_main, &s, &c, &res);
	if (s.created)
		pthread_join(s.th, NULL);
	cr_assert_eq(rc, -ECANCELED, "weft_run() = %d", rc);
	cr_assert_eq(res, (void *)3);
	cr_assert_eq(sigaction(sig, NULL, &after), 0);
	cr_assert(same_disposition(&before, &after),
		  "the disposition was not restored");
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

Test(runtime, sigint_raised_in_a_task_stops_the_runtime,
     .timeout = WT_TIMEOUT(30))
{
	signal_stops_run(SIGINT, 0);
}

Test(runtime, sigterm_from_a_foreign_thread_stops_the_runtime,
     .timeout = WT_TIMEOUT(30))
{
	signal_stops_run(SIGTERM, 1);
}

static atomic_int custom_hits;

static void custom_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&custom_hits, 1);
}

static void *untouched_main(void *arg)
{
	struct sigaction sa;

	(void)arg;
	WT_CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
	WT_CHECK(sa.sa_handler == custom_handler);
	WT_CHECK_EQ(raise(SIGINT), 0);
	/* Not stopped: the sleep runs its course. */
	WT_CHECK_EQ(weft_sleep_ms(20), 0);
	WT_CHECK_EQ(weft_stop_requested(), 0);
	return NULL;
}

Test(runtime, without_the_flag_signal_dispositions_are_untouched,
     .timeout = WT_TIMEOUT(30))
{
	struct sigaction mine, old, now;

	memset(&mine, 0, sizeof(mine));
	mine.sa_handler = custom_handler;
	sigemptyset(&mine.sa_mask);
	cr_assert_eq(sigaction(SIGINT, &mine, &old), 0);
	wt_run(untouched_main, NULL, 2);
	cr_assert_eq(atomic_load(&custom_hits), 1);
	cr_assert_eq(sigaction(SIGINT, NULL, &now), 0);
	cr_assert(now.sa_handler == custom_handler);

	/* With the flag, the program's own handler is put back after. */
	struct weft_config c = cfg_workers(2);
	c.flags = WEFT_RUN_STOP_ON_SIGNALS;
	wt_run_cfg(ret_arg, NULL, &c);
	cr_assert_eq(sigaction(SIGINT, NULL, &now), 0);
	cr_assert(now.sa_handler == custom_handler,
		  "the program's SIGINT handler was not restored");
	sigaction(SIGINT, &old, NULL);
}

Test(runtime, one_runtime_owns_the_signals_and_unknown_flags_are_refused,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(1);
	struct sigaction before, during, after;
	weft_runtime *a, *b = NULL;

	c.flags = 0x80;
	cr_assert_eq(weft_run(ret_arg, NULL, &c, NULL), -EINVAL);
	cr_assert_eq(weft_runtime_create(&b, &c), -EINVAL);
	cr_assert_null(b);

	c.flags = WEFT_RUN_STOP_ON_SIGNALS;
	cr_assert_eq(sigaction(SIGTERM, NULL, &before), 0);
	a = create_or_skip(&c);
	cr_assert_eq(sigaction(SIGTERM, NULL, &during), 0);
	cr_assert(!same_disposition(&before, &during), "handler installed");
	cr_assert_eq(weft_runtime_create(&b, &c), -EBUSY);
	cr_assert_eq(weft_run(ret_arg, NULL, &c, NULL), -EBUSY);
	/* Without the flag, a second runtime is fine. */
	c.flags = 0;
	b = create_or_skip(&c);
	weft_runtime_destroy(b);
	weft_runtime_destroy(a);
	cr_assert_eq(sigaction(SIGTERM, NULL, &after), 0);
	cr_assert(same_disposition(&before, &after));
	/* The signals are free again. */
	c.flags = WEFT_RUN_STOP_ON_SIGNALS;
	b = create_or_skip(&c);
	weft_runtime_destroy(b);
	WT_LEAK_ASSERT();
}

/*
 * A second signal while stopping ends the process the default way. The
 * child is this test program again, run afresh (ThreadSanitizer refuses
 * threads in a fork of a threaded process); it does this before
 * Criterion's main. Exit codes: 2 survived, 77 no io_uring.
 */
static void *double_signal_main(void *arg)
{
	int fd = *(int *)arg;

	/* Shielded: the stop's cancellation must not end main, so the
	 * runtime is still stopping when the second signal comes. */
	weft_shield_begin();
	raise(SIGINT);
	for (int i = 0; i < 10000 && !weft_stop_requested(); i++)
		weft_sleep_ms(1);
	/* Tell the parent that the first signal stopped the runtime (and
	 * did not kill the process). */
	if (weft_stop_requested() && write(fd, "S", 1) != 1)
		_exit(3);
	raise(SIGINT);
	weft_sleep(5 * SEC);
	weft_shield_end();
	return NULL;
}

__attribute__((constructor)) static void double_signal_entry(void)
{
	struct weft_config c = { .workers = 2,
				 .flags = WEFT_RUN_STOP_ON_SIGNALS };
	const char *env = getenv("WEFT_TEST_DOUBLE_SIGNAL_CHILD");
	int rc, fd;

	if (!env)
		return;
	fd = atoi(env);
	alarm((unsigned)(20 * WT_SLOW));
	rc = weft_run(double_signal_main, &fd, &c, NULL);
	_exit(rc == -EPERM || rc == -ENOSYS ? 77 : 2);
}

Test(runtime, a_second_signal_while_stopping_ends_the_process,
     .timeout = WT_TIMEOUT(40))
{
	char *argv[] = { "test_runtime", NULL };
	char var[64], **envp, mark = 0;
	size_t n = 0;
	pid_t pid;
	int status, rc, p[2];

	/* The child reports through the pipe that its first signal was
	 * handled: a process killed by the first one fails the test. */
	cr_assert_eq(pipe(p), 0);
	snprintf(var, sizeof(var), "WEFT_TEST_DOUBLE_SIGNAL_CHILD=%d", p[1]);
	while (environ[n])
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	cr_assert_not_null(envp);
	memcpy(envp, environ, n * sizeof(*envp));
	envp[n] = var;
	rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp);
	free(envp);
	close(p[1]);
	cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	rc = (int)read(p[0], &mark, 1);
	close(p[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("io_uring refused by the kernel");
	cr_assert(rc == 1 && mark == 'S',
		  "the first signal did not stop the runtime");
	cr_assert(WIFSIGNALED(status),
		  "the child survived (exit status %d)",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cr_assert_eq(WTERMSIG(status), SIGINT, "killed by signal %d",
		     WTERMSIG(status));
}

/* ---- explicit runtimes ---------------------------------------------------- */

struct life {
	weft_runtime *rt;
	atomic_int phase;
	atomic_int survivor_saw;
	atomic_int survivor_cancelled;
};

/* Spawned in run 1; still alive in run 2, where it answers. */
static void *survivor(void *arg)
{
	struct life *l = arg;

	while (atomic_load(&l->phase) < 2)
		if (weft_sleep_ms(1) == -ECANCELED) {
			atomic_store(&l->survivor_cancelled, 1);
			return NULL;
		}
	atomic_store(&l->survivor_saw, 1);
	return NULL;
}

static void *run1_main(void *arg)
{
	struct life *l = arg;

	WT_CHECK(weft_runtime_self() == l->rt);
	WT_CHECK_EQ(weft_runtime_is_running(l->rt), 1);
	WT_CHECK_EQ(weft_runtime_is_closed(l->rt), 0);
	WT_CHECK_EQ(weft_worker_count(), 2);
	spawn_detached(survivor, l);
	atomic_store(&l->phase, 1);
	return (void *)42;
}

static void *run2_main(void *arg)
{
	struct life *l = arg;

	WT_CHECK_EQ(weft_runtime_is_running(l->rt), 1);
	atomic_store(&l->phase, 2);
	for (int i = 0; i < 10000 && !atomic_load(&l->survivor_saw); i++)
		weft_sleep_ms(1);
	WT_CHECK_EQ(atomic_load(&l->survivor_saw), 1);
	return (void *)43;
}

static void *forever_stopper(void *arg)
{
	struct life *l = arg;

	weft_sleep_ms(20);
	WT_CHECK_EQ(weft_runtime_is_running(l->rt), 1);
	WT_CHECK_EQ(weft_stop_requested(), 0);
	WT_CHECK_EQ(weft_stop(NULL), 0);
	WT_CHECK_EQ(weft_stop_requested(), 1);
	return NULL;
}

Test(runtime, create_run_run_again_run_forever_close,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	struct weft_spawn_opts o;
	struct life l;
	weft_task *h = NULL;
	void *res = NULL;
	uint64_t t0;

	memset(&l, 0, sizeof(l));
	l.rt = create_or_skip(&c);
	cr_assert_eq(weft_runtime_is_running(l.rt), 0);
	cr_assert_eq(weft_runtime_is_closed(l.rt), 0);

	cr_assert_eq(weft_runtime_run(l.rt, run1_main, &l, &res), 0);
	cr_assert_eq(res, (void *)42);
	cr_assert_eq(weft_runtime_is_running(l.rt), 0);
	cr_assert_eq(weft_runtime_run(l.rt, run2_main, &l, &res), 0);
	cr_assert_eq(res, (void *)43);
	cr_assert_eq(atomic_load(&l.survivor_saw), 1);

	memset(&o, 0, sizeof(o));
	o.runtime = l.rt;
	o.flags = WEFT_SPAWN_DETACHED;
	t0 = wt_now_ns();
	cr_assert_eq(weft_spawn_opts(NULL, forever_stopper, &l, &o), 0);
	cr_assert_eq(weft_runtime_run_forever(l.rt), 0);
	cr_assert_geq(wt_now_ns() - t0, 20 * MS, "returned before the stop");
	cr_assert_eq(weft_runtime_is_running(l.rt), 0);

	cr_assert_eq(weft_runtime_close(l.rt), 0);
	cr_assert_eq(weft_runtime_is_closed(l.rt), 1);
	cr_assert_eq(weft_runtime_is_running(l.rt), 0);
	cr_assert_eq(weft_runtime_close(l.rt), 0, "closing again");
	cr_assert_eq(weft_runtime_run(l.rt, ret_arg, NULL, &res), -ESHUTDOWN);
	cr_assert_eq(weft_runtime_run_forever(l.rt), -ESHUTDOWN);
	o.flags = 0;
	cr_assert_eq(weft_spawn_opts(&h, ret_arg, NULL, &o), -ESHUTDOWN);
	cr_assert_null(h);
	cr_assert_eq(weft_call_soon_threadsafe(l.rt, NULL, ret_arg, NULL),
		     -ESHUTDOWN);
	cr_assert_eq(weft_stop(l.rt), 0, "harmless on a closed runtime");
	weft_runtime_destroy(l.rt);
	cr_assert_eq(atomic_load(&l.survivor_cancelled), 0);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/*
 * -ESHUTDOWN while shutting down, not only once closed: a thread outside
 * the runtime calls weft_call_soon_threadsafe() and weft_spawn_opts()
 * after weft_run()'s main has returned while a shielded task still keeps
 * the runtime in its grace period. Neither callback may run.
 */
struct late_call {
	weft_runtime *rt;
	weft_event *never;
	atomic_int started;     /* the late task runs (so it is not
				 * cancelled before it starts, which would
				 * keep it from running at all) */
	atomic_int in_shutdown; /* the late task saw its cancellation */
	atomic_int reported;    /* the outside thread has called */
	atomic_int callback_ran;
	int wait_rc, soon_rc, spawn_rc;
};

static void *late_callback(void *arg)
{
	atomic_store(&((struct late_call *)arg)->callback_ran, 1);
	return NULL;
}

static void *late_task(void *arg)
{
	struct late_call *l = arg;

	atomic_store(&l->started, 1);
	/* Cancelled by the shutdown sweep, which starts after main returned
	 * and shutdown began (lifecycle.c, weft__lifecycle_drain). */
	l->wait_rc = weft_event_wait(l->never);
	weft_shield_begin();
	atomic_store(&l->in_shutdown, 1);
	for (unsigned i = 0; i < GATE_WAIT_MS && !atomic_load(&l->reported);
	     i++)
		weft_sleep(MS);
	weft_shield_end();
	return NULL;
}

static void *late_outsider(void *arg)
{
	struct late_call *l = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };

	for (unsigned i = 0; i < GATE_WAIT_MS && !atomic_load(&l->in_shutdown);
	     i++)
		wt_sleep_ms(1);
	o.runtime = l->rt; /* stored by main, before in_shutdown was set */
	l->soon_rc = weft_call_soon_threadsafe(l->rt, NULL, late_callback, l);
	l->spawn_rc = weft_spawn_opts(NULL, late_callback, l, &o);
	atomic_store(&l->reported, 1);
	return NULL;
}

static void *late_main(void *arg)
{
	struct late_call *l = arg;

	l->rt = weft_runtime_self();
	WT_CHECK_EQ(weft_event_create(&l->never), 0);
	weft_task_release(weft_spawn(late_task, l));
	/* Hazard mode sends yields through the inject queue: wait until it
	 * has really started. */
	WT_CHECK(wt_yield_until(&l->started, 1000000));
	return NULL;
}

Test(runtime, calls_from_outside_during_the_shutdown_grace_get_eshutdown,
     .timeout = WT_TIMEOUT(20))
{
	struct late_call l;
	struct weft_config cfg = { .workers = 2, .shutdown_grace_ms = 10000 };
	pthread_t th;

	memset(&l, 0, sizeof(l));
	cr_assert_eq(pthread_create(&th, NULL, late_outsider, &l), 0);
	wt_run_cfg(late_main, &l, &cfg);
	cr_assert_eq(pthread_join(th, NULL), 0);
	weft_event_destroy(l.never);
	cr_assert_eq(l.wait_rc, -ECANCELED);
	cr_assert_eq(atomic_load(&l.in_shutdown), 1);
	cr_assert_eq(l.soon_rc, -ESHUTDOWN, "call_soon_threadsafe: %d (%s)",
		     l.soon_rc, weft_strerror(l.soon_rc));
	cr_assert_eq(l.spawn_rc, -ESHUTDOWN, "spawn_opts: %d (%s)", l.spawn_rc,
		     weft_strerror(l.spawn_rc));
	cr_assert_eq(atomic_load(&l.callback_ran), 0);
}

static void *stop_flag_main(void *arg)
{
	int *seen = arg;

	*seen = weft_stop_requested();
	return NULL;
}

/* weft_stop(), then weft_runtime_run_forever(); returns how long the
 * latter took. */
static uint64_t stopped_run_forever(weft_runtime *rt)
{
	uint64_t t0;

	cr_assert_eq(weft_stop(rt), 0);
	t0 = wt_now_ns();
	cr_assert_eq(weft_runtime_run_forever(rt), 0);
	return wt_now_ns() - t0;
}

Test(runtime, a_stop_before_a_run_ends_it_at_once,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	weft_runtime *rt = create_or_skip(&c);
	void *res = (void *)1;
	int seen = -1;
	uint64_t best;

	/* asyncio: stop() before run_forever() makes it return at once
	 * (best of WT_TRIES stops and runs). */
	best = WT_BEST_OF(WT_TRIES, QUICK_NS, stopped_run_forever(rt));
	cr_assert_lt(best, QUICK_NS,
		     "run_forever() after a stop took at best %.3f ms in %d "
		     "runs (bound %.3f ms)",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
	/* Consumed: the next run starts afresh, and sees no request. */
	cr_assert_eq(weft_runtime_run(rt, stop_flag_main, &seen, &res), 0);
	cr_assert_eq(seen, 0);
	/* A stop pending at weft_runtime_run() ends it at once: main never
	 * runs. */
	seen = -1;
	cr_assert_eq(weft_stop(rt), 0);
	cr_assert_eq(weft_runtime_run(rt, stop_flag_main, &seen, &res),
		     -ECANCELED);
	cr_assert_eq(seen, -1, "a main cancelled before it started ran");
	cr_assert_null(res);
	weft_runtime_destroy(rt);
	WT_LEAK_ASSERT();
}

/* A runtime with 50 sleepers and a stubborn task is closed with a 100 ms
 * grace; returns how long the close took past the grace. */
static uint64_t close_stubborn_once(void)
{
	struct weft_config c = cfg_workers(2);
	struct weft_spawn_opts o;
	struct drain d = { .n = 50 };
	weft_runtime *rt;
	uint64_t t0, e;

	c.shutdown_grace_ms = 100;
	rt = create_or_skip(&c);
	memset(&o, 0, sizeof(o));
	o.runtime = rt;
	o.flags = WEFT_SPAWN_DETACHED;
	for (long i = 0; i < d.n; i++)
		cr_assert_eq(weft_spawn_opts(NULL, hour_sleeper, &d, &o), 0);
	cr_assert_eq(weft_spawn_opts(NULL, stubborn, &d, &o), 0);
	for (int i = 0; i < 10000 && atomic_load(&d.started) < d.n + 1; i++)
		wt_sleep_ms(1);
	cr_assert_eq(atomic_load(&d.started), d.n + 1);
	t0 = wt_now_ns();
	cr_assert_eq(weft_runtime_close(rt), 0);
	e = wt_now_ns() - t0;
	cr_assert_geq(e, 100 * MS, "close returned before the grace");
	cr_assert_eq(atomic_load(&d.cancelled), d.n);
	cr_assert_eq(atomic_load(&d.cleaned), d.n);
	weft_runtime_destroy(rt);
	WT_LEAK_ASSERT();
	return e - 100 * MS;
}

Test(runtime, close_cancels_the_tasks_left_and_drops_stubborn_ones,
     .timeout = WT_TIMEOUT(30))
{
	uint64_t best = WT_BEST_OF(WT_TRIES, QUICK_NS, close_stubborn_once());

	cr_assert_lt(best, QUICK_NS,
		     "close returned at best %.3f ms after its 100 ms grace in "
		     "%d runs (bound %.3f ms)",
		     (double)best / 1e6, WT_TRIES, (double)QUICK_NS / 1e6);
}

static void *deadlock_main(void *arg)
{
	weft_runtime *other = arg, *self = weft_runtime_self();

	WT_CHECK_EQ(weft_runtime_run(other, ret_arg, NULL, NULL), -EDEADLK);
	WT_CHECK_EQ(weft_runtime_run_forever(other), -EDEADLK);
	WT_CHECK_EQ(weft_runtime_run(self, ret_arg, NULL, NULL), -EDEADLK);
	WT_CHECK_EQ(weft_runtime_run_forever(self), -EDEADLK);
	WT_CHECK_EQ(weft_runtime_close(self), -EDEADLK);
	return NULL;
}

Test(runtime, runs_and_close_from_a_worker_return_edeadlk,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	weft_runtime *a = create_or_skip(&c), *b = create_or_skip(&c);

	/* From weft_run()'s workers, and from another explicit runtime's. */
	wt_run(deadlock_main, a, 2);
	cr_assert_eq(weft_runtime_run(b, deadlock_main, a, NULL), 0);
	cr_assert_eq(weft_runtime_run(NULL, ret_arg, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_runtime_run(a, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_runtime_close(NULL), -EINVAL);
	weft_runtime_destroy(a);
	weft_runtime_destroy(b);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/* ---- several runtimes at once -------------------------------------------- */

static atomic_int par_started;

struct par {
	weft_runtime *rt; /* explicit runs; NULL for weft_run() */
	atomic_long count;
	int rc;
	void *res;
};

static void *par_task(void *arg)
{
	struct par *p = arg;

	weft_sleep_ms(1);
	atomic_fetch_add(&p->count, 1);
	return NULL;
}

static void *par_main(void *arg)
{
	struct par *p = arg;
	weft_task *ts[100];
	int i;

	if (p->rt)
		WT_CHECK(weft_runtime_self() == p->rt);
	WT_CHECK_EQ(weft_worker_count(), 2);
	/* Both mains run at the same time: each waits for the other. */
	atomic_fetch_add(&par_started, 1);
	for (i = 0; i < 20000 && atomic_load(&par_started) % 2; i++)
		weft_sleep_ms(1);
	WT_CHECK_EQ(atomic_load(&par_started) % 2, 0);
	for (i = 0; i < 100; i++)
		WT_CHECK((ts[i] = weft_spawn(par_task, p)) != NULL);
	WT_CHECK_EQ(weft_gather(ts, 100, NULL), 0);
	for (i = 0; i < 100; i++)
		weft_task_release(ts[i]);
	WT_CHECK_EQ(atomic_load(&p->count), 100);
	return p;
}

static void *par_thread(void *arg)
{
	struct par *p = arg;

	if (p->rt) {
		p->rc = weft_runtime_run(p->rt, par_main, p, &p->res);
	} else {
		struct weft_config c = cfg_workers(2);
		p->rc = weft_run(par_main, p, &c, &p->res);
	}
	return NULL;
}

static void run_two_at_once(int explicit_rt)
{
	struct weft_config c = cfg_workers(2);
	struct par p[2];
	pthread_t th[2];
	int i;

	memset(p, 0, sizeof(p));
	for (i = 0; i < 2; i++)
		p[i].rt = explicit_rt ? create_or_skip(&c) : NULL;
	for (i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, par_thread, &p[i]),
			     0);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 2; i++) {
		if (p[i].rc == -EPERM || p[i].rc == -ENOSYS)
			cr_skip_test("io_uring refused by the kernel");
		cr_assert_eq(p[i].rc, 0, "run %d = %d", i, p[i].rc);
		cr_assert_eq(p[i].res, &p[i]);
		cr_assert_eq(atomic_load(&p[i].count), 100);
		if (p[i].rt)
			weft_runtime_destroy(p[i].rt);
	}
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

Test(runtime, two_explicit_runtimes_run_at_once_from_two_threads,
     .timeout = WT_TIMEOUT(30))
{
	run_two_at_once(1);
}

Test(runtime, two_weft_runs_at_once_from_two_threads,
     .timeout = WT_TIMEOUT(30))
{
	run_two_at_once(0);
}

/* ---- races between weft_stop() and the end of a run ------------------- */

#define RACE_ROUNDS 200

static void *quick_main(void *arg)
{
	return arg;
}

/* Main spawns a stopper and returns at once: the stop lands before main
 * returns, during the drain, or after it. */
static void *stop_racer(void *arg)
{
	(void)arg;
	WT_CHECK_EQ(weft_stop(NULL), 0);
	return NULL;
}

static void *racing_main(void *arg)
{
	spawn_detached(stop_racer, NULL);
	if ((uintptr_t)arg & 1)
		weft_yield();
	return arg;
}

Test(runtime, stop_racing_with_the_end_of_main, .timeout = WT_TIMEOUT(60))
{
	struct weft_config c = cfg_workers(2);

	for (uintptr_t i = 0; i < RACE_ROUNDS; i++) {
		void *res = NULL;
		int rc = run_rc(racing_main, (void *)(i + 16), &c, &res);

		cr_assert(rc == 0 || rc == -ECANCELED, "round %lu: %d",
			  (unsigned long)i, rc);
		cr_assert_eq(res, (void *)(i + 16));
	}
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

struct racer {
	weft_runtime *rt;
	atomic_int go;
	int rc;
};

static void *stop_thread(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->go))
		;
	r->rc = weft_stop(r->rt);
	return NULL;
}

Test(runtime, stop_from_a_thread_racing_with_runs,
     .timeout = WT_TIMEOUT(60))
{
	struct weft_config c = cfg_workers(2);
	struct racer r;

	memset(&r, 0, sizeof(r));
	r.rt = create_or_skip(&c);
	for (uintptr_t i = 0; i < RACE_ROUNDS; i++) {
		pthread_t th;
		void *res = NULL;
		int rc;

		atomic_store(&r.go, 0);
		cr_assert_eq(pthread_create(&th, NULL, stop_thread, &r), 0);
		atomic_store(&r.go, 1);
		if (i & 1) {
			/* run_forever must return whenever the stop lands. */
			rc = weft_runtime_run_forever(r.rt);
			cr_assert_eq(rc, 0);
		} else {
			rc = weft_runtime_run(r.rt, quick_main,
					      (void *)(i + 16), &res);
			/* Cancelled before it started, main never ran. */
			cr_assert(rc == 0 || rc == -ECANCELED,
				  "round %lu: %d", (unsigned long)i, rc);
			cr_assert(res == (void *)(i + 16) ||
				  (rc == -ECANCELED && res == NULL));
		}
		pthread_join(th, NULL);
		cr_assert_eq(r.rc, 0);
		/* A stop that landed after the run ended stays pending and
		 * ends the next round's run at once: allowed for above. */
	}
	weft_runtime_destroy(r.rt);
	WT_LEAK_ASSERT();
}

/* ---- close from the runtime's own blocking pool (issue 15) --------------- */

struct pool_close {
	weft_runtime *rt;
	atomic_int rc;
};

/* Runs on a pool thread of pc->rt (weft_run_blocking's fn). */
static void *close_own_runtime(void *arg)
{
	struct pool_close *pc = arg;

	atomic_store(&pc->rc, weft_runtime_close(pc->rt));
	return NULL;
}

static void *pool_close_task(void *arg)
{
	WT_CHECK_EQ(weft_run_blocking(close_own_runtime, arg, NULL), 0);
	return NULL;
}

/*
 * Before the fix the close ran on: it drained, stopped the workers, and
 * then waited in the pool's teardown for a thread count that included its
 * own caller, forever; every later close of the runtime waited for that
 * one.
 */
Test(runtime, close_from_its_own_blocking_pool_returns_edeadlk,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(2);
	struct pool_close pc;
	struct weft_spawn_opts o;
	weft_task *h = NULL;
	uint64_t t0;

	c.shutdown_grace_ms = 100;
	pc.rt = create_or_skip(&c);
	atomic_init(&pc.rc, 1); /* close never returns a positive value */
	memset(&o, 0, sizeof(o));
	o.runtime = pc.rt;
	cr_assert_eq(weft_spawn_opts(&h, pool_close_task, &pc, &o), 0);
	cr_assert_eq(weft_join(h, NULL), 0);
	weft_task_release(h);
	cr_assert_eq(atomic_load(&pc.rc), -EDEADLK);
	cr_assert_eq(weft_runtime_is_closed(pc.rt), 0, "left as it was");
	/* The runtime still works, and closes from a thread of the test. */
	cr_assert_eq(weft_runtime_run(pc.rt, ret_arg, (void *)7, NULL), 0);
	t0 = wt_now_ns();
	cr_assert_eq(weft_runtime_close(pc.rt), 0);
	/* Hang guard: the bug was a close that never returned. */
	cr_assert_lt(wt_now_ns() - t0, PROMPT_NS);
	weft_runtime_destroy(pc.rt);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

static void *destroy_own_runtime(void *arg)
{
	weft_runtime_destroy(arg);
	return NULL;
}

static void *pool_destroy_task(void *arg)
{
	weft_run_blocking(destroy_own_runtime, arg, NULL);
	return NULL;
}

/* In the child process of wt_assert_misuse_reported(). */
static void destroy_from_own_pool(void)
{
	struct weft_config c = cfg_workers(1);
	struct weft_spawn_opts o;
	weft_runtime *rt = NULL;
	weft_task *h = NULL;

	/* A hang ends this child (pool threads block signals; the alarm
	 * reaches this thread) instead of outliving the test. */
	alarm(10 * WT_SLOW);
	if (weft_runtime_create(&rt, &c) != 0)
		_exit(77);
	memset(&o, 0, sizeof(o));
	o.runtime = rt;
	if (weft_spawn_opts(&h, pool_destroy_task, rt, &o) == 0)
		weft_join(h, NULL);
}

/* Misuse, like a destroy from one of its workers: reported and aborted
 * (was: hung in the pool's teardown). */
Test(runtime, destroy_from_its_own_blocking_pool_aborts_with_a_report,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(1);

#if defined(__SANITIZE_THREAD__)
	/* TSan's own thread makes the process multi-threaded, and it kills
	 * a fork child that starts threads; the other builds run this. */
	cr_skip_test("needs fork with threads, which ThreadSanitizer refuses");
#endif
	weft_runtime_destroy(create_or_skip(&c)); /* skips without io_uring */
	wt_assert_misuse_reported(destroy_from_own_pool,
				  "blocking-pool threads");
}

/* ---- issue 18: promises of weft_run() and the explicit runtime ----------- */

/* weft.h: shutdown_grace_ms "0: 5000 ms". A shielded task that ignores its
 * cancellation keeps weft_run() going for the whole default grace, and is
 * dropped then (a hang guard past it). */
Test(runtime, zero_grace_means_the_five_second_default,
     .timeout = WT_TIMEOUT(40))
{
	struct weft_config c = cfg_workers(2);
	struct drain d = { .n = 0 };
	uint64_t e;

	c.shutdown_grace_ms = 0;
	e = run_ended_at(stubborn_main, &d, &c, NULL) - d.main_end;
	cr_assert_geq(e, 5 * SEC,
		      "weft_run() returned %.3f ms after main with "
		      "shutdown_grace_ms 0: before the 5000 ms default grace",
		      (double)e / 1e6);
	cr_assert_lt(e, 5 * SEC + PROMPT_NS,
		     "weft_run() returned %.3f ms after main: the stubborn "
		     "task was not dropped when the 5 s grace ended",
		     (double)e / 1e6);
}

/*
 * weft.h, WEFT_RUN_STOP_ON_SIGNALS: a signal "that comes during the
 * shutdown" (main has returned, the tasks left are draining) ends the
 * process with the default action. The child is this program run afresh,
 * as for a_second_signal_while_stopping_ends_the_process. Exit codes: 2
 * survived, 4 never saw the shutdown begin, 77 no io_uring.
 */
static atomic_int drain_sig_go;

static void *drain_signal_holder(void *arg)
{
	int fd = *(int *)arg;

	weft_shield_begin();
	atomic_store(&drain_sig_go, 1);
	/* The shutdown cancels the tasks left once main has returned;
	 * shielded, this one sees it only through weft_cancelled(). */
	for (int i = 0; i < 10000 && !weft_cancelled(); i++)
		weft_sleep_ms(1);
	if (!weft_cancelled())
		_exit(4);
	if (write(fd, "D", 1) != 1)
		_exit(3);
	raise(SIGINT);
	weft_sleep(5 * SEC);
	weft_shield_end();
	return NULL;
}

static void *drain_signal_main(void *arg)
{
	weft_task *t = weft_spawn(drain_signal_holder, arg);

	if (!t)
		_exit(3);
	weft_detach(t);
	while (!atomic_load(&drain_sig_go))
		weft_yield();
	return NULL;
}

__attribute__((constructor)) static void drain_signal_entry(void)
{
	struct weft_config c = { .workers = 2,
				 .shutdown_grace_ms = 60000,
				 .flags = WEFT_RUN_STOP_ON_SIGNALS };
	const char *env = getenv("WEFT_TEST_DRAIN_SIGNAL_CHILD");
	int rc, fd;

	if (!env)
		return;
	fd = atoi(env);
	alarm((unsigned)(20 * WT_SLOW));
	rc = weft_run(drain_signal_main, &fd, &c, NULL);
	_exit(rc == -EPERM || rc == -ENOSYS ? 77 : 2);
}

Test(runtime, a_signal_during_the_shutdown_drain_ends_the_process,
     .timeout = WT_TIMEOUT(40))
{
	char *argv[] = { "test_runtime", NULL };
	char var[64], **envp, mark = 0;
	size_t n = 0;
	pid_t pid;
	int status, rc, p[2];

	cr_assert_eq(pipe(p), 0);
	snprintf(var, sizeof(var), "WEFT_TEST_DRAIN_SIGNAL_CHILD=%d", p[1]);
	while (environ[n])
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	cr_assert_not_null(envp);
	memcpy(envp, environ, n * sizeof(*envp));
	envp[n] = var;
	rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp);
	free(envp);
	close(p[1]);
	cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	rc = (int)read(p[0], &mark, 1);
	close(p[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		cr_skip_test("io_uring refused by the kernel");
	cr_assert(rc == 1 && mark == 'D',
		  "the child never reached the shutdown drain (status %#x)",
		  status);
	cr_assert(WIFSIGNALED(status),
		  "a SIGINT during the shutdown drain did not end the "
		  "process: it exited with status %d",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cr_assert_eq(WTERMSIG(status), SIGINT, "killed by signal %d",
		     WTERMSIG(status));
}

/* weft.h: "The calling thread becomes worker 0". */
struct caller0 {
	pid_t tid;
	int index, same_thread;
};

static void *caller0_main(void *arg)
{
	struct caller0 *s = arg;

	/* Before any suspension: main has not moved yet. */
	s->index = weft_worker_index();
	s->same_thread = (pid_t)syscall(SYS_gettid) == s->tid;
	return NULL;
}

Test(runtime, the_thread_calling_weft_run_is_worker_zero,
     .timeout = WT_TIMEOUT(10))
{
	struct caller0 s = { .index = -2 };

	s.tid = (pid_t)syscall(SYS_gettid);
	wt_run(caller0_main, &s, 4);
	cr_assert_eq(s.same_thread, 1,
		     "main did not start on the thread calling weft_run()");
	cr_assert_eq(s.index, 0,
		     "main started on the calling thread as worker %d, want 0",
		     s.index);
}

/* weft.h: -ECANCELED when main "was cancelled (... weft_cancel()) before
 * it returned; *result still gets what it returned". */
static void *self_cancel_main(void *arg)
{
	(void)arg;
	WT_CHECK_EQ(weft_cancel(weft_self()), 0);
	return (void *)7;
}

Test(runtime, main_cancelling_itself_gives_ecanceled_and_its_result,
     .timeout = WT_TIMEOUT(10))
{
	struct weft_config c = cfg_workers(2);
	void *res = NULL;
	int rc = run_rc(self_cancel_main, NULL, &c, &res);

	cr_assert_eq(rc, -ECANCELED,
		     "weft_run() = %d (%s) for a main that cancelled itself",
		     rc, weft_strerror(rc));
	cr_assert_eq(res, (void *)7, "*result = %p, want main's 7", res);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/* weft.h: "all threads, stacks, rings and descriptors are released before
 * weft_run() returns". */
static int thread_count(void)
{
	return wt_dir_entries("/proc/self/task");
}

static void *count_workers_main(void *arg)
{
	int *during = arg;

	*during = thread_count();
	return NULL;
}

Test(runtime, weft_run_returns_with_no_thread_or_descriptor_left,
     .timeout = WT_TIMEOUT(20))
{
	int threads = thread_count(), fds = fd_count(), during = 0;

	cr_assert_gt(threads, 0, "cannot read /proc/self/task");
	for (int i = 0; i < 3; i++) {
		wt_run(count_workers_main, &during, 4);
		cr_assert_geq(during, threads + 3,
			      "%d threads during a 4-worker run, %d before",
			      during, threads);
		cr_assert_eq(thread_count(), threads,
			     "%d threads after a 4-worker run, %d before",
			     thread_count(), threads);
		cr_assert_eq(fd_count(), fds,
			     "%d descriptors after a 4-worker run, %d before",
			     fd_count(), fds);
	}
}

/*
 * The same promise for threads that exited but were never joined: they
 * leave /proc/self/task at once, but keep their stacks mapped (8 MiB each
 * by default) until joined. 40 runs of 4 workers and a pool thread would
 * leave 160 such stacks, well over a GiB of address space; joined ones
 * leave none (glibc caches a few freed stacks, 40 MiB at most).
 */
static long vm_size_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void *one_blocking_call(void *arg)
{
	(void)arg;
	return arg;
}

static void *blocking_call_main(void *arg)
{
	void *r = NULL;

	WT_CHECK_EQ(weft_run_blocking(one_blocking_call, arg, &r), 0);
	WT_CHECK_PTR_EQ(r, arg);
	return NULL;
}

Test(runtime, every_thread_of_a_run_is_joined_before_weft_run_returns,
     .timeout = WT_TIMEOUT(60))
{
	long before, after;
	int x;

	wt_run(blocking_call_main, &x, 4);
	before = vm_size_kib();
	cr_assert_gt(before, 0, "cannot read VmSize");
	for (int i = 0; i < 40; i++)
		wt_run(blocking_call_main, &x, 4);
	after = vm_size_kib();
	cr_log_info("VmSize %ld kB before 40 runs, %ld kB after", before,
		    after);
	cr_assert_lt(after - before, 256 * 1024,
		     "address space grew by %ld kB over 40 runs: threads "
		     "left unjoined keep their stacks",
		     after - before);
}

/* weft.h, weft_stop_requested(): "Stays 1 after the run it stopped has
 * ended; back to 0 when a run begins with no stop pending". Between runs
 * the runtime's tasks still run; one started then asks. */
static void *stop_when_running(void *arg)
{
	weft_runtime *rt = arg;

	for (int i = 0; i < 10000 && !weft_runtime_is_running(rt); i++)
		weft_sleep_ms(1);
	WT_CHECK_EQ(weft_runtime_is_running(rt), 1);
	WT_CHECK_EQ(weft_stop(NULL), 0);
	return NULL;
}

static void *report_stop_requested(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)weft_stop_requested();
}

Test(runtime, stop_requested_stays_set_after_the_stopped_run_until_the_next,
     .timeout = WT_TIMEOUT(20))
{
	struct weft_config c = cfg_workers(2);
	weft_runtime *rt = create_or_skip(&c);
	weft_task *h = NULL;
	void *r = (void *)-1;

	cr_assert_eq(weft_call_soon_threadsafe(rt, NULL, stop_when_running,
					       rt), 0);
	cr_assert_eq(weft_runtime_run_forever(rt), 0);
	/* Between runs. */
	cr_assert_eq(weft_call_soon_threadsafe(rt, &h, report_stop_requested,
					       NULL), 0);
	cr_assert_eq(weft_join(h, &r), 0);
	weft_task_release(h);
	cr_assert_eq(r, (void *)1,
		     "weft_stop_requested() = %d between runs after a stopped "
		     "run, want 1", (int)(intptr_t)r);
	/* The stop was consumed by run_forever: the next run clears it. */
	r = (void *)-1;
	cr_assert_eq(weft_runtime_run(rt, report_stop_requested, NULL, &r), 0);
	cr_assert_eq(r, (void *)0,
		     "weft_stop_requested() = %d in a run begun with no stop "
		     "pending, want 0", (int)(intptr_t)r);
	weft_runtime_destroy(rt);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/* weft.h, weft_runtime_close(): returns 0 "once another thread's close
 * has finished". Two threads close a runtime whose stubborn task holds
 * the close for its 200 ms grace; neither may return before. */
struct dclose {
	weft_runtime *rt;
	atomic_int stubborn_started;
	uint64_t start;
	struct {
		int rc, closed;
		uint64_t end;
	} th[2];
};

static void *dclose_stubborn(void *arg)
{
	struct dclose *s = arg;

	weft_shield_begin();
	atomic_store(&s->stubborn_started, 1);
	for (;;)
		weft_sleep_ms(5);
	return NULL;
}

struct dclose_arg {
	struct dclose *s;
	int i;
};

static void *dclose_closer(void *arg)
{
	struct dclose_arg *a = arg;
	struct dclose *s = a->s;

	s->th[a->i].rc = weft_runtime_close(s->rt);
	s->th[a->i].end = wt_now_ns();
	s->th[a->i].closed = weft_runtime_is_closed(s->rt);
	return NULL;
}

Test(runtime, a_second_close_returns_once_the_first_has_finished,
     .timeout = WT_TIMEOUT(20))
{
	struct weft_config c = cfg_workers(2);
	struct dclose s;
	struct dclose_arg a[2] = { { &s, 0 }, { &s, 1 } };
	pthread_t t[2];

	memset(&s, 0, sizeof(s));
	c.shutdown_grace_ms = 200;
	s.rt = create_or_skip(&c);
	cr_assert_eq(weft_call_soon_threadsafe(s.rt, NULL, dclose_stubborn,
					       &s), 0);
	for (int i = 0; i < 10000 && !atomic_load(&s.stubborn_started); i++)
		wt_sleep_ms(1);
	cr_assert(atomic_load(&s.stubborn_started));
	s.start = wt_now_ns();
	cr_assert_eq(pthread_create(&t[0], NULL, dclose_closer, &a[0]), 0);
	wt_sleep_ms(50); /* the second comes while the first is closing */
	cr_assert_eq(pthread_create(&t[1], NULL, dclose_closer, &a[1]), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	weft_runtime_destroy(s.rt);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(s.th[i].rc, 0, "close %d returned %d (%s)", i,
			     s.th[i].rc, weft_strerror(s.th[i].rc));
		cr_assert_geq(s.th[i].end - s.start, 200 * MS,
			      "close %d returned %.3f ms after the first "
			      "began, before the 200 ms grace",
			      i, (double)(s.th[i].end - s.start) / 1e6);
		cr_assert_eq(s.th[i].closed, 1,
			     "close %d returned before the runtime was closed",
			     i);
	}
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
}

/* weft.h: weft_runtime_create() returns -EINVAL for out NULL;
 * weft_runtime_destroy(NULL) is ignored. */
Test(runtime, create_without_out_is_einval_and_destroy_of_null_is_ignored)
{
	int rc = weft_runtime_create(NULL, NULL);

	cr_assert_eq(rc, -EINVAL, "weft_runtime_create(NULL, NULL) = %d (%s)",
		     rc, weft_strerror(rc));
	weft_runtime_destroy(NULL); /* must not crash */
}

/* weft.h, weft_runtime_destroy(): "During a run, or on a worker ... of
 * rt, it aborts (API misuse)". Each case in a child process. */
static void *run_forever_thread(void *arg)
{
	weft_runtime_run_forever(arg);
	return NULL;
}

static void destroy_during_a_run(void)
{
	struct weft_config c = cfg_workers(1);
	weft_runtime *rt = NULL;
	pthread_t th;

	alarm(10 * WT_SLOW);
	if (weft_runtime_create(&rt, &c) != 0)
		_exit(77);
	if (pthread_create(&th, NULL, run_forever_thread, rt) != 0)
		_exit(78);
	while (!weft_runtime_is_running(rt))
		wt_sleep_ms(1);
	weft_runtime_destroy(rt);
}

static void *destroy_own(void *arg)
{
	weft_runtime_destroy(arg);
	return NULL;
}

static void destroy_from_a_task(void)
{
	struct weft_config c = cfg_workers(1);
	weft_runtime *rt = NULL;
	weft_task *h = NULL;

	alarm(10 * WT_SLOW);
	if (weft_runtime_create(&rt, &c) != 0)
		_exit(77);
	if (weft_call_soon_threadsafe(rt, &h, destroy_own, rt) == 0)
		weft_join(h, NULL);
}

Test(runtime, destroy_during_a_run_or_from_a_task_aborts_with_a_report,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = cfg_workers(1);

#if defined(__SANITIZE_THREAD__)
	cr_skip_test("needs fork with threads, which ThreadSanitizer refuses");
#endif
	weft_runtime_destroy(create_or_skip(&c)); /* skips without io_uring */
	wt_assert_misuse_reported(destroy_during_a_run,
				  "weft_runtime_destroy() while the runtime "
				  "runs");
	wt_assert_misuse_reported(destroy_from_a_task,
				  "weft_runtime_destroy() while the runtime "
				  "runs");
}

/* ---- loading the shared library at run time (issue 17) --------------------
 * libweft.so is flagged STATIC_TLS (an initial-exec thread-local: the
 * worker pointer, read on every scheduling step), which some loaders
 * refuse for dlopen. glibc keeps static TLS space for such modules; this
 * loads the library into a program not linked with weft, runs a runtime
 * through the symbols it finds and closes it again (tests/dlopen_check.c). */
#if defined(WT_DLOPEN_CHECK) && defined(WT_LIBWEFT_SO)
Test(runtime, library_loads_with_dlopen_and_runs, .timeout = WT_TIMEOUT(30))
{
	char *argv[] = { WT_DLOPEN_CHECK, WT_LIBWEFT_SO, NULL };
	pid_t pid;
	int status;

	cr_assert_eq(posix_spawn(&pid, WT_DLOPEN_CHECK, NULL, NULL, argv,
				 environ),
		     0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "dlopen_check %s failed (status 0x%x; its stderr says why)",
		  WT_LIBWEFT_SO, status);
}
#endif
