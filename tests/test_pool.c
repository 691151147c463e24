/*
 * The blocking pool (weft_run_blocking) and what runs on it: host name
 * resolution (weft_getaddrinfo) and weft_tcp_connect() to a host name.
 *
 * Pool threads are counted by name ("weft-blocking") in /proc/self/task:
 * Criterion runs every test in a process of its own, so the count sees
 * this test's pool only. Calls that must stay running or queued block on a
 * gate: a flag polled every millisecond, with a bound so that a bug ends
 * the test instead of hanging it.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "weft_test.h"

WT_SUITE(pool, 120);

/* How long a gate or barrier waits before it gives up (a failure). */
#define GATE_MS (20000u * WT_SLOW)

/* Pool threads of this process, by name; -1 if /proc cannot be read. */
static int pool_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], comm[32];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* the thread has just gone */
		if (fgets(comm, sizeof(comm), f) &&
		    strcmp(comm, "weft-blocking\n") == 0)
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Sleeps (the thread, not a task) until *flag is set; false on time-out. */
static int wait_flag(atomic_int *flag)
{
	for (unsigned i = 0; i < GATE_MS; i++) {
		if (atomic_load(flag))
			return 1;
		wt_sleep_ms(1);
	}
	return atomic_load(flag) != 0;
}

/* The task version: sleeps 1 ms at a time until *flag is set. */
static int task_wait_flag(atomic_int *flag)
{
	for (unsigned i = 0; i < GATE_MS; i++) {
		if (atomic_load(flag))
			return 1;
		weft_sleep_ms(1);
	}
	return atomic_load(flag) != 0;
}

static struct weft_config config(unsigned workers, unsigned threads,
				 unsigned idle_ms)
{
	struct weft_config c;

	memset(&c, 0, sizeof(c));
	c.workers = workers;
	c.blocking_threads = threads;
	c.blocking_idle_ms = idle_ms;
	return c;
}

/* A call that blocks its pool thread until `open`. */
struct gate {
	atomic_int started; /* calls that entered fn */
	atomic_int open;
	atomic_int finished; /* calls that left fn */
};

static void *gate_fn(void *arg)
{
	struct gate *g = arg;

	atomic_fetch_add(&g->started, 1);
	WT_CHECK(wait_flag(&g->open));
	atomic_fetch_add(&g->finished, 1);
	return (void *)(uintptr_t)0x1234;
}

static void *gate_task(void *arg)
{
	void *r = NULL;

	WT_CHECK_EQ(weft_run_blocking(gate_fn, arg, &r), 0);
	WT_CHECK_PTR_EQ(r, 0x1234);
	return NULL;
}

/* Counts its runs. */
static atomic_int count_runs;

static void *count_fn(void *arg)
{
	atomic_fetch_add(&count_runs, 1);
	return arg;
}

/* ---- results and where fn runs ------------------------------------------- */

static void *add_one(void *arg)
{
	return (void *)((uintptr_t)arg + 1);
}

static void *result_main(void *arg)
{
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_run_blocking(add_one, (void *)41, &r), 0);
	WT_CHECK_PTR_EQ(r, 42);
	/* result may be NULL. */
	WT_CHECK_EQ(weft_run_blocking(add_one, (void *)1, NULL), 0);
	for (uintptr_t i = 0; i < 100; i++) {
		r = NULL;
		if (!WT_CHECK_EQ(weft_run_blocking(add_one, (void *)i, &r), 0))
			break;
		WT_CHECK_PTR_EQ(r, i + 1);
	}
	r = (void *)7;
	WT_CHECK_EQ(weft_run_blocking(NULL, NULL, &r), -EINVAL);
	WT_CHECK_PTR_EQ(r, 7);
	return (void *)0x77;
}

Test(pool, result_of_fn_is_passed_back, .timeout = WT_TIMEOUT(20))
{
	for (unsigned w = 1; w <= 2; w++)
		cr_assert_eq(wt_run(result_main, NULL, w), (void *)0x77);
}

struct where {
	int index;
	int self_null;
	int rt_null;
	int yield_rc;
	int sleep_rc;
	int sigint_blocked, sigterm_blocked, sigusr1_blocked;
	char name[32];
	pid_t tid;
};

static void *where_fn(void *arg)
{
	struct where *wh = arg;
	sigset_t cur;

	wh->index = weft_worker_index();
	wh->self_null = weft_self() == NULL;
	wh->rt_null = weft_runtime_self() == NULL;
	wh->yield_rc = weft_yield();
	wh->sleep_rc = weft_sleep_ms(1);
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	wh->sigint_blocked = sigismember(&cur, SIGINT);
	wh->sigterm_blocked = sigismember(&cur, SIGTERM);
	wh->sigusr1_blocked = sigismember(&cur, SIGUSR1);
	prctl(PR_GET_NAME, wh->name, 0, 0, 0);
	wh->tid = gettid();
	return NULL;
}

static void *where_main(void *arg)
{
	struct where wh;

	(void)arg;
	memset(&wh, 0, sizeof(wh));
	wh.index = 99;
	WT_CHECK_EQ(weft_run_blocking(where_fn, &wh, NULL), 0);
	WT_CHECK_EQ(wh.index, -1);
	WT_CHECK(wh.self_null);
	WT_CHECK(wh.rt_null);
	WT_CHECK_EQ(wh.yield_rc, -EPERM);
	WT_CHECK_EQ(wh.sleep_rc, -EPERM);
	WT_CHECK(wh.sigint_blocked == 1);
	WT_CHECK(wh.sigterm_blocked == 1);
	WT_CHECK(wh.sigusr1_blocked == 1);
	WT_CHECK(strcmp(wh.name, "weft-blocking") == 0);
	WT_CHECK(wh.tid != gettid());
	/* The worker that called is unaffected by the pool's mask. */
	{
		sigset_t cur;

		pthread_sigmask(SIG_SETMASK, NULL, &cur);
		WT_CHECK(sigismember(&cur, SIGINT) == 0);
	}
	return NULL;
}

Test(pool, fn_runs_on_a_non_worker_thread_with_signals_blocked,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned w = 1; w <= 2; w++)
		wt_run(where_main, NULL, w);
}

Test(pool, calls_outside_task_context_return_eperm)
{
	struct addrinfo *res = (struct addrinfo *)1;
	void *r = (void *)5;

	atomic_store(&count_runs, 0);
	cr_assert_eq(weft_run_blocking(count_fn, NULL, &r), -EPERM);
	cr_assert_eq(r, (void *)5);
	cr_assert_eq(atomic_load(&count_runs), 0);
	cr_assert_eq(weft_getaddrinfo("localhost", "80", NULL, &res), -EPERM);
	cr_assert_null(res);
	cr_assert_eq(weft_tcp_connect("localhost", 80, 0), -EPERM);
}

/* ---- growth and the thread limit ------------------------------------------ */

struct limit {
	atomic_int running, max, done;
};

struct limit_arg {
	struct limit *l;
};

static void *limit_fn(void *arg)
{
	struct limit *l = ((struct limit_arg *)arg)->l;
	int cur = atomic_fetch_add(&l->running, 1) + 1;
	int m = atomic_load(&l->max);

	while (cur > m && !atomic_compare_exchange_weak(&l->max, &m, cur))
		;
	wt_sleep_ms(20);
	atomic_fetch_sub(&l->running, 1);
	atomic_fetch_add(&l->done, 1);
	return arg;
}

