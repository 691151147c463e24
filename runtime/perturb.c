/*
 * Timing perturbation for the perturbation build (perturb.h).
 */
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "base.h"
#include "perturb.h"
#include "spin.h"

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
			weft__spin_relax();
		break;
	default:
		break;
	}
}
#endif
