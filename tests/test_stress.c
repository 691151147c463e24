/*
 * Stress of the park/wake protocol: many short tasks spawned from every
 * worker and from a thread outside the runtime, awaiting one another, wake
 * storms on one gate task, cancellations racing completions, and shutdowns
 * with work still in flight. Racy on purpose but bounded; this file also
 * runs under ThreadSanitizer.
 *
 * WEFT_STRESS_SCALE=n (default 1) multiplies the number of runs, on top of
 * a per-build base (wt_scale()): 2,000 rounds per worker count under TSan,
 * 8,000 under ASan, 20,000 in a plain build.
 */
#include <pthread.h>
#include <sched.h>

#include "weft_test.h"

WT_SUITE(stress, 180);

#define MAX_WORKERS 8
#define LEAVES 6	 /* per spawner */
#define FOREIGN 4	 /* tasks spawned from outside per round */
#define ROUNDS_PER_RUN 100
/* Runs per worker count; x ROUNDS_PER_RUN x wt_scale() rounds. */
#define RUNS 20
#define VICTIM_CANCELLED ((void *)(uintptr_t)0xcace1)

struct round;

/* One runtime's worth of state: the foreign thread and the statistics. */
struct stress {
	unsigned workers;
	weft_runtime *rt;

	/* The foreign spawner: main posts a round, it spawns into it. */
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct round *posted; /* under lock; NULL: none */
	bool quit;	      /* under lock */
	atomic_int acked;     /* last round number whose handles are out */

	atomic_long leaves_ok;
	atomic_long foreign_ok;
	atomic_long victims_cancelled;
	atomic_long victims_completed;
	atomic_long leaf_on[MAX_WORKERS];
	/* Rounds whose gate waited for a storm, those in which the storm
	 * formed (that many tasks at their await of the gate when it
	 * ended), and the tasks at their await at the gates' ends. */
	atomic_long storm_rounds, storms_formed, storm_waiters;
};

struct round {
	struct stress *st;
	int no;
	uintptr_t gate_val;
	weft_task *gate;
	atomic_long entered; /* tasks that reached their await of the gate */
	long storm;	     /* awaiters the gate waits for, at most */
	weft_task *foreign[FOREIGN];
};

struct leaf_arg {
	struct round *r;
	weft_task *prev; /* sibling to await (one reference ours), or NULL */
	uintptr_t id;
};

static void *gate_fn(void *arg)
{
	struct round *r = arg;
	long entered;

	/* Hold the gate until a good part of the round waits on it (a wake
	 * storm), but never for long: bounded, so nothing can hang here. */
	for (int i = 0; i < 200 && atomic_load(&r->entered) < r->storm; i++)
		weft_yield();
	entered = atomic_load(&r->entered);
	if (r->storm > 0) {
		atomic_fetch_add(&r->st->storm_rounds, 1);
		atomic_fetch_add(&r->st->storm_waiters, entered);
		if (entered >= r->storm)
			atomic_fetch_add(&r->st->storms_formed, 1);
	}
	return (void *)r->gate_val;
}

static int await_gate(struct round *r)
{
	void *v = NULL;
	int rc;

	atomic_fetch_add(&r->entered, 1);
	rc = weft_await(r->gate, &v);
	WT_CHECK_EQ(rc, 0);
	WT_CHECK_EQ((uintptr_t)v, r->gate_val);
	return rc == 0 && (uintptr_t)v == r->gate_val;
}

static void *leaf_fn(void *arg)
{
	struct leaf_arg *a = arg;
	struct round *r = a->r;
	int w = weft_worker_index(), ok;

	if (w >= 0 && w < MAX_WORKERS)
		atomic_fetch_add(&r->st->leaf_on[w], 1);
	ok = await_gate(r);
	if (a->prev) {
		void *v = NULL;
		ok &= WT_CHECK_EQ(weft_await(a->prev, &v), 0);
		ok &= WT_CHECK_EQ((uintptr_t)v, r->gate_val + a->id - 1);
		WT_CHECK_EQ(weft_task_release(a->prev), 0);
	}
	if (ok)
		atomic_fetch_add(&r->st->leaves_ok, 1);
	return (void *)(r->gate_val + a->id);
}