static void *limit_task(void *arg)
{
	void *r = NULL;

	WT_CHECK_EQ(weft_run_blocking(limit_fn, arg, &r), 0);
	WT_CHECK_PTR_EQ(r, arg);
	return NULL;
}

#define LIMIT_CALLS 200
#define LIMIT_THREADS 8

static void *limit_main(void *arg)
{
	struct limit *l = arg;
	static struct limit_arg la[LIMIT_CALLS];
	weft_task *ts[LIMIT_CALLS];
	uint64_t t0 = wt_now_ns(), took;
	int n;

	for (int i = 0; i < LIMIT_CALLS; i++) {
		la[i].l = l;
		ts[i] = weft_spawn(limit_task, &la[i]);
		if (!WT_CHECK(ts[i] != NULL))
			return NULL;
	}
	WT_CHECK_EQ(weft_gather(ts, LIMIT_CALLS, NULL), 0);
	took = wt_now_ns() - t0;
	for (int i = 0; i < LIMIT_CALLS; i++)
		weft_task_release(ts[i]);
	WT_CHECK_EQ(atomic_load(&l->done), LIMIT_CALLS);
	WT_CHECK(atomic_load(&l->max) <= LIMIT_THREADS);
	WT_CHECK(atomic_load(&l->max) >= 2);
	/* At most 8 at a time, 20 ms each: 25 rounds at least. */
	WT_CHECK(took >= (uint64_t)LIMIT_CALLS / LIMIT_THREADS * 20 * MS);
	n = pool_threads();
	WT_CHECK(n >= 1 && n <= LIMIT_THREADS);
	return NULL;
}

Test(pool, never_more_than_blocking_threads_calls_run_at_once,
     .timeout = WT_TIMEOUT(30))
{
	struct limit l;
	struct weft_config c = config(2, LIMIT_THREADS, 0);

	memset(&l, 0, sizeof(l));
	wt_run_cfg(limit_main, &l, &c);
	cr_log_info("most calls running at once: %d of %d threads",
		    atomic_load(&l.max), LIMIT_THREADS);
	cr_assert_leq(atomic_load(&l.max), LIMIT_THREADS);
}

/* blocking_threads = 0 means 64 (weft.h, weft_config): 70 calls that
 * block together start 64 threads and no more; the other 6 wait. */
#define DEFAULT_THREADS 64
#define OVER_DEFAULT 70

static void *default_limit_main(void *arg)
{
	weft_task *ts[OVER_DEFAULT];
	struct gate *g = arg;
	int i;

	for (i = 0; i < OVER_DEFAULT; i++) {
		ts[i] = weft_spawn(gate_task, g);
		WT_CHECK(ts[i] != NULL);
	}
	for (unsigned k = 0;
	     k < GATE_MS && atomic_load(&g->started) < DEFAULT_THREADS; k++)
		weft_sleep_ms(1);
	/* Time for any 65th thread to show up. */
	weft_sleep_ms(50);
	WT_CHECK_EQ(atomic_load(&g->started), DEFAULT_THREADS);
	WT_CHECK_EQ(pool_threads(), DEFAULT_THREADS);
	atomic_store(&g->open, 1);
	WT_CHECK_EQ(weft_gather(ts, OVER_DEFAULT, NULL), 0);
	for (i = 0; i < OVER_DEFAULT; i++)
		weft_task_release(ts[i]);
	WT_CHECK_EQ(atomic_load(&g->finished), OVER_DEFAULT);
	return NULL;
}

Test(pool, blocking_threads_zero_means_at_most_64_threads,
     .timeout = WT_TIMEOUT(30))
{
	struct gate g;
	struct weft_config c = config(2, 0, 0);

	memset(&g, 0, sizeof(g));
	wt_run_cfg(default_limit_main, &g, &c);
}

/* N calls that each wait until all N are in fn: they can only return if
 * the pool ran them on N threads at once. */
struct barrier {
	int n;
	atomic_int arrived;
	atomic_int all_met;
	atomic_int threads_seen; /* most pool threads counted inside */
	atomic_ullong last_end;  /* latest moment a call left fn (ns) */
};

static void *barrier_fn(void *arg)
{
	struct barrier *b = arg;
	int met = 0;

	atomic_fetch_add(&b->arrived, 1);
	for (unsigned i = 0; i < GATE_MS; i++) {
		if (atomic_load(&b->arrived) >= b->n) {
			met = 1;
			break;
		}
		wt_sleep_ms(1);
	}
	if (met) {
		int n = pool_threads(), m = atomic_load(&b->threads_seen);

		atomic_fetch_add(&b->all_met, 1);
		while (n > m &&
		       !atomic_compare_exchange_weak(&b->threads_seen, &m, n))
			;
	}
	/* The last thing fn does: the idle time counts from later. */
	unsigned long long now = wt_now_ns(), l = atomic_load(&b->last_end);

	while (now > l && !atomic_compare_exchange_weak(&b->last_end, &l, now))
		;
	return NULL;
}

static void *barrier_task(void *arg)
{
	WT_CHECK_EQ(weft_run_blocking(barrier_fn, arg, NULL), 0);
	return NULL;
}

/* Runs b->n concurrent calls of barrier_fn and waits for them. */
static void barrier_round(struct barrier *b)
{
	weft_task *ts[16];

	atomic_store(&b->arrived, 0);
	atomic_store(&b->all_met, 0);
	for (int i = 0; i < b->n; i++) {
		ts[i] = weft_spawn(barrier_task, b);
		WT_CHECK(ts[i] != NULL);
	}
	WT_CHECK_EQ(weft_gather(ts, (size_t)b->n, NULL), 0);
	for (int i = 0; i < b->n; i++)
		weft_task_release(ts[i]);
	WT_CHECK_EQ(atomic_load(&b->all_met), b->n);
}

static void *grow_main(void *arg)
{
	struct barrier *b = arg;

	barrier_round(b);
	WT_CHECK(atomic_load(&b->threads_seen) >= b->n);
	return NULL;
}

Test(pool, pool_grows_beyond_one_thread_when_calls_block_together,
     .timeout = WT_TIMEOUT(30))
{
	for (unsigned w = 1; w <= 2; w++) {
		struct barrier b;

		memset(&b, 0, sizeof(b));
		b.n = 4;
		wt_run(grow_main, &b, w);
		cr_assert_eq(atomic_load(&b.all_met), 4,
			     "workers=%u: the 4 calls did not run together", w);
	}
}

#define IDLE_MS (250u * WT_SLOW)

static void *idle_main(void *arg)
{
	struct barrier *b = arg;
	uint64_t zero_at = 0;
	int n;
	void *r = NULL;

	barrier_round(b);
	/* The threads have just gone idle: all still there. */
	n = pool_threads();
	WT_CHECK(n >= b->n);
	for (unsigned i = 0; i < 10000u * WT_SLOW; i++) {
		if (pool_threads() == 0) {
			zero_at = wt_now_ns();
			break;
		}
		weft_sleep_ms(5);
	}
	if (!WT_CHECK(zero_at != 0))
		return NULL;
	/* Never before the idle time: CLOCK_MONOTONIC on both sides. */
	WT_CHECK(zero_at - atomic_load(&b->last_end) >= IDLE_MS * MS);
	WT_CHECK(zero_at - atomic_load(&b->last_end) <
		 IDLE_MS * MS + 5 * SEC * WT_SLOW);
	/* An empty pool starts threads again. */
	WT_CHECK_EQ(weft_run_blocking(add_one, (void *)1, &r), 0);
	WT_CHECK_PTR_EQ(r, 2);
	barrier_round(b);
	return NULL;
}

