/*
 * The spinlock and spin-waits with back-off (spin.c).
 */
#ifndef WEFT_SPIN_H
#define WEFT_SPIN_H

#include "base.h"

/* ---- spinlock ----------------------------------------------------------
 * For critical sections of a few instructions (waiter lists, free lists).
 * acquire on lock pairs with release on unlock; C11 atomics so that
 * ThreadSanitizer sees every synchronisation (Concurrency Kit's inline-asm
 * atomics are invisible to it). */
typedef struct {
	atomic_bool held;
} weft__spin;

static inline void weft__spin_relax(void)
{
#if defined(__x86_64__)
	__asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/*
 * One step of a spin-wait, with back-off: 1, 2, 4 ... 64 pauses, then a
 * sched_yield() per step. A waiter whose holder (or granter) was preempted
 * (more workers than cores, a busy machine, a thread outside the runtime
 * spinning on an object's lock) gives the CPU up instead of burning its
 * time slice; the common case, a holder running elsewhere for a few
 * instructions, stays a short pause loop. *n starts at 0 for each wait.
 * (Concurrency Kit's ck_backoff_eb has the exponential part only, with a
 * compiler barrier instead of a pause: no yield for a preempted holder.)
 */
#define WEFT__BACKOFF_YIELD 7
void weft__spin_yield(void);
static inline void weft__spin_backoff(unsigned *n)
{
	if (*n < WEFT__BACKOFF_YIELD) {
		for (unsigned i = 1u << *n; i; i--)
			weft__spin_relax();
		++*n;
	} else {
		weft__spin_yield();
	}
}

/* Contended: waits with weft__spin_backoff() (misc.c). Out of line, so that
 * the uncontended lock stays one exchange in every caller (inlining the
 * back-off loop cost its callers their shrink-wrapped fast paths: five
 * register saves on every weft__idle_notify()). */
void weft__spin_lock_slow(weft__spin *l);

static inline void weft__spin_lock(weft__spin *l)
{
	if (weft__likely(!atomic_exchange_explicit(&l->held, true,
						   memory_order_acquire)))
		return;
	weft__spin_lock_slow(l);
}

/* True if the lock was taken. For a thread that must never wait on the
 * holder (a helper reaping another worker's ring, ring.c). */
static inline bool weft__spin_trylock(weft__spin *l)
{
	return !atomic_load_explicit(&l->held, memory_order_relaxed) &&
	       !atomic_exchange_explicit(&l->held, true, memory_order_acquire);
}

static inline void weft__spin_unlock(weft__spin *l)
{
	atomic_store_explicit(&l->held, false, memory_order_release);
}

#endif /* WEFT_SPIN_H */
