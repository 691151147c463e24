/*
 * The spinlock and spin-waits with back-off (spin.c).
 */
#ifndef WEFT_SPIN_H
#define WEFT_SPIN_H

#include "base.h"

/* ---- spinlock ----------------------------------------------------------
 * For critical sections of a few instructions (waiter lists, free lists).
 * A thread outside the runtime that finds the lock held spins a short
 * bounded while, then sleeps on a futex. It used to back off to
 * sched_yield() for as long as the lock was held (issue 13: a pool thread
 * feeding a channel), and sched_yield() on a core with nothing else to run
 * returns at once: 23-42% of the process's CPU went there. A worker spins
 * on as before (pauses, then yields): its tasks wait either way, with a
 * worker per core a holder is seldom preempted, and a sleeping worker
 * would cost the holder a wake-up system call. acquire on lock pairs with
 * release on unlock; C11 atomics so that ThreadSanitizer sees every
 * synchronisation (Concurrency Kit's inline-asm atomics are invisible to
 * it).
 *
 * The word (Drepper, "Futexes Are Tricky", mutex 2):
 *   0  free;
 *   1  held;
 *   2  held, and a thread may sleep on it (futex_wait on 2).
 * Lock: CAS 0 -> 1 (not an exchange of 1, which would erase a sleeper's
 * 2). Failing that (weft__spin_lock_slow): spin; then exchange 2 in (an
 * old 0 means the lock is ours, held at 2, which costs at most one
 * spurious wake later) and futex_wait(word, 2); loop. Unlock: exchange 0
 * in; an old 2 means a thread may sleep: wake one. The thread a wake
 * picks takes the lock at 2 again (it cannot know whether others sleep),
 * so each unlock while sleepers remain wakes the next.
 *
 * No wake-up is lost, and no store-buffering pair needs arguing: the
 * sleeper's exchange of 2 and the unlock's exchange of 0 are RMWs on one
 * word, so one reads the other's value. The unlock first: the sleeper's
 * exchange reads 0 and it holds the lock. The sleeper first: the unlock
 * reads 2 and wakes, and futex_wait() sleeps only if the word still holds
 * 2 when the kernel, with the waiter queued, reads it, so the wake finds
 * it or it does not sleep. The unlock must be the RMW: a load that sees 1
 * and then a store of 0 can overwrite a 2 stored in between by a thread
 * that then sleeps with nobody left to wake it (tests/model/spin_park.pml
 * checks both, under TSO and weaker RMWs). The wake after the exchange
 * uses only the word's address (futex_wake): the object may be gone by
 * then, and a wake of a reused address is at worst spurious for whoever
 * waits there (futex.h), as with glibc's mutexes.
 *
 * The exchange costs every unlock something, sleepers or not: an
 * uncontended lock and unlock in a tight loop took 4.4 ns against 2.2 ns
 * with the release store it replaces (AMD EPYC). In the runtime's paths it
 * did not show beyond the noise of the shared 2-CPU machine measured (best
 * of 9 runs on one worker, store then exchange: ping_pong with one pair,
 * four lock rounds a round trip, 87.7 and 85.4 ns; 1,000 pairs 113.2 and
 * 107.1; chained_spawn 45.2 and 44.6; chan_feed_task 17.8 and 18.5), so
 * the lock has no cheaper mode for locks nobody sleeps on (issue 13). */
typedef struct {
	atomic_int word; /* 0 free, 1 held, 2 held and maybe slept on */
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
 * sched_yield() per step. A waiter whose other side (a granter between
 * its claim and its DONE store, say) was preempted (more workers than
 * cores, a busy machine) gives the CPU up instead of burning its time
 * slice; the common case, the other side running elsewhere for a few
 * instructions, stays a short pause loop. *n starts at 0 for each wait.
 * A thread outside the runtime waits in it only for windows of a few
 * instructions: on a held lock (spin.c) and for a grant (wq.c) it sleeps
 * after WEFT__SPIN_BEFORE_SLEEP steps.
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

/* The pause steps a thread outside the runtime spins on a held lock
 * before it sleeps (spin.c): 1 + 2 + 4 + 8 + 16 = 31 pauses, 0.8 us on the
 * AMD EPYC measured (25 ns a pause), about 1.5 us where a pause takes 140
 * cycles. Long enough for a holder running elsewhere to get to its unlock
 * (critical sections are a few instructions); past it the holder has
 * most likely lost its CPU. The same bound serves such a thread waiting
 * for a grant (wq.c), where it is a trade: a grant on its way saves both
 * sides a system call, but on a busy machine the spinner takes the CPU
 * its other side needs. bench/chan_feed on 2 CPUs, medians of 5 runs: a
 * pool thread feeding 2 receiving tasks through 16 slots took 1.34 us an
 * item with no spin, 1.39 us with 31 pauses, 2.14 us with 127; four pool
 * threads, 1.44, 1.18 and 0.81 us. */
#define WEFT__SPIN_BEFORE_SLEEP 5

/* Contended: spins with back-off, and on a thread outside the runtime
 * then sleeps on the futex (spin.c). Out of line, so that the uncontended
 * lock stays one CAS in every caller (inlining the back-off loop cost its
 * callers their shrink-wrapped fast paths: five register saves on every
 * weft__idle_notify()); the wake likewise. */
void weft__spin_lock_slow(weft__spin *l);
void weft__spin_wake(weft__spin *l);
/* Whether the calling thread is a worker, which never sleeps on a lock
 * (set by weft__worker_set_self; a thread-local of spin.c's). */
void weft__spin_set_worker(bool worker);

static inline void weft__spin_lock(weft__spin *l)
{
	int free = 0;

	/* Acquire: pairs with the release exchange of the unlock. */
	if (weft__likely(atomic_compare_exchange_strong_explicit(
		    &l->word, &free, 1, memory_order_acquire,
		    memory_order_relaxed)))
		return;
	weft__spin_lock_slow(l);
}

/* True if the lock was taken. For a thread that must never wait on the
 * holder (a helper reaping another worker's ring, ring.c). */
static inline bool weft__spin_trylock(weft__spin *l)
{
	int free = 0;

	return !atomic_load_explicit(&l->word, memory_order_relaxed) &&
	       atomic_compare_exchange_strong_explicit(&l->word, &free, 1,
						       memory_order_acquire,
						       memory_order_relaxed);
}

/* Release: pairs with the acquire of the next lock. An exchange: an old 2
 * asks for a wake (see above); l may be freed once it is done. */
static inline void weft__spin_unlock(weft__spin *l)
{
	if (weft__unlikely(atomic_exchange_explicit(&l->word, 0,
						    memory_order_release) ==
			   2))
		weft__spin_wake(l);
}

#endif /* WEFT_SPIN_H */