static void *spawner_fn(void *arg)
{
	struct round *r = arg;
	uintptr_t base = (uintptr_t)weft_worker_index() * 1000; /* any */
	struct leaf_arg la[LEAVES];
	weft_task *ts[LEAVES];
	void *rs[LEAVES];
	uintptr_t want = 0, got = 0;

	for (int i = 0; i < LEAVES; i++) {
		la[i].r = r;
		la[i].id = base + (uintptr_t)i + 1;
		la[i].prev = NULL;
		if (i > 0) {
			WT_CHECK_EQ(weft_task_retain(ts[i - 1]), 0);
			la[i].prev = ts[i - 1];
		}
		ts[i] = weft_spawn(leaf_fn, &la[i]);
		if (!WT_CHECK(ts[i] != NULL))
			return NULL;
		want += r->gate_val + la[i].id;
	}
	WT_CHECK_EQ(weft_gather(ts, LEAVES, rs), 0);
	for (int i = 0; i < LEAVES; i++) {
		got += (uintptr_t)rs[i];
		WT_CHECK_EQ(weft_task_release(ts[i]), 0);
	}
	WT_CHECK_EQ(got, want);
	return (void *)(uintptr_t)LEAVES;
}

static void *foreign_task_fn(void *arg)
{
	struct round *r = arg;

	if (await_gate(r))
		atomic_fetch_add(&r->st->foreign_ok, 1);
	return (void *)(r->gate_val * 3);
}

static void *victim_fn(void *arg)
{
	struct round *r = arg;
	void *v = NULL;
	int rc;

	atomic_fetch_add(&r->entered, 1);
	rc = weft_await(r->gate, &v);
	if (rc == 0) {
		WT_CHECK_EQ((uintptr_t)v, r->gate_val);
		return v;
	}
	WT_CHECK_EQ(rc, -ECANCELED);
	return VICTIM_CANCELLED;
}

/* The thread outside the runtime: spawns FOREIGN tasks per round. */
static void *foreign_thread(void *arg)
{
	struct stress *st = arg;
	struct weft_spawn_opts o = { .runtime = st->rt, .name = "foreign" };

	for (;;) {
		struct round *r;

		pthread_mutex_lock(&st->lock);
		while (!st->posted && !st->quit)
			pthread_cond_wait(&st->cond, &st->lock);
		r = st->posted;
		st->posted = NULL;
		pthread_mutex_unlock(&st->lock);
		if (!r)
			return NULL;
		for (int i = 0; i < FOREIGN; i++)
			WT_CHECK_EQ(weft_spawn_opts(&r->foreign[i],
						    foreign_task_fn, r, &o),
				    0);
		atomic_store(&st->acked, r->no);
	}
}

static void one_round(struct stress *st, int no)
{
	unsigned nsp = st->workers * 2;
	weft_task *sp[2 * MAX_WORKERS], *victim;
	void *rs[2 * MAX_WORKERS], *v = NULL;
	struct round r;
	int crc, vrc;

	memset(&r, 0, sizeof(r));
	r.st = st;
	r.no = no;
	r.gate_val = (uintptr_t)no * 16 + 1;
	r.storm = (no % 3) * (long)(nsp * LEAVES) / 2;
	r.gate = weft_spawn(gate_fn, &r);
	if (!WT_CHECK(r.gate != NULL))
		return;

	/* The foreign thread spawns into this round meanwhile. */
	pthread_mutex_lock(&st->lock);
	st->posted = &r;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);

	for (unsigned i = 0; i < nsp; i++)
		sp[i] = weft_spawn(spawner_fn, &r);

	/* A cancellation racing the gate's completion. */
	victim = weft_spawn(victim_fn, &r);
	for (int i = 0; i < no % 3; i++)
		weft_yield();
	crc = weft_cancel(victim);
	WT_CHECK(crc == 0 || crc == -EALREADY);

	WT_CHECK(await_gate(&r));
	WT_CHECK_EQ(weft_gather(sp, nsp, rs), 0);
	for (unsigned i = 0; i < nsp; i++) {
		WT_CHECK_PTR_EQ(rs[i], LEAVES);
		weft_task_release(sp[i]);
	}

	vrc = weft_await(victim, &v);
	if (vrc == 0) {
		/* Not cancelled before it returned: its own await cannot
		 * have seen the cancel either. */
		WT_CHECK_EQ((uintptr_t)v, r.gate_val);
		atomic_fetch_add(&st->victims_completed, 1);
	} else {
		WT_CHECK_EQ(vrc, -ECANCELED);
		WT_CHECK_EQ(crc, 0);
		/* Cancelled before it started (never ran: NULL), while
		 * parked, or after its await returned. */
		WT_CHECK(v == NULL || (uintptr_t)v == r.gate_val ||
			 v == VICTIM_CANCELLED);
		atomic_fetch_add(&st->victims_cancelled, 1);
	}
	weft_task_release(victim);

	/* Collect the foreign tasks. */
	for (long i = 0; atomic_load(&st->acked) != no; i++) {
		if (!WT_CHECK(i < 100000000))
			return;
		weft_yield();
	}
	{
		void *fr[FOREIGN];
		WT_CHECK_EQ(weft_gather(r.foreign, FOREIGN, fr), 0);
		for (int i = 0; i < FOREIGN; i++) {
			WT_CHECK_EQ((uintptr_t)fr[i], r.gate_val * 3);
			WT_CHECK_EQ(weft_task_release(r.foreign[i]), 0);
		}
	}
	WT_CHECK_EQ(weft_task_done(r.gate), 1);
	weft_task_release(r.gate);
}

