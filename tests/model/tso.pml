/*
 * x86-TSO for Promela: explicit per-thread store buffers.
 *
 * Promela itself is sequentially consistent. Total Store Order (Sewell et
 * al., "x86-TSO", CACM 2010) adds one thing: each hardware thread has a FIFO
 * store buffer. A model that includes this file defines, before the
 * #include:
 *
 *   NT  number of threads (each gets a buffer and a flusher process)
 *   NA  number of shared memory locations (byte-valued, index 0..NA-1)
 *   B   buffer depth (1..BMAX). Under TSO a store that finds its buffer
 *       full fails an assertion, so a model that passes had B large enough
 *       and no TSO behaviour was cut off by the bound.
 *
 * Operations (C11 to x86 as in the Cambridge mapping tables,
 * https://www.cl.cam.ac.uk/~pes20/cpp/cpp0xmappings.html):
 *
 *   STORE(t, x, v)    relaxed or release store (MOV): appended to thread
 *                     t's buffer; reaches memory later.
 *   LOAD(t, x, r)     relaxed, acquire or seq_cst load (MOV): t's newest
 *                     buffered store to x (store forwarding), else memory.
 *   SC_LOAD(t, x, r)  seq_cst load: LOAD under TSO; under WEAK_RMW it first
 *                     waits for t's buffer (on AArch64 an LDAR is ordered
 *                     after earlier STLR/STLXR).
 *   FENCE(t)          seq_cst fence (MFENCE): waits until t's buffer has
 *                     drained.
 *   SC_STORE(t, x, v) seq_cst store (XCHG, or MOV+MFENCE): drain, then
 *                     write memory in one step.
 *   XCHG(t, x, v, old), CAS(t, x, exp, nv, ok), FADD(t, x, d, old):
 *                     read-modify-writes in any C11 order (LOCK-prefixed):
 *                     drain t's buffer, then read and write memory in one
 *                     atomic step. CAS follows C: on failure exp is set to
 *                     the value found (a failed LOCK CMPXCHG drains too).
 *                     Weak CAS may also fail spuriously; that only adds a
 *                     retry and is not modelled.
 *   LOCK(t, x) / UNLOCK(t, x)
 *                     weft__spin_lock/unlock (spin.h): the lock is an
 *                     RMW on x, the unlock a release store of 0. Another
 *                     thread can take the lock only once the unlock store,
 *                     and before it (FIFO) every store made inside the
 *                     critical section, has reached memory. (The unlock
 *                     is an exchange since issue 13, which is stronger;
 *                     spin_park.pml models it, and the sleep.)
 *
 * Each buffer drains, oldest store first, at any moment: one flusher
 * process per thread (start flusher(t) for each t), whose steps interleave
 * with everything else. That interleaving is all of TSO's weakness: a store
 * followed by a load of another location can appear in the other order
 * (the store-buffering litmus test).
 *
 * -DSC: every store goes straight to memory, sequential consistency. A bug
 * found under TSO but not under SC is a memory-ordering bug.
 *
 * -DWEAK_RMW: one step weaker than TSO, the way AArch64 without LSE
 * (LDAXR/STLXR loops, which is what C11 seq_cst RMWs compile to on
 * ARMv8.0) and C11 itself allow: an RMW does not drain the buffer. It reads
 * (forwarding from its own buffer), and its write joins the buffer behind
 * the earlier stores (release: they stay ordered before it), so later plain
 * loads of other locations may be satisfied before the RMW's write is
 * visible. Atomicity is kept by a reservation, the exclusive monitor's
 * part: while an RMW's write to x is buffered, no other thread's RMW or
 * store to x reaches memory. Fences, seq_cst loads and seq_cst stores
 * still order it. Protocols that lean on "an RMW is a full fence" (true on
 * x86 and, in practice, with LSE atomics) fail under this variant. Buffers
 * are bounded here: a thread with B stores pending waits for one to drain.
 *
 * Merged steps. Each step of a model is one Promela transition, and the
 * state space grows with their number, so a step may do more than one
 * access where that is exact, i.e. removes only schedules that no thread
 * can tell apart from others that remain:
 *   (a) stores may be appended to a step: entering its own buffer is
 *       invisible to other threads (only the flush, always its own step,
 *       is seen). STORE2, UNLOCK_AFTER and the S_BST macro.
 *   (b) a store to a location that only holders of a lock read (the lock
 *       itself: the unlock; a list under it) goes straight to memory when
 *       the buffer is empty: until the unlock is visible nobody can read
 *       it, so the delay only makes lockers wait, which a later schedule
 *       of theirs gives too. PSTORE, PUNLOCK_AFTER, S_PST.
 *   (c) a fence and the one load after it (FENCE_LOAD): once the buffer
 *       is empty and no store follows, the fence has nothing left to show.
 *   (d) a lock and loads of locations written only under it (LOCK_LOAD):
 *       while we hold it they cannot change.
 *   (e) two loads read at one instant (LOAD2) is not exact in general;
 *       sched.pml argues each use.
 */
#ifndef B
#define B 2
#endif
#ifdef WEAK_RMW
#define BMAX 6
#else
#define BMAX 4
#endif