Test(pool, idle_threads_exit_after_blocking_idle_ms,
     .timeout = WT_TIMEOUT(60))
{
	struct barrier b;
	struct weft_config c = config(2, 0, IDLE_MS);

	memset(&b, 0, sizeof(b));
	b.n = 4;
	wt_run_cfg(idle_main, &b, &c);
	cr_assert_eq(pool_threads(), 0);
}

/* blocking_idle_ms = 0 means 10 s (weft.h, weft_config): a pool thread
 * that ran one call exits 10 s after it, not sooner, not much later. */
struct idle_default {
	atomic_ullong last_end;
	uint64_t gone_after; /* from the call's end to the thread's exit */
};

static void *stamp_fn(void *arg)
{
	atomic_store(&((struct idle_default *)arg)->last_end, wt_now_ns());
	return NULL;
}

static void *idle_default_main(void *arg)
{
	struct idle_default *d = arg;

	WT_CHECK_EQ(weft_run_blocking(stamp_fn, d, NULL), 0);
	for (unsigned i = 0; i < 300u * WT_SLOW; i++) {
		if (pool_threads() == 0) {
			d->gone_after = wt_now_ns() - atomic_load(&d->last_end);
			break;
		}
		weft_sleep_ms(50);
	}
	return NULL;
}

Test(pool, blocking_idle_ms_zero_means_ten_seconds,
     .timeout = WT_TIMEOUT(40))
{
	struct idle_default d;
	struct weft_config c = config(1, 1, 0);

	memset(&d, 0, sizeof(d));
	wt_run_cfg(idle_default_main, &d, &c);
	cr_log_info("the idle pool thread exited %.2f s after its call",
		    (double)d.gone_after / 1e9);
	cr_assert_neq(d.gone_after, 0, "the idle thread never exited");
	cr_assert_geq(d.gone_after, 10 * SEC,
		      "exited %.2f s after its call, before 10 s",
		      (double)d.gone_after / 1e9);
	cr_assert_lt(d.gone_after, 10 * SEC + 2 * SEC * WT_SLOW,
		     "exited %.2f s after its call",
		     (double)d.gone_after / 1e9);
}

/* ---- cancellation and deadlines ------------------------------------------ */

struct victim {
	atomic_int entered;
	int rc;
	void *result;
	int finished_at_return; /* the gate's finished count on return */
	int next_rc;            /* the next suspension point's result */
	struct gate *g;
};

static void *victim_count(void *arg)
{
	struct victim *v = arg;

	v->rc = 1;
	atomic_store(&v->entered, 1);
	v->rc = weft_run_blocking(count_fn, (void *)9, &v->result);
	return NULL;
}

/* Holds every pool thread in gate_fn; returns the filler tasks. */
static void fill_pool(struct gate *g, weft_task **fill, int n)
{
	for (int i = 0; i < n; i++) {
		fill[i] = weft_spawn(gate_task, g);
		WT_CHECK(fill[i] != NULL);
	}
	for (unsigned k = 0; k < GATE_MS && atomic_load(&g->started) < n; k++)
		weft_sleep_ms(1);
	WT_CHECK(atomic_load(&g->started) >= n);
}

static void drain_pool(struct gate *g, weft_task **fill, int n)
{
	atomic_store(&g->open, 1);
	WT_CHECK_EQ(weft_gather(fill, (size_t)n, NULL), 0);
	for (int i = 0; i < n; i++)
		weft_task_release(fill[i]);
}

/* A call queued behind the full pool, cancelled; returns how long the
 * cancel took to end its task. */
static uint64_t cancel_queued_try(void)
{
	struct victim v;
	weft_task *t;
	uint64_t t0, took;

	memset(&v, 0, sizeof(v));
	t = weft_spawn(victim_count, &v);
	if (!WT_CHECK(t != NULL))
		return 0;
	WT_CHECK(task_wait_flag(&v.entered));
	weft_sleep_ms(20); /* queued behind the two blocked calls, parked */
	WT_CHECK_EQ(weft_task_done(t), 0);
	t0 = wt_now_ns();
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	took = wt_now_ns() - t0;
	WT_CHECK(took < PROMPT_NS);
	weft_task_release(t);
	WT_CHECK_EQ(v.rc, -ECANCELED);
	WT_CHECK_PTR_EQ(v.result, NULL);
	return took;
}

static void *cancel_queued_main(void *arg)
{
	struct gate g;
	weft_task *fill[2];
	uint64_t took;
	void *r = NULL;

	(void)arg;
	memset(&g, 0, sizeof(g));
	atomic_store(&count_runs, 0);
	fill_pool(&g, fill, 2);

	/* The cancel reaches the queued call at once. */
	took = WT_BEST_OF(WT_TRIES, QUICK_NS, cancel_queued_try());
	CHECK_BELOW(took, QUICK_NS);

	drain_pool(&g, fill, 2);
	/* The withdrawn call is not on the queue any more: one run only,
	 * this one's. */
	WT_CHECK_EQ(weft_run_blocking(count_fn, (void *)3, &r), 0);
	WT_CHECK_PTR_EQ(r, 3);
	WT_CHECK_EQ(atomic_load(&count_runs), 1);
	return NULL;
}

Test(pool, cancel_before_a_thread_takes_the_call_returns_ecanceled,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = config(2, 2, 0);

	wt_run_cfg(cancel_queued_main, NULL, &c);
	cr_assert_eq(atomic_load(&count_runs), 1);
}

static void *self_cancel_task(void *arg)
{
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_cancel(weft_self()), 0);
	/* Cancellation pending at the call: fn does not run. */
	WT_CHECK_EQ(weft_run_blocking(count_fn, NULL, &r), -ECANCELED);
	/* Shielded, the call runs. */
	weft_shield_begin();
	WT_CHECK_EQ(weft_run_blocking(count_fn, (void *)4, &r), 0);
	WT_CHECK_PTR_EQ(r, 4);
	weft_shield_end();
	return NULL;
}

static void *self_cancel_main(void *arg)
{
	weft_task *t;

	(void)arg;
	atomic_store(&count_runs, 0);
	t = weft_spawn(self_cancel_task, NULL);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	weft_task_release(t);
	WT_CHECK_EQ(atomic_load(&count_runs), 1);
	return NULL;
}

Test(pool, pending_cancellation_keeps_fn_from_running_unless_shielded,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(self_cancel_main, NULL, 2);
}

static void *victim_gate(void *arg)
{
	struct victim *v = arg;

	v->rc = 1;
	atomic_store(&v->entered, 1);
	v->rc = weft_run_blocking(gate_fn, v->g, &v->result);
	v->finished_at_return = atomic_load(&v->g->finished);
	/* The cancellation is still pending. */
	v->next_rc = weft_yield();
	return NULL;
}

