/*
 * weft_select with a channel case and a descriptor (or task) case
 * (runtime/chan.c): the channel case is a grant that moves a value, the
 * descriptor case only an observation. The select must report the grant
 * whenever a granter won its sel word, and no granter may touch the
 * select's node once the select has returned (the node is on its stack).
 *
 * Cast
 *   S  the select, from its park on: its wq node is linked on the channel
 *      and its watch started. It waits (the park protocol, modelled in
 *      park_wake.pml, keeps every wake that comes before the park: here a
 *      guard on the conditions) until sel_ready() holds: the word won by a
 *      granter AND that node DONE (the case is reported), or the word still
 *      OPEN and the watch done (SEEN); or until a cancellation, which
 *      gives up through sel_leave(). After SEEN it claims the word with
 *      sel_leave() (CAS OPEN -> GAVE_UP): won, the descriptor is reported;
 *      lost, it waits for the granter's DONE and reports the grant. Then,
 *      unless the channel granted it, it unlinks its node under the
 *      channel's lock, and returns.
 *   G  a sender on a rendezvous channel: under the lock, a linked node
 *      whose word is OPEN is claimed by CAS (weft__wq_take), the value
 *      written into it and the node marked DONE (weft__wq_grant), all
 *      before the unlock; a node whose word is taken is left alone. With
 *      no node to take, the sender keeps its value.
 *   O  the watch's completion: done, at any time, or never.
 *   X  a cancellation, at any time, or never.
 *
 * The lock makes G's steps atomic with respect to S's unlink; the word's
 * CASes are atomic. Sequentially consistent: the orderings (acq_rel CAS,
 * release DONE) are those park_wake.pml and the wq protocol argue.
 *
 * Properties: S returns (an invalid end state is a select parked for
 * ever); the value moved if and only if S reports the channel case; G
 * never writes into a node after S returned.
 *
 * Variants
 *   (default)               as in chan.c; must pass.
 *   -DINJ_SEEN_WINS         after SEEN, the descriptor is reported whatever
 *                           sel_leave() found: a grant that won the word
 *                           is lost; must FAIL.
 *   -DINJ_NO_LEAVE          after SEEN, the word is not claimed at all: a
 *                           granter that wins it before the unlink moves
 *                           its value into a select that reports the
 *                           descriptor; must FAIL.
 */

#define OPEN	255
#define GAVE_UP	254
#define WAITING	0
#define DONE	2

#define R_NONE	0
#define R_CHAN	1
#define R_FD	2
#define R_CANCEL 3

byte winner = OPEN;	/* the sel word */
byte state = WAITING;	/* S's node */
bool linked = true;	/* S's node on the channel's receive queue */
bool lock = false;	/* the channel's lock */
bool moved = false;	/* G's value went into S's node */
bool watch_done = false;
bool cancel = false;
bool returned = false;	/* S returned: its node is gone */
byte res = R_NONE;

inline LOCK() { atomic { !lock -> lock = true } }
inline UNLOCK() { lock = false }

active proctype G()
{
	LOCK();
	if
	:: linked ->
		if
		:: atomic { winner == OPEN -> winner = 0 };
			/* granted under the lock: value, then DONE */
			assert(!returned);
			moved = true;
			linked = false;
			state = DONE
		:: atomic { winner != OPEN -> skip }	/* taken: leave it */
		fi
	:: else		/* no receiver: the sender keeps its value */
	fi;
	UNLOCK()
}

active proctype O()
{
	if
	:: watch_done = true
	:: skip
	fi
}

active proctype X()
{
	if
	:: cancel = true
	:: skip
	fi
}

active proctype S()
{
	byte won;

	/* weft__wait(): ready() first, then the cancellation */
	if
	:: atomic { winner == 0 && state == DONE -> res = R_CHAN }
	:: atomic { winner == OPEN && watch_done -> res = R_FD }	/* SEEN */
	:: cancel -> res = R_CANCEL
	fi;
	if
	:: res == R_FD || res == R_CANCEL ->
#ifdef INJ_NO_LEAVE
		skip
#else
		/* sel_leave() */
		atomic {
			if
			:: winner == OPEN -> winner = GAVE_UP; won = OPEN
			:: else -> won = winner
			fi
		};
		if
		:: won != OPEN ->
			state == DONE;		/* the grant is on its way */
#ifndef INJ_SEEN_WINS
			res = R_CHAN
#else
			skip
#endif
		:: else
		fi
#endif
	:: else
	fi;
	/* sel_unlink(): every channel but the one that granted */
	if
	:: res != R_CHAN ->
		LOCK();
		linked = false;
		UNLOCK()
	:: else
	fi;
	atomic {
		returned = true;
		assert(moved == (res == R_CHAN))
	}
}

/* The value is never lost: once G is done, it moved exactly when S
 * reported the channel. Checked at S's return above; G's write after the
 * return is caught by its own assertion. */