static void *stress_main(void *arg)
{
	struct stress *st = arg;
	static atomic_int round_no;

	st->rt = weft_runtime_self();
	st->posted = NULL;
	st->quit = false; /* st lives across runs */
	WT_CHECK_EQ(pthread_create(&st->th, NULL, foreign_thread, st), 0);
	for (int i = 0; i < ROUNDS_PER_RUN; i++)
		one_round(st, atomic_fetch_add(&round_no, 1) + 1);
	pthread_mutex_lock(&st->lock);
	st->quit = true;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->th, NULL);
	return (void *)0x600d;
}

static void stress_run(unsigned workers)
{
	unsigned runs = RUNS * wt_scale();
	long rounds = (long)runs * ROUNDS_PER_RUN;
	long nsp = (long)workers * 2;
	struct stress *st = calloc(1, sizeof(*st));
	uint64_t t0 = wt_now_ns();

	cr_assert_not_null(st);
	st->workers = workers;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL);
	for (unsigned run = 0; run < runs; run++) {
		void *r = wt_run(stress_main, st, workers);
		cr_assert_eq(r, (void *)0x600d);
	}
	cr_assert_eq(atomic_load(&st->leaves_ok), rounds * nsp * LEAVES);
	cr_assert_eq(atomic_load(&st->foreign_ok), rounds * FOREIGN);
	cr_assert_eq(atomic_load(&st->victims_cancelled) +
			     atomic_load(&st->victims_completed),
		     rounds);
	for (unsigned w = 0; w < workers; w++)
		cr_assert_gt(atomic_load(&st->leaf_on[w]), 0,
			     "worker %u never ran a leaf in %ld rounds", w,
			     rounds);
	cr_log_info("workers=%u: %ld rounds in %.2f s, victims cancelled "
		    "%ld / completed %ld; storms formed in %ld of %ld rounds, "
		    "%.1f tasks at their await per gate",
		    workers, rounds, (double)(wt_now_ns() - t0) / 1e9,
		    atomic_load(&st->victims_cancelled),
		    atomic_load(&st->victims_completed),
		    atomic_load(&st->storms_formed),
		    atomic_load(&st->storm_rounds),
		    (double)atomic_load(&st->storm_waiters) /
			    (double)atomic_load(&st->storm_rounds));
	/* The storms this test is about. The gate yields (at most 200 times)
	 * until the round's storm of tasks waits on it; whether they get to
	 * it in time depends on the schedule: on a quiet machine the storm
	 * forms in a fifth to a half of the rounds, with 7 to 28 tasks at
	 * their await per gate on average (nearly always, 24 to 44, in the
	 * perturbation build); once, in a full tests/run on the 2-core VM,
	 * in under a tenth. So this asks only that storms formed in 1% of the
	 * rounds: that the test did what it is about, not how often the
	 * schedule allows it (a timing property). A yield that lets no other
	 * task run forms them in under 1.4%, with under 2 tasks per gate; the
	 * round-robin test in test_task.c is the one that catches it. */
	cr_assert_eq(atomic_load(&st->storm_rounds), rounds - rounds / 3,
		     "rounds whose gate waited for a storm");
	cr_assert_geq(atomic_load(&st->storms_formed),
		      atomic_load(&st->storm_rounds) / 100,
		      "workers=%u: the wake storm formed in only %ld of %ld "
		      "rounds (%.1f tasks at their await per gate): the "
		      "gate's yields did not let the round's tasks run",
		      workers, atomic_load(&st->storms_formed),
		      atomic_load(&st->storm_rounds),
		      (double)atomic_load(&st->storm_waiters) /
			      (double)atomic_load(&st->storm_rounds));
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st);
}

