/*
 * The timer service's wake-up side (runtime/timer.c, file comment "Who
 * fires, and no timer is late because of a sleeping worker"), included by
 * sched.pml under -DTIMERS. The wheel itself (levels, slots) is reduced to
 * its meaning: which timers are pending and their deadlines, read and
 * written only under WHEEL_LOCK, so kept outside the store buffers.
 *
 * Time is `now`, advanced by the clock process, one step at a time up to
 * MAXT; deadlines are 1..MAXT, NEVER stands for WEFT_NEVER.
 */
#define NEVER 15

byte now = 0;
bool tpend[NTM];	/* timer i is in the wheel */
byte tdl[NTM];		/* its deadline */
byte until[NW];		/* a sleeping worker's timeout (0: none) */
bool woke0 = false;	/* ghost: timer 0 fired, its task has not run yet */

/* publish_next's value: the earliest pending deadline, or NEVER. */
#define MIN_DL(r) \
	r = NEVER; \
	j = 0; \
	do \
	:: j < NTM -> \
		if :: tpend[j] && tdl[j] < r -> r = tdl[j] :: else fi; \
		j++ \
	:: else -> break \
	od; \
	j = 0

/* timer.c publish_next: timer_next = the earliest pending deadline (d),
 * a seq_cst store, under WHEEL_LOCK; then the unlock, which finds the
 * buffer empty (tso.pml rule b). */
inline publish_next_unlock(t)
{
	atomic {
		BUF_EMPTY(t) && X_FREE(t, TIMER_NEXT) ->
		MIN_DL(d);
		mem[TIMER_NEXT] = d;
		S_PST(t, WHEEL_LOCK, 0);
		printf("t%d: seq_cst store timer_next [%d] = %d, unlock\n", t,
		       TIMER_NEXT, d)
	}
}

/* timer.c weft__timer_add(rt, tm, task, deadline), by a task on worker t:
 * link the node and publish timer_next under the lock; then, if the
 * earliest expiration moved earlier, wake the keeper if it sleeps longer,
 * or with no keeper notify the idle protocol. */
inline timer_add(t, i, dl)
{
	/* lock; link_node; state = PENDING; before = timer_next (relaxed:
	 * only written under the lock; rule d) */
	atomic {
		LOCK_LOAD(t, WHEEL_LOCK, TIMER_NEXT, r);
		tpend[i] = true;
		tdl[i] = dl;
		printf("t%d: timer %d armed for %d\n", t, i, dl)
	};
	publish_next_unlock(t);	/* after = d */
	if
	:: d >= r -> skip	/* "nobody waits for a later time than before" */
	:: else ->
		/* "The seq_cst store of timer_next (publish_next) comes
		 * before these seq_cst loads" */
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

/* timer.c weft__timer_run(rt, tn): fire every pending timer due at tn
 * under the lock, publish timer_next, then wake each timer's task
 * (weft__task_wake_back: the task is parked, so the waker's CAS on its
 * park, an RMW, then weft__worker_schedule(w, t, true): the back of w's own
 * queue, no notify) and notify once. */
inline timer_run(t)
{
	/* the lock, and what is done under it with the wheel (rule d) */
	atomic {
		LOCK(t, WHEEL_LOCK);
		fired = 0;
		j = 0;
		do
		:: j < NTM ->
			if
			:: tpend[j] && tdl[j] <= tn ->
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
	publish_next_unlock(t);
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
	:: fired > 0 -> idle_notify(t, false)
	:: else
	fi
}

/* timer.c weft__timer_poll: a relaxed load of timer_next, then the clock
 * only if a timer is pending. Sets fired. */
inline timer_poll(t)
{
	fired = 0;
	/* the load, and the clock read with it: the clock is read only if
	 * timer_next is not NEVER, and reading it at the same instant rather
	 * than a moment later only leaves out polls that find a timer due
	 * and then, in timer_run under the lock, find it fired already */
	d_step {
		VIEW(t, TIMER_NEXT, r);	/* relaxed */
		tn = now;	/* weft_now() */
		printf("t%d: load timer_next [%d] = %d, now = %d\n", t,
		       TIMER_NEXT, r, tn)
	};
	if
	:: r == NEVER || r > tn -> tn = 0
	:: else -> timer_run(t)
	fi
}

/* timer.c weft__timer_keep(w): claim the keeper role if a timer is
 * pending and nobody holds it; then publish how long we sleep
 * (keeper_until) and re-read timer_next until they agree. Sets keep (0:
 * not the keeper, or nothing pending). */
inline timer_keep(w)
{
	keep = 0;
	/* relaxed pre-check: right after idle_park's seq_cst fetch_sub */
	LOAD(w, TIMER_NEXT, r);
	if
	:: r == NEVER -> skip
	:: else ->
		k = 0;
		CAS(w, KEEPER, k, w + 1, ok);	/* seq_cst */
		if
		:: ok ->
			SC_LOAD(w, TIMER_NEXT, d);
			do
			:: SC_STORE(w, KEEPER_UNTIL, d);
				SC_LOAD(w, TIMER_NEXT, again);
				if
				:: again >= d -> break
				:: else -> d = again
				fi
			od;
			keep = d
		:: else
		fi
	fi
}

/* timer.c weft__timer_unkeep(w) */
inline timer_unkeep(w)
{
	STORE(w, KEEPER_UNTIL, NEVER);	/* relaxed */
	SC_STORE(w, KEEPER, 0);
	/* "Timers still pending: make sure someone holds the role while we
	 * may be running tasks"; the notify is fenced (pairs with the
	 * parking searcher's RMW + fence in idle_park) */
	SC_LOAD(w, TIMER_NEXT, r);
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
