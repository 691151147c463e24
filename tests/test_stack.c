/*
 * Task stacks: overflow reports (in a forked child), with either kind of
 * guard; no stack without a guard when mappings run out; custom and
 * default sizes, many parked stacks at once, shutdown with parked tasks,
 * and the per-worker stack cache (weft_config.stack_cache).
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

WT_SUITE(stack, 90);

/* ---- recursion ---------------------------------------------------------- */

static volatile long recursion_limit = 1L << 40;

/* Recurses until `stop` bytes of stack below `top` are in use (or for
 * ever, with stop 0); returns the depth reached. Not a tail call. */
static long recurse(uintptr_t top, size_t stop, long depth,
		    uintptr_t *deepest)
{
	volatile char buf[256];
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	buf[0] = (char)depth;
	buf[sizeof(buf) - 1] = (char)depth;
	if (here < *deepest)
		*deepest = here;
	if ((stop && top - here >= stop) || depth >= recursion_limit)
		return depth;
	return recurse(top, stop, depth + 1, deepest) + (buf[0] & 0) +
	       (buf[sizeof(buf) - 1] & 0);
}

/* ---- overflow, in a child process --------------------------------------- */

struct child_result {
	int status;
	char err[4096];
};

static void *overflow_task(void *arg)
{
	uintptr_t deepest = UINTPTR_MAX;

	(void)arg;
	recurse((uintptr_t)__builtin_frame_address(0), 0, 0, &deepest);
	return NULL;
}

static void *overflow_named_main(void *arg)
{
	struct weft_spawn_opts o = { .name = "deep-recursion",
				     .stack_size = 64 * 1024 };
	weft_task *t;

	(void)arg;
	if (weft_spawn_opts(&t, overflow_task, NULL, &o) == 0)
		weft_await(t, NULL);
	return NULL;
}

static void *overflow_default_main(void *arg)
{
	weft_task *t = weft_spawn(overflow_task, NULL);

	(void)arg;
	if (t)
		weft_await(t, NULL);
	return NULL;
}

/*
 * A frame larger than the guard (issue 17): a 400 KiB local array in a
 * task with the 256 KiB default stack. Its lowest bytes lie below the
 * 64 KiB guard, in the next stack down (another task's, in use); the
 * write used to land there silently and the program crashed much later in
 * the victim. Built with -fstack-clash-protection (weft's CMake adds it,
 * and gives it to whatever links weft), the frame's allocation touches
 * every page on its way down, so it faults in the guard first and is
 * reported as an overflow. The neighbour is a parked task whose stack
 * holds a pattern: the report must come before any write reached it.
 */
#define BIG_FRAME (400 * 1024)

static __attribute__((noinline)) int big_frame(int k)
{
	volatile char buf[BIG_FRAME];

	buf[k] = (char)k;
	buf[BIG_FRAME - 1 - k] = (char)k;
	return buf[k] + buf[BIG_FRAME - 1 - k];
}

static void *big_frame_task(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)big_frame(1);
}

static void *neighbour_task(void *arg)
{
	/* Holds its stack, parked, with a pattern on it. */
	volatile char pattern[8192];

	memset((char *)pattern, 0x5a, sizeof(pattern));
	weft_event_wait(arg);
	for (size_t i = 0; i < sizeof(pattern); i++)
		if (pattern[i] != 0x5a)
			return (void *)1;
	return NULL;
}

static void *big_frame_main(void *arg)
{
	struct weft_spawn_opts o = { .name = "big-frame" };
	weft_task *n[8], *t;
	weft_event *e;

	(void)arg;
	if (weft_event_create(&e) < 0)
		return NULL;
	/* Neighbours first: the stacks below and above the big frame's. */
	for (int i = 0; i < 8; i++)
		n[i] = weft_spawn(neighbour_task, e);
	weft_yield();
	if (weft_spawn_opts(&t, big_frame_task, NULL, &o) == 0)
		weft_await(t, NULL);
	/* Not reached when the overflow is reported. */
	weft_event_set(e);
	for (int i = 0; i < 8; i++) {
		void *r = NULL;
		weft_await(n[i], &r);
		if (r)
			fprintf(stderr, "a neighbour's stack was overwritten\n");
	}
	return NULL;
}

/*
 * The overflow scenarios run in a child process: this same executable,
 * started afresh with WT_STACK_CHILD=<scenario> in its environment, runs
 * the scenario from a constructor (before Criterion's main) and exits 0 if
 * weft_run() returned 0, 3 otherwise. A fresh exec, not just a fork: the
 * Criterion worker has threads of its own, and a forked child of a
 * threaded process must not start threads (ThreadSanitizer refuses to).
 */
extern char **environ;

static void *exhaust_main(void *arg);

#define EXH_STACK (64 * 1024)

static void *noop_main(void *arg)
{
	return arg;
}

/* A fault that is no overflow: a task reads a page mapped PROT_NONE
 * (not NULL: UBSan would stop the read before it faults). */
static void *fault_task(void *arg)
{
	return (void *)(uintptr_t)*(volatile int *)arg;
}

static void *fault_main(void *arg)
{
	weft_task *t = weft_spawn(fault_task, arg);

	weft_await(t, NULL);
	return NULL;
}

