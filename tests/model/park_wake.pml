/*
 * The task park/wake protocol (runtime/wait.h, file comment "Park/wake
 * protocol" and "Why every waker writes park") under x86-TSO.
 *
 * Cast
 *   T      one task in a wait loop, and the contexts it lands on when it
 *          switches away (the lander of weft__worker_after_switch, worker.c).
 *          The wait is the one of bug 1 of issue 9: it ends only when DONE
 *          is set; a cancel wakes it but cannot end it (a shielded wait, or
 *          weft_pool_call() after its job was TAKEN: pool.c, "fn runs or
 *          ran: wait for it, leaving the cancellation pending"). T looks at
 *          the cancel flag until it has seen it once.
 *   A      weft_cancel() (task.c): stores cancel (release), then
 *          weft__task_wake().
 *   B      the completer (job_run() in pool.c, a future's grant in sync.c):
 *          stores DONE (release), then weft__task_wake().
 *   sched  the workers' run queues: runs T once it is queued (worker.c
 *          pick_local/search, then switch_to).
 *
 * T, its landers and the worker that later resumes it are modelled as one
 * thread with one store buffer. That is exact for what matters here: a
 * lander runs on the thread T just left (same buffer), and T can resume on
 * another worker only after being queued, i.e. after an RMW (the lander's
 * or a waker's CAS on park) and the run queue's own locked operations,
 * which have drained every store T made before.
 *
 * Variants
 *   -DOLD_WAKE  task_wake() as before the fix: a waker that finds NOTIFIED
 *               returns after its plain load. Must FAIL (invalid end state:
 *               T parked for good with DONE set).
 *   (default)   task_wake() as fixed (task.c task_wake, case
 *               WEFT__NOTIFIED): CAS(NOTIFIED -> NOTIFIED), an RMW, so the
 *               waker's DONE store is in memory before the task's next
 *               exchange can read NOTIFIED. Must pass.
 *   -DSC        no store buffers: the old variant passes too, which shows
 *               that bug 1 is a store-buffering bug.
 *   -DWEAK_RMW  RMWs that are not full fences (tso.pml): the fixed variant
 *               still passes, as the C11 argument in task.c says it must
 *               (it rests on the modification order of park, not on
 *               fences).
 *
 * Property: T ends in every complete execution. A T that stays parked is
 * blocked at its "parked" guard, which is not an end label, so SPIN
 * reports it as an invalid end state (the lost wake-up). Assertions check that T is
 * queued at most once and never while its stack is in use (task.c:
 * "a task is never queued while it is still on its stack").
 */
#define NT 3		/* threads: T, A, B */
#define NA 3		/* locations: park, done, cancel */
#define B 2		/* one plain store, plus an RMW write under WEAK_RMW */
#include "tso.pml"

#define TT 0
#define TA 1
#define TB 2

#define PARK 0
#define DONE 1
#define CANCEL 2

/* runtime/task.h: enum WEFT__RUNNING ... (the model's own numbering; in
 * task.h FREE is 0 since issue 17, and the order is the same) */
#define RUNNING 0
#define PARKING 1
#define PARKED 2
#define NOTIFIED 3

byte runq = 0;		/* T is on a run queue */
bool onstack = true;	/* T's stack is in use (it runs or is leaving) */
bool resumed = false;	/* the scheduler switched to T */

/* weft__worker_schedule() / weft__worker_schedule_remote() (worker.c), by thread t. */
inline queue_T(t)
{
	atomic {
		assert(runq == 0 && !onstack); runq++;
		printf("t%d: queues the task\n", t)
	}
}

/* task.c: task_wake(). s: the acquire load, then what each failed CAS
 * found (C semantics of compare_exchange). */
inline task_wake(t, s, ok)
{
	LOAD(t, PARK, s);
	do
	:: s == RUNNING || s == PARKING ->
		/* "Still on its stack: it (or its lander) sees this." */
		CAS(t, PARK, s, NOTIFIED, ok);
		if :: ok -> break :: else fi
	:: s == PARKED ->
		CAS(t, PARK, s, NOTIFIED, ok);
		if :: ok -> queue_T(t); break :: else fi
	:: s == NOTIFIED ->
#ifdef OLD_WAKE
		/* before 3cebdf0 ("park/wake: a waker that finds the task
		 * NOTIFIED still writes park (RMW)"): "default: NOTIFIED:
		 * already woken; FREE: gone", return */
		printf("t%d: NOTIFIED already: returns without an RMW\n", t);
		break
#else
		/* case WEFT__NOTIFIED: CAS(NOTIFIED -> NOTIFIED, release) */
		CAS(t, PARK, s, NOTIFIED, ok);
		if :: ok -> break :: else fi
#endif
	od
}

active proctype task()
{
	byte s, r;
	bool ok, taken = false;

	do
	:: /* weft__task_park_prepare (task.h): exchange(park, PARKING,
	    * acq_rel) */
		XCHG(TT, PARK, PARKING, s);
		/* the wait's condition (pool.c: atomic_load(&job.done,
		 * acquire); sync.c: the future's state) */
		LOAD(TT, DONE, r);
		if :: r -> break :: else fi;
		/* weft__wait_why / weft__task_cancel_pending (acquire load of
		 * cancel), until a cancel has been seen and could not end the
		 * wait (pool.c: taken = true) */
		if
		:: !taken ->
			LOAD(TT, CANCEL, r);
			if
			:: r -> taken = true;
				printf("t0: cancel seen; it cannot end this wait\n")
			:: else
			fi
		:: else
		fi;
		/* weft__task_park -> weft__worker_switch_out(WEFT__SW_PARK): T's stack is
		 * left; the lander, weft__worker_after_switch() case WEFT__SW_PARK
		 * (worker.c), commits the park. */
		onstack = false;
		printf("t0: switches away; its lander commits the park\n");
		s = PARKING;
		CAS(TT, PARK, s, PARKED, ok);
		if
		:: !ok ->
			/* "Only a waker moves PARKING on, and only to
			 * NOTIFIED." */
			assert(s == NOTIFIED);
			queue_T(TT)
		:: else -> printf("t0: PARKED\n")
		fi;
		/* Parked (or queued): wait to be run. Not an end state. */
parked:		atomic { resumed -> resumed = false }
	od;
	/* weft__task_park_done: store(park, RUNNING, relaxed) */
	STORE(TT, PARK, RUNNING)
}

active proctype canceller()
{
	byte s;
	bool ok;

	/* weft_cancel: atomic_store(&t->cancel, 1, release) */
	STORE(TA, CANCEL, 1);
	task_wake(TA, s, ok)
}

active proctype completer()
{
	byte s;
	bool ok;

	/* job_run: atomic_store(&j->done, 1, release) */
	STORE(TB, DONE, 1);
	task_wake(TB, s, ok)
}

/* A worker picks T from its run queue and switches to it. */
active proctype sched()
{
end:	do
	:: atomic {
		runq > 0 ->
		runq--;
		assert(!onstack);
		onstack = true;
		resumed = true;
		printf("sched: runs the task\n")
	}
	od
}

init
{
	atomic {
		printf("legend: t0 = the task and its landers, t1 = canceller, t2 = completer; [0] = park (0 RUNNING 1 PARKING 2 PARKED 3 NOTIFIED), [1] = done, [2] = cancel\n");
		run flusher(TT);
		run flusher(TA);
		run flusher(TB)
	}
}
