/*
 * Runtime metrics (weft_metrics, weft_metrics_worker) and stall reports
 * (weft_config.stall_ms, WEFT_STALL_MS).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <time.h>

#include "weft_test.h"

WT_SUITE(metrics, 60);
WT_SUITE(stall, 60);

#define N_TASKS 16
#define N_YIELDS 10

#ifndef WT_METRICS_OFF
static int get(struct weft_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->size = sizeof(*m);
	return weft_metrics(NULL, m);
}

static uint64_t io_sum(const uint64_t *v, unsigned n)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		s += v[i];
	return s;
}

/* ---- counts after a known workload --------------------------------------- */

struct work {
	int fd; /* one end of a socketpair with a byte waiting */
};

static void *worker_task(void *arg)
{
	struct work *wk = arg;
	char c;
	int i;

	for (i = 0; i < N_YIELDS; i++)
		weft_yield();
	/* Long enough that its timer is filed and fires (a sleep found due
	 * at once, or by the wait's own look at the clock, files or fires
	 * none: a slow sanitizer build could take 1 ms to park). */
	WT_CHECK_EQ(weft_sleep_ms(30), 0);
	WT_CHECK_EQ(weft_recv(wk->fd, &c, 1, 0), 1);
	return NULL;
}

struct counts {
	struct weft_metrics before, after;
	uint64_t per_worker_spawned;
};

static void *workload_main(void *arg)
{
	struct counts *c = arg;
	struct work wk[N_TASKS];
	int sv[N_TASKS][2];
	weft_task *t[N_TASKS];
	unsigned i;

	for (i = 0; i < N_TASKS; i++) {
		WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       sv[i]),
			    0);
		WT_CHECK_EQ(write(sv[i][1], "x", 1), 1);
		wk[i].fd = sv[i][0];
	}
	WT_CHECK_EQ(get(&c->before), 0);
	for (i = 0; i < N_TASKS; i++) {
		t[i] = weft_spawn(worker_task, &wk[i]);
		WT_CHECK(t[i] != NULL);
	}
	for (i = 0; i < N_TASKS; i++) {
		WT_CHECK_EQ(weft_await(t[i], NULL), 0);
		weft_task_release(t[i]);
	}
	/* A task's end is counted by the context its worker switches to
	 * next, and fired timers once the firer has woken every task of its
	 * batch: both may come just after the awaiter woke. Wait for them. */
	for (i = 0; i < 1000; i++) {
		WT_CHECK_EQ(get(&c->after), 0);
		if (c->after.tasks_finished - c->before.tasks_finished >=
			    N_TASKS &&
		    c->after.timers_fired - c->before.timers_fired >= N_TASKS)
			break;
		weft_sleep_ms(1);
	}
	c->per_worker_spawned = 0;
	for (i = 0; i < c->after.workers; i++) {
		struct weft_metrics w;

		memset(&w, 0, sizeof(w));
		w.size = sizeof(w);
		WT_CHECK_EQ(weft_metrics_worker(NULL, i, &w), 0);
		WT_CHECK_EQ(w.inject_depth, 0);
		WT_CHECK_EQ(w.stalls, 0);
		c->per_worker_spawned += w.tasks_spawned;
	}
	for (i = 0; i < N_TASKS; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	return NULL;
}

