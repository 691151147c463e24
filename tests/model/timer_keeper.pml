/*
 * The timer keeper (runtime/timer.c, file comment "Who fires, and no timer
 * is late because of a sleeping worker"; weft__timer_add, _keep, _unkeep,
 * _poll, wheel_run; their use in runtime/idle.c weft__idle_park and
 * runtime/worker.c idle_work) under x86-TSO, on top of the idle protocol
 * of sched.pml. One timing wheel per worker (timers.pml): a task files
 * its timer in the wheel of the worker it runs on; the keeper sleeps
 * until the earliest next of every wheel and fires them all.
 *
 * Cast
 *   worker(0, 1)  the worker loop (sched.pml, worker.pml) with its timer
 *                 parts: idle_work's timer_poll (every due wheel, its own
 *                 first) before searching; in idle_park, timer_keep before
 *                 the sleep (the keeper sleeps until keep; a worker still
 *                 the keeper from its last park publishes keeper_until
 *                 afresh) and timer_poll after it; the keeper's
 *                 timer_unkeep in the worker loop, before it runs a task.
 *   tasks         do what the scenario says (arm a timer: weft_sleep_until
 *                 -> weft__timer_add), then their own work, which may take
 *                 as long as it likes (busy[w]: the worker neither polls
 *                 timers nor sleeps meanwhile).
 *   clock         time passes at any moment, one tick at a time, up to
 *                 MAXT = 2.
 *   monitor       checks in every state that no timer is late: if some
 *                 worker sleeps and none is free (each sleeps with no wake
 *                 pending, or runs a task), every pending timer has a
 *                 sleeper whose timeout is no later than its deadline. That
 *                 is the file comment's promise: a timer fires on time
 *                 while a worker is free to fire it, and a sleeping worker
 *                 never makes it late.
 *   join          waits until the timers fired and the tasks ran (FINISHED):
 *                 a timer that never fires is an invalid end state.
 *
 * Scenarios (-DSCEN=...), each from a state the runtime reaches:
 *   1 (arm)       both workers awake, worker 0 has a task queued that arms
 *                 one timer, for time 1 or 2: the keeper is claimed by
 *                 whichever worker parks, racing with the arm (the
 *                 Dekker pair of timer_next against keeper/keeper_until).
 *   2 (earlier)   worker 1 is the keeper, asleep until 2 for timer 0 (due
 *                 at 2, in its own wheel); worker 0 runs a task that arms
 *                 timer 1 for time 1 (if the clock is still at 0) in
 *                 worker 0's wheel: an earlier timer must reach the keeper ("An insert whose expiration is earlier than
 *                 the keeper's wake-up time wakes the keeper"). Checked
 *                 until timer 1 has fired; what follows is scenario 3.
 *   3 (handover)  worker 1 is the keeper, asleep until 1 for timer 0 (its
 *                 own wheel's); timer 1 (due at 2) is pending in the wheel
 *                 of worker 0, which sleeps without timeout. The keeper
 *                 wakes, fires timer 0, gives the role up before it runs
 *                 timer 0's task, and may run it for as long as it likes:
 *                 the role must pass to worker 0 ("It gives the role up
 *                 only when it is about to run a task: then, if timers
 *                 are still pending in any wheel, it notifies"; here
 *                 timer_run's notify for the task it queued wakes worker
 *                 0 as well).
 *   4 (rearm)     as 3, but timer 1 is armed by timer 0's task, while the
 *                 role is being handed over.
 *   5 (woken)     worker 1 is the keeper, asleep until 2 for timer 0, in
 *                 the wheel of worker 0, which sleeps without timeout; a thread outside hands
 *                 worker 1 a pinned task (worker.c remote_push: the task
 *                 on w->remote, then a ring wake). The keeper wakes early,
 *                 gives the role up (before it runs the task) with timer
 *                 0 still pending and runs the task for as long as it
 *                 likes: only timer_unkeep's
 *                 notify gets worker 0 to take the role ("in case it is
 *                 about to run a long task").
 *
 * Variants
 *   (default)              the code as it is, TSO: must pass.
 *   -DWEAK_RMW             RMWs are not full fences (tso.pml); with
 *                          idle_park's fence after its fetch_sub: must
 *                          pass. With -DINJ_NO_PARK_FENCE as well (the
 *                          code before 5fb7831), in scenario 1
 *                          timer_keep's relaxed pre-check of timer_next,
 *                          right after the fetch_sub, can read NEVER
 *                          although the arming task's notify read
 *                          idle_state from before that fetch_sub: nobody
 *                          keeps, must fail.
 *   -DINJ_NO_KEEPER_WAKE   bug injection (scenario 2): an earlier timer
 *                          does not wake the keeper. Must fail.
 *   -DINJ_NO_UNKEEP_NOTIFY bug injection (scenario 5): the keeper that
 *                          gives the role up does not notify. Must fail.
 *   -DINJ_KEEPER_OWN_WHEEL bug injection (scenarios 1, 5): the keeper's
 *                          claim, sleep and hand-over look at its own
 *                          wheel's next only, not every wheel's. Must
 *                          fail.
 *   -DINJ_KEEP_WHILE_RUNNING bug injection (scenario 5): the keeper runs
 *                          a task without giving the role up (no
 *                          timer_unkeep in the worker loop): the timer
 *                          waits for the task. Must fail.
 *   -DINJ_NO_REFRESH       bug injection (scenario 2): a worker still the
 *                          keeper from its last park (woken by the earlier
 *                          timer's insert, nothing to run) parks again
 *                          without publishing keeper_until afresh, asleep
 *                          without timeout. Must fail.
 */
