/*
 * A worker's next slot and its woken list (runtime/worker.c) under
 * x86-TSO: the owner fills the slot and takes from it; a thief takes the
 * slot's task, or the oldest woken task, from an owner it found stuck
 * (steal_next). Issue 17 left this hand-over without a model.
 *
 * Cast
 *   O  the owner worker: weft__worker_schedule() (the exchange that puts a
 *      woken task in the slot and displaces the one there, to the woken
 *      list while the worker runs long slices, else to its queue),
 *      pick_local() (load, then exchange the slot empty; woken_refill()
 *      after it), pick_periodic() (woken_refill() when it sees the slot
 *      empty), pick_rest() (woken_take()) and its local queue.
 *   H  a thief in steal_next(): acquire load of the slot, CAS it empty;
 *      else, with woken_n seen non-zero, woken_pop().
 *
 * The woken list, its count woken_n and the owner's woken_len: every
 * access to the list and to woken_n's writes is under remote_lock, so
 * those steps are atomic here (the lock's acquire and release order them;
 * TSO adds nothing inside a critical section). woken_n is also read
 * without the lock by the thief (a hint): that read is a LOAD of a
 * location the critical sections write through the store buffer, so a
 * stale value is possible, as in C. The owner's local queue is the
 * owner's alone here (stealing from it is lq.h's protocol, in sched.pml).
 *
 * Property: every task scheduled is run exactly once: never twice (an
 * assertion at each run), never lost (at the end every task ran; the end
 * is when the owner found nothing left and the thief is done).
 *
 * Variants
 *   (default)       as in worker.c; must pass.
 *   -DINJ_REFILL_OVERWRITES  woken_refill() stores into the slot without
 *                   the owner having seen it empty (a refill after the
 *                   owner's pick put a task there): must FAIL (a task
 *                   overwritten is lost).
 *   -DINJ_THIEF_PLAIN_STORE  the thief empties the slot with a plain
 *                   store after its load instead of a CAS: must FAIL (a
 *                   task run by both, or lost).
 */
#define NT 2		/* threads: O, H */
#define NA 2		/* locations: the slot, woken_n */
#define B 2
#include "tso.pml"

#define TO 0
#define TH 1
#define SLOT 0
#define WOKEN_N 1

#define NTASK 3		/* tasks 1..NTASK; 0 is "no task" */
#define WOKEN_MAX 2	/* WEFT__WOKEN_MAX, smaller */

bool ran[NTASK + 1];
byte nran = 0;

/* worker->woken, a FIFO; woken_len is the owner's count. */
byte woken[WOKEN_MAX];
byte wn = 0;		/* entries in woken[] */
byte woken_len = 0;	/* owner's count: high after a thief's pops */

/* the owner's local queue (lq_push/lq_pop), owner only here */
byte lq[NTASK];
byte lqn = 0;

bool thief_done = false;

inline run_task(tk, who)
{
	atomic {
		assert(tk != 0 && !ran[tk]);
		ran[tk] = true; nran++;
		printf("t%d runs task %d\n", who, tk)
	}
}

/* woken_push (worker.c): under remote_lock; woken_n stored through the
 * buffer before the unlock. */
inline woken_push(tk)
{
	atomic {
		ROOM(TO) ->
		woken[wn] = tk; wn++;
		S_BST(TO, WOKEN_N, wn);
		woken_len++
	}
}

/* woken_pop: under remote_lock; 0 if empty. */
inline woken_pop(tk, tid)
{
	atomic {
		RMW_GUARD(tid, WOKEN_N) ->	/* the lock's RMW drains */
		if
		:: wn > 0 ->
			tk = woken[0];
			woken[0] = woken[1];
			woken[1] = 0;
			wn--;
			mem[WOKEN_N] = wn
		:: else -> tk = 0
		fi
	}
}

