/*
 * Lease buffers going back to their pool (runtime/pbuf.c): releases from
 * threads other than the pool's owner, a second release of the same lease
 * (a copy of it), and the owner taking the returned buffers back and
 * handing them out again, all at once.
 *
 * Cast
 *   A, B  two foreign threads. A releases lease L0 (buffer 0). B releases
 *         its copy of L0 (a double release: exactly one of the two may
 *         succeed), then lease L1 (buffer 1). weft__pbuf_release: a CAS
 *         of the buffer's state from (generation, leased) to (generation,
 *         free), then weft__pbuf_give's push on the return stack: load
 *         the head, link the buffer's next to it, CAS the head.
 *   O     the owner: at any time takes the whole return stack
 *         (weft__pbuf_refill: an exchange of the head with 0, then a walk
 *         of the links) into its free list, and may hand a free buffer out
 *         again as a new lease (weft__pbuf_take + weft__pbuf_lease: the
 *         next generation) and release that lease itself (the owner's
 *         direct put). At the end it takes the stack once more.
 *
 * The RMWs are atomic steps and the rest single loads and stores; the
 * model is sequentially consistent (x86's CAS and XCHG drain the store
 * buffer; on weaker machines the release CAS and the acquire exchange
 * order the link before the head, as C11 promises).
 *
 * Properties, at the end: every buffer is in the owner's free list
 * exactly once, none is leased, and exactly one of the two releases of
 * L0 succeeded.
 *
 * Variants
 *   (default)             as in pbuf.c; must pass.
 *   -DINJ_LINK_AFTER_CAS  the push links the buffer after publishing it
 *                         as the head: the owner may walk a stale link,
 *                         losing or repeating a buffer; must FAIL.
 *   -DINJ_STORE_STATE     the release stores the free state instead of
 *                         its CAS (mutant lease_released_twice): both
 *                         releases of L0 succeed and buffer 0 is pushed
 *                         twice; must FAIL.
 */

#define N 3		/* buffers 0..2 */

byte state[N];		/* generation * 2, + 1 while leased */
byte next[N];		/* return stack and free list links: id + 1, 0 ends */
byte head = 0;		/* return stack: id + 1, 0 empty */
byte infree[N];		/* how many times each buffer is in O's free list */
byte ok0 = 0;		/* successful releases of L0 */
byte done = 0;		/* foreign threads finished */

/* weft__pbuf_release + weft__pbuf_give, on a foreign thread. gen: the
 * lease's generation. */
inline release(id, gen)
{
	byte h;
	bool won;

#ifdef INJ_STORE_STATE
	atomic { won = true; state[id] = gen * 2 }
#else
	atomic {
		if
		:: state[id] == gen * 2 + 1 -> state[id] = gen * 2; won = true
		:: else -> won = false
		fi
	}
#endif
	if
	:: won ->
		if
		:: id == 0 -> ok0++
		:: else
		fi;
		do
		::
			h = head;	/* relaxed load */
#ifdef INJ_LINK_AFTER_CAS
			if
			:: atomic { head == h -> head = id + 1 };
				next[id] = h;
				break
			:: atomic { head != h -> skip }
			fi
#else
			next[id] = h;	/* relaxed store of the link */
			if
			:: atomic { head == h -> head = id + 1 }; break
			:: atomic { head != h -> skip }
			fi
#endif
		od
	:: else
	fi
}

proctype A()
{
	release(0, 1);
	done++
}

proctype B()
{
	release(0, 1);
	release(1, 1);
	done++
}

/* weft__pbuf_refill: take the whole stack, walk it into the free list. */
inline refill()
{
	byte h2, id2;

	atomic { h2 = head; head = 0 };
	do
	:: h2 != 0 ->
		id2 = h2 - 1;
		h2 = next[id2];
		infree[id2]++
	:: else -> break
	od
}

proctype O()
{
	byte k;
	byte lends = 0;	/* at most two: the generations stay small */

	do
	:: head != 0 -> refill()
	:: lends < 2 -> /* hand a free buffer out and release it, on O */
		lends++;
		if
		:: infree[0] > 0 -> k = 0
		:: infree[1] > 0 -> k = 1
		:: infree[2] > 0 -> k = 2
		:: else -> goto next_round
		fi;
		infree[k]--;
		atomic { state[k] = (state[k] / 2 + 1) * 2 + 1 };	/* leased */
		atomic { state[k] = (state[k] / 2) * 2 };		/* released */
		infree[k]++;
next_round:	skip
	:: done == 2 -> break
	od;
	refill();
	k = 0;
	do
	:: k < N ->
		assert(infree[k] == 1);
		assert(state[k] % 2 == 0);
		k++
	:: else -> break
	od;
	assert(ok0 == 1)
}

init
{
	/* Buffer 2 starts free (in O's list); 0 and 1 are leased, gen 1. */
	atomic {
		state[0] = 3; state[1] = 3; state[2] = 2;
		infree[2] = 1;
		run A(); run B(); run O()
	}
}