#define TIMERS
#define NO_INJECT	/* every task here is queued by a worker */
#define NW 2
#define NT NW
#ifndef SCEN
#define SCEN 1
#endif
#if SCEN == 1 || SCEN == 5
#define NTM 1
#else
#define NTM 2
#endif
#if SCEN == 4
#define TRACK_WOKE0	/* timer_run notes when timer 0 fires */
#endif
#if SCEN == 5
#define PINS
#endif
#ifndef MAXT
#define MAXT 2
#endif
#define ALL_DECIDED ((1 << NTM) - 1)
#if SCEN == 2
#define ARM_LAST 1
#else
#define ARM_LAST MAXT
#endif
#ifndef B
#define B 3
#endif

#include "sched.pml"

byte decided = 0;	/* bit i: timer i armed, or never to be */
bool pushed = false;	/* scenario 5: the pinned task was handed over */
bool started = false;	/* the first queued task has begun */
bool busy[NW];		/* worker w runs a task's own code */

/* A task arms timer i for a deadline in now+1..MAXT (weft_sleep_until ->
 * weft__timer_add); if the clock is at MAXT already it arms nothing
 * (deadline <= weft_now(): weft_sleep_until returns at once). */
inline arm(w, i)
{
	if
	:: now < 1 -> n = 1
#if SCEN != 2
	/* scenario 2 wants the earlier timer; a later one takes the
	 * "after >= before" return, which scenario 1 covers */
	:: now < 2 -> n = 2
#endif
	:: now >= ARM_LAST -> n = 0
	fi;
	if
	:: n != 0 -> timer_add(w, i, n)
	:: else
	fi;
	decided = decided | (1 << i)
}

/* What a task does when a worker runs it. Tasks are told apart by ghost
 * flags: the first queued task (scenarios 1 and 2), and timer 0's (its
 * fire set woke0). */
inline run_task(w)
{
	if
#if SCEN == 1
	:: atomic { !started -> started = true }; arm(w, 0)
#elif SCEN == 2
	:: atomic { !started -> started = true }; arm(w, 1)
#elif SCEN == 4
	:: atomic { woke0 -> woke0 = false }; arm(w, 1)
#endif
	:: else
	fi;
	/* The task's own work: meanwhile its worker is not free. */
	atomic { busy[w] = true; printf("t%d: runs a task's own code\n", w) };
	atomic { busy[w] = false; ran++; printf("t%d: task done\n", w) }
}

/* The earliest pending deadline of wheel wh, or NEVER. */
#if NTM == 1
#define WHEEL_EARLIEST(wh) (tpend[0] && twh[0] == (wh) -> tdl[0] : NEVER)
#else
#define WHEEL_EARLIEST(wh) \
	(tpend[0] && twh[0] == (wh) && \
	 (!(tpend[1] && twh[1] == (wh)) || tdl[0] <= tdl[1]) -> tdl[0] : \
	 (tpend[1] && twh[1] == (wh) -> tdl[1] : NEVER))
#endif

/* The earliest pending deadline, or NEVER. */
#if NTM == 1
#define EARLIEST (tpend[0] -> tdl[0] : NEVER)
#else
#define EARLIEST \
	(tpend[0] && (!tpend[1] || tdl[0] <= tdl[1]) -> tdl[0] : \
	 (tpend[1] -> tdl[1] : NEVER))
#endif

/* What the scenario is about is over: every timer armed (or never to be)
 * has fired and every task has run; in scenario 2, the earlier timer
 * (timer 1) has fired. Workers stop at the top of their loop from then on
 * (worker.pml), which keeps the state space small. */
