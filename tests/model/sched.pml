/*
 * Workers, run queues and the idle protocol (runtime/worker.c,
 * runtime/idle.c, runtime/inject.c, runtime/lq.h), and with -DTIMERS
 * the timer keeper (timers.pml: runtime/timer.c), on the store buffers of
 * tso.pml. Included by idle_notify.pml and timer_keeper.pml, which define
 * NW (the number of workers, 2 or 3), NT, and then include worker.pml
 * after saying what a task does (run_task).
 *
 * Every step names the C it stands for as file:function. Left out:
 *   - next slots (worker.c weft__worker_schedule's non-yield path): a task there is
 *     run by its owner, which is awake (it just put it there), and they are
 *     not "work pending" for idle.c either; the watcher (idle.c
 *     watch_claim) exists only for them. A spawned task is modelled as the
 *     task the next slot displaces: lq_push, then idle_notify(false). The
 *     slot's own hand-over between its owner and a thief (and the woken
 *     list behind it) is modelled in next_slot.pml.
 *   - remote_n and in_ring_wait (runtime/ring.c: the pinned-task hand-over is
 *     modelled, with -DPINS, as a queue only its owner takes from and a
 *     ring wake that always comes), stopping, the stack trim timeout, I/O
 *     completions, timer cancellation.
 *   - the every-61st-tick inject check and timer poll (worker.c
 *     pick_periodic): they change the order of places a worker looks in.
 *   - the sleeper stack's order: notify pops any sleeper, not the top
 *     (more behaviours than LIFO).
 *   - lqueue slots: a queue is its head and tail (what lq_len, push, pop and
 *     steal decide on); the slots are lq.h's own protocol.
 *
 * Shared locations (index in mem[]):
 *   IDLE_STATE  rt->idle_state: searching + 4 * unparked (NW <= 3)
 *   IDLE_LOCK   rt->idle_lock
 *   SLEEPERS    rt->sleepers and each w->sleeping, as a bit mask. They are
 *               written together, only under idle_lock, and read only under
 *               it, so one location is exact.
 *   INJ_LOCK    rt->inject_lock
 *   INJ_LEN     rt->inject_len (and the list, which moves with it under
 *               the lock; only the length is read without the lock)
 *   NOTIFIED(w) w->notified
 *   LQH(w), LQT(w)  w->lq.head, w->lq.tail
 *   with TIMERS: WHEEL_LOCK(wh) and NEXT(wh) (worker wh's wheel: its
 *               lock and its next), KEEPER (0 = NULL, else w + 1),
 *               KEEPER_UNTIL
 * Not in mem[] (sequentially consistent):
 *   tok[w]      the worker's eventfd / MSG_RING wake: set by ring_wake,
 *               which is a system call (the kernel takes locks: a full
 *               barrier), consumed by a ring_wait that blocks. It stays
 *               pending until then (idle.c file comment).
 *   the timer wheels (timers.pml): each read and written only under its
 *               WHEEL_LOCK.
 *
 * Steps are merged where tso.pml's rules (a)-(e) make that exact; each
 * merge says which rule.
 */

#define NS(s) ((s) % 4)
#define NU(s) ((s) / 4)
#define SEARCH_ONE 1
#define UNPARK_ONE 4

#define IDLE_STATE 0
#define IDLE_LOCK 1
#define SLEEPERS 2
#define INJ_LOCK 3
#define INJ_LEN 4
#define NOTIFIED(w) (5 + (w))
#define LQH(w) (5 + NW + (w))
#define LQT(w) (5 + 2 * NW + (w))
#define NA_IDLE (5 + 3 * NW)
#ifdef TIMERS
#define WHEEL_LOCK(wh) (NA_IDLE + (wh))
#define NEXT(wh) (NA_IDLE + NW + (wh))
#define KEEPER (NA_IDLE + 2 * NW)
#define KEEPER_UNTIL (NA_IDLE + 2 * NW + 1)
#define NA (NA_IDLE + 2 * NW + 2)
#else
#define NA NA_IDLE
#endif

#include "tso.pml"

bool tok[NW];		/* pending ring wake */
#ifdef PINS
byte pins[NW];		/* pinned tasks handed to w (ghost queue) */
#endif
bool asleep[NW];	/* committed to, or blocked in, a ring_wait (ghost) */
byte created = 0;	/* tasks made runnable (ghost) */
byte ran = 0;		/* tasks that have run to their end (ghost) */

/* worker.c search() looks twice (for (round = 0; round < 2; ...)). One
 * round is enough here: a round that finds nothing has no effect but the
 * time it takes, so a second round is the first one run later, which the
 * interleavings already include. */
#ifndef ROUNDS
#define ROUNDS 1
#endif

/* Temporaries back to 0 wherever a worker can rest, so that states that
 * differ only in dead values are one state. */