/* A crash reporter installed after weft's handler: says so, then lets the
 * fault kill the process, as reporters do. */
static void reporter(int sig, siginfo_t *si, void *uctx)
{
	static const char msg[] = "reporter: SIGSEGV\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)r;
	(void)si;
	(void)uctx;
	signal(sig, SIG_DFL);
}

/* A first runtime installs weft's SIGSEGV handler; the reporter is
 * installed over it, as a crash reporter set up later would be. */
static void install_reporter_after_weft(const struct weft_config *cfg)
{
	struct sigaction sa;

	if (weft_run(noop_main, NULL, cfg, NULL) != 0)
		_exit(3);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = reporter;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
}

static void __attribute__((constructor)) stack_child_entry(void)
{
	const char *sc = getenv("WT_STACK_CHILD");
	struct weft_config cfg;
	void *page = NULL;
	weft_fn fn;

	if (!sc)
		return;
	memset(&cfg, 0, sizeof(cfg));
	if (strcmp(sc, "named") == 0) {
		cfg.workers = 2;
		fn = overflow_named_main;
	} else if (strcmp(sc, "default") == 0) {
		cfg.workers = 1;
		cfg.stack_size = 128 * 1024;
		fn = overflow_default_main;
	} else if (strcmp(sc, "default0") == 0) {
		/* Every field zero: the 256 KiB default stack. */
		cfg.workers = 1;
		fn = overflow_default_main;
	} else if (strcmp(sc, "reporter") == 0) {
		/* weft's handler, then the reporter over it: the next
		 * runtime must report the overflow all the same. */
		cfg.workers = 1;
		install_reporter_after_weft(&cfg);
		cfg.stack_size = 128 * 1024;
		fn = overflow_default_main;
	} else if (strcmp(sc, "reporter_fault") == 0) {
		cfg.workers = 1;
		page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
		if (page == MAP_FAILED)
			_exit(4);
		install_reporter_after_weft(&cfg);
		fn = fault_main;
	} else if (strcmp(sc, "bigframe") == 0) {
		cfg.workers = 1;
		fn = big_frame_main;
	} else if (strcmp(sc, "exhaust") == 0) {
		void *r = (void *)3;
		cfg.workers = 1;
		cfg.stack_size = EXH_STACK;
		if (weft_run(exhaust_main, NULL, &cfg, &r) != 0)
			_exit(3);
		_exit((int)(intptr_t)r);
	} else {
		_exit(4);
	}
	_exit(weft_run(fn, page, &cfg, NULL) == 0 ? 0 : 3);
}

/* Runs a scenario in a child whose stderr comes back through a pipe;
 * `extra` (NULL: none) is one more NAME=value for its environment. */
static void run_in_child_env(const char *scenario, const char *extra,
			     struct child_result *res)
{
	char var[64], *argv[] = { "test_stack-child", NULL }, **envp;
	size_t n = 0, k = 0, len = 0;
	int fds[2];
	pid_t pid;

	memset(res, 0, sizeof(*res));
	snprintf(var, sizeof(var), "WT_STACK_CHILD=%s", scenario);
	while (environ[n])
		n++;
	/* Built before fork(): the child only dups and execs. */
	envp = calloc(n + 3, sizeof(*envp));
	cr_assert_not_null(envp);
	/* Ours first: getenv() takes the first of a name. */
	envp[k++] = var;
	if (extra)
		envp[k++] = (char *)extra;
	memcpy(envp + k, environ, n * sizeof(*envp));
	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		execve("/proc/self/exe", argv, envp);
		_exit(5);
	}
	free(envp);
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], res->err + len,
				 sizeof(res->err) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(res->err) - 1)
			break;
	}
	res->err[len] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &res->status, 0), pid);
}

static void run_in_child(const char *scenario, struct child_result *res)
{
	run_in_child_env(scenario, NULL, res);
}

static void assert_died_of_overflow(const struct child_result *res,
				    const char *name, const char *size)
{
	char want[128];

	cr_assert(WIFSIGNALED(res->status),
		  "child was not killed by a signal (status 0x%x); stderr:\n%s",
		  res->status, res->err);
	cr_assert_eq(WTERMSIG(res->status), SIGSEGV,
		     "child died of signal %d, want SIGSEGV; stderr:\n%s",
		     WTERMSIG(res->status), res->err);
	snprintf(want, sizeof(want), "stack overflow in task '%s'", name);
	cr_assert(strstr(res->err, want) != NULL,
		  "stderr lacks \"%s\":\n%s", want, res->err);
	cr_assert(strstr(res->err, size) != NULL,
		  "stderr lacks the stack size %s:\n%s", size, res->err);
}

Test(stack, overflow_in_a_small_stack_is_reported_with_name_and_size,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("named", &res);
	assert_died_of_overflow(&res, "deep-recursion", "65536");
}

Test(stack, overflow_of_the_runtime_default_stack_is_reported,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("default", &res);
	assert_died_of_overflow(&res, "task", "131072");
}

/* A SIGSEGV handler installed after weft's (a crash reporter) used to
 * silence every later overflow report: weft's handler was installed once.
 * A runtime's start now puts it back in front (issue 17); the reporter
 * still gets the faults that are not overflows (stack/a_fault_that_is_
 * not_an_overflow_goes_to_the_handler_installed_after_weft). */