static void *cancel_running_main(void *arg)
{
	struct gate g;
	struct victim v;
	weft_task *t;

	(void)arg;
	memset(&g, 0, sizeof(g));
	memset(&v, 0, sizeof(v));
	v.g = &g;
	t = weft_spawn(victim_gate, &v);
	for (unsigned k = 0; k < GATE_MS && !atomic_load(&g.started); k++)
		weft_sleep_ms(1);
	WT_CHECK_EQ(atomic_load(&g.started), 1);
	WT_CHECK_EQ(weft_cancel(t), 0);
	weft_sleep_ms(50);
	/* fn still runs: the call waits for it. */
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(atomic_load(&g.finished), 0);
	atomic_store(&g.open, 1);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	weft_task_release(t);
	WT_CHECK_EQ(v.rc, 0);
	WT_CHECK_PTR_EQ(v.result, 0x1234);
	WT_CHECK_EQ(v.finished_at_return, 1);
	WT_CHECK_EQ(v.next_rc, -ECANCELED);
	return NULL;
}

Test(pool, cancel_while_fn_runs_returns_its_result_after_it_ends,
     .timeout = WT_TIMEOUT(30))
{
	for (unsigned w = 1; w <= 2; w++)
		wt_run(cancel_running_main, NULL, w);
}

struct timed {
	int rc, past_rc, run_rc, after_rc;
	uint64_t took;
	void *result;
};

static void *slow_fn(void *arg)
{
	wt_sleep_ms(100);
	return arg;
}

static void *timed_task(void *arg)
{
	struct timed *tm = arg;
	uint64_t t0 = weft_now(), saved;

	saved = weft_timeout_begin(50 * MS);
	tm->rc = weft_run_blocking(count_fn, NULL, NULL);
	tm->took = weft_now() - t0;
	weft_timeout_end(saved);

	/* A deadline already past: at once. */
	saved = weft_deadline_begin(weft_now() - 1);
	tm->past_rc = weft_run_blocking(count_fn, NULL, NULL);
	weft_timeout_end(saved);
	return NULL;
}

static void *timed_run_task(void *arg)
{
	struct timed *tm = arg;
	uint64_t saved;

	/* The deadline passes while fn runs: its result, then the scope
	 * reports at the next suspension point. */
	saved = weft_timeout_begin(20 * MS);
	tm->run_rc = weft_run_blocking(slow_fn, (void *)6, &tm->result);
	tm->after_rc = weft_sleep(0);
	weft_timeout_end(saved);
	return NULL;
}

/* timed_task with the pool full; returns how late its 50 ms deadline
 * ended the call. */
static uint64_t timed_try(struct timed *tm)
{
	weft_task *t;

	memset(tm, 0, sizeof(*tm));
	t = weft_spawn(timed_task, tm);
	if (!WT_CHECK(t != NULL))
		return 0;
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(tm->rc, -ETIMEDOUT);
	WT_CHECK(tm->took >= 50 * MS);
	WT_CHECK(tm->took < 50 * MS + PROMPT_NS);
	WT_CHECK_EQ(tm->past_rc, -ETIMEDOUT);
	return tm->took > 50 * MS ? tm->took - 50 * MS : 0;
}

static void *deadline_main(void *arg)
{
	struct gate g;
	struct timed tm;
	weft_task *fill[1], *t;
	uint64_t late;

	(void)arg;
	memset(&g, 0, sizeof(g));
	memset(&tm, 0, sizeof(tm));
	atomic_store(&count_runs, 0);
	fill_pool(&g, fill, 1);
	/* The deadline ends the queued call at its time: best of
	 * WT_TRIES. */
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, timed_try(&tm));
	CHECK_BELOW(late, QUICK_NS);
	drain_pool(&g, fill, 1);
	WT_CHECK_EQ(atomic_load(&count_runs), 0);

	t = weft_spawn(timed_run_task, &tm);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(tm.run_rc, 0);
	WT_CHECK_PTR_EQ(tm.result, 6);
	WT_CHECK_EQ(tm.after_rc, -ETIMEDOUT);
	return NULL;
}

Test(pool, deadline_scope_times_out_a_call_no_thread_took,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = config(2, 1, 0);

	wt_run_cfg(deadline_main, NULL, &c);
	cr_assert_eq(atomic_load(&count_runs), 0);
}

/* ---- teardown ------------------------------------------------------------- */

static void *teardown_idle_main(void *arg)
{
	struct barrier *b = arg;

	barrier_round(b);
	WT_CHECK(pool_threads() >= b->n);
	return NULL;
}

Test(pool, teardown_joins_idle_threads_without_waiting_for_them,
     .timeout = WT_TIMEOUT(30))
{
	struct barrier b;
	uint64_t t0 = wt_now_ns();

	memset(&b, 0, sizeof(b));
	b.n = 4;
	/* The default idle time, 10 s, is far beyond the bound below. */
	wt_run(teardown_idle_main, &b, 2);
	cr_assert_lt(wt_now_ns() - t0, (uint64_t)8 * SEC,
		     "teardown waited for the idle time-out");
	cr_assert_eq(pool_threads(), 0, "pool threads left after weft_run");
}

static struct gate td_gate;
static struct victim td_victim;

static void *td_slow_fn(void *arg)
{
	atomic_fetch_add(&td_gate.started, 1);
	wt_sleep_ms(200);
	atomic_fetch_add(&td_gate.finished, 1);
	return arg;
}

static void *td_running_task(void *arg)
{
	weft_run_blocking(td_slow_fn, arg, NULL);
	return NULL;
}

static void *teardown_busy_main(void *arg)
{
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };

	(void)arg;
	atomic_store(&count_runs, 0);
	WT_CHECK_EQ(weft_spawn_opts(NULL, td_running_task, NULL, &o), 0);
	WT_CHECK(task_wait_flag(&td_gate.started));
	WT_CHECK_EQ(weft_spawn_opts(NULL, victim_count, &td_victim, &o), 0);
	WT_CHECK(task_wait_flag(&td_victim.entered));
	weft_sleep_ms(10);
	/* main returns with one call running, one queued. */
	return NULL;
}

Test(pool, teardown_waits_for_running_calls_and_drops_queued_ones,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = config(2, 1, 0);

	wt_run_cfg(teardown_busy_main, NULL, &c);
	cr_assert_eq(atomic_load(&td_gate.finished), 1,
		     "weft_run returned before the running call ended");
	cr_assert_eq(atomic_load(&count_runs), 0, "a queued call ran");
	cr_assert_eq(pool_threads(), 0);
}

/* ---- host names ---------------------------------------------------------- */

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr ==
		       htonl(INADDR_LOOPBACK);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
			&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

static int port_of(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return -1;
}

