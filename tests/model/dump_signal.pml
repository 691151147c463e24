/*
 * The dump signal's handler against a runtime's stop (runtime/debug.c,
 * on_dump_signal and weft__debug_stop): the handler must never write to
 * the runtime's eventfd once the stop has closed it (the number may be a
 * new, unrelated descriptor by then).
 *
 * Cast
 *   H (t0)  the signal handler, on any thread: counts itself in
 *           (fetch_add on INF, seq_cst), loads the slot (EFD, seq_cst);
 *           if it holds the eventfd, writes to it; counts itself out.
 *   S (t1)  the stop: clears the slot (seq_cst store of 0), then loads
 *           the count (seq_cst) until it reads 0, then closes the
 *           eventfd (a system call: drains the buffer first).
 *
 * Property: the handler's write never comes after the close (an
 * assertion at the write).
 *
 * Store then load on each side, so this is the store-buffering shape;
 * under x86-TSO (tso.pml) a plain store of the slot followed by a plain
 * load of the count lets both read the old values.
 *
 * Variants
 *   (default)          as in debug.c; must pass (TSO and -DWEAK_RMW).
 *   -DINJ_PLAIN_CLEAR  the stop clears the slot with a plain store (no
 *                      fence before it loads the count); must FAIL.
 *   -DINJ_NO_WAIT      the stop closes without waiting for the count;
 *                      must FAIL.
 */
#define NT 2
#define NA 2
#define B 2
#include "tso.pml"

#define EFD 0	/* the slot: 1 while it holds the eventfd */
#define INF 1	/* handlers between entry and exit */

bit closed = 0;
bit wrote = 0;

proctype handler()
{
	byte old, fd;

	FADD(0, INF, 1, old);
	SC_LOAD(0, EFD, fd);
	if
	:: fd == 1 ->
		atomic { assert(!closed); wrote = 1 }
	:: else
	fi;
	FADD(0, INF, -1, old)	/* fetch_sub */
}

proctype stop()
{
	byte n;

#ifdef INJ_PLAIN_CLEAR
	STORE(1, EFD, 0);
#else
	SC_STORE(1, EFD, 0);
#endif
#ifndef INJ_NO_WAIT
	do
	:: SC_LOAD(1, INF, n);
		if
		:: n == 0 -> break
		:: else
		fi
	od;
#endif
	/* close(2): the kernel entry drains the store buffer. */
	atomic { FENCE(1) -> closed = 1 }
}

init
{
	atomic {
		mem[EFD] = 1;
		printf("legend: t0 the handler, t1 the stop; [0] = the slot's eventfd (1: set), [1] = handlers in flight\n");
		run flusher(0);
		run flusher(1);
		run handler();
		run stop()
	}
}