Test(stack, overflow_is_reported_after_a_crash_reporter_took_sigsegv,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("reporter", &res);
	assert_died_of_overflow(&res, "task", "131072");
}

Test(stack, a_fault_that_is_not_an_overflow_goes_to_the_handler_installed_after_weft,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("reporter_fault", &res);
	cr_assert(strstr(res.err, "reporter: SIGSEGV") != NULL,
		  "the reporter installed after weft did not see the "
		  "fault; stderr:\n%s", res.err);
	cr_assert(strstr(res.err, "stack overflow") == NULL,
		  "a fault on a PROT_NONE page was reported as an "
		  "overflow:\n%s",
		  res.err);
}

/* weft.h: stack_size "0: 256 KiB". The overflow report names the size of
 * the stack that overflowed. */
Test(stack, overflow_of_the_256_kib_default_stack_is_reported,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("default0", &res);
	assert_died_of_overflow(&res, "task", "262144");
}

/* The same with the guards older kernels get: mprotect(PROT_NONE) instead
 * of MADV_GUARD_INSTALL (Linux 6.13), forced on this kernel. */
Test(stack, overflow_into_an_mprotect_guard_is_reported,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child_env("named", "WEFT_DEBUG_STACK_GUARD=mprotect", &res);
	assert_died_of_overflow(&res, "deep-recursion", "65536");
	run_in_child_env("default", "WEFT_DEBUG_STACK_GUARD=mprotect", &res);
	assert_died_of_overflow(&res, "task", "131072");
}

Test(stack, a_frame_larger_than_the_guard_is_reported_as_an_overflow,
     .timeout = WT_TIMEOUT(20))
{
	struct child_result res;

	run_in_child("bigframe", &res);
	assert_died_of_overflow(&res, "big-frame", "262144");
	run_in_child_env("bigframe", "WEFT_DEBUG_STACK_GUARD=mprotect", &res);
	assert_died_of_overflow(&res, "big-frame", "262144");
}

/* ---- guards when mappings run out (issue 9, bug 3) ---------------------- */

/*
 * An mprotect() guard splits its stack's mapping: two VMAs a stack. Near
 * vm.max_map_count the mprotect() fails, and slabs used to hand such
 * stacks out all the same, unguarded: about 33,000 tasks in, an overflow
 * ran silently into the next stack. The child (mprotect guards forced)
 * fills its address space with mappings up to the limit but for a few,
 * then starts tasks that each look below their stack. Every task must run
 * on a guarded stack or fail to start with -ENOMEM; once the filler is
 * unmapped, tasks start again, all guarded.
 */
#define EXH_OWN_STACK (96 * 1024) /* a custom size: a mapping of its own */
#define EXH_N 96		  /* default-size tasks per round */
#define EXH_OWN_N 8		  /* custom-size tasks per round */
#define EXH_SPARE 8		  /* splits undone: 16 VMAs left free */

struct exh_task {
	size_t stack_size;
	atomic_int *open; /* holds the task (and its stack) till set; or NULL */
	int ran;
	int guarded;
};

static int exh_pipe[2];

/* True if reading the byte at p faults. The kernel's copy from it fails
 * with EFAULT, no signal involved. A raw syscall: sanitizers intercept
 * write() and check the buffer themselves. */
static int faults(const void *p)
{
	long r = syscall(SYS_write, exh_pipe[1], p, 1);
	char c;

	if (r == 1) {
		r = read(exh_pipe[0], &c, 1);
		return 0;
	}
	return r < 0 && errno == EFAULT;
}

static void *exh_fn(void *arg)
{
	struct exh_task *e = arg;
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	/* The stack's top is page aligned and this frame lies within a page
	 * or two of it, so `lo` is the stack's lowest byte or a page or two
	 * below, inside the 64 KiB guard either way. */
	uintptr_t top = ((uintptr_t)__builtin_frame_address(0) + ps - 1) &
			~(ps - 1);
	char *lo = (char *)(top - e->stack_size);

	e->ran = 1;
	e->guarded = faults(lo - 1) && faults(lo - 32 * 1024);
	while (e->open && !atomic_load(e->open))
		weft_yield();
	return NULL;
}

struct exh_count {
	int guarded, unguarded, enomem, other;
};

/* Spawns a round of tasks, default and custom sizes. */
static void exh_spawn(struct exh_task *e, weft_task **t, atomic_int *open)
{
	struct weft_spawn_opts o;

	memset(&o, 0, sizeof(o));
	for (int i = 0; i < EXH_N + EXH_OWN_N; i++) {
		o.stack_size = i < EXH_N ? 0 : EXH_OWN_STACK;
		e[i].stack_size = i < EXH_N ? EXH_STACK : EXH_OWN_STACK;
		e[i].open = open;
		e[i].ran = e[i].guarded = 0;
		WT_CHECK_EQ(weft_spawn_opts(&t[i], exh_fn, &e[i], &o), 0);
	}
}

static struct exh_count exh_await(struct exh_task *e, weft_task **t)
{
	struct exh_count c = { 0, 0, 0, 0 };