#ifdef TIMERS
#define RESET_TIMER_TMP d = 0; again = 0; k = 0; fired = 0; j = 0; tn = 0; \
	m2 = 0; polled = false; fany = false;
#else
#define RESET_TIMER_TMP
#endif
#define RESET_TMP_BODY \
	got = false; more = false; last = false; ok = false; \
	s = 0; m = 0; v = 0; old = 0; r = 0; h = 0; tl = 0; \
	n = 0; i = 0; take = 0; round = 0; \
	RESET_TIMER_TMP \
	skip

/* runtime/ring.c weft__ring_wake: eventfd_write or MSG_RING, a system call. */
inline ring_wake(t, v)
{
	atomic {
		BUF_EMPTY(t) -> tok[v] = true;
		printf("t%d: ring_wake(w%d)\n", t, v)
	}
}

/* idle.c weft__idle_notify(rt, fenced), run by thread t.
 * Uses s, m, v, old of the caller. */
inline idle_notify(t, fenced)
{
	if
	:: fenced ->
#ifndef INJ_NO_NOTIFY_FENCE
		/* atomic_thread_fence(seq_cst): pairs with the last
		 * searcher's seq_cst RMW in idle_park; then the relaxed
		 * load (rule c) */
		FENCE_LOAD(t, IDLE_STATE, s)
#else
		/* bug injection: the fence left out */
		LOAD(t, IDLE_STATE, s)
#endif
	:: else -> LOAD(t, IDLE_STATE, s)	/* relaxed */
	fi;
	if
	:: NS(s) != 0 || NU(s) >= NW -> skip
	:: else ->
		LOCK_LOAD(t, IDLE_LOCK, SLEEPERS, m);	/* rule d */
		/* s = idle_state (relaxed); w = rt->sleepers; then either
		 * the unlock, or the pop: rt->sleepers = w->sleep_next,
		 * w->sleeping = false (rule b) */
		atomic {
			ROOM(t) ->
			VIEW(t, IDLE_STATE, s);
			printf("t%d: load [%d] = %d\n", t, IDLE_STATE, s);
			if
			:: NS(s) != 0 || m == 0 -> S_PST(t, IDLE_LOCK, 0); v = NW
			:: else ->
				if
				:: m & 1 -> v = 0
				:: m & 2 -> v = 1
				:: m & 4 -> v = 2
				fi;
				S_PST(t, SLEEPERS, m & ~(1 << v))
			fi
		};
		if
		:: v < NW ->
			/* "The woken worker starts out as a searcher."
			 * fetch_add (seq_cst), the release store of notified
			 * and the unlock (rule a) */
			atomic {
				RMW_GUARD(t, IDLE_STATE) && ROOMK(t, 3) ->
				S_FADD(t, IDLE_STATE, UNPARK_ONE + SEARCH_ONE, old);
				S_BST(t, NOTIFIED(v), 1);
				S_BST(t, IDLE_LOCK, 0)
			};
			ring_wake(t, v)
		:: else
		fi
	fi
}

/* lq.h weft__lq_push, owner w: tail + 1 (release store). Only the
 * owner writes tail, so its relaxed load of tail is folded into the store
 * step; the load of head only serves the full check, and the queue never
 * fills here. Also the end of weft__lq_steal, which publishes k tasks in
 * the thief's own queue. */
inline lq_publish(w, k) { OWN_ADD(w, LQT(w), k, tl) }
#define lq_push(w) lq_publish(w, 1)

/* lq.h weft__lq_pop(&w->lq, &more), then worker.c pick_local's
 * "if (more) weft__idle_notify(w->rt, false)". */
inline lq_pop_local(w)
{
	/* Head and tail (both acquire) are read as of one instant, the
	 * tail load (rule e). That is exact: if head moved in between, the
	 * CAS below fails and the loop reloads it; if it did not, the
	 * instant read sees what the two loads saw. */
	do
	:: LOAD2(w, LQH(w), h, LQT(w), tl);
		if
		:: h == tl -> break
		:: else ->
			more = (tl - h > 1);
			CAS(w, LQH(w), h, h + 1, ok);	/* acq_rel */
			if :: ok -> got = true; break :: else fi
		fi
	od;
	if
	:: got && more -> idle_notify(w, false)
	:: else
	fi
}

/* worker.c pick_inject -> inject.c weft__inject_pop(rt, w, room/2 + 1):
 * takes one task to run and moves len/NW more into w's queue (room is
 * never short here). */
inline pick_inject(w)
{
	LOAD(w, INJ_LEN, r);	/* relaxed hint */
	if
	:: r == 0 -> skip
	:: else ->
		LOCK_LOAD(w, INJ_LOCK, INJ_LEN, r);	/* rule d */
		if
		:: r == 0 -> UNLOCK(w, INJ_LOCK)
		:: else ->
			take = r / NW + 1;
			if :: take > r -> take = r :: else fi;
			got = true;
			i = 1;
			do
			:: i < take -> lq_push(w); i++
			:: else -> break
			od;
			UNLOCK_AFTER(w, INJ_LEN, r - take, INJ_LOCK)
		fi
	fi
}

