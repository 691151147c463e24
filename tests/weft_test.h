/*
 * Helpers shared by the Criterion tests (header only: each test_<module>.c
 * is its own executable).
 *
 * Checks inside tasks. Criterion's cr_assert*() longjmps to the test's
 * frame when it fails, which from a task (another stack, often another
 * thread) would wreck the runtime. Code that runs in tasks or in threads
 * of its own therefore uses WT_CHECK*(), which only records the failure;
 * the test asserts that none was recorded once weft_run() has returned
 * (wt_run() does it), i.e. after every worker was joined.
 *
 * Timeouts. Sanitizer builds run many times slower, so every .timeout is
 * written as WT_TIMEOUT(seconds of a plain build).
 */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft.h>

#if defined(__SANITIZE_THREAD__)
#define WT_SLOW 10
#elif defined(__SANITIZE_ADDRESS__)
#define WT_SLOW 4
#else
#define WT_SLOW 1
#endif
#define WT_TIMEOUT(s) ((s) * WT_SLOW)

/*
 * Per-suite fixtures, WT_SUITE(suite, seconds):
 *   - a watchdog besides Criterion's .timeout, which BoxFort does not
 *     always enforce (seen here when two tests timed out at once;
 *     Criterion issue 345): every test of the suite is killed by SIGALRM
 *     after `seconds` (scaled like WT_TIMEOUT), so a hang ends as a crash,
 *     never as a stuck run. Choose more than the longest .timeout in it.
 *   - (ASan builds) no leak check: Criterion ends its workers with
 *     _Exit(), so LeakSanitizer's check at exit never runs there, and
 *     Criterion 2.4 counts neither failed assertions nor crashes in a .fini
 *     fixture. Tests check in their body instead: wt_run() after every
 *     weft_run(), WT_LEAK_ASSERT() where a test calls weft_run() itself.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define WT_LEAK_ASSERT()                                                   \
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,                \
		     "LeakSanitizer found leaks (report above)")
#else
#define WT_LEAK_ASSERT() ((void)0)
#endif

#define WT_SUITE(suite, seconds)                                           \
	static void suite##_watchdog(void)                                 \
	{                                                                  \
		alarm((unsigned)WT_TIMEOUT(seconds));                      \
	}                                                                  \
	static void suite##_disarm(void)                                   \
	{                                                                  \
		alarm(0);                                                  \
	}                                                                  \
	TestSuite(suite, .init = suite##_watchdog, .fini = suite##_disarm)

/* TSan reports must fail the test that caused them: stop at the first
 * one (Criterion ignores a worker's exit status once its test passed, and
 * TSan sets its non-zero exit status only at exit). */
#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "halt_on_error=1:second_deadlock_stack=1";
}
#endif

/* ASan builds: Criterion's runner process (which runs no test) loses a few
 * blocks of its own, which LeakSanitizer would report at its exit and turn
 * into a failing exit status. Its usual main, ended with _exit() so that
 * the check at exit is skipped there; tests are checked by WT_SUITE. (A
 * suppression would not do: every allocation made by a test has
 * libcriterion.so on its stack.) */
#if defined(__SANITIZE_ADDRESS__)
int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int result = 0;

	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	fflush(NULL);
	_exit(result);
}
#endif

/* A detected API misuse (a double destroy): runs fn in a child process
 * and asserts that it ended by SIGABRT after printing a message that
 * contains `want` (weft's own report). Under ASan the read of freed memory
 * is reported first (exit 1, "use-after-free"), which is accepted. */
static inline void wt_assert_misuse_reported(void (*fn)(void), const char *want)
{
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	int fds[2], st;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		fn();
		_exit(0); /* not reported: the parent fails */
	}
	close(fds[1]);
	while (n < sizeof(buf) - 1 &&
	       (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
	if (strstr(buf, "use-after-free"))
		return;
#endif
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
		  "misuse not ended by abort (status %#x): %s", st, buf);
	cr_assert(strstr(buf, want), "no report naming '%s'; got: %s", want,
		  buf);
}

/* ---- failures recorded off the test's own thread ------------------------ */

static atomic_int wt_failures;
static char wt_first_failure[512];

static inline void wt_fail_(const char *file, int line, const char *what)
{
	/* Precisions: the message is cut to fit, and the compiler can see
	 * that it is (a Release build warned of truncation). */
	if (atomic_fetch_add(&wt_failures, 1) == 0)
		snprintf(wt_first_failure, sizeof(wt_first_failure),
			 "%.200s:%d: %.280s", file, line, what);
}

static inline int wt_check_(int ok, const char *expr, const char *file,
			    int line)
{
	if (!ok)
		wt_fail_(file, line, expr);
	return ok;
}

