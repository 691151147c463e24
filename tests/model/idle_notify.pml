/*
 * The idle/notify protocol (runtime/idle.c, file comment "Why no work is
 * stranded") under x86-TSO: no queued task is left while every worker
 * sleeps.
 *
 * Cast
 *   worker(0..NW-1)  worker.c weft__worker_loop with idle.c's search,
 *                    park and unpark (sched.pml). A task it runs may spawn
 *                    one more task onto its own queue (the task a next slot
 *                    displaces: lq_push, then idle_notify(false)), at most
 *                    NSPAWN in all.
 *   producer         a thread outside the runtime (a pool thread finishing
 *                    a job, weft_spawn from a foreign thread):
 *                    worker.c weft__worker_schedule_remote = inject.c
 *                    weft__inject_push, then weft__idle_notify(rt, true),
 *                    NP times. With NP=0 there is none, and worker 0
 *                    starts with a task in its queue instead.
 *   join             waits until every task made runnable has run.
 *
 * Property: join finishes in every complete execution. Idle workers sleep
 * at an end label, join waits at a plain one, so "all workers asleep while
 * a task is queued" is an invalid end state.
 *
 * Sizes: NW workers (2; 3 is correct but too large to check quickly),
 * NAWAKE of them awake at the start (the others asleep on the sleeper
 * stack), NP injected tasks, NSPAWN spawns; defaults NW=2, all awake,
 * NP=1, NSPAWN=0. tests/model/check runs NP=1 NSPAWN=0 (the Dekker pair of
 * a foreign producer and the last searcher) and NP=0 NSPAWN=3 (local
 * queues, stealing, and the notifies of pick_local and stop_search).
 *
 * Variants
 *   (default)          the code as it is, TSO: must pass.
 *   -DWEAK_RMW         RMWs are not full fences (tso.pml; AArch64 without
 *                      LSE, and C11); idle_park's seq_cst fence after its
 *                      fetch_sub keeps the last searcher's re-scan after
 *                      it: must pass. With -DINJ_NO_PARK_FENCE (the code
 *                      before 5fb7831) the re-scan may read the queues as
 *                      they were before the fetch_sub: the lost notify of
 *                      the Dekker pair, must fail.
 *   -DINJ_NO_NOTIFY_FENCE, -DINJ_NO_RESCAN  bug injections (the producer's
 *                      fence, the last searcher's re-scan): must fail, which
 *                      shows the model sees both halves of the Dekker pair.
 */
#ifndef NW
#define NW 2
#endif
#ifndef NP
#define NP 1
#endif
#ifndef NSPAWN
#define NSPAWN 0
#endif
#ifndef NAWAKE
#define NAWAKE NW	/* workers awake at the start; the others sleep */
#endif
#if NSPAWN == 0 && NP <= 1
/* No task ever reaches a local queue (inject_pop moves len/NW more, i.e.
 * none of one task): leave the queues out. */
#define NO_LQ
#endif
#if NP == 0
#define NO_INJECT	/* nothing is ever injected */
#define NT NW
#else
#define NT (NW + 1)
#endif
#define P NW		/* the producer's thread */
#ifndef B
#define B 3
#endif

#include "sched.pml"

byte spawned = 0;
bool pdone = false;

/* Every task made runnable has run, and no more can come. */
#define FINISHED (pdone && ran == created)

/* What a task does when a worker runs it: maybe spawn (weft_spawn ->
 * weft__worker_schedule(w, t, false): the displaced next-slot task goes to the
 * local queue and idle_notify(rt, false) follows). */
inline run_task(w)
{
	if
	:: spawned < NSPAWN ->
		atomic {
			spawned++; created++;
			printf("t%d: runs a task, which spawns one\n", w)
		};
		lq_push(w);
		idle_notify(w, false)
	:: true
	fi;
	atomic { ran++; printf("t%d: task done\n", w) }
}

#include "worker.pml"

proctype producer()
{
	byte s, m, v, old, r, i;

	i = 0;
	do
	:: i < NP ->
		/* inject.c weft__inject_push */
		LOCK_LOAD(P, INJ_LOCK, INJ_LEN, r);
		created++;
		UNLOCK_AFTER(P, INJ_LEN, r + 1, INJ_LOCK);	/* relaxed */
		/* worker.c weft__worker_schedule_remote: "No worker of ours runs
		 * here: the work must not be stranded." */
		idle_notify(P, true);
		i++
	:: else -> break
	od;
	pdone = true
}

proctype join()
{
	atomic {
		FINISHED ->
		printf("join: every task ran\n")
	}
}

init
{
	byte i;

	atomic {
		printf("legend: t0..t%d = workers, t%d = producer; [0] = idle_state (searching + 4 * unparked), [1] idle_lock, [2] sleepers (bit mask), [3] inject_lock, [4] inject_len, [5..] notified, lq heads, lq tails\n", NW - 1, P);
		/* Workers 0..NAWAKE-1 start in their loop, the others asleep. */
		mem[IDLE_STATE] = NAWAKE * UNPARK_ONE;
		i = 0;
		do
		:: i < NW ->
			if
			:: i < NAWAKE -> run worker(i, false, 0)
			:: else ->
				mem[SLEEPERS] = mem[SLEEPERS] | (1 << i);
				run worker(i, true, 0)
			fi;
			i++
		:: else -> break
		od;
#if NP > 0
		run producer();
#else
		/* the first task, queued on worker 0 */
		mem[LQT(0)] = 1;
		created = 1;
		pdone = true;
#endif
		run join();
		i = 0;
		do
		:: i < NT -> run flusher(i); i++
		:: else -> break
		od;
		i = 0
	}
}