static void *resolve_main(void *arg)
{
	struct addrinfo hints, *res = NULL, *ai;
	int n = 0;

	(void)arg;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (!WT_CHECK_EQ(weft_getaddrinfo("localhost", "80", &hints, &res), 0))
		return NULL;
	for (ai = res; ai; ai = ai->ai_next, n++) {
		WT_CHECK(is_loopback(ai->ai_addr));
		WT_CHECK_EQ(port_of(ai->ai_addr), 80);
		WT_CHECK_EQ(ai->ai_socktype, SOCK_STREAM);
	}
	WT_CHECK(n >= 1);
	freeaddrinfo(res);

	/* Numeric hosts go through too. */
	hints.ai_flags = AI_NUMERICHOST;
	res = NULL;
	WT_CHECK_EQ(weft_getaddrinfo("127.0.0.1", NULL, &hints, &res), 0);
	if (res) {
		WT_CHECK(is_loopback(res->ai_addr));
		freeaddrinfo(res);
	}
	return NULL;
}

Test(pool, getaddrinfo_resolves_localhost_to_a_loopback_address,
     .timeout = WT_TIMEOUT(30))
{
	wt_run(resolve_main, NULL, 2);
}

/*
 * A resolver that fails on demand. This executable's getaddrinfo() comes
 * before the C library's (the tests link libweft statically, so the
 * library's resolver thread calls this one): names under "fail.test"
 * (never looked up) return the EAI_* code their first label names, any
 * other name goes to the real getaddrinfo() (the next definition: the C
 * library's, or a sanitizer's interceptor in front of it).
 */
int getaddrinfo(const char *host, const char *service,
		const struct addrinfo *hints, struct addrinfo **res)
{
	static const struct {
		const char *name;
		int rc, err;
	} fail[] = {
		{ "eai-noname.fail.test", EAI_NONAME, 0 },
		{ "eai-again.fail.test", EAI_AGAIN, 0 },
		{ "eai-fail.fail.test", EAI_FAIL, 0 },
		{ "eai-nodata.fail.test", EAI_NODATA, 0 },
		{ "eai-addrfamily.fail.test", EAI_ADDRFAMILY, 0 },
		{ "eai-service.fail.test", EAI_SERVICE, 0 },
		{ "eai-memory.fail.test", EAI_MEMORY, 0 },
		{ "eai-system.fail.test", EAI_SYSTEM, EMFILE },
	};
	int (*real)(const char *, const char *, const struct addrinfo *,
		    struct addrinfo **);
	size_t i;

	for (i = 0; host && i < sizeof(fail) / sizeof(fail[0]); i++) {
		if (strcmp(host, fail[i].name) == 0) {
			*res = NULL;
			errno = fail[i].err;
			return fail[i].rc;
		}
	}
	*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	return real(host, service, hints, res);
}

/* Each resolver failure of its own: its WEFT_EAI_* code, and
 * weft_strerror() gives the resolver's message for it. */
static const struct {
	const char *host;
	int code, eai;
} resolver_codes[] = {
	{ "eai-noname.fail.test", WEFT_EAI_NONAME, EAI_NONAME },
	{ "eai-again.fail.test", WEFT_EAI_AGAIN, EAI_AGAIN },
	{ "eai-fail.fail.test", WEFT_EAI_FAIL, EAI_FAIL },
	{ "eai-nodata.fail.test", WEFT_EAI_NODATA, EAI_NODATA },
	{ "eai-addrfamily.fail.test", WEFT_EAI_ADDRFAMILY, EAI_ADDRFAMILY },
	{ "eai-service.fail.test", WEFT_EAI_SERVICE, EAI_SERVICE },
};

static void *resolver_failures_main(void *arg)
{
	struct addrinfo *res;
	size_t i;

	(void)arg;
	for (i = 0; i < sizeof(resolver_codes) / sizeof(resolver_codes[0]);
	     i++) {
		int rc;

		res = (struct addrinfo *)1;
		rc = weft_getaddrinfo(resolver_codes[i].host, "80", NULL, &res);
		WT_CHECK_EQ(rc, resolver_codes[i].code);
		WT_CHECK(res == NULL);
		WT_CHECK_STR_EQ(weft_strerror(rc),
				gai_strerror(resolver_codes[i].eai));
		/* A task may return it as an error pointer (weft.h). */
		WT_CHECK_EQ(weft_ptr_err(weft_err_ptr(rc)), rc);
		/* weft_tcp_connect() returns the resolver's error. */
		WT_CHECK_EQ(weft_tcp_connect(resolver_codes[i].host, 80, 0),
			    resolver_codes[i].code);
	}
	/* The others become errno values. */
	WT_CHECK_EQ(weft_getaddrinfo("eai-memory.fail.test", "80", NULL, &res),
		    -ENOMEM);
	/* EAI_SYSTEM: the errno the resolver left, read on its thread. */
	res = (struct addrinfo *)1;
	WT_CHECK_EQ(weft_getaddrinfo("eai-system.fail.test", "80", NULL, &res),
		    -EMFILE);
	WT_CHECK(res == NULL);
	WT_CHECK_EQ(weft_tcp_connect("eai-system.fail.test", 80, 0), -EMFILE);
	/* Names not under fail.test still resolve. */
	res = NULL;
	if (WT_CHECK_EQ(weft_getaddrinfo("127.0.0.1", "80", NULL, &res), 0))
		freeaddrinfo(res);
	return NULL;
}

Test(pool, resolver_failures_have_codes_that_give_the_resolvers_message,
     .timeout = WT_TIMEOUT(30))
{
	wt_run(resolver_failures_main, NULL, 2);
}

static atomic_int nxdomain_rc;

static void *resolve_errors_main(void *arg)
{
	struct addrinfo hints, *res;
	int rc;

	(void)arg;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;

	/* A name that cannot resolve, refused by the resolver itself: the
	 * empty label is never sent to a name server, so no traffic leaves
	 * the machine (a well-formed "x.invalid" would be asked of the
	 * configured name server, which tests must not reach). */
	res = (struct addrinfo *)1;
	rc = weft_getaddrinfo("no-such-host..invalid", "80", &hints, &res);
	atomic_store(&nxdomain_rc, rc);
	WT_CHECK_EQ(rc, WEFT_EAI_NONAME);
	WT_CHECK(res == NULL);

	res = (struct addrinfo *)1;
	WT_CHECK_EQ(weft_getaddrinfo("localhost", "no-such-service-xyz",
				     &hints, &res),
		    WEFT_EAI_SERVICE);
	WT_CHECK(res == NULL);
	hints.ai_flags = 0x40000000;
	WT_CHECK_EQ(weft_getaddrinfo("localhost", "80", &hints, &res),
		    -EINVAL); /* EAI_BADFLAGS */
	hints.ai_flags = 0;
	hints.ai_family = 12345;
	WT_CHECK_EQ(weft_getaddrinfo("localhost", "80", &hints, &res),
		    -EAFNOSUPPORT); /* EAI_FAMILY */
	hints.ai_family = 0;
	hints.ai_socktype = 999;
	WT_CHECK_EQ(weft_getaddrinfo("localhost", "80", &hints, &res),
		    -EINVAL); /* EAI_SOCKTYPE */
	WT_CHECK_EQ(weft_getaddrinfo(NULL, NULL, NULL, &res), -EINVAL);
	WT_CHECK_EQ(weft_getaddrinfo("localhost", "80", NULL, NULL), -EINVAL);
	return NULL;
}

Test(pool, getaddrinfo_errors_become_weft_error_codes,
     .timeout = WT_TIMEOUT(60))
{
	wt_run(resolve_errors_main, NULL, 2);
	cr_assert_str_eq(weft_strerror(atomic_load(&nxdomain_rc)),
			 gai_strerror(EAI_NONAME));
}