/* worker.c pick_local (no next slot, no pins): the local queue, then
 * pick_rest -> pick_inject. */
inline pick_local(w)
{
	got = false;
#ifdef PINS
	/* pinned tasks handed over by other threads (worker.c remote_drain,
	 * then w->pins): the owner's alone, never stolen */
	if
	:: atomic { pins[w] > 0 -> pins[w]--; got = true }
	:: else
	fi;
	if
	:: got -> skip
	:: else ->
#endif
#ifndef NO_LQ
	lq_pop_local(w);
#endif
#ifndef NO_INJECT
	if
	:: !got -> pick_inject(w)
	:: else
	fi
#else
	skip
#endif
#ifdef PINS
	fi
#endif
}

/* lq.h weft__lq_steal(&v->lq, &w->lq): takes half (rounded up) of
 * v's tasks, runs one, publishes the rest in w's queue. */
inline lq_steal(w, v)
{
	do
	:: LOAD2(w, LQH(v), h, LQT(v), tl);	/* as in lq_pop_local */
		assert(tl >= h);
		n = tl - h;
		n = n - n / 2;
		if
		:: n == 0 -> break
		:: else ->
			CAS(w, LQH(v), h, h + n, ok);	/* acq_rel */
			if :: ok -> got = true; break :: else fi
		fi
	od;
	if
	:: got && n > 1 -> lq_publish(w, n - 1)	/* release */
	:: else
	fi
}

/* idle.c weft__idle_try_search, then worker.c search(): the inject queue
 * and every other worker's queue. steal_next (next slots) is left out. */
inline search(w)
{
	ok = searching;
	if
	:: !searching ->
		LOAD(w, IDLE_STATE, s);	/* relaxed */
		if
		:: 2 * NS(s) >= NW -> skip
		:: else ->
			FADD(w, IDLE_STATE, SEARCH_ONE, old);	/* seq_cst */
			searching = true;
			ok = true
		fi
	:: else
	fi;
	if
	:: ok ->
		round = 0;
		do
		:: round < ROUNDS && !got ->
#ifndef NO_INJECT
			pick_inject(w);
#endif
#ifndef NO_LQ
			/* victims from a random start */
			if
			:: true -> v = (w + 1) % NW
			:: NW > 2 -> v = (w + 2) % NW
			fi;
			i = 0;
			do
			:: i < NW - 1 && !got ->
				lq_steal(w, v);
				v = (v + 1) % NW;
				if :: v == w -> v = (v + 1) % NW :: else fi;
				i++
			:: else -> break
			od;
#endif
			round++
		:: else -> break
		od
	:: else
	fi
}

/* idle.c weft__idle_stop_search */
inline stop_search(w)
{
	searching = false;
	FADD(w, IDLE_STATE, -SEARCH_ONE, old);	/* seq_cst */
	if
	:: NS(old) == 1 -> idle_notify(w, false)
	:: else
	fi
}

/* idle.c work_pending: relaxed loads of inject_len and each queue's
 * head and tail (acquire, lq.h weft__lq_len). */
inline work_pending(w)
{
	more = false;
#ifndef NO_INJECT
	LOAD(w, INJ_LEN, r);
	more = (r != 0);
#endif
#ifndef NO_LQ
	i = 0;
	do
	:: i < NW && !more ->
		/* head, then tail, read here at one instant (rule e). Two
		 * loads at different times see at least as much: tail only
		 * grows, so tail(later) - head(earlier) >= tail - head at any
		 * instant between. The model can only see less work than the
		 * code, and so notify less: a pass stays a pass. */
		LOAD2(w, LQH(i), h, LQT(i), tl);
		more = (tl != h);
		i++
	:: else -> break
	od
#else
	skip
#endif
}

/* idle.c idle_unpark */
inline idle_unpark(w)
{
	XCHG(w, NOTIFIED(w), 0, old);	/* acquire */
	if
	:: old -> searching = true	/* counted unparked and searching */
	:: else ->
		/* Woken by something else: off the sleeper stack, unless a
		 * notifier got there first. Lock, read sleepers (rule d),
		 * and if we are on it, take us off (rule b). */
		atomic {
			ROOM2(w) ->
			LOCK_LOAD(w, IDLE_LOCK, SLEEPERS, m);
			if
			:: m & (1 << w) -> S_PST(w, SLEEPERS, m & ~(1 << w))
			:: else
			fi
		};
		if
		:: m & (1 << w) ->
			/* fetch_add (seq_cst), then the unlock (rule b) */
			atomic {
				RMW_GUARD(w, IDLE_STATE) && ROOM2(w) ->
				S_FADD(w, IDLE_STATE, UNPARK_ONE, old);
				S_PST(w, IDLE_LOCK, 0)
			}
		:: else ->
			/* A notifier popped us: its notified store came
			 * before its unlock. The exchange, then the unlock
			 * (rule b). */
			atomic {
				RMW_GUARD(w, NOTIFIED(w)) && ROOM2(w) ->
				RMW_READ(w, NOTIFIED(w), tso_v); old = tso_v;
				tso_v = 0;
				RMW_WRITE(w, NOTIFIED(w), 0);
				S_PST(w, IDLE_LOCK, 0)
			};
			assert(old);
			searching = true
		fi
	fi
}