Test(stress, park_wake_storms_two_workers, .timeout = WT_TIMEOUT(120))
{
	stress_run(2);
}

Test(stress, park_wake_storms_three_workers, .timeout = WT_TIMEOUT(120))
{
	stress_run(3);
}

Test(stress, park_wake_storms_four_workers, .timeout = WT_TIMEOUT(120))
{
	stress_run(4);
}

/* ---- await chains across workers ---------------------------------------- */

/* Task i awaits task i-1: every wake hands over to the next link, often
 * across workers. */
#define CHAIN 200

struct link {
	weft_task *prev;
	uintptr_t depth;
};

static void *link_fn(void *arg)
{
	struct link *l = arg;
	void *v = (void *)0;

	if (l->prev) {
		WT_CHECK_EQ(weft_await(l->prev, &v), 0);
		weft_task_release(l->prev);
	}
	return (void *)((uintptr_t)v + 1);
}

static void *chain_main(void *arg)
{
	struct link *ls = calloc(CHAIN, sizeof(*ls));
	weft_task *last = NULL;
	unsigned rounds = *(unsigned *)arg;

	for (unsigned round = 0; round < rounds; round++) {
		void *v = NULL;

		last = NULL;
		/* Each link gets our reference to the one before it. The
		 * links are queued behind one another, so most start before
		 * what they await has ended, and park. */
		for (int i = 0; i < CHAIN; i++) {
			ls[i].prev = last;
			last = weft_spawn(link_fn, &ls[i]);
			if (!WT_CHECK(last != NULL))
				return NULL;
		}
		WT_CHECK_EQ(weft_await(last, &v), 0);
		WT_CHECK_EQ((uintptr_t)v, CHAIN);
		weft_task_release(last);
	}
	free(ls);
	return NULL;
}

Test(stress, await_chains_hand_over_across_workers,
     .timeout = WT_TIMEOUT(60))
{
	unsigned rounds = 50 * wt_scale();

	for (unsigned w = 2; w <= 4; w++)
		wt_run(chain_main, &rounds, w);
}

/* ---- cancellation racing the start of a wait --------------------------- */

/*
 * A task starts to await a task that never ends while a thread outside the
 * runtime cancels it at that very moment. Whatever the interleaving, the
 * cancel must end the wait: a lost one leaves the task parked for ever.
 * (A cancel flag checked only before the task announced its park was lost
 * when the wake-up came in between: the announcement overwrote it.)
 */
struct lost {
	weft_runtime *rt;
	weft_task *forever;
	_Atomic(weft_task *) victim; /* published by main, taken by the thread */
	atomic_int entered;
	atomic_int quit;
	atomic_long cancels;
};

static void *lost_victim(void *arg)
{
	struct lost *l = arg;

	atomic_store(&l->entered, 1);
	return (void *)(intptr_t)weft_await(l->forever, NULL);
}

static void *lost_canceller(void *arg)
{
	struct lost *l = arg;
	unsigned x = 12345, idle = 0;

	while (!atomic_load(&l->quit)) {
		weft_task *v = atomic_load(&l->victim);
		if (!v || !atomic_load(&l->entered)) {
			/* Spin, to cancel at the very start of the wait, but
			 * give the CPU up now and then: on 2 cores with 2
			 * workers (and another test beside this one) a thread
			 * that never yields starved the tasks it waits for
			 * (a 60 s time-out in tests/run's hazard mode). */
			if (++idle % 4096 == 0)
				sched_yield();
			continue;
		}
		/* Take it first: main publishes the next victim as soon as
		 * this one has ended. */
		if (!atomic_compare_exchange_strong(&l->victim, &v, NULL))
			continue;
		/* Sweep the window a little around the start of the wait. */
		x = x * 1103515245u + 12345u;
		for (unsigned i = (x >> 16) % 64; i; i--)
			__asm__ volatile("" ::: "memory");
		WT_CHECK_EQ(weft_cancel(v), 0);
		atomic_fetch_add(&l->cancels, 1);
	}
	return NULL;
}