#if SCEN == 2
#define FINISHED ((decided & 2) && !tpend[1])
#elif SCEN == 5
#define FINISHED (EARLIEST == NEVER && ran == created && pushed)
#else
#define FINISHED (decided == ALL_DECIDED && EARLIEST == NEVER && ran == created)
#endif

#include "worker.pml"

/* Asleep with nothing to wake it but its timeout, if it has one. */
#define BLOCKED(w) (asleep[w] && !tok[w] && !(until[w] != 0 && now >= until[w]))
/* Not free to fire a timer: blocked asleep, or running a task. */
#define UNAVAILABLE(w) (BLOCKED(w) || busy[w])
/* Asleep with a timeout no later than the earliest deadline. */
#define COVERED(w) (asleep[w] && until[w] != 0 && until[w] <= EARLIEST)
#define LATE (UNAVAILABLE(0) && UNAVAILABLE(1) && \
	      (BLOCKED(0) || BLOCKED(1)) && EARLIEST != NEVER && \
	      !COVERED(0) && !COVERED(1))

proctype monitor()
{
end:	atomic {
		LATE ->
		printf("monitor: no worker is free, timer due at %d, no sleeper wakes for it\n", EARLIEST);
		assert(!LATE)
	}
}

#if SCEN == 5
/* worker.c remote_push(home = worker 1, t), from a thread outside: the
 * task on w->remote under its lock, then the ring wake (one step: the
 * remote_n / in_ring_wait pair that decides whether to wake is not
 * modelled; the wake always comes). */
proctype pinner()
{
	atomic {
		pins[1]++; created++; pushed = true; tok[1] = true;
		printf("pinner: a pinned task for w1, ring_wake(w1)\n")
	}
}
#endif

proctype join()
{
	atomic { FINISHED -> printf("join: done\n") }
}

/* Worker w asleep in idle_park, on the sleeper stack, holding the keeper
 * role until `u` (0: not the keeper, no timeout). */
inline sleeping(w, u)
{
	mem[SLEEPERS] = mem[SLEEPERS] | (1 << w);
	if
	:: u != 0 ->
		mem[KEEPER] = w + 1;
		mem[KEEPER_UNTIL] = u;
		until[w] = u
	:: else
	fi;
	asleep[w] = true;
	run worker(w, true, u)
}

/* Timer i pending, due at d. */
inline pending(i, d, wh)
{
	tpend[i] = true;
	tdl[i] = d;
	twh[i] = wh;
	decided = decided | (1 << i)
}

init
{
	byte i;

	atomic {
		printf("legend: t0, t1 = workers; [0] = idle_state (searching + 4 * unparked), [1] idle_lock, [2] sleepers (bit mask), [3] inject_lock, [4] inject_len, [5..] notified, lq heads, lq tails, then [%d..] wheel locks, [%d..] wheels next (%d = NEVER), [%d] keeper (worker + 1), [%d] keeper_until\n", WHEEL_LOCK(0), NEXT(0), NEVER, KEEPER, KEEPER_UNTIL);
		mem[KEEPER_UNTIL] = NEVER;
#if SCEN == 1
		/* both awake, a task queued on worker 0 */
		mem[IDLE_STATE] = 2 * UNPARK_ONE;
		mem[LQT(0)] = 1;
		created = 1;
		run worker(0, false, 0);
		run worker(1, false, 0);
#elif SCEN == 2
		/* worker 1 keeps timer 0 (due at 2); worker 0 awake with a
		 * task queued */
		mem[IDLE_STATE] = UNPARK_ONE;
		pending(0, 2, 1);
		mem[LQT(0)] = 1;
		created = 1;
		run worker(0, false, 0);
		sleeping(1, 2);
#elif SCEN == 5
		/* worker 1 keeps timer 0 (due at 2), worker 0 sleeps; a
		 * pinned task is about to be handed to worker 1 */
		mem[IDLE_STATE] = 0;
		pending(0, 2, 0);
		sleeping(0, 0);
		sleeping(1, 2);
		run pinner();
#else
		/* worker 1 keeps timer 0 (due at 1), worker 0 sleeps; in
		 * scenario 3 timer 1 (due at 2) is pending already */
		mem[IDLE_STATE] = 0;
		pending(0, 1, 1);
#if SCEN == 3
		pending(1, 2, 0);
#endif
		sleeping(0, 0);
		sleeping(1, 1);
#endif
		mem[NEXT(0)] = WHEEL_EARLIEST(0);
		mem[NEXT(1)] = WHEEL_EARLIEST(1);
		run clock();
		run monitor();
		run join();
		i = 0;
		do
		:: i < NT -> run flusher(i); i++
		:: else -> break
		od;
		i = 0
	}
}