	for (int i = 0; i < EXH_N + EXH_OWN_N; i++) {
		int rc = weft_await(t[i], NULL);

		if (rc == 0 && e[i].ran)
			*(e[i].guarded ? &c.guarded : &c.unguarded) += 1;
		else if (rc == -ENOMEM && !e[i].ran)
			c.enomem++;
		else
			c.other++;
		weft_task_release(t[i]);
	}
	return c;
}

/* Splits a filler mapping until the kernel refuses another VMA, then
 * undoes EXH_SPARE splits. Returns the filler's length, 0 to skip. */
static size_t exh_fill(char **mem)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len, i;
	long max = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &max) != 1)
		max = 0;
	fclose(f);
	if (max <= 0 || max > (1L << 20))
		return 0;
	len = 2 * ((size_t)max + 64) * ps;
	*mem = mmap(NULL, len, PROT_READ,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (*mem == MAP_FAILED)
		return 0;
	/* Every other page PROT_NONE: each call makes two more VMAs. */
	for (i = 0; 2 * i + 1 < len / ps; i++)
		if (mprotect(*mem + (2 * i + 1) * ps, ps, PROT_NONE) < 0)
			break;
	if (2 * i + 1 >= len / ps || errno != ENOMEM || i < EXH_SPARE) {
		munmap(*mem, len);
		return 0;
	}
	/* Undone, a split merges three VMAs back into one. */
	for (size_t k = 1; k <= EXH_SPARE; k++)
		mprotect(*mem + (2 * (i - k) + 1) * ps, ps, PROT_READ);
	return len;
}

/* The child's main; returns its exit status: 0 passed, 77 skip, 6
 * failed (counts on stderr). */
static void *exhaust_main(void *arg)
{
	static struct exh_task e[EXH_N + EXH_OWN_N];
	static weft_task *t[EXH_N + EXH_OWN_N];
	struct exh_count c1, c2;
	atomic_int open = 0;
	char *filler = NULL;
	size_t len;

	(void)arg;
	if (pipe(exh_pipe) < 0)
		return (void *)3;
	/* Spawned before the fill, so that their control blocks are
	 * allocated now; stacks are taken when they first run, which on
	 * this one worker is when main first yields, after the fill. */
	exh_spawn(e, t, &open);
	len = exh_fill(&filler);
	if (!len) {
		atomic_store(&open, 1);
		exh_await(e, t);
		return (void *)77;
	}
	/* Each task runs up to its loop (holding its stack) or fails. */
	for (int i = 0; i < EXH_N + EXH_OWN_N; i++)
		for (long y = 0; !e[i].ran && !weft_task_done(t[i]); y++)
			weft_yield();
	atomic_store(&open, 1);
	munmap(filler, len);
	c1 = exh_await(e, t);
	/* Mappings to spare again: every task starts, on a guarded stack. */
	exh_spawn(e, t, NULL);
	c2 = exh_await(e, t);
	fprintf(stderr,
		"at the limit: %d guarded, %d UNGUARDED, %d -ENOMEM, %d other\n"
		"after:        %d guarded, %d UNGUARDED, %d -ENOMEM, %d other\n",
		c1.guarded, c1.unguarded, c1.enomem, c1.other, c2.guarded,
		c2.unguarded, c2.enomem, c2.other);
	close(exh_pipe[0]);
	close(exh_pipe[1]);
	if (c1.unguarded || c1.other || !c1.enomem || !c1.guarded ||
	    c2.guarded != EXH_N + EXH_OWN_N)
		return (void *)6;
	return (void *)0;
}

Test(stack, guard_that_cannot_be_installed_fails_the_start_not_the_guard,
     .timeout = WT_TIMEOUT(60))
{
	struct child_result res;

#if defined(__SANITIZE_THREAD__)
	/* TSan maps a trace for each fiber as it starts, and dies when the
	 * kernel refuses ("can not mmap thread trace"). */
	cr_skip_test("ThreadSanitizer needs mappings of its own for tasks");
#endif
	run_in_child_env("exhaust", "WEFT_DEBUG_STACK_GUARD=mprotect", &res);
	if (WIFEXITED(res.status) && WEXITSTATUS(res.status) == 77)
		cr_skip_test("vm.max_map_count unreadable, too large, or "
			     "mappings could not be exhausted");
	cr_assert(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0,
		  "child status 0x%x; stderr:\n%s", res.status, res.err);
	cr_assert(strstr(res.err, "cannot install a task stack's guard"),
		  "no word of the failed guard on stderr:\n%s", res.err);
}

/* ---- deep but legal recursion ------------------------------------------- */

struct deep {
	size_t want;	/* bytes of stack to use */
	long depth;
	size_t used;
};

static void *deep_task(void *arg)
{
	struct deep *d = arg;
	uintptr_t top = (uintptr_t)__builtin_frame_address(0);
	uintptr_t deepest = UINTPTR_MAX;

	d->depth = recurse(top, d->want, 0, &deepest);
	d->used = top - deepest;
	return (void *)1;
}