/* woken_take: the owner's pop, keeping woken_len. */
inline woken_take(tk)
{
	woken_pop(tk, TO);
	atomic { if :: tk != 0 -> woken_len-- :: else -> woken_len = 0 fi }
}

/* woken_refill: the owner saw the slot empty (only the owner fills it). */
inline woken_refill(tk)
{
	woken_take(tk);
	if
	:: tk != 0 -> STORE(TO, SLOT, tk)	/* release store */
	:: else
	fi
}

active proctype owner()
{
	byte k, d, r, next_task = 1;
	bool long_slices;

	do
	:: /* weft__worker_schedule(w, t, false): a task woken here */
		next_task <= NTASK ->
		XCHG(TO, SLOT, next_task, d);
		next_task++;
		if
		:: d != 0 ->
			if
			:: woken_len < WOKEN_MAX -> long_slices = true
			:: long_slices = false	/* or not running long slices */
			fi;
			if
			:: long_slices && woken_len < WOKEN_MAX -> woken_push(d)
			:: else -> atomic { lq[lqn] = d; lqn++ }
			fi
		:: else
		fi
	:: /* pick_local: the slot (relaxed load, then exchange acquire) */
		LOAD(TO, SLOT, r);
		if
		:: r != 0 ->
			XCHG(TO, SLOT, 0, k);
			if
			:: k != 0 ->
				if
				:: woken_len > 0 ->
#ifdef INJ_REFILL_OVERWRITES
					/* (injected) a second task put in the
					 * slot before the refill */
					if
					:: next_task <= NTASK ->
						XCHG(TO, SLOT, next_task, d);
						next_task++;
						if :: d != 0 -> atomic { lq[lqn] = d; lqn++ } :: else fi
					:: else
					fi;
#endif
					woken_refill(d)
				:: else
				fi;
				run_task(k, TO)
			:: else
			fi
		:: else
		fi
	:: /* pick_periodic: a thief emptied the slot ahead of woken tasks */
		woken_len > 0 ->
		LOAD(TO, SLOT, r);
		if
		:: r == 0 -> woken_refill(k)
		:: else
		fi
	:: /* pick_rest: woken_take */
		woken_len > 0 ->
		woken_take(k);
		if :: k != 0 -> run_task(k, TO) :: else fi
	:: /* the local queue */
		atomic {
			lqn > 0 ->
			k = lq[lqn - 1]; lqn--; lq[lqn] = 0
		};
		run_task(k, TO)
	:: /* nothing left that the owner can see: done */
		next_task > NTASK && lqn == 0 && woken_len == 0 && thief_done ->
		LOAD(TO, SLOT, r);
		if
		:: r == 0 -> break
		:: else
		fi
	od;
	/* Every task ran exactly once. */
	assert(nran == NTASK)
}

active proctype thief()
{
	byte k, r, tries = 0;
	bool ok;

	do
	:: tries < 3 ->
		tries++;
		/* steal_next: acquire load of the slot; the stuck check
		 * (ticks unchanged) is any moment here. */
		LOAD(TH, SLOT, k);
		if
		:: k != 0 ->
#ifdef INJ_THIEF_PLAIN_STORE
			STORE(TH, SLOT, 0); ok = true;
#else
			r = k;
			CAS(TH, SLOT, r, 0, ok);
#endif
			if :: ok -> run_task(k, TH) :: else fi
		:: else ->
			LOAD(TH, WOKEN_N, r);
			if
			:: r != 0 ->
				woken_pop(k, TH);
				if :: k != 0 -> run_task(k, TH) :: else fi
			:: else
			fi
		fi
	:: tries >= 3 -> break
	od;
	/* The thief's stores reach memory before the owner ends. */
	FENCE(TH);
	thief_done = true
}

init
{
	atomic {
		printf("legend: t0 = owner, t1 = thief; [0] = next slot (task id, 0 empty), [1] = woken_n\n");
		run flusher(TO);
		run flusher(TH)
	}
}