static void *connect_name_main(void *arg)
{
	int lfd, port, cfd, afd, closed;
	char c = 0;

	(void)arg;
	lfd = weft_tcp_listen("127.0.0.1", 0, 0, 0);
	if (!WT_CHECK(lfd >= 0))
		return NULL;
	port = weft_local_port(lfd);
	WT_CHECK(port > 0);
	cfd = weft_tcp_connect("localhost", (uint16_t)port, WEFT_SO_NODELAY);
	if (WT_CHECK(cfd >= 0)) {
		afd = weft_accept(lfd, NULL, NULL, 0);
		WT_CHECK(afd >= 0);
		WT_CHECK_EQ(weft_send(cfd, "x", 1, 0), 1);
		if (afd >= 0) {
			WT_CHECK_EQ(weft_recv(afd, &c, 1, 0), 1);
			WT_CHECK_EQ(c, 'x');
			weft_close(afd);
		}
		weft_close(cfd);
	}
	/* A name that does not resolve, and one whose every address
	 * refuses: the last connect error. */
	cfd = weft_tcp_connect("no-such-host..invalid", (uint16_t)port, 0);
	WT_CHECK_EQ(cfd, WEFT_EAI_NONAME);
	/* The resolver's message, not "No such file or directory" (issue
	 * 13). */
	WT_CHECK_STR_EQ(weft_strerror(cfd), "Name or service not known");
	WT_CHECK_EQ(weft_tcp_connect("localhost", (uint16_t)port, 0x100),
		    -EINVAL);
	weft_close(lfd);
	closed = weft_tcp_listen("127.0.0.1", 0, 0, 0);
	if (WT_CHECK(closed >= 0)) {
		port = weft_local_port(closed);
		weft_close(closed);
		WT_CHECK_EQ(weft_tcp_connect("localhost", (uint16_t)port, 0),
			    -ECONNREFUSED);
	}
	return NULL;
}

Test(pool, tcp_connect_resolves_a_host_name, .timeout = WT_TIMEOUT(30))
{
	wt_run(connect_name_main, NULL, 2);
}

/*
 * weft_tcp_connect() tries each address of a name in turn (weft.h, socket
 * helpers). "localhost" has one address here, so the test makes a name
 * with two: in a mount namespace of its own (Criterion runs each test in a
 * process of its own; the runtime's threads, started after the unshare,
 * share it), a copy of /etc/hosts with two lines for one name, 127.0.0.2
 * and 127.0.0.1, is mounted over /etc/hosts. getaddrinfo()'s files
 * service answers from it, so no query leaves the machine. The test asks
 * the resolver which address comes first (RFC 6724 sorting may reorder
 * them) and listens on the other one only: the first refuses (nothing is
 * bound there; all of 127.0.0.0/8 is loopback), so a connect by name that
 * tried only the first address would fail. With nothing listening on
 * either, the last address's error comes back.
 */
#define TWO_NAME "weft-two-addresses.test"

struct two_addr {
	char first[INET_ADDRSTRLEN], second[INET_ADDRSTRLEN];
	int n_addrs;
	int first_rc;  /* a numeric connect to the first address */
	int name_rc;   /* the connect by name */
	char peer[INET_ADDRSTRLEN]; /* whom it reached */
	int accepted;
	int none_rc;   /* by name, with nothing listening */
};

static void *two_addr_main(void *arg)
{
	struct two_addr *t = arg;
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int lfd, port, cfd, afd;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (!WT_CHECK_EQ(weft_getaddrinfo(TWO_NAME, "80", &hints, &res), 0))
		return NULL;
	for (ai = res; ai; ai = ai->ai_next) {
		const struct sockaddr_in *a = (void *)ai->ai_addr;
		char *dst = t->n_addrs == 0 ? t->first : t->second;

		if (t->n_addrs++ < 2 && ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &a->sin_addr, dst, INET_ADDRSTRLEN);
	}
	freeaddrinfo(res);
	if (t->n_addrs != 2 || !t->first[0] || !t->second[0])
		return NULL;

	lfd = weft_tcp_listen(t->second, 0, 4, 0);
	if (!WT_CHECK(lfd >= 0))
		return NULL;
	port = weft_local_port(lfd);
	t->first_rc = weft_tcp_connect(t->first, (uint16_t)port, 0);
	if (t->first_rc >= 0)
		weft_close(t->first_rc);
	cfd = t->name_rc = weft_tcp_connect(TWO_NAME, (uint16_t)port, 0);
	if (cfd >= 0) {
		t->name_rc = 0;
		if (getpeername(cfd, (struct sockaddr *)&peer, &plen) == 0)
			inet_ntop(AF_INET, &peer.sin_addr, t->peer,
				  sizeof(t->peer));
		afd = weft_accept(lfd, NULL, NULL, 0);
		t->accepted = afd >= 0;
		if (afd >= 0)
			weft_close(afd);
		weft_close(cfd);
	}
	WT_CHECK_EQ(weft_close(lfd), 0);
	/* Nothing listens on that port now: every address refuses. */
	t->none_rc = weft_tcp_connect(TWO_NAME, (uint16_t)port, 0);
	if (t->none_rc >= 0)
		weft_close(t->none_rc);
	return NULL;
}

/* Mounts a copy of /etc/hosts with TWO_NAME's lines over it, in a mount
 * namespace of the calling thread's own; skips the test where that cannot
 * be had (no privilege). */
static void mount_two_address_hosts(void)
{
	char tmp[] = "/tmp/weft-hosts-XXXXXX", buf[4096];
	FILE *in, *out;
	size_t n;
	int fd;

	if (unshare(CLONE_NEWNS) != 0)
		cr_skip_test("no private mount namespace for a hosts file of "
			     "the test's own: unshare: %s", strerror(errno));
	/* Nothing mounted here may reach the parent's namespace. */
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0,
		     "mount --make-rprivate /: %s", strerror(errno));
	fd = mkstemp(tmp);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	out = fdopen(fd, "w");
	cr_assert_not_null(out);
	in = fopen("/etc/hosts", "r");
	if (in) {
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, n, out);
		fclose(in);
	}
	fprintf(out, "\n127.0.0.2 " TWO_NAME "\n127.0.0.1 " TWO_NAME "\n");
	cr_assert_eq(fclose(out), 0);
	cr_assert_eq(mount(tmp, "/etc/hosts", NULL, MS_BIND, NULL), 0,
		     "bind-mounting %s over /etc/hosts: %s", tmp,
		     strerror(errno));
	unlink(tmp);
}