Test(metrics, counts_match_a_known_workload, .timeout = WT_TIMEOUT(30))
{
	struct counts c;
	const struct weft_metrics *a = &c.after, *b = &c.before;
	uint64_t sub, done;
	unsigned k;

	wt_run(workload_main, &c, 2);
	cr_assert_eq(a->size, sizeof(*a));
	cr_assert_eq(a->workers, 2);
	cr_assert_eq(a->tasks_spawned - b->tasks_spawned, N_TASKS);
	cr_assert_eq(a->tasks_finished - b->tasks_finished, N_TASKS);
	/* main was spawned from outside the workers' counts. */
	cr_assert_eq(c.per_worker_spawned, a->tasks_spawned - 1);
	cr_assert_geq(a->switches - b->switches, N_TASKS * N_YIELDS);
	cr_assert_geq(a->timers_armed - b->timers_armed, N_TASKS);
	cr_assert_geq(a->timers_fired - b->timers_fired, N_TASKS);
	cr_assert_leq(a->timers_fired, a->timers_armed);
	cr_assert_eq(a->io_submitted[WEFT_IO_RECV] -
			     b->io_submitted[WEFT_IO_RECV],
		     N_TASKS);
	cr_assert_eq(a->io_completed[WEFT_IO_RECV] -
			     b->io_completed[WEFT_IO_RECV],
		     N_TASKS);
	for (k = 0; k < WEFT_IO_KINDS; k++)
		if (k != WEFT_IO_RECV)
			cr_assert_eq(a->io_completed[k], b->io_completed[k],
				     "kind %u", k);
	sub = io_sum(a->io_submitted, WEFT_IO_KINDS);
	done = io_sum(a->io_completed, WEFT_IO_KINDS);
	cr_assert_eq(sub, done);
	cr_assert_eq(io_sum(a->io_latency, WEFT_METRICS_IO_BUCKETS), done);
	cr_assert_gt(a->io_latency_sum_ns, 0);
	cr_assert_gt(a->busy_ns, 0);
	cr_assert_leq(a->busy_ns, 2 * a->uptime_ns);
	cr_assert_eq(a->stalls, 0);
	cr_assert_eq(a->local_depth, 0);
}

/* ---- arguments -------------------------------------------------------------- */

static void *from_pool(void *arg)
{
	struct weft_metrics *m = arg;

	memset(m, 0, sizeof(*m));
	m->size = sizeof(*m);
	return (void *)(intptr_t)weft_metrics(NULL, m);
}

static void *args_main(void *arg)
{
	struct weft_metrics m;
	void *res = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_metrics(NULL, NULL), -EINVAL);
	memset(&m, 0, sizeof(m));
	m.size = sizeof(m) - 1;
	WT_CHECK_EQ(weft_metrics(NULL, &m), -EINVAL);
	m.size = sizeof(m) + 64; /* a newer caller: gets what there is */
	WT_CHECK_EQ(weft_metrics(NULL, &m), 0);
	WT_CHECK_EQ(m.size, sizeof(m));
	WT_CHECK_EQ(m.workers, 2);
	m.size = sizeof(m);
	WT_CHECK_EQ(weft_metrics_worker(NULL, 2, &m), -EINVAL);
	WT_CHECK_EQ(weft_metrics_worker(NULL, 1, &m), 0);
	WT_CHECK_EQ(weft_metrics_worker(weft_runtime_self(), 0, &m), 0);
	/* From the blocking pool, NULL is the pool's runtime. */
	m.workers = 0;
	WT_CHECK_EQ(weft_run_blocking(from_pool, &m, &res), 0);
	WT_CHECK_EQ((intptr_t)res, 0);
	WT_CHECK_EQ(m.workers, 2);
	return NULL;
}

Test(metrics, bad_arguments_are_refused, .timeout = WT_TIMEOUT(10))
{
	struct weft_metrics m;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	cr_assert_eq(weft_metrics(NULL, &m), -EPERM);
	cr_assert_eq(weft_metrics_worker(NULL, 0, &m), -EPERM);
	wt_run(args_main, NULL, 2);
}

/* ---- a foreign thread reads while tasks run ------------------------------- */

struct reader {
	weft_runtime *rt;
	atomic_int stop;
	atomic_int reads;
	atomic_int bad;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	struct weft_metrics prev, m, w;