static void *deep_main(void *arg)
{
	struct deep *d = arg;
	struct weft_spawn_opts o = { .name = "deep-but-legal",
				     .stack_size = 1024 * 1024 };
	weft_task *t;
	void *r = NULL;

	WT_CHECK_EQ(weft_spawn_opts(&t, deep_task, &d[0], &o), 0);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 1);
	weft_task_release(t);
	/* The same in a task with the runtime's default (set to 1 MiB by
	 * the test's config). */
	t = weft_spawn(deep_task, &d[1]);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	weft_task_release(t);
	return NULL;
}

Test(stack, deep_recursion_within_a_one_mib_stack_works,
     .timeout = WT_TIMEOUT(20))
{
	struct weft_config cfg = { .workers = 2, .stack_size = 1024 * 1024 };
	struct deep d[2];

	memset(d, 0, sizeof(d));
	/* Far more than the 256 KiB default, comfortably under 1 MiB. */
	d[0].want = d[1].want = 768 * 1024;
	wt_run_cfg(deep_main, d, &cfg);
	for (int i = 0; i < 2; i++) {
		cr_assert_geq(d[i].used, d[i].want,
			      "task %d used %zu bytes of stack", i, d[i].used);
		cr_assert_gt(d[i].depth, 100);
	}
}

/* ---- many parked stacks ------------------------------------------------- */

#if defined(__SANITIZE_THREAD__)
/* TSan counts every task stack as a fiber, and fibers as threads, which it
 * limits to 8128 ("Thread limit exceeded. Dying."). */
#define PARKED_N 5000
#else
#define PARKED_N 10000
#endif

struct parked {
	struct wt_gate gate;
	weft_task *gate_task;
	atomic_long entered;
	atomic_long released;
};

static void *parked_fn(void *arg)
{
	struct parked *p = arg;
	void *v = NULL;

	atomic_fetch_add(&p->entered, 1);
	WT_CHECK_EQ(weft_await(p->gate_task, &v), 0);
	atomic_fetch_add(&p->released, 1);
	return (void *)((uintptr_t)v + 1);
}

static void *parked_main(void *arg)
{
	struct parked *p = arg;
	weft_task **ts = calloc(PARKED_N, sizeof(*ts));
	void **rs = calloc(PARKED_N, sizeof(*rs));
	uint64_t sum = 0;

	if (!WT_CHECK(ts && rs))
		return NULL;
	p->gate.value = (void *)(uintptr_t)41;
	p->gate_task = weft_spawn(wt_gate_fn, &p->gate);
	for (int i = 0; i < PARKED_N; i++)
		ts[i] = weft_spawn(parked_fn, p);
	WT_CHECK(wt_yield_until_count(&p->entered, PARKED_N, 100000000));
	for (int i = 0; i < 100; i++)
		weft_yield();
	/* All of them started and none got past the gate: all parked. */
	WT_CHECK_EQ(weft_task_done(p->gate_task), 0);
	WT_CHECK_EQ(atomic_load(&p->released), 0);
	atomic_store(&p->gate.open, 1);
	WT_CHECK_EQ(weft_gather(ts, PARKED_N, rs), 0);
	for (int i = 0; i < PARKED_N; i++) {
		sum += (uintptr_t)rs[i];
		weft_task_release(ts[i]);
	}
	weft_task_release(p->gate_task);
	free(ts);
	free(rs);
	return (void *)(uintptr_t)sum;
}

Test(stack, ten_thousand_parked_tasks_all_complete,
     .timeout = WT_TIMEOUT(60))
{
	struct parked p;
	void *r;

	memset(&p, 0, sizeof(p));
	r = wt_run(parked_main, &p, 2);
	cr_assert_eq((uintptr_t)r, (uintptr_t)PARKED_N * 42);
	cr_assert_eq(atomic_load(&p.released), PARKED_N);
}

/* ---- shutdown with parked tasks ----------------------------------------- */

#define SHUT_N 1000

struct shutdown {
	size_t stack_size; /* of the parked tasks; 0: default */
	weft_task *forever;
	atomic_long entered;
	uintptr_t frame[SHUT_N]; /* an address on each parked task's stack */
};

struct shut_arg {
	struct shutdown *s;
	int i;
};

static void *shut_waiter(void *arg)
{
	struct shut_arg *a = arg;
	struct shutdown *s = a->s;

	s->frame[a->i] = (uintptr_t)__builtin_frame_address(0);
	atomic_fetch_add(&s->entered, 1);
	weft_await(s->forever, NULL);
	WT_CHECK(!"a task awaiting a task that never ends woke up");
	return NULL;
}

static void *shut_main(void *arg)
{
	struct shutdown *s = arg;
	struct weft_spawn_opts o = { .stack_size = s->stack_size };
	static struct shut_arg args[SHUT_N];

	s->forever = weft_spawn(wt_forever_fn, NULL);
	for (int i = 0; i < SHUT_N; i++) {
		weft_task *t;
		args[i].s = s;
		args[i].i = i;
		WT_CHECK_EQ(weft_spawn_opts(&t, shut_waiter, &args[i], &o), 0);
		weft_detach(t);
	}
	WT_CHECK(wt_yield_until_count(&s->entered, SHUT_N, 100000000));
	for (int i = 0; i < 20; i++)
		weft_yield();
	WT_CHECK_EQ(weft_task_done(s->forever), 0);
	/* Return with 1,000 tasks parked on a task that never ends (and we
	 * still hold its handle). */
	return (void *)42;
}