Test(pool, tcp_connect_tries_the_next_address_when_the_first_refuses,
     .timeout = WT_TIMEOUT(30))
{
	struct two_addr t;

	mount_two_address_hosts();
	memset(&t, 0, sizeof(t));
	wt_run(two_addr_main, &t, 2);
	umount2("/etc/hosts", MNT_DETACH);
	cr_log_info(TWO_NAME ": %s first, then %s", t.first, t.second);
	cr_assert_eq(t.n_addrs, 2, TWO_NAME " resolved to %d address(es), "
		     "not the hosts file's two IPv4 ones", t.n_addrs);
	cr_assert_eq(t.first_rc, -ECONNREFUSED,
		     "the first address %s does not refuse: %d (%s)", t.first,
		     t.first_rc, weft_strerror(t.first_rc));
	cr_assert_eq(t.name_rc, 0,
		     "connect by name gave %d (%s): the second address %s, "
		     "which listens, was not tried after %s refused",
		     t.name_rc, weft_strerror(t.name_rc), t.second, t.first);
	cr_assert_str_eq(t.peer, t.second, "connected to %s, not %s", t.peer,
			 t.second);
	cr_assert(t.accepted, "the listener on %s accepted nothing",
		  t.second);
	cr_assert_eq(t.none_rc, -ECONNREFUSED,
		     "with nothing listening: %d (%s), not the last "
		     "address's -ECONNREFUSED", t.none_rc,
		     weft_strerror(t.none_rc));
}

/* ---- stress --------------------------------------------------------------- */

#define STRESS_CALLS 2000
#define STRESS_BATCH 100

struct slot {
	atomic_int runs;
	int rc; /* 1: the task never got to call */
	void *result;
};

static struct slot slots[STRESS_CALLS];

static void *stress_fn(void *arg)
{
	struct slot *s = arg;

	atomic_fetch_add(&s->runs, 1);
	wt_spin_us((unsigned)((uintptr_t)s / sizeof(*s) % 3) * 10);
	return s;
}

static void *stress_task(void *arg)
{
	struct slot *s = arg;

	s->rc = weft_run_blocking(stress_fn, s, &s->result);
	return NULL;
}

static uint64_t mix(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

static void *stress_main(void *arg)
{
	weft_task *ts[STRESS_BATCH];
	uint64_t rng = 42;

	(void)arg;
	for (int base = 0; base < STRESS_CALLS; base += STRESS_BATCH) {
		for (int i = 0; i < STRESS_BATCH; i++) {
			slots[base + i].rc = 1;
			ts[i] = weft_spawn(stress_task, &slots[base + i]);
			if (!WT_CHECK(ts[i] != NULL))
				return NULL;
		}
		for (int i = 0; i < STRESS_BATCH; i++) {
			rng = mix(rng);
			if (rng & 1)
				weft_cancel(ts[i]);
			for (unsigned y = 0; y < ((rng >> 1) & 3); y++)
				weft_yield();
		}
		/* Cancelled tasks end with -ECANCELED; what matters is
		 * the slots. */
		weft_gather(ts, STRESS_BATCH, NULL);
		for (int i = 0; i < STRESS_BATCH; i++)
			weft_task_release(ts[i]);
	}
	return NULL;
}

Test(pool, random_cancellations_run_fn_once_or_not_at_all,
     .timeout = WT_TIMEOUT(120))
{
	struct weft_config c = config(4, 4, 0);
	int ran = 0, cancelled = 0, unstarted = 0;

	memset(slots, 0, sizeof(slots));
	wt_run_cfg(stress_main, NULL, &c);
	for (int i = 0; i < STRESS_CALLS; i++) {
		struct slot *s = &slots[i];
		int runs = atomic_load(&s->runs);

		if (s->rc == 0) {
			cr_assert_eq(runs, 1, "call %d returned 0, ran %d times",
				     i, runs);
			cr_assert_eq(s->result, s);
			ran++;
		} else if (s->rc == -ECANCELED) {
			cr_assert_eq(runs, 0, "call %d returned -ECANCELED, "
					      "ran %d times", i, runs);
			cancelled++;
		} else {
			cr_assert_eq(s->rc, 1, "call %d returned %d", i, s->rc);
			cr_assert_eq(runs, 0);
			unstarted++;
		}
	}
	cr_log_info("%d ran, %d cancelled before a thread took them, %d "
		    "tasks cancelled before they started",
		    ran, cancelled, unstarted);
	cr_assert_gt(ran, 0);
}

/* ---- queue order, resolution behind a full pool, no thread at all -------- */

/* With one pool thread, calls queued behind a blocked one run in the order
 * they were queued (weft.h: a FIFO queue). Each caller is spawned only once
 * the previous one has queued its call: on one worker a task runs from its
 * start into weft_run_blocking() without suspending, so "entered" seen by
 * main (which got the worker back) means queued. */
#define FIFO_N 8

struct fifo {
	atomic_int entered;
	atomic_int ran;
	int order[FIFO_N];
};

static struct fifo *fifo_of_run;

static void *fifo_fn(void *arg)
{
	int i = atomic_fetch_add(&fifo_of_run->ran, 1);

	if (i < FIFO_N)
		fifo_of_run->order[i] = (int)(uintptr_t)arg;
	return NULL;
}

struct fifo_call {
	struct fifo *f;
	int i;
};

static void *fifo_task(void *arg)
{
	struct fifo_call *c = arg;

	atomic_fetch_add(&c->f->entered, 1);
	WT_CHECK_EQ(weft_run_blocking(fifo_fn, (void *)(uintptr_t)c->i, NULL),
		    0);
	return NULL;
}

static void *fifo_main(void *arg)
{
	struct fifo *f = arg;
	struct fifo_call calls[FIFO_N];
	weft_task *fill[1], *t[FIFO_N];
	struct gate g;

	memset(&g, 0, sizeof(g));
	fifo_of_run = f;
	fill_pool(&g, fill, 1);
	for (int i = 0; i < FIFO_N; i++) {
		calls[i].f = f;
		calls[i].i = i;
		t[i] = weft_spawn(fifo_task, &calls[i]);
		if (!WT_CHECK(t[i] != NULL))
			return NULL;
		settle_count(&f->entered, i + 1);
	}
	WT_CHECK_EQ(atomic_load(&f->ran), 0);
	drain_pool(&g, fill, 1);
	WT_CHECK_EQ(weft_gather(t, FIFO_N, NULL), 0);
	for (int i = 0; i < FIFO_N; i++)
		weft_task_release(t[i]);
	return NULL;
}

Test(pool, queued_calls_run_in_the_order_they_were_queued,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = config(1, 1, 0);
	struct fifo f;

	memset(&f, 0, sizeof(f));
	wt_run_cfg(fifo_main, &f, &c);
	cr_assert_eq(atomic_load(&f.ran), FIFO_N, "%d of %d queued calls ran",
		     atomic_load(&f.ran), FIFO_N);
	for (int i = 0; i < FIFO_N; i++)
		cr_assert_eq(f.order[i], i,
			     "call %d ran in place %d (order %d %d %d %d %d %d "
			     "%d %d)",
			     f.order[i], i, f.order[0], f.order[1], f.order[2],
			     f.order[3], f.order[4], f.order[5], f.order[6],
			     f.order[7]);
}

/* weft_getaddrinfo() queued behind a full pool: a deadline scope or a
 * cancel ends it like weft_run_blocking, with *res NULL (nothing to free;
 * *res starts as a pointer that a caller would wrongly free). */
struct gai_queued {
	atomic_int entered;
	int timed_rc, cancel_rc;
	struct addrinfo *timed_res, *cancel_res;
};

static void *gai_cancel_task(void *arg)
{
	struct gai_queued *q = arg;

	q->cancel_res = (struct addrinfo *)(uintptr_t)0x1;
	atomic_store(&q->entered, 1);
	q->cancel_rc = weft_getaddrinfo("localhost", "80", NULL,
					&q->cancel_res);
	return NULL;
}

static void *gai_queued_main(void *arg)
{
	struct gai_queued *q = arg;
	weft_task *fill[1], *t;
	struct gate g;
	uint64_t saved;

	memset(&g, 0, sizeof(g));
	fill_pool(&g, fill, 1);

	q->timed_res = (struct addrinfo *)(uintptr_t)0x1;
	saved = weft_timeout_begin(20 * MS);
	q->timed_rc = weft_getaddrinfo("localhost", "80", NULL, &q->timed_res);
	weft_timeout_end(saved);

	t = weft_spawn(gai_cancel_task, q);
	if (WT_CHECK(t != NULL)) {
		WT_CHECK(task_wait_flag(&q->entered));
		weft_sleep_ms(20); /* queued behind the blocked call, parked */
		WT_CHECK_EQ(weft_cancel(t), 0);
		WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
		weft_task_release(t);
	}
	drain_pool(&g, fill, 1);
	if (q->timed_rc == 0 && q->timed_res)
		freeaddrinfo(q->timed_res);
	if (q->cancel_rc == 0 && q->cancel_res)
		freeaddrinfo(q->cancel_res);
	return NULL;
}

Test(pool, getaddrinfo_behind_a_full_pool_times_out_or_is_cancelled,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config c = config(2, 1, 0);
	struct gai_queued q;

	memset(&q, 0, sizeof(q));
	wt_run_cfg(gai_queued_main, &q, &c);
	cr_assert_eq(q.timed_rc, -ETIMEDOUT,
		     "getaddrinfo in a 20 ms scope behind a full pool: %d (%s)",
		     q.timed_rc, weft_strerror(q.timed_rc));
	cr_assert_null(q.timed_res, "*res after -ETIMEDOUT: %p",
		       (void *)q.timed_res);
	cr_assert_eq(q.cancel_rc, -ECANCELED,
		     "cancelled getaddrinfo behind a full pool: %d (%s)",
		     q.cancel_rc, weft_strerror(q.cancel_rc));
	cr_assert_null(q.cancel_res, "*res after -ECANCELED: %p",
		       (void *)q.cancel_res);
}

/*
 * No pool thread and none can be started: the call fails with the error of
 * pthread_create() (-EAGAIN here) and fn does not run. A seccomp filter on
 * the one worker's thread (the thread that starts pool threads, and no
 * other) makes clone and clone3 fail with EAGAIN, as an exhausted
 * RLIMIT_NPROC would (which does not bind root).
 */
static int refuse_clone_here(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]),
				   .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 ? -errno
								      : 0;
}