	memset(&prev, 0, sizeof(prev));
	while (!atomic_load(&r->stop)) {
		memset(&m, 0, sizeof(m));
		m.size = sizeof(m);
		/* Counters only grow. */
		if (weft_metrics(r->rt, &m) != 0 ||
		    m.tasks_spawned < prev.tasks_spawned ||
		    m.tasks_finished < prev.tasks_finished ||
		    m.switches < prev.switches ||
		    m.timers_armed < prev.timers_armed ||
		    m.io_latency_sum_ns < prev.io_latency_sum_ns)
			atomic_fetch_add(&r->bad, 1);
		memset(&w, 0, sizeof(w));
		w.size = sizeof(w);
		if (weft_metrics_worker(r->rt, 1, &w) != 0)
			atomic_fetch_add(&r->bad, 1);
		prev = m;
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

static void *busy_task(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < 200; i++) {
		weft_yield();
		if (i % 50 == 0)
			weft_sleep_ms(1);
	}
	return NULL;
}

static void *foreign_main(void *arg)
{
	struct reader *r = arg;
	pthread_t th;
	unsigned i;

	r->rt = weft_runtime_self();
	WT_CHECK_EQ(pthread_create(&th, NULL, reader_thread, r), 0);
	for (i = 0; i < 20; i++) {
		weft_task *t[8];
		unsigned j;

		for (j = 0; j < 8; j++)
			t[j] = weft_spawn(busy_task, NULL);
		for (j = 0; j < 8; j++) {
			WT_CHECK_EQ(weft_await(t[j], NULL), 0);
			weft_task_release(t[j]);
		}
	}
	while (atomic_load(&r->reads) < 10)
		weft_sleep_ms(1);
	atomic_store(&r->stop, 1);
	pthread_join(th, NULL); /* it has stopped looping: at once */
	return NULL;
}

Test(metrics, readable_from_a_foreign_thread_while_tasks_run,
     .timeout = WT_TIMEOUT(30))
{
	struct reader r = { 0 };

	wt_run(foreign_main, &r, 2);
	cr_assert_gt(atomic_load(&r.reads), 0);
	cr_assert_eq(atomic_load(&r.bad), 0);
}

/* A stream receive counts once, whichever way the stream works: on the
 * epoll reactor (and on io_uring without multishot receive) a stream is a
 * weft_recv_lease() per call, and that inner call was counted as a
 * receive of its own (two submitted, two completed for one call). */
static void *stream_once_main(void *arg)
{
	struct weft_metrics before, after;
	struct weft_lease l;
	weft_stream *st;
	int sv[2], i;

	(void)arg;
	if (!WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    sv),
			 0))
		return NULL;
	WT_CHECK_EQ(weft_stream_open(&st, sv[0]), 0);
	for (i = 0; i < 3; i++) {
		WT_CHECK_EQ(write(sv[1], "x", 1), 1);
		WT_CHECK_EQ(get(&before), 0);
		WT_CHECK_EQ(weft_stream_recv(st, &l), 1);
		WT_CHECK_EQ(get(&after), 0);
		WT_CHECK_EQ(weft_lease_release(&l), 0);
		WT_CHECK_EQ(after.io_submitted[WEFT_IO_RECV] -
				    before.io_submitted[WEFT_IO_RECV],
			    1);
		WT_CHECK_EQ(after.io_completed[WEFT_IO_RECV] -
				    before.io_completed[WEFT_IO_RECV],
			    1);
		WT_CHECK_EQ(io_sum(after.io_latency, WEFT_METRICS_IO_BUCKETS) -
				    io_sum(before.io_latency,
					   WEFT_METRICS_IO_BUCKETS),
			    1);
	}
	WT_CHECK_EQ(weft_stream_close(st), 0);
	close(sv[0]);
	close(sv[1]);
	return NULL;
}

Test(metrics, a_stream_receive_counts_once_on_either_reactor,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 1;
	cfg.reactor = WEFT_REACTOR_EPOLL;
	wt_run_cfg(stream_once_main, NULL, &cfg);
	cfg.reactor = WEFT_REACTOR_AUTO;
	wt_run_cfg(stream_once_main, NULL, &cfg);
}

/* Busy time is a counter: read from another thread while its worker
 * parks and wakes thousands of times, it never goes back. (It did: the
 * worker ended a park by clearing its start and then adding it to the
 * idle sum, with a clock read between, and a reader in that gap counted
 * the whole park as busy, then took it back at its next read.) */
struct busy_reader {
	weft_runtime *rt;
	atomic_int stop;
	atomic_long reads;
	atomic_long back; /* reads lower than the one before */
	uint64_t worst;   /* by how much, at most (ns) */
};

