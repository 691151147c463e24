/*
 * The stall watchdog's question to a worker and the worker's answer
 * (runtime/stall.c, struct weft__stall_slot in stall.h): the slot's frames
 * and name are written by a signal handler on the worker's thread and
 * read by the watchdog thread, handed over through one state word.
 *
 * Cast
 *   D  the watchdog, asking ROUNDS times (ask()): drops a stale DONE (a
 *      late answer to a question it gave up on) with a CAS DONE -> IDLE,
 *      then asks with a CAS IDLE -> ASKED (a slot still FILLING is not
 *      asked that round), sends the signal, then waits for DONE; or, its
 *      patience gone (at any moment: the model does not count time),
 *      takes the question back with a CAS ASKED -> IDLE. If that CAS
 *      fails a handler has the slot, and D waits for DONE after all, but
 *      within a bound: it may give up again and leave the slot to the
 *      handler. After DONE it reads the slot and stores IDLE (look(),
 *      after print_report()).
 *   H  the worker's handler, run once per signal sent, as late as it
 *      likes (a realtime signal is queued; the worker may not be running):
 *      a CAS ASKED -> FILLING; if it wins, it writes the slot (two words,
 *      one at a time), then stores DONE.
 *
 * Stores and loads of `state` are single steps, the CAS an atomic one;
 * the model is sequentially consistent (the handler's release store of
 * DONE and D's acquire load order the slot's words on every machine; the
 * handler runs on one thread, so its own steps are in program order).
 *
 * Properties: nobody writes the slot while D reads it, and what D reads
 * is the answer to the question of its round (both words written by a
 * handler that took the slot while that question was open), not a torn
 * mix nor a late answer to an earlier question it took back.
 *
 * Variants
 *   (default)        as in stall.c; must pass.
 *   -DINJ_PLAIN_FILL the handler fills the slot without its CAS, whatever
 *                    the state: a late signal's handler writes while D
 *                    reads another answer; must FAIL.
 *   -DINJ_PLAIN_ASK  D asks with a plain store of ASKED, whatever the
 *                    state: over a handler still filling the slot after
 *                    D gave up waiting for it, whose DONE then reads as
 *                    the new question's answer; must FAIL.
 *   -DINJ_PLAIN_BACK D takes its question back by a load of ASKED and a
 *                    plain store of IDLE: a handler that took the slot in
 *                    between goes on, and D reads its late answer in the
 *                    next round as that round's; must FAIL.
 */

#define ROUNDS 3

#define IDLE 0
#define ASKED 1
#define FILLING 2
#define DONE 3

byte state = IDLE;
byte pending = 0;	/* signals sent, not yet handled */
byte w1 = 0, w2 = 0;	/* the slot's words */
byte writers = 0;	/* handlers between FILLING and DONE */
bool reading = false;	/* D between DONE and IDLE */
byte cur = 0;		/* the round of the question asked last */
bool finished = false;

active proctype watchdog()
{
	byte r = 1, s, a, b;

	do
	:: r <= ROUNDS ->
		/* A late answer to a question given up on is stale; a slot
		 * a handler still fills is not asked this round. */
#ifdef INJ_PLAIN_ASK
		atomic { state = ASKED; cur = r }
#else
		atomic { if :: state == DONE -> state = IDLE :: else fi }
		atomic {
			if
			:: state == IDLE -> state = ASKED; cur = r
			:: else -> goto next
			fi
		}
#endif
		pending++;
		if
		:: state == DONE
		:: true ->	/* patience gone */
#ifdef INJ_PLAIN_BACK
			if
			:: state == ASKED -> state = IDLE; goto next
			:: state != ASKED -> state == DONE
			fi
#else
			atomic {
				if
				:: state == ASKED -> state = IDLE; s = 1
				:: else -> s = 0
				fi
			}
			if
			:: s == 1 -> goto next
			:: else ->
				/* Its answer is coming, within a bound: or
				 * the handler never ends (a lock in the
				 * unwinder) and D gives up on the slot. */
				if
				:: state == DONE
				:: true -> goto next
				fi
			fi
#endif
		fi;
		/* Read the slot (print_report), then give it back. */
		reading = true;
		assert(writers == 0);
		a = w1;
		assert(writers == 0);
		b = w2;
		assert(a == r && b == r);
		reading = false;
		state = IDLE;
next:
		r++
	:: else -> break
	od;
	finished = true
}

active proctype handler()
{
	byte me;

end:	do
	:: pending > 0 ->
		pending--;
#ifdef INJ_PLAIN_FILL
		atomic { state = FILLING; me = cur }
#else
		/* The worker's state it captures is the state after the
		 * question it answers was asked: `cur` at the CAS. */
		atomic {
			if
			:: state == ASKED -> state = FILLING; me = cur
			:: else -> goto end
			fi
		}
#endif
		writers++;
		assert(writers == 1);
		assert(!reading);
		w1 = me;
		assert(!reading);
		w2 = me;
		writers--;
		state = DONE
	od
}