struct no_thread {
	int filter, rc, threads;
	void *result;
};

static void *no_thread_main(void *arg)
{
	struct no_thread *n = arg;

	n->filter = refuse_clone_here();
	if (n->filter)
		return NULL;
	n->result = (void *)0x77;
	n->rc = weft_run_blocking(count_fn, (void *)0x99, &n->result);
	n->threads = pool_threads();
	return NULL;
}

/*
 * Runs fn as main of a 1-worker runtime with `threads` pool threads, on a
 * thread of its own: its worker (the thread that called weft_run) may
 * install a seccomp filter and then end, leaving the test's thread free to
 * clone (LeakSanitizer's check does). Checks weft_run()'s result, the
 * tasks' checks and leaks, and *filter (the filter's result, set by fn):
 * skips the test where seccomp filters are not available.
 */
struct own_run {
	weft_fn fn;
	void *arg;
	unsigned threads;
	int rc;
};

static void *own_run_thread(void *p)
{
	struct own_run *o = p;
	struct weft_config c = config(1, o->threads, 0);

	o->rc = weft_run(o->fn, o->arg, &c, NULL);
	return NULL;
}

static void run_filtered(weft_fn fn, void *arg, unsigned threads,
			 const int *filter)
{
	struct own_run o = { fn, arg, threads, 0 };
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, own_run_thread, &o), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	if (o.rc == -EPERM || o.rc == -ENOSYS)
		cr_skip_test("io_uring refused by the kernel: %s",
			     weft_strerror(o.rc));
	cr_assert_eq(o.rc, 0, "weft_run() = %d (%s)", o.rc,
		     weft_strerror(o.rc));
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	if (*filter == -EINVAL || *filter == -ENOSYS || *filter == -EACCES)
		cr_skip_test("no seccomp filters here: %s", strerror(-*filter));
	cr_assert_eq(*filter, 0, "seccomp: %s", strerror(-*filter));
}

/*
 * The other half of that promise: a pool that cannot start a thread but
 * has one running queues the call behind it instead of failing. One call
 * holds the pool's one thread in gate_fn; the worker (the thread that
 * starts pool threads) is then refused clone; a second call waits, and
 * runs once the first is done.
 */
struct queued_behind {
	struct gate g;
	int filter, rc, done_early, threads;
	void *result;
};

static void *queued_behind_task(void *arg)
{
	struct queued_behind *q = arg;

	q->result = (void *)0x77;
	q->rc = weft_run_blocking(count_fn, (void *)0x99, &q->result);
	return NULL;
}

static void *queued_behind_main(void *arg)
{
	struct queued_behind *q = arg;
	weft_task *hold, *t;

	fill_pool(&q->g, &hold, 1);
	q->filter = refuse_clone_here();
	if (q->filter) {
		drain_pool(&q->g, &hold, 1);
		return NULL;
	}
	t = weft_spawn(queued_behind_task, q);
	weft_sleep_ms(20);
	q->done_early = weft_task_done(t);
	WT_CHECK_EQ(atomic_load(&count_runs), 0);
	drain_pool(&q->g, &hold, 1);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	q->threads = pool_threads();
	return NULL;
}

Test(pool, a_pool_that_cannot_start_a_thread_queues_behind_a_running_one,
     .timeout = WT_TIMEOUT(20))
{
	struct queued_behind q;

	memset(&q, 0, sizeof(q));
	atomic_store(&count_runs, 0);
	run_filtered(queued_behind_main, &q, 0, &q.filter);
	cr_assert_eq(q.done_early, 0, "the second call returned (%d, %s) "
				      "while the pool's thread was busy",
		     q.rc, weft_strerror(q.rc));
	cr_assert_eq(q.rc, 0, "the queued call: %d (%s)", q.rc,
		     weft_strerror(q.rc));
	cr_assert_eq(q.result, (void *)0x99);
	cr_assert_eq(atomic_load(&count_runs), 1);
	cr_assert_eq(q.threads, 1, "%d pool threads", q.threads);
}

Test(pool, empty_pool_that_cannot_start_a_thread_returns_eagain,
     .timeout = WT_TIMEOUT(20))
{
	struct no_thread n;

	memset(&n, 0, sizeof(n));
	atomic_store(&count_runs, 0);
	run_filtered(no_thread_main, &n, 1, &n.filter);
	cr_assert_eq(n.rc, -EAGAIN,
		     "run_blocking with no thread and none startable: %d (%s)",
		     n.rc, weft_strerror(n.rc));
	cr_assert_eq(atomic_load(&count_runs), 0, "fn ran %d times",
		     atomic_load(&count_runs));
	cr_assert_eq(n.threads, 0, "%d pool threads", n.threads);
}
