/*
 * The spinlock's sleep and wake (runtime/spin.h, "spinlock"; spin.c
 * weft__spin_lock_slow and weft__spin_wake) under x86-TSO: a thread
 * outside the runtime that has spun its bounded while sleeps on the lock
 * word's futex (Drepper's mutex: 0 free, 1 held, 2 held and slept on),
 * and the unlock, an exchange of 0, wakes one sleeper when it reads 2.
 *
 * Cast
 *   T0  takes the lock twice, T1 and T2 once each (threads outside the
 *       runtime; a worker, which never sleeps, is one that always picks
 *       another try of the spin's CAS below), each releasing it after its
 *       critical section with weft__spin_unlock(). A lock is the fast CAS
 *       0 -> 1, then the spin's CAS, which may be tried again or given up
 *       at any point; then the sleep loop: exchange 2 into the word, and
 *       unless that read 0 (the lock is ours), futex_wait(word, 2).
 * The futex is the kernel's: futex_wait() queues the waiter and then
 * reads the word from memory (after a full barrier, futex_wait_setup),
 * sleeping only if it holds the value expected; futex_wake() (after a
 * full barrier, futex_hb_waiters_pending) wakes one waiter.
 *
 * Properties: mutual exclusion (an assertion in the critical section),
 * and every thread ends: a thread asleep for good with nobody left to wake
 * it blocks at a guard with no end label, which SPIN reports as an invalid
 * end state (the lost wake-up).
 *
 * Variants
 *   (default)  as in spin.c; must pass, also with -DWEAK_RMW.
 *   -DINJ_PLAIN_UNLOCK  the unlock a load and a release store (what the
 *              lock had before it could be slept on), waking if the load
 *              saw 2: a 2 stored between the two is overwritten and its
 *              thread sleeps for good; must FAIL.
 */
#define NT 3		/* threads T0, T1, T2 */
#define NA 1		/* locations: the lock word */
#define B 2
#include "tso.pml"

#define WORD 0

bit sleeping[NT];	/* queued on the word's futex, not woken yet */
byte incs = 0;		/* threads in the critical section */

/* futex_wait(word, 2): the kernel reads memory (after its full barrier);
 * queued only if the word holds 2. */
inline futex_wait_enter(t)
{
	d_step {
		BUF_EMPTY(t) ->
		if
		:: mem[WORD] == 2 -> sleeping[t] = 1;
			printf("t%d: futex_wait: sleeps\n", t)
		:: else -> printf("t%d: futex_wait: word is %d, returns\n",
				  t, mem[WORD])
		fi
	}
}

/* futex_wake(word, 1): wakes one of the queued threads, if any. */
inline futex_wake(t)
{
	atomic {
		BUF_EMPTY(t) ->
		if
		:: sleeping[0] -> sleeping[0] = 0; printf("t%d: wakes t0\n", t)
		:: sleeping[1] -> sleeping[1] = 0; printf("t%d: wakes t1\n", t)
		:: sleeping[2] -> sleeping[2] = 0; printf("t%d: wakes t2\n", t)
		:: else -> printf("t%d: futex_wake: nobody sleeps\n", t)
		fi
	}
}

inline critical_section(t)
{
	atomic { incs++; assert(incs == 1) };
	atomic { incs-- }
}

/* weft__spin_unlock (spin.h), weft__spin_wake (spin.c). */
inline unlock(t, old)
{
#ifdef INJ_PLAIN_UNLOCK
	LOAD(t, WORD, old);
	STORE(t, WORD, 0);
#else
	XCHG(t, WORD, 0, old);
#endif
	if
	:: old == 2 -> futex_wake(t)
	:: else
	fi;
	old = 0
}

/* weft__spin_lock, then weft__spin_lock_slow if the CAS failed. */
inline lock(t, old, ok)
{
	old = 0;
	CAS(t, WORD, old, 1, ok);
	do
	:: ok -> break
	:: !ok ->
		/* the spin: another CAS, or the spin is over */
		if
		:: old = 0; CAS(t, WORD, old, 1, ok)
		:: true ->
			do
			::
				XCHG(t, WORD, 2, old);
				if
				:: old == 0 -> break
				:: else
				fi;
				futex_wait_enter(t);
				sleeping[t] == 0
			od;
			ok = true
		fi
	od;
	old = 0; ok = false
}

active proctype t0()
{
	byte old;
	bool ok;

	lock(0, old, ok);
	critical_section(0);
	unlock(0, old);
	lock(0, old, ok);
	critical_section(0);
	unlock(0, old)
}

active [2] proctype foreign()
{
	byte old;
	bool ok;
	byte t = _pid;	/* 1, 2 */

	lock(t, old, ok);
	critical_section(t);
	unlock(t, old)
}

init
{
	atomic {
		printf("legend: t0 locks twice, t1 and t2 once; [0] = the lock word (0 free, 1 held, 2 held and slept on)\n");
		run flusher(0);
		run flusher(1);
		run flusher(2)
	}
}
