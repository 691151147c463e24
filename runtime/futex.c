/*
 * Futex waits and wakes, for threads outside any runtime that wait on
 * runtime objects (futex.h).
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "futex.h"

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