static inline int wt_check_eq_(long long a, long long b, const char *ea,
			       const char *eb, const char *file, int line)
{
	char buf[256];

	if (a == b)
		return 1;
	snprintf(buf, sizeof(buf), "%s == %s (%lld != %lld)", ea, eb, a, b);
	wt_fail_(file, line, buf);
	return 0;
}

static inline int wt_check_str_eq_(const char *a, const char *b,
				   const char *ea, const char *eb,
				   const char *file, int line)
{
	char buf[256];

	if (a && b && strcmp(a, b) == 0)
		return 1;
	snprintf(buf, sizeof(buf), "%s == %s (\"%.80s\" != \"%.80s\")", ea,
		 eb, a ? a : "(null)", b ? b : "(null)");
	wt_fail_(file, line, buf);
	return 0;
}

#define WT_CHECK(c) wt_check_(!!(c), #c, __FILE__, __LINE__)
#define WT_CHECK_STR_EQ(a, b)                                              \
	wt_check_str_eq_((a), (b), #a, #b, __FILE__, __LINE__)
#define WT_CHECK_EQ(a, b)                                                  \
	wt_check_eq_((long long)(a), (long long)(b), #a, #b, __FILE__,     \
		     __LINE__)
#define WT_CHECK_PTR_EQ(a, b)                                              \
	wt_check_eq_((long long)(intptr_t)(a), (long long)(intptr_t)(b), #a, \
		     #b, __FILE__, __LINE__)

static inline void wt_assert_no_failures(void)
{
	int n = atomic_load(&wt_failures);

	cr_assert_eq(n, 0, "%d check(s) failed in tasks/threads; first: %s", n,
		     wt_first_failure);
}

/* ---- running a runtime -------------------------------------------------- */

/* Runs fn as the main task with `workers` workers (0: one per CPU) and
 * asserts that weft_run() returned 0 and no check failed in between.
 * Skips the test if the kernel refuses io_uring. Returns main's result. */
/* A test about io_uring itself (it forces WEFT_REACTOR_URING) where
 * io_uring is refused: in tests/run's compat mode, whose seccomp filter
 * refuses it on purpose, an allowed skip; anywhere else a skip that
 * tests/run never allows. */
static inline void wt_skip_no_uring(int rc)
{
	const char *c = getenv("WEFT_TEST_COMPAT");

	if (c && *c)
		cr_skip_test("needs io_uring, refused by the compat filter: %s",
			     weft_strerror(rc));
	cr_skip_test("io_uring refused by the kernel: %s", weft_strerror(rc));
}

static inline void *wt_run_cfg(weft_fn fn, void *arg,
			       const struct weft_config *cfg)
{
	void *res = (void *)(uintptr_t)0xdeadbeef;
	int rc = weft_run(fn, arg, cfg, &res);

	if (rc == -EPERM || rc == -ENOSYS)
		wt_skip_no_uring(rc);
	cr_assert_eq(rc, 0, "weft_run() = %d (%s)", rc, weft_strerror(rc));
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	return res;
}

static inline void *wt_run(weft_fn fn, void *arg, unsigned workers)
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	return wt_run_cfg(fn, arg, &cfg);
}

/* wt_run() on io_uring whatever WEFT_REACTOR says: for tests of the
 * io_uring reactor itself. */
static inline void *wt_run_uring(weft_fn fn, void *arg, unsigned workers)
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	cfg.reactor = WEFT_REACTOR_URING;
	return wt_run_cfg(fn, arg, &cfg);
}

/*
 * Runs fn(arg, out) in a forked child and brings `size` bytes of *out back:
 * for what cannot be undone in the test's process (a seccomp filter) or
 * might never return. The child is killed by SIGALRM after `seconds`
 * (scaled by WT_TIMEOUT). Returns 0 when the child reported, -1 when it
 * did not; *status gets its wait status either way. ThreadSanitizer kills
 * a fork child that starts threads, so the test is skipped there (an
 * allowed skip in tests/run).
 */