static void *busy_reader_thread(void *arg)
{
	struct busy_reader *r = arg;
	struct weft_metrics w;
	uint64_t prev = 0;

	while (!atomic_load(&r->stop)) {
		memset(&w, 0, sizeof(w));
		w.size = sizeof(w);
		if (weft_metrics_worker(r->rt, 0, &w) != 0) {
			atomic_fetch_add(&r->back, 1);
			break;
		}
		if (w.busy_ns < prev) {
			atomic_fetch_add(&r->back, 1);
			if (prev - w.busy_ns > r->worst)
				r->worst = prev - w.busy_ns;
		}
		prev = w.busy_ns;
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

static void *busy_parker_main(void *arg)
{
	struct busy_reader *r = arg;
	struct weft_metrics w;
	pthread_t th[2];
	uint64_t end;
	unsigned i;

	r->rt = weft_runtime_self();
	for (i = 0; i < 2; i++)
		WT_CHECK_EQ(pthread_create(&th[i], NULL, busy_reader_thread, r),
			    0);
	/* Short sleeps: the one worker parks and wakes all the time. */
	end = weft_now() + 500 * WEFT_NSEC_PER_MSEC;
	while (weft_now() < end)
		weft_sleep(20 * 1000);
	atomic_store(&r->stop, 1);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	/* And it is a time within the worker's life. */
	memset(&w, 0, sizeof(w));
	w.size = sizeof(w);
	WT_CHECK_EQ(weft_metrics_worker(NULL, 0, &w), 0);
	WT_CHECK(w.busy_ns > 0 && w.busy_ns <= w.uptime_ns);
	return NULL;
}

Test(metrics, busy_time_read_while_the_worker_parks_never_goes_back,
     .timeout = WT_TIMEOUT(30))
{
	struct busy_reader r = { 0 };

	wt_run(busy_parker_main, &r, 1);
	cr_assert_gt(atomic_load(&r.reads), 0);
	cr_assert_eq(atomic_load(&r.back), 0,
		     "busy_ns went back %ld times in %ld reads, by up to %llu ns",
		     atomic_load(&r.back), atomic_load(&r.reads),
		     (unsigned long long)r.worst);
}

/* spawned - finished is the tasks alive (the docs' and the example's
 * gauge): a read never finds more tasks finished than spawned, though a
 * task may be spawned on one worker and end on another that is summed
 * after it. */
struct alive_reader {
	weft_runtime *rt;
	atomic_int stop;
	atomic_long reads;
	atomic_long bad;
};

static void *alive_reader_thread(void *arg)
{
	struct alive_reader *r = arg;
	struct weft_metrics m;

	while (!atomic_load(&r->stop)) {
		memset(&m, 0, sizeof(m));
		m.size = sizeof(m);
		if (weft_metrics(r->rt, &m) != 0 ||
		    m.tasks_finished > m.tasks_spawned)
			atomic_fetch_add(&r->bad, 1);
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

static void *nothing(void *arg)
{
	(void)arg;
	return NULL;
}

static void *spawn_many(void *arg)
{
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };
	int i;

	(void)arg;
	for (i = 0; i < 20000; i++) {
		WT_CHECK_EQ(weft_spawn_opts(NULL, nothing, NULL, &o), 0);
		if (i % 64 == 0)
			weft_yield();
	}
	return NULL;
}

static void *alive_main(void *arg)
{
	struct alive_reader *r = arg;
	weft_task *t[4];
	pthread_t th;
	unsigned i;

	r->rt = weft_runtime_self();
	WT_CHECK_EQ(pthread_create(&th, NULL, alive_reader_thread, r), 0);
	/* The reader reads while the tasks come and go: its first read
	 * before the first spawn (a thread started on a loaded machine
	 * had not read once by the time 80,000 tasks had ended). */
	for (i = 0; i < 10000 && atomic_load(&r->reads) == 0; i++)
		WT_CHECK_EQ(weft_sleep(WEFT_NSEC_PER_MSEC), 0);
	for (i = 0; i < 4; i++)
		t[i] = weft_spawn(spawn_many, NULL);
	for (i = 0; i < 4; i++) {
		WT_CHECK_EQ(weft_await(t[i], NULL), 0);
		weft_task_release(t[i]);
	}
	atomic_store(&r->stop, 1);
	pthread_join(th, NULL);
	return NULL;
}

Test(metrics, never_more_tasks_finished_than_spawned,
     .timeout = WT_TIMEOUT(60))
{
	struct alive_reader r = { 0 };

	wt_run(alive_main, &r, 4);
	cr_assert_gt(atomic_load(&r.reads), 0);
	cr_assert_eq(atomic_load(&r.bad), 0, "%ld of %ld reads",
		     atomic_load(&r.bad), atomic_load(&r.reads));
}

#else /* WT_METRICS_OFF */

static void *off_main(void *arg)
{
	struct weft_metrics m = { .size = sizeof(m) };

	(void)arg;
	WT_CHECK_EQ(weft_metrics(NULL, &m), -ENOTSUP);
	WT_CHECK_EQ(weft_metrics_worker(NULL, 0, &m), -ENOTSUP);
	return NULL;
}

Test(metrics, compiled_out_says_enotsup, .timeout = WT_TIMEOUT(10))
{
	wt_run(off_main, NULL, 2);
}

#endif /* WT_METRICS_OFF */

/* ---- stall reports ------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * WEFT_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Spins for ns of this thread's CPU time, not of the wall clock: the
 * watchdog blames a task only for the CPU time its worker had (stall.c),
 * and a wall-clock spin on a loaded machine may get little of it (a
 * 100 ms spin had 1 ms of CPU, and was rightly not reported). 10 s of
 * wall time at most. Exported (the suite links with -rdynamic) so
 * backtrace_symbols names it; noinline so that it is a frame of its own. */
__attribute__((noinline)) void wt_stall_spin_here(uint64_t ns);
__attribute__((noinline)) void wt_stall_spin_here(uint64_t ns)
{
	uint64_t end = thread_cpu_ns() + ns;
	uint64_t wall_end = weft_now() + 10 * WEFT_NSEC_PER_SEC;
	volatile unsigned long x = 0;

	while (thread_cpu_ns() < end && weft_now() < wall_end)
		x++;
	__asm__ volatile("" ::: "memory");
}

static void *spinner(void *arg)
{
	uint64_t ns = *(uint64_t *)arg, end;

	if (ns) {
		wt_stall_spin_here(ns);
		return NULL;
	}
	/* 0: 300 ms of 1 ms slices that suspend between them. */
	end = weft_now() + 300 * WEFT_NSEC_PER_MSEC;
	while (weft_now() < end) {
		wt_stall_spin_here(WEFT_NSEC_PER_MSEC);
		weft_yield();
	}
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	return NULL;
}

struct stall_run {
	uint64_t spin_ns;
	unsigned expect; /* stall reports to wait for before reading m */
	struct weft_metrics m;
	weft_fn main; /* NULL: stall_main */
};

static void wait_for_reports(struct stall_run *s);

static void *stall_main(void *arg)
{
	struct stall_run *s = arg;
	struct weft_spawn_opts o = { .name = "spinner",
				     .flags = WEFT_SPAWN_PINNED };
	weft_task *t, *q[3];
	unsigned i;

	WT_CHECK_EQ(weft_spawn_opts(&t, spinner, &s->spin_ns, &o), 0);
	/* Pinned to the same worker. The last one spawned takes the next
	 * slot and runs first, when main waits; the spinner and the other
	 * two wait in the pinned list, in that order: two tasks queued
	 * behind the spinner while it runs. */
	for (i = 0; i < 3; i++) {
		o.name = "behind";
		WT_CHECK_EQ(weft_spawn_opts(&q[i], waiter, NULL, &o), 0);
	}
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	for (i = 0; i < 3; i++) {
		WT_CHECK_EQ(weft_await(q[i], NULL), 0);
		weft_task_release(q[i]);
	}
	wait_for_reports(s);
	return NULL;
}

static void wait_for_reports(struct stall_run *s)
{
#ifndef WT_METRICS_OFF
	unsigned i;

	/* The watchdog counts a report as it makes it, which may be after
	 * the spinner has ended: give it a while. */
	for (i = 0; i < 2000; i++) {
		memset(&s->m, 0, sizeof(s->m));
		s->m.size = sizeof(s->m);
		WT_CHECK_EQ(weft_metrics(NULL, &s->m), 0);
		if (s->m.stalls >= s->expect)
			break;
		weft_sleep_ms(1);
	}
#else
	(void)s;
#endif
}

/* Runs stall_main with stderr in a file; returns what was written there
 * (malloc'd). */
static char *run_capturing(unsigned stall_ms, const char *env,
			   struct stall_run *s)
{
	char path[] = "/tmp/weft-stall-XXXXXX";
	struct weft_config cfg;
	int fd = mkstemp(path), saved;
	char *buf;
	off_t n;

	cr_assert_geq(fd, 0);
	unlink(path);
	if (env)
		setenv("WEFT_STALL_MS", env, 1);
	else
		unsetenv("WEFT_STALL_MS");
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	cfg.stall_ms = stall_ms;
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	wt_run_cfg(s->main ? s->main : stall_main, s, &cfg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = lseek(fd, 0, SEEK_END);
	buf = calloc(1, (size_t)n + 1);
	cr_assert(buf);
	cr_assert_eq(pread(fd, buf, (size_t)n, 0), n);
	close(fd);
	fprintf(stderr, "%s", buf); /* for the test log */
	return buf;
}

/* The stall count, where metrics are built in. */
static void stalls_are(const struct stall_run *s, uint64_t n)
{
#ifndef WT_METRICS_OFF
	cr_assert_eq(s->m.stalls, n);
#else
	(void)s;
	(void)n;
#endif
}

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;

	while ((hay = strstr(hay, needle))) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

Test(stall, a_spinning_task_is_reported_once_with_its_frames,
     .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 300 * WEFT_NSEC_PER_MSEC,
			       .expect = 1 };
	char *out = run_capturing(50, NULL, &s);
	const char *w;

	cr_assert_eq(count_of(out, "weft: stall: task \"spinner\""), 1,
		     "want one report:\n%s", out);
	cr_assert_eq(count_of(out, "weft: stall: task"), 1, "%s", out);
	w = strstr(out, "on worker ");
	cr_assert(w && (w[10] == '0' || w[10] == '1'), "%s", out);
	cr_assert(strstr(out, "stall_ms 50"), "%s", out);
	cr_assert(strstr(out, "2 tasks queued behind it"), "%s", out);
	cr_assert(strstr(out, "wt_stall_spin_here"),
		  "no frame of the spinning function:\n%s", out);
#ifndef WT_REGISTRY_OFF
	/* The spawn site, from weft_spawn_opts()'s macro in this file. */
	cr_assert(strstr(out, "weft: stall:   spawned at ") &&
			  strstr(out, "test_metrics.c:"),
		  "no spawn site:\n%s", out);
#endif
	stalls_are(&s, 1);
	free(out);
}

Test(stall, a_stall_ms_below_10_is_raised_to_10, .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 100 * WEFT_NSEC_PER_MSEC,
			       .expect = 1 };
	char *out = run_capturing(1, NULL, &s);

	cr_assert_eq(count_of(out, "weft: stall: task \"spinner\""), 1,
		     "want one report:\n%s", out);
	cr_assert(strstr(out, "(stall_ms 10)"), "%s", out);
	free(out);
	/* The same through the environment. */
	s.expect = 1;
	out = run_capturing(0, "3", &s);
	cr_assert(strstr(out, "(stall_ms 10)"), "%s", out);
	unsetenv("WEFT_STALL_MS");
	free(out);
}

Test(stall, off_unless_asked, .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 300 * WEFT_NSEC_PER_MSEC };
	char *out;

	out = run_capturing(0, NULL, &s);
	cr_assert_eq(count_of(out, "weft: stall"), 0, "%s", out);
	stalls_are(&s, 0);
	free(out);
	out = run_capturing(WEFT_STALL_OFF, "50", &s);
	cr_assert_eq(count_of(out, "weft: stall"), 0, "%s", out);
	free(out);
	/* The environment turns it on for a program that set nothing. */
	s.expect = 1;
	out = run_capturing(0, "50", &s);
	cr_assert_eq(count_of(out, "weft: stall: task \"spinner\""), 1, "%s",
		     out);
	stalls_are(&s, 1);
	free(out);
}

Test(stall, tasks_that_suspend_are_not_reported, .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 0 };
	/* 50 ms: a loaded machine may take a worker's CPU for a while. */
	char *out = run_capturing(50, NULL, &s);

	cr_assert_eq(count_of(out, "weft: stall"), 0, "%s", out);
	free(out);
}