static void *lost_main(void *arg)
{
	struct lost *l = arg;
	unsigned rounds = 2000 * wt_scale();
	pthread_t th;

	l->rt = weft_runtime_self();
	l->forever = weft_spawn(wt_forever_fn, NULL);
	WT_CHECK_EQ(pthread_create(&th, NULL, lost_canceller, l), 0);
	for (unsigned i = 0; i < rounds; i++) {
		weft_task *v;
		uint64_t t0;
		void *r = NULL;

		atomic_store(&l->entered, 0);
		v = weft_spawn(lost_victim, l);
		atomic_store(&l->victim, v);
		t0 = wt_now_ns();
		/* Yield while the victim starts; then sleep a little, so
		 * that the canceller thread gets a CPU on a busy machine. */
		for (unsigned spins = 0; weft_task_done(v) != 1 &&
					 wt_now_ns() - t0 < 2000000000u;
		     spins++) {
			if (spins < 64)
				weft_yield();
			else
				weft_sleep(20 * WEFT_NSEC_PER_USEC);
		}
		if (weft_task_done(v) != 1) {
			/* Lost: the victim stays parked (dropped at the end). */
			wt_fail_(__FILE__, __LINE__,
				 "a cancel that raced the start of an await "
				 "was lost: the task is still parked 2 s later");
			break;
		}
		WT_CHECK_EQ(weft_await(v, &r), -ECANCELED);
		WT_CHECK_EQ((intptr_t)r, -ECANCELED);
		weft_task_release(v);
	}
	atomic_store(&l->quit, 1);
	pthread_join(th, NULL);
	weft_task_release(l->forever);
	return NULL;
}

Test(stress, cancel_racing_the_start_of_an_await_is_never_lost,
     .timeout = WT_TIMEOUT(60))
{
	for (unsigned w = 1; w <= 3; w++) {
		struct lost l;

		memset(&l, 0, sizeof(l));
		wt_run(lost_main, &l, w);
		cr_log_info("workers=%u: %ld cancels", w,
			    atomic_load(&l.cancels));
	}
}

/* ---- a wake that finds the task already notified ----------------------- */

/*
 * A shielded task waits on a future; a thread outside the runtime cancels it
 * (the shield keeps it waiting, but the cancel's wake moves it from PARKED
 * to NOTIFIED and queues it) and then sets the future. The set's wake finds
 * NOTIFIED and has nothing to do, yet its store of the grant must be visible
 * to the task's next check: with a plain load there (no read-modify-write),
 * the grant could still sit in the setter's store buffer when the task
 * re-checks, and the task parked for ever with its future set (bug 1 of
 * issue 9: 0.2-0.7 million rounds on x86-64). A task found stuck is counted
 * and rescued by a second cancel, whose wake makes it look again.
 */
struct sbuf {
	_Atomic(weft_task *) t;
	_Atomic(weft_future *) f;
	atomic_int posted; /* round number whose t and f are published */
	atomic_int acked;  /* last round the thread has finished with */
	atomic_int entered;
	atomic_int quit;
	long rounds, stuck;
};

static void *sbuf_waiter(void *arg)
{
	struct sbuf *s = arg;
	weft_future *f = atomic_load(&s->f);
	void *v = NULL;
	int rc;

	WT_CHECK_EQ(weft_shield_begin(), 0);
	atomic_store(&s->entered, 1);
	rc = weft_future_await(f, &v);
	WT_CHECK_EQ(weft_shield_end(), 0);
	WT_CHECK_EQ(rc, 0);
	return v;
}

static void *sbuf_thread(void *arg)
{
	struct sbuf *s = arg;
	unsigned x = 2463534242u;
	int seen = 0;

	while (!atomic_load(&s->quit)) {
		int r = atomic_load(&s->posted);
		if (r == seen || !atomic_load(&s->entered)) {
			sched_yield(); /* the worker may need this core */
			continue;
		}
		weft_task *t = atomic_load(&s->t);
		weft_future *f = atomic_load(&s->f);
		/* Sweep the window: the cancel and the set land anywhere
		 * around the task's start of its wait. */
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		for (unsigned i = x % 4096; i; i--)
			__asm__ volatile("" ::: "memory");
		WT_CHECK_EQ(weft_cancel(t), 0);
		WT_CHECK_EQ(weft_future_set(f, (void *)(uintptr_t)0x5b), 0);
		seen = r;
		atomic_store(&s->acked, r);
	}
	return NULL;
}