static int is_mapped(uintptr_t addr)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char vec;

	return mincore((void *)(addr & ~(uintptr_t)(ps - 1)), ps, &vec) == 0;
}

static void shutdown_check(size_t stack_size)
{
	struct shutdown *s = calloc(1, sizeof(*s));
	long still = 0;
	void *r;

	struct weft_config c = { .workers = 2 };

	cr_assert_not_null(s);
	s->stack_size = stack_size;
	/* No grace: the parked tasks are dropped, not cancelled. */
	c.shutdown_grace_ms = -1;
	r = wt_run_cfg(shut_main, s, &c);
	cr_assert_eq(r, (void *)42);
	cr_assert_eq(atomic_load(&s->entered), SHUT_N);
	/* weft_run(): "all threads, stacks, rings and descriptors are
	 * released before weft_run() returns". */
	for (int i = 0; i < SHUT_N; i++)
		still += s->frame[i] && is_mapped(s->frame[i]);
	cr_assert_eq(still, 0,
		     "%ld of %d stacks of tasks dropped at shutdown are still "
		     "mapped after weft_run() returned (stack_size %zu)",
		     still, SHUT_N, stack_size);
	free(s);
}

Test(stack, shutdown_with_parked_tasks_returns_and_unmaps_their_stacks,
     .timeout = WT_TIMEOUT(30))
{
	shutdown_check(0);
}

Test(stack, shutdown_unmaps_custom_size_stacks_of_parked_tasks,
     .timeout = WT_TIMEOUT(30))
{
	shutdown_check(128 * 1024);
}

/* Stacks of tasks that ended are given back too: custom sizes when the
 * task ends, arena stacks with the arena. */
static void *frame_task(void *arg)
{
	*(uintptr_t *)arg = (uintptr_t)__builtin_frame_address(0);
	return NULL;
}

#define ENDED_N 64

static void *ended_main(void *arg)
{
	uintptr_t *frames = arg;
	struct weft_spawn_opts o;

	memset(&o, 0, sizeof(o));
	for (int i = 0; i < ENDED_N; i++) {
		weft_task *t;
		o.stack_size = (i & 1) ? 192 * 1024 : 0;
		WT_CHECK_EQ(weft_spawn_opts(&t, frame_task, &frames[i], &o), 0);
		WT_CHECK_EQ(weft_await(t, NULL), 0);
		weft_task_release(t);
		/* One worker: the task has left its stack by now. */
		if (i & 1)
			WT_CHECK(!is_mapped(frames[i]));
	}
	return NULL;
}

Test(stack, stacks_of_ended_tasks_are_unmapped, .timeout = WT_TIMEOUT(20))
{
	uintptr_t frames[ENDED_N];

	memset(frames, 0, sizeof(frames));
	wt_run(ended_main, frames, 1);
	for (int i = 0; i < ENDED_N; i++) {
		cr_assert_neq(frames[i], 0);
		cr_assert(!is_mapped(frames[i]),
			  "stack of task %d still mapped after weft_run()", i);
	}
}

/* Regression test: a custom-size stack is a mapping of its own, unmapped
 * when its task ends; the next one of that size usually lands at the same
 * address. Under ASan, the frames the ended task never returned from leave
 * poisoned shadow there, so starting the next task on it (its initial frame
 * is written with memset) is reported as stack-use-after-scope. Arena
 * stacks are unpoisoned when taken; own stacks must be too. */
static void *small_frame(void *arg)
{
	volatile char buf[512];

	buf[0] = (char)(uintptr_t)arg;
	return (void *)(uintptr_t)(buf[0] + 1);
}

static void *reuse_main(void *arg)
{
	struct weft_spawn_opts o = { .stack_size = 96 * 1024 };

	(void)arg;
	for (uintptr_t i = 0; i < 100; i++) {
		weft_task *t;
		void *r = NULL;

		WT_CHECK_EQ(weft_spawn_opts(&t, small_frame, (void *)(i % 64),
					    &o),
			    0);
		WT_CHECK_EQ(weft_await(t, &r), 0);
		WT_CHECK_PTR_EQ(r, i % 64 + 1);
		weft_task_release(t);
	}
	return NULL;
}

Test(stack, remapped_custom_stack_carries_no_stale_asan_poison,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(reuse_main, NULL, 1);
	wt_run(reuse_main, NULL, 2);
}

/* ---- the per-worker stack cache ------------------------------------------
 *
 * weft_config.stack_cache: "free stacks each worker keeps ready (hot)
 * before handing them to the shared pool, which gives their pages back to
 * the kernel; 0: 64". A burst of tasks holds stacks at once, touches them
 * and ends; once the pool's decay has passed (about 1 s, stack.c) the
 * stacks of the burst still resident (mincore() of each task's first
 * frame) are those the worker keeps hot, plus as many again that the pool
 * keeps warm (one cache's worth per worker) for the next burst; the pages
 * of all the others have gone back to the kernel. On one worker, with
 * cache C, that is between C and 2 C of them: the hot cache holds C / 2 + 1
 * to C (one that overflows hands its older half on), the pool C (one of
 * them may be the gate task's stack, which is not counted).
 */