/* ---- a worker short of CPU is not a stalled task ------------------------ */
/* A thread outside the runtime that keeps one CPU busy for ns. */
struct hog {
	int cpu;
	uint64_t ns;
	atomic_int done;
};

static void *hog_main(void *arg)
{
	struct hog *h = arg;
	uint64_t until = weft_now() + h->ns;
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(h->cpu, &one);
	sched_setaffinity(0, sizeof(one), &one);
	while (weft_now() < until)
		;
	atomic_store(&h->done, 1);
	return NULL;
}

/* Pinned to its worker: keeps switching (a yield each turn) while the
 * worker's thread, given the lowest priority and the hog's CPU, gets
 * about 1.5% of it (nice 19 weighs 15 against nice 0's 1024): its count
 * stands still for far longer than stall_ms, its task never runs long. */
static void *starved(void *arg)
{
	struct hog *h = arg;
	cpu_set_t one;
	pthread_t th;

	h->cpu = sched_getcpu();
	WT_CHECK(h->cpu >= 0);
	CPU_ZERO(&one);
	CPU_SET(h->cpu, &one);
	WT_CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
	/* The hog first: a thread starts with its creator's nice value. */
	WT_CHECK_EQ(pthread_create(&th, NULL, hog_main, h), 0);
	WT_CHECK_EQ(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19),
		    0);
	while (!atomic_load(&h->done))
		weft_yield();
	WT_CHECK_EQ(pthread_join(th, NULL), 0);
	return NULL;
}