byte mem[NA];

typedef sbuf {
	byte a[BMAX];	/* location of each buffered store, oldest first */
	byte v[BMAX];	/* its value */
	bit rw[BMAX];	/* WEAK_RMW: the write of an RMW (holds a reservation) */
	byte n		/* number of buffered stores */
};
sbuf sb[NT];

/* Scratch for the steps below, always 0 between steps (not hidden: BFS
 * refuses hidden variables). */
byte tso_i;
byte tso_v;

#ifdef WEAK_RMW
byte rsv[NA];	/* t + 1: t's RMW writes to x are still buffered */
byte rsvn[NA];	/* how many */
#define X_FREE(t, x) (rsv[x] == 0 || rsv[x] == (t) + 1)
#define ROOMK(t, k) (sb[t].n + (k) <= B)
#else
#define X_FREE(t, x) true
#define ROOMK(t, k) true
#endif
/* Under WEAK_RMW a step that may add k stores to t's buffer waits for
 * room; under TSO BUFFER asserts instead. */
#define ROOM(t) ROOMK(t, 1)
#define ROOM2(t) ROOMK(t, 2)

#ifdef SC
#define BUF_EMPTY(t) true
#else
#define BUF_EMPTY(t) (sb[t].n == 0)
#endif

/* r = t's view of x: its newest buffered store to x, else memory. */
#define VIEW(t, x, r) \
	tso_i = sb[t].n; \
	r = mem[x]; \
	do \
	:: tso_i > 0 && sb[t].a[tso_i - 1] != x -> tso_i-- \
	:: tso_i > 0 && sb[t].a[tso_i - 1] == x -> \
		r = sb[t].v[tso_i - 1]; break \
	:: tso_i == 0 -> break \
	od; \
	tso_i = 0

/* Appends (x, val) to t's buffer; rmw: it is an RMW's write. */
#define BUFFER(t, x, val, rmw) \
	assert(sb[t].n < B); \
	sb[t].a[sb[t].n] = x; \
	sb[t].v[sb[t].n] = val; \
	sb[t].rw[sb[t].n] = rmw; \
	sb[t].n++

/* Inside a step: a plain store (a), and a lock-protected store (b). */
#ifdef SC
#define S_BST(t, x, val) mem[x] = val
#else
#define S_BST(t, x, val) BUFFER(t, x, val, 0)
#endif
#define S_PST(t, x, val) \
	if \
	:: BUF_EMPTY(t) -> mem[x] = val \
	:: else -> BUFFER(t, x, val, 0) \
	fi

#ifdef WEAK_RMW
/* The RMW's write is buffered and reserves x until it drains. */
#define RMW_GUARD(t, x) (X_FREE(t, x) && ROOM(t))	/* one store */
#define RMW_READ(t, x, r) VIEW(t, x, r)
#define RMW_WRITE(t, x, val) BUFFER(t, x, val, 1); rsv[x] = (t) + 1; rsvn[x]++
#else
#define RMW_GUARD(t, x) BUF_EMPTY(t)
#define RMW_READ(t, x, r) r = mem[x]
#define RMW_WRITE(t, x, val) mem[x] = val
#endif

/* Inside a step whose guard includes RMW_GUARD(t, x): fetch_add. */
#define S_FADD(t, x, d, old) \
	RMW_READ(t, x, tso_v); old = tso_v; tso_v = 0; \
	RMW_WRITE(t, x, old + (d)); \
	printf("t%d: fetch_add [%d]: %d -> %d\n", t, x, old, old + (d))

/* ---- single accesses ---------------------------------------------------- */

/* How a store is printed: under TSO it goes to the thread's buffer. */
#ifdef SC
#define PRINT_ST(t, x, val) printf("t%d: store [%d] = %d\n", t, x, val)
#define PRINT_ST2(t, x1, v1, x2, v2) \
	printf("t%d: store [%d] = %d, [%d] = %d\n", t, x1, v1, x2, v2)
#else
#define PRINT_ST(t, x, val) \
	printf("t%d: store [%d] = %d (to its buffer)\n", t, x, val)
#define PRINT_ST2(t, x1, v1, x2, v2) \
	printf("t%d: store [%d] = %d, [%d] = %d (to its buffer)\n", t, x1, \
	       v1, x2, v2)
#endif

inline STORE(t, x, val)
{
	atomic {
		ROOM(t) ->
		S_BST(t, x, val);
		PRINT_ST(t, x, val)
	}
}

inline LOAD(t, x, r)
{
	d_step {
		VIEW(t, x, r);
		printf("t%d: load [%d] = %d\n", t, x, r)
	}
}

inline FENCE(t) { BUF_EMPTY(t) }

#ifdef WEAK_RMW
inline SC_LOAD(t, x, r) { FENCE(t); LOAD(t, x, r) }
#else
inline SC_LOAD(t, x, r) { LOAD(t, x, r) }
#endif

inline SC_STORE(t, x, val)
{
	atomic {
		BUF_EMPTY(t) && X_FREE(t, x) -> mem[x] = val;
		printf("t%d: seq_cst store [%d] = %d\n", t, x, val)
	}
}