/* runtime/ring.c weft__ring_wait(w, timeout): the seq_cst store of
 * in_ring_wait (a fence: no model reads in_ring_wait), a seq_cst load of
 * notified (rule c), and if it is clear, the wait: until a ring wake, or
 * (TIMERS) until the clock reaches until[w] (0: no timeout). A sleep is a
 * valid end state. */
inline ring_wait(w)
{
	d_step {
		BUF_EMPTY(w) ->
		VIEW(w, NOTIFIED(w), r);
		printf("t%d: fence, load notified [%d] = %d\n", w,
		       NOTIFIED(w), r);
		if
		:: r == 0 -> RESET_TMP_BODY; asleep[w] = true
		:: else
		fi
	};
	if
	:: !asleep[w] -> skip
	:: else ->
end_sleep:	if
		:: atomic {
			tok[w] -> tok[w] = false; asleep[w] = false;
#ifdef TIMERS
			until[w] = 0;
#endif
			printf("t%d: woken\n", w)
		}
#ifdef TIMERS
		:: atomic {
			until[w] != 0 && now >= until[w] -> asleep[w] = false;
			printf("t%d: wakes at its timeout %d\n", w, until[w]);
			until[w] = 0
		}
#endif
		fi
	fi
}

#ifdef TIMERS
#include "timers.pml"
#endif

/* idle.c weft__idle_park */
inline idle_park(w)
{
	/* lock; sleepers read here rather than after the fetch_sub: nobody
	 * else can change it meanwhile (rule d) */
	LOCK_LOAD(w, IDLE_LOCK, SLEEPERS, m);
	if :: searching -> n = UNPARK_ONE + SEARCH_ONE :: else -> n = UNPARK_ONE fi;
#if !defined(WEAK_RMW) || defined(INJ_NO_PARK_FENCE)
	/* fetch_sub (seq_cst); push on the sleeper stack; unlock (rule b).
	 * The seq_cst fence that follows in idle.c is left out here: under
	 * TSO the RMW has drained the buffer, so the fence is a no-op (and
	 * merging keeps the state space small); under WEAK_RMW this branch
	 * is the bug injection INJ_NO_PARK_FENCE (the code before 5fb7831). */
	atomic {
		RMW_GUARD(w, IDLE_STATE) && ROOMK(w, 3) ->
		S_FADD(w, IDLE_STATE, -n, old);
		S_PST(w, SLEEPERS, m | (1 << w));
		S_PST(w, IDLE_LOCK, 0)
	};
#else
	FADD(w, IDLE_STATE, -n, old);
	/* idle.c: atomic_thread_fence(seq_cst) after the fetch_sub (the
	 * fix for C11 / AArch64), so the loads below cannot be satisfied
	 * before it. */
	FENCE(w);
	PUNLOCK_AFTER(w, SLEEPERS, m | (1 << w), IDLE_LOCK);
#endif
	last = searching && NS(old) == 1;
	searching = false;
	/* "The seq_cst RMW above orders this re-scan after it." Under TSO
	 * it does: the RMW drained the buffer, and loads are not reordered
	 * with it. */
	if
	:: last ->
#ifndef INJ_NO_RESCAN
		work_pending(w);
		if :: more -> idle_notify(w, false) :: else fi
#else
		skip	/* bug injection: no re-scan */
#endif
	:: else
	fi;
#ifdef TIMERS
	timer_keep(w);	/* sets keep */
	/* "The timer keeper sleeps no longer than the earliest timer":
	 * wait_ns = keep - now, or 1 if due already */
	if
	:: keep == 0 -> skip
	:: keep != 0 && keep <= now -> until[w] = now
	:: else -> until[w] = keep
	fi;
#endif
park_wait:
	ring_wait(w);
	/* "Off the sleeper stack first" */
	idle_unpark(w);
#ifdef TIMERS
	/* "Fire what is due (every wheel: this worker is idle). A keeper
	 * keeps its role": it gives it up in the worker loop, before it
	 * runs a task (worker.pml) */
	timer_poll(w);
	keep = 0;
#endif
}
