/*
 * The worker process (runtime/worker.c weft__worker_loop). Included after
 * sched.pml, after the model's run_task(w), which says what a task does
 * when it runs, and after its FINISHED.
 */

/* worker.c weft__worker_loop, one worker. asleep0: it starts asleep in
 * idle_park, on the sleeper stack (init counts it parked and sets up
 * anything else, e.g. its timeout); keep0: what timer_keep returned
 * before that sleep (TIMERS). */
proctype worker(byte w; bool asleep0; byte keep0)
{
	bool searching = false, got, more, last, ok;
	byte s, m, v, old, r, h, tl, n, i, take, round;
#ifdef TIMERS
	byte keep, d, again, k, fired, j, tn, m2;
	bool polled, fany;
	bool keeping = false;	/* w->keeping: w holds the keeper role */
#endif

	if
	:: asleep0 ->
#ifdef TIMERS
		keep = keep0;
		keeping = keep0 != 0;
#endif
		goto park_wait
	:: else
	fi;
	/* Once FINISHED holds (the model has done what it checks), workers
	 * stop at the top of their loop (a valid end state): what they could
	 * still do cannot matter, and leaving it out keeps the state space
	 * small. */
end_top:
	do
	:: d_step { !FINISHED -> RESET_TMP_BODY };
#ifdef TIMERS
pick:
#endif
		pick_local(w);
#ifdef TIMERS
		/* "if (!t && idle_work(w)) t = pick_local(w);": idle_work
		 * fires due timers, true if that may have made tasks runnable
		 * here (one copy of pick_local for both calls: polled) */
		if
		:: !got && !polled ->
			polled = true;
			timer_poll(w);
			if :: fired > 0 -> goto pick :: else fi
		:: else
		fi;
#endif
		if :: !got -> search(w) :: else fi;
		/* "A worker woken by a notify comes back counted as
		 * searching; ... it must stop searching" */
		if :: got && searching -> stop_search(w) :: else fi;
		if
		:: !got -> idle_park(w)
		:: else ->
#ifdef TIMERS
			/* "The timer keeper keeps its role while it idles and
			 * parks again; it gives it up ... only now that it
			 * runs a task" */
			if
#ifndef INJ_KEEP_WHILE_RUNNING
			:: keeping -> timer_unkeep(w)
#endif
			:: else
			fi;
#endif
			run_task(w)
		fi
	od
}