static void *sbuf_main(void *arg)
{
	struct sbuf *s = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };
	/* A fixed time in every build (TSan manages ~60 rounds a second,
	 * a plain build ~300,000). */
	uint64_t end = wt_now_ns() + 3 * SEC;
	pthread_t th;

	WT_CHECK_EQ(pthread_create(&th, NULL, sbuf_thread, s), 0);
	for (int r = 1; wt_now_ns() < end; r++) {
		weft_future *f;
		weft_task *t;
		void *v = NULL;
		int rc;

		if (!WT_CHECK_EQ(weft_future_create(&f), 0))
			break;
		atomic_store(&s->f, f);
		atomic_store(&s->entered, 0);
		if (!WT_CHECK_EQ(weft_spawn_opts(&t, sbuf_waiter, s, &o), 0))
			break;
		atomic_store(&s->t, t);
		atomic_store(&s->posted, r);
		/* Yield rather than park: the worker stays awake and runs
		 * the task as soon as the cancel queues it. */
		uint64_t t0 = wt_now_ns();
		while (weft_task_done(t) != 1 && wt_now_ns() - t0 < 1 * SEC)
			weft_yield();
		rc = weft_task_done(t) == 1 ? weft_await(t, &v) : -ETIMEDOUT;
		if (rc == -ETIMEDOUT) {
			s->stuck++;
			/* Its future is set: one more wake finds it. */
			while (atomic_load(&s->acked) != r)
				weft_yield();
			WT_CHECK_EQ(weft_cancel(t), 0);
			rc = weft_await(t, &v);
		}
		/* Cancelled before it returned: -ECANCELED, with its
		 * result (the future's value) still delivered. */
		WT_CHECK_EQ(rc, -ECANCELED);
		WT_CHECK_PTR_EQ(v, (void *)(uintptr_t)0x5b);
		while (atomic_load(&s->acked) != r)
			weft_yield();
		weft_task_release(t);
		weft_future_destroy(f);
		s->rounds++;
	}
	atomic_store(&s->quit, 1);
	pthread_join(th, NULL);
	return NULL;
}

Test(stress, a_wake_that_finds_the_task_notified_is_never_lost,
     .timeout = WT_TIMEOUT(120))
{
	struct sbuf s;

	memset(&s, 0, sizeof(s));
	wt_run(sbuf_main, &s, 1);
	cr_log_info("%ld rounds, %ld stuck", s.rounds, s.stuck);
	cr_assert_eq(s.stuck, 0,
		     "%ld of %ld shielded waits stayed parked with their "
		     "future set (a wake-up lost to store buffering)",
		     s.stuck, s.rounds);
	cr_assert_gt(s.rounds, 10);
}

/* ---- shutdown with work in flight --------------------------------------- */

struct inflight {
	atomic_long started;
};

static void *spin_yield_forever(void *arg)
{
	atomic_fetch_add(&((struct inflight *)arg)->started, 1);
	for (;;) {
		wt_spin_us(2);
		weft_yield();
	}
	return NULL;
}

static void *spawn_more_forever(void *arg)
{
	struct weft_spawn_opts d = { .flags = WEFT_SPAWN_DETACHED };

	atomic_fetch_add(&((struct inflight *)arg)->started, 1);
	for (;;) {
		weft_spawn_opts(NULL, wt_forever_fn, NULL, &d);
		weft_yield();
	}
	return NULL;
}

static void *inflight_main(void *arg)
{
	struct inflight *f = arg;
	struct weft_spawn_opts d = { .flags = WEFT_SPAWN_DETACHED };
	weft_task *keep;

	for (int i = 0; i < 8; i++)
		weft_spawn_opts(NULL, spin_yield_forever, f, &d);
	weft_spawn_opts(NULL, spawn_more_forever, f, &d);
	for (int i = 0; i < 20; i++)
		weft_spawn_opts(NULL, wt_forever_fn, NULL, &d);
	/* A handle we keep: dropped at shutdown with the rest. */
	keep = weft_spawn(wt_forever_fn, NULL);
	(void)keep;
	WT_CHECK(wt_yield_until_count(&f->started, 9, 10000000));
	for (int i = 0; i < 10; i++)
		weft_yield();
	return (void *)0xe17d;
}

Test(stress, shutdown_with_tasks_running_parked_and_spawning,
     .timeout = WT_TIMEOUT(60))
{
	unsigned runs = 100 * wt_scale();

	for (unsigned i = 0; i < runs; i++) {
		struct inflight f;
		void *r;

		struct weft_config c = { .workers = 2 + i % 3 };

		/* The spinners ignore their cancellation: every other run
		 * drops them at once, the others after a 1 ms grace (the
		 * drain sweeping while tasks keep spawning). */
		c.shutdown_grace_ms = i % 2 ? 1 : -1;
		memset(&f, 0, sizeof(f));
		r = wt_run_cfg(inflight_main, &f, &c);
		cr_assert_eq(r, (void *)0xe17d);
	}
}