static inline int wt_in_child(void (*fn)(void *arg, void *out), void *arg,
			      void *out, size_t size, unsigned seconds,
			      int *status)
{
#if defined(__SANITIZE_THREAD__)
	cr_skip_test("needs fork with threads, which ThreadSanitizer refuses");
#endif
	size_t got = 0;
	int p[2];
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		alarm((unsigned)WT_TIMEOUT(seconds));
		fn(arg, out);
		_exit(write(p[1], out, size) == (ssize_t)size ? 0 : 2);
	}
	close(p[1]);
	while (got < size) {
		ssize_t n = read(p[0], (char *)out + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	cr_assert_eq(waitpid(pid, status, 0), pid);
	return got == size ? 0 : -1;
}

/* ---- small tools -------------------------------------------------------- */

static inline uint64_t wt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Burns CPU for about `us` microseconds without suspending. */
static inline void wt_spin_us(unsigned us)
{
	uint64_t until = wt_now_ns() + (uint64_t)us * 1000u;

	while (wt_now_ns() < until)
		;
}

static inline void wt_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* How many times over stress loops run: WEFT_STRESS_SCALE (default 1, at
 * least 1) times a per-build base (WEFT_STRESS_BASE overrides it: the
 * perturbation build, many times slower, runs with a small one), so that
 * the stress suite takes about the
 * same wall time in every build (TSan is some 50 times slower here). */
#if defined(__SANITIZE_THREAD__)
#define WT_STRESS_BASE 1
#elif defined(__SANITIZE_ADDRESS__)
#define WT_STRESS_BASE 4
#else
#define WT_STRESS_BASE 10
#endif

static inline unsigned wt_scale(void)
{
	const char *s = getenv("WEFT_STRESS_SCALE");
	const char *b = getenv("WEFT_STRESS_BASE"); /* tests/run perturb */
	long v = s ? strtol(s, NULL, 10) : 1;
	long base = b ? strtol(b, NULL, 10) : WT_STRESS_BASE;

	return (v < 1 ? 1u : (unsigned)v) * (base < 1 ? 1u : (unsigned)base);
}

/* Yields until *flag is non-zero, at most `max_yields` times; returns
 * whether the flag was seen. For a task waiting on another task's
 * progress without a primitive to park on. */
static inline int wt_yield_until(atomic_int *flag, long max_yields)
{
	for (long i = 0; i < max_yields; i++) {
		if (atomic_load(flag))
			return 1;
		weft_yield();
	}
	return atomic_load(flag) != 0;
}

/* Yields until *counter >= want (same bound). */
static inline int wt_yield_until_count(atomic_long *counter, long want,
				       long max_yields)
{
	for (long i = 0; i < max_yields; i++) {
		if (atomic_load(counter) >= want)
			return 1;
		weft_yield();
	}
	return atomic_load(counter) >= want;
}

/*
 * A gate: a task that yields until the gate is opened, then returns
 * `value`. Tasks that await it park until then, so a gate is how tests
 * hold many tasks parked on one handle and release them all at once.
 */
struct wt_gate {
	atomic_int open;
	void *value;
};

static inline void *wt_gate_fn(void *arg)
{
	struct wt_gate *g = arg;

	while (!atomic_load(&g->open))
		weft_yield();
	return g->value;
}

/*
 * A task that never ends on its own: it spawns a partner that awaits it,
 * and awaits the partner, so both stay parked. Cancelling it ends both
 * (its await returns -ECANCELED, it returns, the partner's await
 * completes).
 */
static inline void *wt_partner_fn(void *arg)
{
	weft_await((weft_task *)arg, NULL);
	weft_task_release((weft_task *)arg);
	return NULL;
}

static inline void *wt_forever_fn(void *arg)
{
	weft_task *self = weft_self(), *p;

	/* The partner's own reference to us, released after its await. */
	WT_CHECK_EQ(weft_task_retain(self), 0);
	p = weft_spawn(wt_partner_fn, self);
	if (!WT_CHECK(p != NULL))
		return NULL;
	weft_await(p, NULL);
	weft_task_release(p);
	return arg;
}

/* ---- ThreadSanitizer builds: room for BoxFort's arenas -------------------
 *
 * Criterion (its sandbox library BoxFort, arena.c) maps each "arena" at
 * 0x2000_0000_0000 + (rand_r() & 0x3fffff) * 16 MiB, below 0x7f00_0000_0000,
 * and gives up after 10 addresses that are already mapped. TSan reserves
 * nearly all of that range (shadow, meta, protected gaps), so arenas fail
 * about half of the time: in the runner ("Could not initialize inheritable
 * arena", Criterion issue 274) and in test workers (a NULL dereference in
 * libcriterion). This rand_r(), which the executable exports in place of
 * libc's (BoxFort is its only caller in libcriterion), draws addresses only
 * from [0x5500_0000_0000, 0x5680_0000_0000), which TSan leaves to the
 * application (PIE binaries) and keeps free. Sanitizer builds only.
 */
#if defined(__SANITIZE_THREAD__)
int rand_r(unsigned *seed);
int rand_r(unsigned *seed)
{
	unsigned x = *seed * 1103515245u + 12345u;

	*seed = x;
	return (int)(0x350000u + (x >> 8) % 0x18000u);
}
#endif


/* ---- durations and timing checks ---------------------------------------
 * Timing assertions are lower bounds (never early) or upper bounds of
 * seconds scaled by WT_SLOW: sanitizers and a loaded 2-core machine are
 * slow, never fast. */
#define MS WEFT_NSEC_PER_MSEC
#define US WEFT_NSEC_PER_USEC
#define SEC WEFT_NSEC_PER_SEC
/* A hang guard, not a promise: "returned at all", on a loaded CI machine.
 * What the header promises is checked with QUICK_NS and WT_BEST_OF. */
#define PROMPT_NS ((uint64_t)2 * SEC * WT_SLOW)
/* "At once" (a wake-up, a hand-over, a cancel reaching a waiter): tens of
 * milliseconds, for the best of WT_TRIES measurements; one measurement may
 * lose its core to another process on a loaded 2-core machine, the best of
 * several does not unless the code is slow. */
#define QUICK_NS ((uint64_t)20 * MS * WT_SLOW)
#define WT_TRIES 5
/* The smallest of up to n measurements (expr gives ns each time it is
 * evaluated), stopping at the first one below `enough`. */
#define WT_BEST_OF(n, enough, expr)                                        \
	({                                                                 \
		uint64_t best_ = UINT64_MAX;                               \
		for (int i_ = 0; i_ < (n) && best_ >= (enough); i_++) {    \
			uint64_t v_ = (expr);                              \
			if (v_ < best_)                                    \
				best_ = v_;                                \
		}                                                          \
		best_;                                                     \
	})
/* Time given to a task seen entering a call to link itself. */
#define SETTLE_NS ((uint64_t)5 * MS * WT_SLOW)

/* Record a failure naming the elapsed time (WT_CHECK cannot print it). */
#define CHECK_NOT_EARLY(elapsed, want)                                     \
	do {                                                               \
		uint64_t e_ = (elapsed), w_ = (want);                      \
		if (e_ < w_) {                                             \
			char b_[160];                                      \
			snprintf(b_, sizeof(b_),                           \
				 "returned early: %llu ns < %llu ns",      \
				 (unsigned long long)e_,                   \
				 (unsigned long long)w_);                  \
			wt_fail_(__FILE__, __LINE__, b_);                  \
		}                                                          \
	} while (0)

#define CHECK_BELOW(elapsed, bound)                                        \
	do {                                                               \
		uint64_t e_ = (elapsed), b2_ = (bound);                    \
		if (e_ >= b2_) {                                           \
			char b_[160];                                      \
			snprintf(b_, sizeof(b_),                           \
				 "took %llu ns, bound %llu ns (" #elapsed  \
				 ")",                                      \
				 (unsigned long long)e_,                   \
				 (unsigned long long)b2_);                 \
			wt_fail_(__FILE__, __LINE__, b_);                  \
		}                                                          \
	} while (0)

/* In a task: sleeps in short steps until *c >= n (at most ~10 s times
 * WT_SLOW), then SETTLE_NS more, so that a task seen bumping c just before
 * a waiting call has linked itself. Returns whether the count was
 * reached. */
static inline int settle_count(atomic_int *c, int n)
{
	uint64_t until = weft_now() + (uint64_t)10 * SEC * WT_SLOW;

	while (atomic_load(c) < n) {
		if (weft_now() > until)
			return WT_CHECK(atomic_load(c) >= n);
		weft_sleep(100 * US);
	}
	weft_sleep(SETTLE_NS);
	return 1;
}

/* Entries of a /proc directory, "." and ".." aside (-1 if it cannot be
 * read). */
static inline int wt_dir_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Open descriptors of this process (-1 if /proc cannot be read): tests
 * compare it before and after to prove that nothing leaked. */
static inline int fd_count(void)
{
	int n = wt_dir_entries("/proc/self/fd");

	return n < 0 ? -1 : n - 1; /* the directory's own descriptor */
}

/* Room for `need` open descriptors (RLIMIT_NOFILE's soft limit raised to
 * the hard one); skips the test if the hard limit is lower. Each test
 * runs in a process of its own, so the change stays there. */
static inline void wt_raise_nofile(rlim_t need)
{
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur >= need)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		cr_skip_test("RLIMIT_NOFILE hard limit %llu < %llu needed",
			     (unsigned long long)rl.rlim_max,
			     (unsigned long long)need);
	rl.rlim_cur = rl.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit: %s",
		     strerror(errno));
}

/* Runs fn(state) to completion under 1, 2 and 4 workers (wt_run), with
 * state zeroed (size bytes) before each run: one test, three schedules. */
static inline void wt_run_each(weft_fn fn, void *state, size_t size)
{
	static const unsigned counts[] = { 1, 2, 4 };

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		memset(state, 0, size);
		wt_run(fn, state, counts[i]);
	}
}

#endif /* WEFT_TEST_H */
