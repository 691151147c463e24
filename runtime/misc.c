/*
 * Small pieces every part uses: the allocation hook, fatal errors, error
 * strings, version, and questions about the calling worker.
 */
#include <errno.h>
#include <sched.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * Allocation-failure injection, for tests of the -ENOMEM paths (every
 * allocation of the library goes through the three calls below). Armed by
 * weft__debug_fail_alloc(skip, n): the next `skip` allocations succeed,
 * the `n` after them fail, later ones succeed again. Any thread's
 * allocation counts, so with several threads allocating at once which one
 * fails is up to the schedule; a test that walks skip = 0, 1, 2 ... until
 * no failure was injected still fails every allocation of a call in turn.
 * weft__debug_fail_alloc(-1, 0) disarms; weft__debug_fail_alloc_hits() says
 * how many failures were injected since the last arming.
 * Disarmed, it costs one acquire load and a predicted branch. Relaxed
 * throughout: the counters order nothing but themselves (the countdown is
 * one RMW per allocation, so each allocation takes one distinct value).
 */
static atomic_bool fail_armed;
static atomic_long fail_left;     /* allocations to let pass, then fail */
static atomic_long fail_n;        /* stored before fail_armed is set */
static atomic_ulong fail_hits;    /* failures injected since arming */

void weft__debug_fail_alloc(long skip, long n)
{
	atomic_store_explicit(&fail_armed, false, memory_order_relaxed);
	if (skip < 0 || n <= 0)
		return; /* disarmed; the count of failures stays readable */
	atomic_store_explicit(&fail_hits, 0, memory_order_relaxed);
	atomic_store_explicit(&fail_n, n, memory_order_relaxed);
	atomic_store_explicit(&fail_left, skip, memory_order_relaxed);
	/* Release: a thread that sees armed (acquire below) sees fail_n. */
	atomic_store_explicit(&fail_armed, true, memory_order_release);
}

unsigned long weft__debug_fail_alloc_hits(void)
{
	return atomic_load_explicit(&fail_hits, memory_order_relaxed);
}

static bool alloc_fails(void)
{
	long v;

	if (weft__likely(!atomic_load_explicit(&fail_armed,
					       memory_order_acquire)))
		return false;
	v = atomic_fetch_sub_explicit(&fail_left, 1, memory_order_relaxed);
	if (v > 0)
		return false;
	if (v <= -atomic_load_explicit(&fail_n, memory_order_relaxed)) {
		atomic_store_explicit(&fail_armed, false, memory_order_relaxed);
		return false;
	}
	atomic_fetch_add_explicit(&fail_hits, 1, memory_order_relaxed);
	return true;
}

void *weft__malloc(size_t size)
{
	return alloc_fails() ? NULL : malloc(size);
}

void *weft__calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : calloc(n, size);
}

/* align: a power of two; size is rounded up to a multiple of it, as C11's
 * aligned_alloc() asks. Freed with weft__free(). */
void *weft__aligned_alloc(size_t align, size_t size)
{
	if (alloc_fails())
		return NULL;
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

void weft__free(void *p)
{
	free(p);
}

/* deadline: absolute CLOCK_MONOTONIC ns (FUTEX_WAIT_BITSET takes an
 * absolute time on that clock), WEFT_NEVER for none. Returns on a wake, a
 * changed word, a signal or the deadline: callers loop. */
void weft__futex_wait(atomic_int *word, int expected, uint64_t deadline)
{
	struct timespec ts, *tp = NULL;

	if (deadline != WEFT_NEVER) {
		ts.tv_sec = (time_t)(deadline / WEFT_NSEC_PER_SEC);
		ts.tv_nsec = (long)(deadline % WEFT_NSEC_PER_SEC);
		tp = &ts;
	}
	syscall(SYS_futex, (int *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
		expected, tp, NULL, FUTEX_BITSET_MATCH_ANY);
}

void weft__futex_wake(atomic_int *word, int n)
{
	syscall(SYS_futex, (int *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG,
		n < 0 ? INT_MAX : n, NULL, NULL, 0);
}

void weft__die(const char *file, int line, const char *msg)
{
	fprintf(stderr, "weft: %s:%d: %s\n", file, line, msg);
	fflush(stderr);
	abort();
}

const char *weft_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ECANCELED:
		return "cancelled";
	case -ESRCH:
		return "stale task handle (task ended and was released)";
	case -EDEADLK:
		return "a task cannot await itself";
	case -EPERM:
		return "not allowed here (not in task context, or io_uring "
		       "refused)";
	case -EBUSY:
		return "called from inside a runtime";
	case -EALREADY:
		return "task has already ended";
	case -ENOMEM:
		return "out of memory";
	case -EINVAL:
		return "invalid argument";
	case -EAGAIN:
		return "resource temporarily unavailable";
	case -ENOSYS:
		return "io_uring is not available in this kernel";
	default:
		if (err < 0 && err > -4096 && strerrordesc_np(-err))
			return strerrordesc_np(-err);
		return "unknown error";
	}
}

#define WEFT__STR_(x) #x
#define WEFT__STR(x) WEFT__STR_(x)

/* Both from the header's macros, which the build of the library uses. */
const char *weft_version(void)
{
	return WEFT__STR(WEFT_VERSION_MAJOR) "." WEFT__STR(
		WEFT_VERSION_MINOR) "." WEFT__STR(WEFT_VERSION_PATCH);
}

unsigned weft_version_number(void)
{
	return WEFT_VERSION_NUMBER;
}

int weft_worker_index(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? (int)w->index : -1;
}

weft_runtime *weft_runtime_self(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? w->rt : NULL;
}

unsigned weft_worker_count(void)
{
	struct weft__worker *w = weft__worker_self();

	return w ? w->rt->nworkers : 0;
}

/* Out of line: the yield is the slow path of every spin-wait. */
void weft__backoff_yield(void)
{
	sched_yield();
}

void weft__spin_lock_slow(weft__spin *l)
{
	unsigned n = 0;

	for (;;) {
		while (atomic_load_explicit(&l->held, memory_order_relaxed))
			weft__backoff(&n);
		if (!atomic_exchange_explicit(&l->held, true,
					      memory_order_acquire))
			return;
	}
}

#ifdef WEFT__PERTURB
/* perturb.h: one step. A thread's xorshift state is seeded on its first
 * step from WEFT_PERTURB_SEED (or the clock) and the thread's order of
 * arrival. About one step in 10 spins up to ~0.5 us, one in 256 yields
 * the CPU: enough to turn a window of a few instructions into one that a
 * stress run crosses thousands of times a second, little enough that the
 * suites still finish. No atomics of its own (they would perturb). */
static _Thread_local uint64_t perturb_x;
static unsigned perturb_threads; /* threads' order of arrival */

void weft__perturb_step(void)
{
	uint64_t x = perturb_x;

	if (weft__unlikely(x == 0)) {
		const char *s = getenv("WEFT_PERTURB_SEED");
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = s ? strtoull(s, NULL, 10) : (uint64_t)ts.tv_nsec;
		x = (x + 1) * 0x9e3779b97f4a7c15ull ^
		    (__atomic_fetch_add(&perturb_threads, 1,
					__ATOMIC_RELAXED) + 1) *
			    0xbf58476d1ce4e5b9ull;
		if (!x)
			x = 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	perturb_x = x;
	switch (x & 255) {
	case 0:
		sched_yield();
		break;
	case 1 ... 24:
		for (unsigned i = (unsigned)(x >> 8) & 255; i; i--)
			weft__cpu_relax();
		break;
	default:
		break;
	}
}
#endif