inline XCHG(t, x, val, old)
{
	atomic {
		RMW_GUARD(t, x) ->
		RMW_READ(t, x, tso_v); old = tso_v; tso_v = 0;
		RMW_WRITE(t, x, val);
		printf("t%d: xchg [%d]: %d -> %d\n", t, x, old, val)
	}
}

inline CAS(t, x, exp, nv, ok)
{
	atomic {
		RMW_GUARD(t, x) ->
		RMW_READ(t, x, tso_v);
		if
		:: tso_v == exp ->
			RMW_WRITE(t, x, nv); ok = true;
			printf("t%d: cas [%d]: %d -> %d\n", t, x, exp, nv)
		:: else ->
			printf("t%d: cas [%d]: expected %d, found %d: fails\n",
			       t, x, exp, tso_v);
			exp = tso_v; ok = false
		fi;
		tso_v = 0
	}
}

/* fetch_add; d may be negative (fetch_sub). old: the value before. */
inline FADD(t, x, d, old)
{
	atomic { RMW_GUARD(t, x) -> S_FADD(t, x, d, old) }
}

inline LOCK(t, x)
{
	atomic {
		RMW_GUARD(t, x) && mem[x] == 0 ->
		RMW_WRITE(t, x, 1);
		printf("t%d: lock [%d]\n", t, x)
	}
}

/* ---- merged steps (see the file comment) -------------------------------- */

/* (b): a store to x, read only by holders of a lock. */
inline PSTORE(t, x, val)
{
	atomic {
		ROOM(t) ->
		S_PST(t, x, val);
		printf("t%d: store [%d] = %d\n", t, x, val)
	}
}

inline UNLOCK(t, x) { PSTORE(t, x, 0) }

/* (b): x (read only under lock l), then the unlock of l. */
inline PUNLOCK_AFTER(t, x, val, l)
{
	atomic {
		ROOM2(t) ->
		S_PST(t, x, val);
		S_PST(t, l, 0);
		printf("t%d: store [%d] = %d, unlock [%d]\n", t, x, val, l)
	}
}

/* (a): two stores. */
inline STORE2(t, x1, v1, x2, v2)
{
	atomic {
		ROOM2(t) ->
		S_BST(t, x1, v1);
		S_BST(t, x2, v2);
		PRINT_ST2(t, x1, v1, x2, v2)
	}
}

/* (a): a store (of a location read without the lock), then the unlock. */
inline UNLOCK_AFTER(t, x, val, l) { STORE2(t, x, val, l, 0) }

/* (c) */
inline FENCE_LOAD(t, x, r)
{
	d_step {
		BUF_EMPTY(t) ->
		VIEW(t, x, r);
		printf("t%d: fence, load [%d] = %d\n", t, x, r)
	}
}

/* (d) */
inline LOCK_LOAD(t, x, y, r)
{
	atomic {
		RMW_GUARD(t, x) && mem[x] == 0 ->
		RMW_WRITE(t, x, 1);
		VIEW(t, y, r);
		printf("t%d: lock [%d], load [%d] = %d\n", t, x, y, r)
	}
}

/* (e) */
inline LOAD2(t, x1, r1, x2, r2)
{
	d_step {
		VIEW(t, x1, r1);
		VIEW(t, x2, r2);
		printf("t%d: load [%d] = %d, [%d] = %d\n", t, x1, r1, x2, r2)
	}
}

/* x += k by its only writer t (r: the value before, t's view): its load is
 * folded into the store, since nobody else can change x, and the store
 * enters the buffer (a). */
inline OWN_ADD(t, x, k, r)
{
	atomic {
		ROOM(t) ->
		VIEW(t, x, r);
		S_BST(t, x, r + k);
		PRINT_ST(t, x, r + k)
	}
}

/* ---- the memory subsystem ----------------------------------------------- */

/* Drains thread t's buffer oldest first. Emptied entries are zeroed so
 * that equal states compare equal. */
proctype flusher(byte t)
{
end:	do
	:: d_step {
		sb[t].n > 0 && X_FREE(t, sb[t].a[0]) ->
		printf("t%d: flush [%d] = %d to memory\n", t, sb[t].a[0],
		       sb[t].v[0]);
		mem[sb[t].a[0]] = sb[t].v[0];
#ifdef WEAK_RMW
		if
		:: sb[t].rw[0] ->
			rsvn[sb[t].a[0]]--;
			if
			:: rsvn[sb[t].a[0]] == 0 -> rsv[sb[t].a[0]] = 0
			:: else
			fi
		:: else
		fi;
#endif
		tso_i = 0;
		do
		:: tso_i + 1 < sb[t].n ->
			sb[t].a[tso_i] = sb[t].a[tso_i + 1];
			sb[t].v[tso_i] = sb[t].v[tso_i + 1];
			sb[t].rw[tso_i] = sb[t].rw[tso_i + 1];
			tso_i++
		:: else -> break
		od;
		sb[t].n--;
		sb[t].a[sb[t].n] = 0; sb[t].v[sb[t].n] = 0;
		sb[t].rw[sb[t].n] = 0;
		tso_i = 0
	}
	od
}
