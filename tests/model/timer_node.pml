/*
 * A timer node's states against cancel, with one wheel per worker
 * (runtime/timer.c, file comments "One wheel per worker" and "Who may
 * touch what"; weft__timer_add, weft__timer_cancel, wheel_run).
 *
 * Cast
 *   T0, T1  two tasks. Each files its node in the wheel of the worker it
 *           runs on (worker 0: wheel 0; weft__timer_add), then may
 *           migrate to worker 1 (a wake by something else: the canceller
 *           then runs on worker 1), and either waits for its timer (the
 *           node FIRED, read with acquire) or gives up at once; either way
 *           it ends with weft__timer_cancel, after which the call returns
 *           and the node, on its stack, is gone (`gone`).
 *   F0, F1  two firers of wheel 0: its owner (worker 0's loop) and
 *           another worker (the keeper, or a busy worker's late look).
 *           Each takes, under wheel 0's lock, one batch (here one node:
 *           WEFT__TIMER_BATCH stands for 1, the smallest batch, which
 *           gives the most interleavings) from the due slot: PENDING ->
 *           FIRING, unlinked, on its private list; after the lock it reads
 *           the node's task, stores FIRED (release) and wakes the task
 *           without touching the node again; then takes the next batch,
 *           until none is left. Every timer is due from the start (time
 *           is not what this model is about: timer_keeper.pml's).
 *
 * Every variable is under a wheel lock or a sequentially consistent
 * atomic, so the model is sequentially consistent: it checks the order of
 * the steps (FIRED's release/acquire pairing is the same as a task's
 * wake, park_wake.pml).
 *
 * Properties
 *   - the firer never touches a node whose call has returned (assert);
 *   - a node fires at most once, and a node that fired was never also
 *     cancelled as pending (assert);
 *   - a task that waits for its timer is woken by it: a task blocked for
 *     ever is an invalid end state.
 *
 * Variants
 *   (default)              the code: must pass.
 *   -DINJ_FIRED_FIRST      the firer stores FIRED before it reads the
 *                          node's task and next: must FAIL (it reads a
 *                          node whose call returned).
 *   -DINJ_CANCEL_NO_WAIT   a cancel that finds FIRING returns without
 *                          waiting for FIRED: must FAIL (likewise).
 *   -DINJ_CANCEL_HERE      a cancel locks the wheel of the worker it runs
 *                          on, not the node's (n->wheel): after a
 *                          migration it races with the wheel's firers
 *                          unlocked; must FAIL.
 */

#define NN 2		/* nodes (tasks) */
#define IDLE 0
#define PENDING 1
#define FIRING 2
#define FIRED 3

bool lk[2];		/* the wheels' locks */
bool linked[NN];	/* node i is in wheel 0's due slot */
byte state[NN];		/* n->state */
bool gone[NN];		/* ghost: task i's call returned, its node is gone */
byte fires[NN];		/* ghost: times node i went to FIRING */
bool cancelled[NN];	/* ghost: node i taken out as PENDING by a cancel */
bool woken[NN];		/* ghost: task i woken by its timer */

inline LOCK(x) { atomic { !lk[x] -> lk[x] = true } }
inline UNLOCK(x) { lk[x] = false }

/* weft__timer_cancel(n), by task i running on worker `on` */
inline cancel(i, on, s)
{
	s = state[i];	/* acquire */
	if
	:: s == IDLE -> skip
	:: else ->
		if
		:: s == PENDING ->
#ifdef INJ_CANCEL_HERE
			LOCK(on);
#else
			LOCK(0);	/* n->wheel: wheel 0 */
#endif
			s = state[i];
			if
			:: s == PENDING ->
				atomic {
					linked[i] = false;	/* unlink_node */
					state[i] = IDLE;
					cancelled[i] = true;
					assert(fires[i] == 0)
				}
			:: else
			fi;
#ifdef INJ_CANCEL_HERE
			UNLOCK(on)
#else
			UNLOCK(0)
#endif
		:: else
		fi;
		if
		:: s != PENDING ->
			/* FIRING or FIRED: wait for FIRED, then IDLE */
#ifndef INJ_CANCEL_NO_WAIT
			state[i] == FIRED;
#endif
			state[i] = IDLE
		:: else
		fi
	fi
}

proctype task(byte i)
{
	byte on = 0, s;

	/* weft__timer_add on worker 0: under wheel 0's lock */
	LOCK(0);
	atomic { linked[i] = true; state[i] = PENDING };
	UNLOCK(0);
	/* woken by something else and moved to worker 1, or not */
	if
	:: on = 1
	:: skip
	fi;
	if
	:: state[i] == FIRED	/* the wait for its timer (acquire) */
	:: skip			/* gives up: a cancel, a completion */
	fi;
	cancel(i, on, s);
	gone[i] = true
}

proctype firer(byte f)
{
	byte j, n, s;
	bool got;

end:	do
	:: LOCK(0);
		/* one batch: the first linked node */
		atomic {
			got = false;
			j = 0;
			do
			:: j < NN && !got ->
				if
				:: linked[j] ->
					assert(state[j] == PENDING);
					linked[j] = false;
					state[j] = FIRING;
					fires[j]++;
					assert(fires[j] == 1 && !cancelled[j]);
					n = j;
					got = true
				:: else
				fi;
				j++
			:: else -> break
			od;
			j = 0
		};
		UNLOCK(0);
		if
		:: got ->
#ifdef INJ_FIRED_FIRST
			state[n] = FIRED;	/* release */
			assert(!gone[n]);	/* t = n->task; n->fnext */
#else
			assert(!gone[n]);	/* t = n->task; n->fnext */
			state[n] = FIRED;	/* release: the last touch */
#endif
			woken[n] = true;	/* the wake, on the task */
			n = 0
		:: else -> break
		fi
	od
}

init
{
	atomic {
		run task(0);
		run task(1);
		run firer(0);
		run firer(1)
	}
}