static void *starved_main(void *arg)
{
	struct stall_run *s = arg;
	struct hog h = { .ns = 600 * WEFT_NSEC_PER_MSEC };
	struct weft_spawn_opts o = { .name = "starved",
				     .flags = WEFT_SPAWN_PINNED };
	weft_task *t;

	WT_CHECK_EQ(weft_spawn_opts(&t, starved, &h, &o), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	wait_for_reports(s);
	return NULL;
}

Test(stall, a_worker_waiting_for_a_cpu_is_noted_not_reported,
     .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .main = starved_main };
	char *out = run_capturing(50, NULL, &s);

	/* The watchdog saw the worker stand still past stall_ms... */
	cr_assert_geq(count_of(out, "its thread waits for a CPU"), 1, "%s",
		      out);
	/* ...with too little run time to blame its task. */
	cr_assert_eq(count_of(out, "weft: stall"), 0, "%s", out);
	stalls_are(&s, 0);
	free(out);
}

/* ---- the signal on a task near the end of its stack ---------------------- */
#if !defined(__SANITIZE_THREAD__) /* the test below only */

#define DEEP_STACK (32u * 1024u)
/* What the task leaves of its stack while it spins: room for its own
 * frames, not for a signal frame (a few KiB with AVX-512 state) and
 * backtrace()'s unwinder on top. */
