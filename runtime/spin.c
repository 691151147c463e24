/*
 * The slow paths of the spinlock and of spin-waits (spin.h).
 */
#include <sched.h>

#include "spin.h"

/* Out of line: the yield is the slow path of every spin-wait. */
void weft__spin_yield(void)
{
	sched_yield();
}

void weft__spin_lock_slow(weft__spin *l)
{
	unsigned n = 0;

	for (;;) {
		while (atomic_load_explicit(&l->held, memory_order_relaxed))
			weft__spin_backoff(&n);
		if (!atomic_exchange_explicit(&l->held, true,
					      memory_order_acquire))
			return;
	}
}