struct burst {
	struct wt_gate gate;
	weft_task *gate_task;
	int n;
	uintptr_t *frame; /* an address in each task's first frame */
};

struct burst_arg {
	struct burst *b;
	int i;
};

static void *burst_task(void *arg)
{
	struct burst_arg *a = arg;

	a->b->frame[a->i] = (uintptr_t)__builtin_frame_address(0);
	WT_CHECK_EQ(weft_await(a->b->gate_task, NULL), 0);
	return NULL;
}

/* How many of the burst's stacks have their first frame's page
 * resident. */
static int burst_resident(const struct burst *b)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int n = 0;

	for (int i = 0; i < b->n; i++) {
		unsigned char vec = 0;

		if (mincore((void *)(b->frame[i] & ~(uintptr_t)(ps - 1)), ps,
			    &vec) == 0 &&
		    (vec & 1))
			n++;
	}
	return n;
}

struct cache_check {
	struct burst b;
	int busy;	     /* keep the worker busy while the pages go back */
	atomic_int stop;     /* ends the busy tasks */
	int cache;	     /* the cache in effect (64 for 0) */
	int resident_before; /* all of them, before the decay */
	int resident_after;
	uint64_t waited_ns;
};

/* Computes 100 us at a time and yields, until told to stop: with two of
 * them the worker never parks. */
static void *busy_task(void *arg)
{
	struct cache_check *c = arg;

	while (!atomic_load(&c->stop)) {
		wt_spin_us(100);
		weft_yield();
	}
	return NULL;
}

static void *cache_main(void *arg)
{
	struct cache_check *c = arg;
	struct burst *b = &c->b;
	struct burst_arg *as = calloc((size_t)b->n, sizeof(*as));
	weft_task **ts = calloc((size_t)b->n, sizeof(*ts));
	uint64_t t0;

	if (!WT_CHECK(as && ts))
		goto out;
	b->gate_task = weft_spawn(wt_gate_fn, &b->gate);
	for (int i = 0; i < b->n; i++) {
		as[i].b = b;
		as[i].i = i;
		ts[i] = weft_spawn(burst_task, &as[i]);
		WT_CHECK(ts[i] != NULL);
	}
	/* One worker: every task has run to its await once we get here
	 * after the gate's yields (it yields until opened). */
	for (int i = 0; i < 2 * b->n; i++)
		weft_yield();
	for (int i = 0; i < b->n; i++)
		WT_CHECK(b->frame[i] != 0);
	c->resident_before = burst_resident(b);
	atomic_store(&b->gate.open, 1);
	WT_CHECK_EQ(weft_gather(ts, (size_t)b->n, NULL), 0);
	for (int i = 0; i < b->n; i++)
		weft_task_release(ts[i]);
	WT_CHECK_EQ(weft_await(b->gate_task, NULL), 0);
	weft_task_release(b->gate_task);
	weft_task *busy[2] = { NULL, NULL };
	if (c->busy)
		for (int i = 0; i < 2; i++)
			busy[i] = weft_spawn(busy_task, c);
	/* Sleep past the decay until no more than two caches' worth are
	 * resident (or 10 s: then it failed). The worker trims when it
	 * parks, which it does while we sleep. */
	t0 = weft_now();
	do {
		weft_sleep(50 * MS);
		c->resident_after = burst_resident(b);
	} while (c->resident_after > 2 * c->cache &&
		 weft_now() - t0 < 10 * SEC * WT_SLOW);
	/* And a while longer: nothing more goes. */
	weft_sleep(1500 * MS);
	c->resident_after = burst_resident(b);
	c->waited_ns = weft_now() - t0;
	atomic_store(&c->stop, 1);
	for (int i = 0; i < 2; i++) {
		if (busy[i]) {
			WT_CHECK_EQ(weft_await(busy[i], NULL), 0);
			weft_task_release(busy[i]);
		}
	}
out:
	free(as);
	free(ts);
	return NULL;
}

static void cache_check_busy(unsigned cache_config, int cache, int n,
			     int busy)
{
	struct weft_config cfg = { .workers = 1, .stack_cache = cache_config };
	struct cache_check c;

	memset(&c, 0, sizeof(c));
	c.busy = busy;
	c.cache = cache;
	c.b.n = n;
	c.b.frame = calloc((size_t)n, sizeof(*c.b.frame));
	cr_assert_not_null(c.b.frame);
	wt_run_cfg(cache_main, &c, &cfg);
	cr_log_info("stack_cache %u: %d of %d stacks resident before, %d "
		    "after %.1f s",
		    cache_config, c.resident_before, n, c.resident_after,
		    (double)c.waited_ns / 1e9);
	cr_assert_eq(c.resident_before, n,
		     "only %d of %d stacks in use were resident",
		     c.resident_before, n);
	cr_assert_leq(c.resident_after, 2 * cache,
		      "stack_cache %u: %d of %d stacks of ended tasks still "
		      "resident after %.1f s; one worker keeps at most %d "
		      "hot and the pool as many warm, the rest go back to "
		      "the kernel",
		      cache_config, c.resident_after, n,
		      (double)c.waited_ns / 1e9, cache);
	cr_assert_geq(c.resident_after, cache,
		      "stack_cache %u: only %d stacks of ended tasks still "
		      "resident: the worker did not keep a cache of %d hot "
		      "(and the pool as many warm)",
		      cache_config, c.resident_after, cache);
	free(c.b.frame);
}

