/*
 * A task's wait for readiness on the epoll reactor (runtime/epoll.c,
 * weft__epoll_wait_fd, and the read calls of io/ops.c around it), against
 * the worker that collects the events (its loop once the task parked, or
 * a rescuer on another thread at any time) and a cancellation.
 *
 * Cast
 *   K  the kernel: data arrives once on the descriptor; a one-shot
 *      registration that is armed then queues one event and disarms.
 *   T  the task: a read (the data, or -EAGAIN), skipped when the worker
 *      guesses the descriptor is dry; on -EAGAIN the wait: under cq_lock
 *      it arms (EPOLL_CTL_MOD: arms, and queues an event at once if data
 *      is already there) and links its record, then parks until the
 *      record is done (the park protocol keeps a wake that comes before
 *      the park: wait.h, modelled in park_wake.pml) or it is cancelled;
 *      a completed wait reads again. A cancellation is given up under
 *      cq_lock: the record is unlinked unless the collector took it,
 *      in which case the task waits for `done` (ep_give_up).
 *   C  the collector: takes a queued event (epoll_wait), then under
 *      cq_lock takes the linked record out of the list (ep_take), and
 *      after the lock completes it (ep_finish: done, then the wake). An
 *      event with no record linked is dropped (spurious).
 *   X  the canceller: cancels the task once, or never.
 *
 * Every shared variable but the kernel's state is under cq_lock, and the
 * kernel's calls are atomic, so the model is sequentially consistent: what
 * it checks is the order of the steps, not fences (done's release/acquire
 * pairing is park_wake.pml's).
 *
 * Properties: the task ends (an invalid end state is a task parked for
 * ever: a lost readiness); ended without a cancellation it has read the
 * data; a record is never completed after its task returned (the record
 * is on the task's stack).
 *
 * Variants
 *   (default)          as in epoll.c; must pass.
 *   -DINJ_ARM_OUTSIDE  the arming before cq_lock is taken and the record
 *                      linked: an event collected in between finds no
 *                      record and is dropped; must FAIL (task parked for
 *                      ever).
 *   -DINJ_GIVE_UP_BY_DONE  the cancellation decides by `done` whether
 *                      the collector took the record, as the first
 *                      version of ep_give_up() did; a record taken out of
 *                      the list but not completed yet then looks free:
 *                      must FAIL (a record completed after its task
 *                      returned).
 */

bool data = false;	/* K: bytes to read */
bool armed = false;	/* K: the one-shot registration is armed */
bool queued = false;	/* K: an event on the ready list */
bool lock = false;	/* cq_lock */
bool linked = false;	/* T's record in the descriptor's list */
bool done = false;	/* T's record completed */
bool taken = false;	/* C took T's record out of the list */
bool cancel = false;	/* X asked */
bool returned = false;	/* T's call returned: its record is gone */
bool got = false;	/* T read the data */
bool cancelled = false;	/* T's call returned -ECANCELED */

inline LOCK() { atomic { !lock -> lock = true } }
inline UNLOCK() { lock = false }

/* epoll_ctl(MOD, EPOLLONESHOT): armed, and data already there reported. */
inline MOD()
{
	atomic {
		armed = true;
		if
		:: data -> queued = true; armed = false
		:: else
		fi
	}
}

active proctype K()
{
	atomic {
		data = true;
		if
		:: armed -> queued = true; armed = false
		:: else
		fi
	}
}

active proctype X()
{
	if
	:: cancel = true
	:: skip
	fi
}

active proctype C()
{
	do
	:: atomic { queued -> queued = false };
		LOCK();
		if
		:: linked -> linked = false; taken = true
		:: else		/* nobody waits: spurious */
		fi;
		UNLOCK();
		if
		:: taken ->
			atomic {
				assert(!returned); /* the record still exists */
				taken = false;
				done = true
			}
		:: else
		fi
	:: returned -> break
	od
}

active proctype T()
{
	bool dry;

	if
	:: dry = true
	:: dry = false
	fi;
again:
	if
	:: !dry ->
		if
		:: atomic { data -> data = false; got = true };
			goto out
		:: atomic { !data -> skip }	/* -EAGAIN */
		fi
	:: else
	fi;
	dry = false;
	/* weft__epoll_wait_fd: the cancellation is looked at first */
	if
	:: cancel -> cancelled = true; goto out
	:: else
	fi;
	done = false;
#ifdef INJ_ARM_OUTSIDE
	MOD();
	LOCK();
#else
	LOCK();
	MOD();
#endif
	linked = true;
	UNLOCK();
	/* weft__wait: done, or a cancellation first */
	if
	:: done -> goto again
	:: cancel ->
		LOCK();
		if
#ifdef INJ_GIVE_UP_BY_DONE
		:: !done ->
#else
		:: linked ->	/* still in the list: nobody took it */
#endif
			linked = false;
			UNLOCK();
			cancelled = true;
			goto out
		:: else ->
			UNLOCK()
		fi;
		done;	/* held: the collector took it, its wake comes */
		goto again
	fi;
out:
	atomic {
		returned = true;
		assert(got || cancelled)
	}
}