#define DEEP_LEFT 4096u

__attribute__((noinline)) static void descend(char *top, size_t want,
					      uint64_t ns)
{
	volatile char pad[256];
	char *here = __builtin_frame_address(0);

	pad[0] = 0;
	if ((size_t)(top - here) < want)
		descend(top, want, ns);
	else
		wt_stall_spin_here(ns);
	pad[1] = pad[0]; /* not a tail call */
}

static void *deep_spinner(void *arg)
{
	descend(__builtin_frame_address(0), DEEP_STACK - DEEP_LEFT,
		*(uint64_t *)arg);
	return NULL;
}

static void *deep_main(void *arg)
{
	struct stall_run *s = arg;
	struct weft_spawn_opts o = { .name = "deep",
				     .stack_size = DEEP_STACK };
	weft_task *t;

	WT_CHECK_EQ(weft_spawn_opts(&t, deep_spinner, &s->spin_ns, &o), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	wait_for_reports(s);
	return NULL;
}
#endif

/* The stall signal's handler runs on the worker's alternate signal stack:
 * a task stalled with only a few KiB of its stack left is reported, not
 * overflowed by the signal's frame and the unwinder (before, the handler
 * ran on the task's stack and the process died of a stack overflow that
 * only the report caused). Not under TSan, which runs a handler later,
 * from its interceptor, on whatever stack the task is on. */
#if !defined(__SANITIZE_THREAD__)
Test(stall, a_task_near_its_stack_end_is_reported_not_overflowed,
     .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 300 * WEFT_NSEC_PER_MSEC,
			       .main = deep_main };
	char *out;

	/* The task fits its stack when nothing interrupts it. */
	out = run_capturing(WEFT_STALL_OFF, NULL, &s);
	cr_assert_eq(count_of(out, "weft: stall"), 0, "%s", out);
	free(out);
	s.expect = 1;
	out = run_capturing(50, NULL, &s);

	cr_assert_eq(count_of(out, "weft: stall: task \"deep\""), 1,
		     "want one report:\n%s", out);
	cr_assert(strstr(out, "wt_stall_spin_here"),
		  "no frame of the spinning function:\n%s", out);
	stalls_are(&s, 1);
	free(out);
}
#endif

