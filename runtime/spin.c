/*
 * The slow paths of the spinlock and of spin-waits (spin.h, which argues
 * the lock's protocol).
 */
#include <sched.h>

#include "futex.h"
#include "spin.h"

/* Out of line: the yield is the slow path of every spin-wait. */
void weft__spin_yield(void)
{
	sched_yield();
}

/* True on a worker thread (a task may move to another worker between two
 * reads, where it is true as well). */
static __thread bool on_worker;

void weft__spin_set_worker(bool worker)
{
	on_worker = worker;
}

/*
 * A worker spins with back-off (pauses, then yields) until it has the
 * lock (spin.h says why it does not sleep). A thread outside the runtime
 * spins WEFT__SPIN_BEFORE_SLEEP pause steps (a holder running elsewhere is
 * a few instructions from its unlock), then sleeps on the futex until an
 * unlock wakes it. No sched_yield() phase for it: on a core with nothing
 * else to run that returns at once, and such a thread burnt its CPU there
 * (issue 13); the sleep gives the CPU to a preempted holder as a yield
 * would, and costs nothing while it lasts.
 */
void weft__spin_lock_slow(weft__spin *l)
{
	bool sleeps = !on_worker;
	unsigned n = 0;

	for (;;) {
		int free = 0;

		/* Acquire: pairs with the release exchange of the unlock. */
		if (!atomic_load_explicit(&l->word, memory_order_relaxed) &&
		    atomic_compare_exchange_weak_explicit(
			    &l->word, &free, 1, memory_order_acquire,
			    memory_order_relaxed))
			return;
		if (sleeps && n == WEFT__SPIN_BEFORE_SLEEP)
			break;
		weft__spin_backoff(&n);
	}
	/* An old 0: the lock is ours, held at 2. Acquire: as above. */
	while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
		weft__futex_wait(&l->word, 2, WEFT_NEVER);
}

/* The unlock read 2 (spin.h). l may be freed already: only its address is
 * used. */
void weft__spin_wake(weft__spin *l)
{
	weft__futex_wake(&l->word, 1);
}
