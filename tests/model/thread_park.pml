/*
 * A thread outside the runtime waiting on a wait-queue node (runtime/wq.h,
 * protocol, the paragraph on threads; wq.c thread_wait and give_up;
 * weft__wq_take and weft__wq_grant in wq.h): it spins a bounded while,
 * then sets the SLEEPER bit in its node's state and sleeps on the state's
 * futex; a granter wakes it only if the bit is set, by reading the bit in
 * the exchange that stores DONE.
 *
 * Cast
 *   W  the thread. thread_wait: load the state (acquire); DONE ends the
 *      wait; while the node is unclaimed the deadline may pass at any
 *      moment, and then give_up() claims it (CAS WAITING[|SLEEPER] ->
 *      LEAVING) or, if a granter claimed it first, waits for DONE the same
 *      way with no deadline; else spin (load again) or, the spin over, CAS
 *      s -> s|SLEEPER and futex_wait(state, s|SLEEPER).
 *   G  a granter, under the object's lock: weft__wq_take (CAS WAITING ->
 *      GRANTING, or WAITING|SLEEPER -> GRANTING|SLEEPER), then
 *      weft__wq_grant (exchange DONE in; the old value's SLEEPER bit asks
 *      for the wake), and after its unlock weft__wq_wake: futex_wake.
 * All of it is RMWs and loads of one word, so x86's store buffers change
 * nothing (tso.pml is used for its RMW steps; under -DWEAK_RMW a write
 * may still sit in its buffer); futex_wait() and futex_wake() are the
 * kernel's, each after a full barrier, as in spin_park.pml.
 *
 * Properties: W ends (a W asleep for good with nobody to wake it blocks
 * at a guard that is no end state: SPIN's invalid end state), W reports a
 * grant exactly when G granted, and G never grants a node W took back.
 *
 * Variants
 *   (default)          as in wq.c; must pass, also with -DWEAK_RMW.
 *   -DINJ_PLAIN_DONE   the granter stores DONE and wakes only if its claim
 *                      saw the bit: a W that set it while the node was
 *                      GRANTING sleeps for good; must FAIL.
 *   -DINJ_CLAIM_DROPS_BIT  the claim stores plain GRANTING: the bit of a
 *                      W already asleep is lost; must FAIL.
 */
#define NT 2		/* threads: W, G */
#define NA 1		/* the node's state */
#define B 1
#include "tso.pml"

#define TW 0
#define TG 1
#define STATE 0

/* wq.h: enum WEFT__WN_* */
#define WAITING 0
#define DONE 1
#define GRANTING 2
#define LEAVING 3
#define SLEEPER 4

bit sleeping = 0;	/* W is queued on the state's futex, not woken */
bit granted = 0;	/* G granted the node */
bit reported = 0;	/* W returned the grant */
bit wdone = 0;		/* W returned */

inline futex_wait_enter(v)
{
	d_step {
		BUF_EMPTY(TW) ->
		if
		:: mem[STATE] == (v) -> sleeping = 1; printf("t0: futex_wait: sleeps\n")
		:: else -> printf("t0: futex_wait: state is %d, returns\n", mem[STATE])
		fi
	}
}

/* thread_wait(n, deadline): dl: a deadline may still pass. r: 1 on DONE,
 * 0 at the deadline. */
inline thread_wait(dl, s, ok, r)
{
	do
	::
		LOAD(TW, STATE, s);
		if
		:: s == DONE -> r = 1; break
		:: s != DONE && dl && (s & GRANTING) == 0 ->
			/* the deadline passed (or not yet: another round) */
			if
			:: r = 0; break
			:: true
			fi
		:: else
		fi;
		if
		:: true	/* still spinning: look again */
		:: true ->
			/* the spin is over: set the bit (a failed CAS: the
			 * word moved on, look again), sleep */
			ok = true;
			if
			:: (s & SLEEPER) == 0 ->
				CAS(TW, STATE, s, s | SLEEPER, ok)
			:: else
			fi;
			if
			:: ok ->
				futex_wait_enter(s | SLEEPER);
				/* untimed once claimed; timed before (the
				 * deadline): the timeout may end it at any
				 * moment */
				if
				:: sleeping == 0
				:: atomic { dl && (s & GRANTING) == 0 &&
					    sleeping == 1 -> sleeping = 0;
					    printf("t0: futex_wait: deadline\n") }
				fi
			:: else
			fi
		fi
	od;
	s = 0; ok = false
}

active proctype waiter()
{
	byte s;
	bool ok;
	bit r, dl;

	/* A wait with a deadline (weft_chan_send_timeout) or without. */
	if
	:: dl = 1
	:: dl = 0
	fi;
	thread_wait(dl, s, ok, r);
	if
	:: r -> reported = 1
	:: else ->
		/* give_up(): claim WAITING or WAITING|SLEEPER */
		LOAD(TW, STATE, s);
		do
		:: (s & ~SLEEPER) == WAITING ->
			CAS(TW, STATE, s, LEAVING, ok);
			if :: ok -> break :: else fi
		:: else -> break
		od;
		if
		:: ok -> printf("t0: gave up\n")
		:: else ->
			/* a granter won: wait for DONE, no deadline */
			thread_wait(0, s, ok, r);
			assert(r);
			reported = 1
		fi
	fi;
	wdone = 1
}

active proctype granter()
{
	byte s, old;
	bool ok;

	/* weft__wq_take */
	s = WAITING;
	CAS(TG, STATE, s, GRANTING, ok);
	if
	:: !ok && s == (WAITING | SLEEPER) ->
#ifdef INJ_CLAIM_DROPS_BIT
		CAS(TG, STATE, s, GRANTING, ok)
#else
		CAS(TG, STATE, s, GRANTING | SLEEPER, ok)
#endif
	:: else
	fi;
	if
	:: ok ->
		granted = 1;
		/* weft__wq_grant */
#ifdef INJ_PLAIN_DONE
		old = s;	/* what the claim saw */
		SC_STORE(TG, STATE, DONE);
#else
		XCHG(TG, STATE, DONE, old);
#endif
		/* weft__wq_wake, after the unlock */
		if
		:: old & SLEEPER ->
			atomic { BUF_EMPTY(TG) -> sleeping = 0;
				 printf("t1: futex_wake\n") }
		:: else
		fi
	:: else -> printf("t1: nothing to grant\n")
	fi
}

/* Once W has returned: it reported the grant exactly when there was one. */
active proctype monitor()
{
	atomic { wdone -> assert(reported == granted) }
}

init
{
	atomic {
		printf("legend: t0 = the waiting thread, t1 = a granter; [0] = the node's state (0 WAITING, 1 DONE, 2 GRANTING, 3 LEAVING, +4 SLEEPER)\n");
		run flusher(TW);
		run flusher(TG)
	}
}
