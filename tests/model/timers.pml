/*
 * The timer service's wake-up side (runtime/timer.c, file comment "Who
 * fires, and no timer is late because of a sleeping worker"), included by
 * sched.pml under -DTIMERS. One wheel per worker: a task files its timer
 * in the wheel of the worker it runs on. Each wheel is reduced to its
 * meaning: which timers are pending in it and their deadlines, read and
 * written only under its lock, WHEEL_LOCK(wh), so kept outside the store
 * buffers; its earliest expiration is NEXT(wh), in mem[].
 *
 * Time is `now`, advanced by the clock process, one step at a time up to
 * MAXT; deadlines are 1..MAXT, NEVER stands for WEFT_NEVER.
 */
#define NEVER 15

byte now = 0;
bool tpend[NTM];	/* timer i is in a wheel */
byte tdl[NTM];		/* its deadline */
byte twh[NTM];		/* the wheel it is in (its worker's) */
byte until[NW];		/* a sleeping worker's timeout (0: none) */
bool woke0 = false;	/* ghost: timer 0 fired, its task has not run yet */

/* earliest(wh): the earliest deadline pending in wheel wh, or NEVER. */
#define MIN_DL(r, wh) \
	r = NEVER; \
	j = 0; \
	do \
	:: j < NTM -> \
		if :: tpend[j] && twh[j] == (wh) && tdl[j] < r -> r = tdl[j] :: else fi; \
		j++ \
	:: else -> break \
	od; \
	j = 0

/* timer.c: wheel->next = earliest(wheel) (d), a seq_cst store, under
 * its lock; then the unlock, which finds the buffer empty (tso.pml rule
 * b). (add stores only when the value moved earlier, wheel_run only when
 * it changed: storing the same value again changes nothing.) */
inline publish_next_unlock(t, wh)
{
	atomic {
		BUF_EMPTY(t) && X_FREE(t, NEXT(wh)) ->
		MIN_DL(d, wh);
		mem[NEXT(wh)] = d;
		S_PST(t, WHEEL_LOCK(wh), 0);
		printf("t%d: seq_cst store next of wheel %d [%d] = %d, unlock\n",
		       t, wh, NEXT(wh), d)
	}
}

/* timer.c weft__timer_add(rt, tm, task, deadline), by a task on worker t,
 * in t's wheel: link the node and publish its next under the lock; then,
 * if the wheel's earliest expiration moved earlier, wake the keeper if it
 * sleeps longer, or with no keeper notify the idle protocol. */
inline timer_add(t, i, dl)
{
	/* lock; link_node; state = PENDING; before = next (relaxed: only
	 * written under the lock; rule d) */
	atomic {
		LOCK_LOAD(t, WHEEL_LOCK(t), NEXT(t), r);
		tpend[i] = true;
		tdl[i] = dl;
		twh[i] = t;
		printf("t%d: timer %d armed for %d in wheel %d\n", t, i, dl, t)
	};
	publish_next_unlock(t, t);	/* after = d */
	if
	:: d >= r -> skip	/* "nobody waits for a later time than before" */
	:: else ->
		/* "The seq_cst store of next comes before these seq_cst
		 * loads" */
		SC_LOAD(t, KEEPER, k);
		if
		:: k != 0 ->
			SC_LOAD(t, KEEPER_UNTIL, again);
			if
#ifndef INJ_NO_KEEPER_WAKE
			:: d < again -> ring_wake(t, k - 1)
#endif
			:: else
			fi
		:: else -> idle_notify(t, true)
		fi
	fi
}

/* timer.c wheel_run(rt, wheel wh, tn), by worker t: fire every pending
 * timer of wh due at tn under its lock (one batch: batches split only
 * the work, each under the lock as this), publish its next, then wake
 * each timer's task (weft__task_wake_back: the task is parked, so the
 * waker's CAS on its park, an RMW, then weft__worker_schedule(w, t,
 * true): the back of w's own queue, no notify) and notify once. */
inline wheel_run(t, wh)
{
	atomic {
		LOCK(t, WHEEL_LOCK(wh));
		fired = 0;
		j = 0;
		do
		:: j < NTM ->
			if
			:: tpend[j] && twh[j] == (wh) && tdl[j] <= tn ->
				/* its task counts as runnable from here */
				tpend[j] = false; fired++; created++;
#ifdef TRACK_WOKE0
				if :: j == 0 -> woke0 = true :: else fi;
#endif
				printf("t%d: timer %d fires at %d\n", t, j, tn)
			:: else
			fi;
			j++
		:: else -> break
		od;
		j = 0
	};
	publish_next_unlock(t, wh);
	j = fired;
	do
	:: j > 0 ->
		/* task_wake's CAS on the task's park (a fence here), then
		 * lq_push (rule a) */
		atomic {
			BUF_EMPTY(t) ->
			VIEW(t, LQT(t), tl);
			S_BST(t, LQT(t), tl + 1);
			printf("t%d: wakes a timer's task: store [%d] = %d\n", t,
			       LQT(t), tl + 1)
		};
		j--
	:: else -> break
	od;
	if
	:: fired > 0 -> idle_notify(t, false); fany = true
	:: else
	fi
}