static void cache_check(unsigned cache_config, int cache, int n)
{
	cache_check_busy(cache_config, cache, n, 0);
}

/* Issue 17: pages were given back only by a worker that parked; a worker
 * kept busy (two tasks computing and yielding) kept a burst's stacks for
 * ever. */
Test(stack, a_busy_worker_gives_a_bursts_stack_pages_back_too,
     .timeout = WT_TIMEOUT(30))
{
	cache_check_busy(4, 4, 40, 1);
}

Test(stack, a_small_stack_cache_gives_the_rest_back_to_the_kernel,
     .timeout = WT_TIMEOUT(30))
{
	cache_check(4, 4, 40);
}

/* Issue 17: 0 means 64, so caching could not be turned off. */
Test(stack, stack_cache_none_keeps_no_free_stack_resident,
     .timeout = WT_TIMEOUT(30))
{
	cache_check(WEFT_STACK_CACHE_NONE, 0, 40);
}

Test(stack, the_default_stack_cache_keeps_64_stacks_per_worker,
     .timeout = WT_TIMEOUT(30))
{
	cache_check(0, 64, 200);
}

/* ---- stack pages are committed only when touched ---------------------------
 * weft.h: stack_size "Pages are committed only when touched". 1000 tasks
 * park on default (256 KiB) stacks, having used a few KiB at the top of
 * theirs. mincore(2) over the 128 KiB from 64 KiB to 192 KiB below each
 * one's frame (inside its stack, far below what it touched) must find
 * next to nothing resident. (Per stack, not the process's resident set:
 * ThreadSanitizer allocates megabytes of its own for every fiber.) */
#define LAZY_N 1000
#define LAZY_SPAN (128 * 1024)

struct lazy {
	weft_task *gate;
	atomic_int parked;
	uintptr_t frame[LAZY_N];
	long resident, checked;
};

static void *lazy_waiter(void *arg)
{
	struct lazy *s = arg;
	int i = atomic_load(&s->parked);

	s->frame[i] = (uintptr_t)__builtin_frame_address(0);
	atomic_store(&s->parked, i + 1);
	weft_await(s->gate, NULL);
	return NULL;
}

/* Resident pages of [frame - 192 KiB, frame - 64 KiB), page-aligned. */
static long lazy_resident(uintptr_t frame)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = (frame - 192 * 1024) & ~(uintptr_t)(ps - 1);
	unsigned char vec[LAZY_SPAN / 4096 + 1];
	size_t pages = LAZY_SPAN / ps;
	long n = 0;

	if (!WT_CHECK_EQ(mincore((void *)lo, pages * ps, vec), 0))
		return -1;
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

static void *lazy_main(void *arg)
{
	struct lazy *s = arg;
	struct wt_gate g = { .value = NULL };
	weft_task **t = calloc(LAZY_N, sizeof(*t));

	if (!WT_CHECK(t != NULL))
		return NULL;
	s->gate = weft_spawn(wt_gate_fn, &g);
	if (!WT_CHECK(s->gate != NULL))
		return NULL;
	for (int i = 0; i < LAZY_N; i++)
		WT_CHECK((t[i] = weft_spawn(lazy_waiter, s)) != NULL);
	/* One worker: the waiters run one after the other. */
	WT_CHECK(settle_count(&s->parked, LAZY_N));
	for (int i = 0; i < LAZY_N; i++) {
		long r = lazy_resident(s->frame[i]);

		if (r < 0)
			break;
		s->resident += r;
		s->checked++;
	}
	atomic_store(&g.open, 1);
	for (int i = 0; i < LAZY_N; i++)
		if (t[i]) {
			WT_CHECK_EQ(weft_await(t[i], NULL), 0);
			weft_task_release(t[i]);
		}
	WT_CHECK_EQ(weft_await(s->gate, NULL), 0);
	weft_task_release(s->gate);
	free(t);
	return NULL;
}

Test(stack, parked_tasks_commit_only_the_stack_pages_they_touched,
     .timeout = WT_TIMEOUT(30))
{
	struct lazy *s = calloc(1, sizeof(*s));
	long pages = LAZY_SPAN / sysconf(_SC_PAGESIZE), bound;

	cr_assert_not_null(s);
	wt_run(lazy_main, s, 1);
	cr_assert_eq(s->checked, LAZY_N, "only %ld stacks checked",
		     s->checked);
	/* A tenth: nothing touches those pages; allow for a kernel that
	 * faults around. */
	bound = LAZY_N * pages / 10;
	cr_assert_lt(s->resident, bound,
		     "%ld of the %ld untouched pages in %d parked tasks' "
		     "256 KiB stacks are resident (bound %ld): stack pages "
		     "were committed before use",
		     s->resident, LAZY_N * pages, LAZY_N, bound);
	free(s);
}