/* ---- a task blocked in a system call ----------------------------------- */

struct sleeper_run {
	int rc, err; /* nanosleep's */
};

static void *blocking_sleeper(void *arg)
{
	struct sleeper_run *r = arg;
	struct timespec ts = { 0, 300 * 1000 * 1000 };

	/* A blocking call on the worker: a stall, and one that a signal
	 * would end early (nanosleep is never restarted). */
	r->rc = nanosleep(&ts, NULL);
	r->err = r->rc < 0 ? errno : 0;
	return NULL;
}

static struct sleeper_run sleeper_result;

static void *sleeper_main(void *arg)
{
	struct stall_run *s = arg;
	struct weft_spawn_opts o = { .name = "sleeper" };
	weft_task *t;

	WT_CHECK_EQ(weft_spawn_opts(&t, blocking_sleeper, &sleeper_result, &o),
		    0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	wait_for_reports(s);
	return NULL;
}

/* A task blocked in a system call is reported, and the report does not
 * end the call: the watchdog sends no signal to a thread blocked in one
 * (before, the task's nanosleep returned -1 with EINTR after stall_ms,
 * only because reports were on). */
Test(stall, a_task_blocked_in_a_system_call_is_reported_not_interrupted,
     .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .expect = 1, .main = sleeper_main };
	char *out;

	memset(&sleeper_result, 0, sizeof(sleeper_result));
	out = run_capturing(50, NULL, &s);
	cr_assert_eq(sleeper_result.rc, 0, "nanosleep: %s",
		     strerror(sleeper_result.err));
	cr_assert_eq(count_of(out, "weft: stall: task"), 1,
		     "want one report:\n%s", out);
	cr_assert(strstr(out, "blocked in system call"), "%s", out);
	stalls_are(&s, 1);
	free(out);
}

/* ---- a program that blocks signals ------------------------------------ */

/* Servers often block every signal in the thread that starts the rest
 * (to take them with sigwait or a signalfd), and threads inherit it: the
 * workers too. The stall signal is weft's own, sent to one worker: the
 * workers take it all the same, and the report has its frames (before,
 * every ask went unanswered for 100 ms and the report came without). */
Test(stall, reported_with_frames_when_the_program_blocks_signals,
     .timeout = WT_TIMEOUT(30))
{
	struct stall_run s = { .spin_ns = 300 * WEFT_NSEC_PER_MSEC,
			       .expect = 1 };
	sigset_t all, old, now;
	char *out;

	sigfillset(&all);
	sigdelset(&all, SIGALRM); /* the suite's watchdog */
	cr_assert_eq(pthread_sigmask(SIG_SETMASK, &all, &old), 0);
	out = run_capturing(50, NULL, &s);
	cr_assert_eq(pthread_sigmask(SIG_SETMASK, &old, &now), 0);
	cr_assert_eq(count_of(out, "weft: stall: task \"spinner\""), 1,
		     "want one report with the task's name:\n%s", out);
	cr_assert(strstr(out, "wt_stall_spin_here"),
		  "no frame of the spinning function:\n%s", out);
	stalls_are(&s, 1);
	/* The caller's own mask is as it was (worker 0 is this thread). */
	cr_assert(sigismember(&now, SIGRTMIN + 4));
	free(out);
}