/* timer.c weft__timer_poll(w, false) (an idle worker: every due wheel,
 * its own first): for each wheel a relaxed load of its next, then the
 * clock only if a timer is pending. Sets fired (polled: some fired). */
inline poll_wheel(t, wh)
{
	/* the load, and the clock read with it: reading the clock at the
	 * same instant rather than a moment later only leaves out polls
	 * that find a timer due and then, under the lock, find it fired
	 * already */
	d_step {
		VIEW(t, NEXT(wh), r);	/* relaxed */
		tn = now;	/* weft_now() */
		printf("t%d: load next of wheel %d [%d] = %d, now = %d\n", t,
		       wh, NEXT(wh), r, tn)
	};
	if
	:: r == NEVER || r > tn -> tn = 0
	:: else -> wheel_run(t, wh)
	fi
}

inline timer_poll(t)
{
	fany = false;
	poll_wheel(t, t);
	poll_wheel(t, 1 - t);
	fired = (fany -> 1 : 0);
	fany = false
}

/* The earliest next of all wheels (NW == 2), seq_cst loads: the keeper's
 * side of the Dekker pairs. */
inline all_next(w, x)
{
#ifdef INJ_KEEPER_OWN_WHEEL
	SC_LOAD(w, NEXT(w), x)
#else
	SC_LOAD(w, NEXT(0), x);
	SC_LOAD(w, NEXT(1), m2);
	if :: m2 < x -> x = m2 :: else fi;
	m2 = 0
#endif
}

/* timer.c weft__timer_keep(w): claim the keeper role if a timer is
 * pending in any wheel and nobody holds it, or, still the keeper from an
 * earlier park (keeping), keep it; then publish how long we sleep
 * (keeper_until) and re-read every wheel's next until they agree. Sets
 * keep (0: not the keeper; NEVER: the keeper, all wheels empty, asleep
 * without timeout). */
inline timer_keep(w)
{
	keep = 0;
	ok = false;
	if
	:: keeping ->
#ifndef INJ_NO_REFRESH
		ok = true	/* "published afresh ... whatever is pending" */
#else
		skip	/* bug injection: asleep on the stale keeper_until */
#endif
	:: else ->
		/* weft__timer_pending(): relaxed, right after idle_park's
		 * seq_cst fetch_sub and fence */
#ifdef INJ_KEEPER_OWN_WHEEL
		LOAD(w, NEXT(w), r);
		m2 = NEVER;
#else
		LOAD(w, NEXT(0), r);
		LOAD(w, NEXT(1), m2);
#endif
		if
		:: r == NEVER && m2 == NEVER -> m2 = 0; r = 0
		:: else ->
			m2 = 0; r = 0;
			k = 0;
			CAS(w, KEEPER, k, w + 1, ok);	/* seq_cst */
			if :: ok -> keeping = true :: else fi;
			k = 0
		fi
	fi;
	if
	:: ok ->
		all_next(w, d);
		do
		:: SC_STORE(w, KEEPER_UNTIL, d);
			all_next(w, again);
			if
			:: again >= d -> break
			:: else -> d = again
			fi
		od;
		keep = d;
		d = 0; again = 0; ok = false
	:: else
	fi
}

/* timer.c weft__timer_unkeep(w), for the keeper about to run a task
 * (worker.c weft__worker_loop) */
inline timer_unkeep(w)
{
	keeping = false;
	STORE(w, KEEPER_UNTIL, NEVER);	/* relaxed */
	SC_STORE(w, KEEPER, 0);
	/* "Timers still pending: make sure someone holds the role while we
	 * may be running tasks"; the notify is fenced (pairs with the
	 * parking searcher's RMW + fence in idle_park) */
	all_next(w, r);
	if
#ifndef INJ_NO_UNKEEP_NOTIFY
	:: r != NEVER -> idle_notify(w, true)
#endif
	:: else
	fi
}

/* The clock: time passes at any moment, up to MAXT. */
proctype clock()
{
end:	do
	:: atomic { now < MAXT -> now++; printf("clock: now = %d\n", now) }
	od
}
