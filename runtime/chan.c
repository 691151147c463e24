/*
 * Channels (MPMC FIFO of pointers, or of fixed-size values carried by
 * copy; bounded or not; with asyncio's join/task_done), select over
 * channel operations, and the async generator built on a channel.
 *
 * A channel is a ring buffer of `cap` slots (unbounded: a list of chunks,
 * below) plus three wait queues (wq.h argues the protocol), all under one
 * spinlock:
 *   sendq  senders waiting for room (their node carries the value);
 *   recvq  receivers waiting for a value;
 *   joinq  weft_chan_join() callers, waiting for `unfinished` to be 0.
 * Invariants, true whenever the lock is free:
 *   - recvq holds live nodes only while the buffer is empty and no sender
 *     waits (a sender that finds a receiver hands the value over directly);
 *   - sendq holds live nodes only while the buffer is full (len == cap;
 *     for cap 0 always), and a receiver that takes a buffered value moves
 *     the first waiting sender's value into the freed slot, so FIFO order
 *     across buffered and waiting values is kept;
 *   - after close, neither queue holds a live node: close granted them
 *     all (-EPIPE), and no one links a node on a closed channel;
 *   - joinq holds live nodes only while unfinished > 0: the task_done()
 *     that brings it to 0 grants them all, under the lock that every
 *     change of unfinished and every join's check holds;
 *   - an unbounded channel's sendq is empty: a send never waits there.
 * "Live": a node that weft__wq_take() may still grant. The others stay
 * linked until their owners unlink them: nodes whose waiter is giving up,
 * and nodes of a select that gave up or was granted on another channel
 * (wq.h argues why granters leave those alone).
 *
 * Values. Every channel moves its values by copy: a value channel's are
 * vsize bytes each, a pointer channel's (vsize 0) are the pointers
 * themselves, whose calls pass the address of the pointer. A waiter's node
 * carries the address of its own copy (node->value): a waiting sender's
 * value, a waiting receiver's destination (NULL on a value channel: the
 * value is dropped). The granter copies under the lock, before its DONE
 * store (release), and the waiter reads its destination only after its
 * DONE (acquire): wq.h's pairing, with the copy among the writes it
 * publishes. The waiter's memory is there until then: it returns only
 * after DONE, or after winning the claim, when no granter copies any
 * more. Copies are made under the lock, hence the bound on vsize.
 *
 * Unbounded channels (cap == WEFT_CHAN_UNBOUNDED) keep their values in
 * chunks of `per` slots, linked oldest first, so that they grow and
 * shrink a chunk at a time, never copying what they hold:
 *
 *   first -> [ x x v v ] -> [ v v v v ] -> [ v v . . ] <- last
 *                  ^ head                       ^ tailn
 *
 * (x: taken already, v: buffered, .: free). A reader that empties a chunk
 * unlinks it; one emptied chunk is kept as the spare for the next growth,
 * the others are freed, so an unbounded channel that drains holds at most
 * two chunks. Chunks are allocated and freed without the lock (no system
 * call under a lock, wq.h): a send that needs a chunk while there is no
 * spare drops the lock, allocates one, installs it as the spare and tries
 * again (chan_grow); a receive hands the chunk it unlinked to its caller,
 * which frees it after the unlock (struct after).
 *
 * Direct hand-off keeps a send to a waiting receiver at one lock round and
 * one wake: the woken receiver goes to the sender's worker's next slot and
 * runs as soon as the sender suspends (ping-pong needs that).
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "await.h"
#include "base.h"
#include "epoll.h"
#include "mem.h"
#include "ring.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

struct weft_chan {
	/* What a send or receive touches, in the first line. */
	weft__spin lock; /* 4 bytes (spin.h) */
	uint32_t vsize;  /* value channel: bytes per value; 0: pointers */
	bool closed;
	/* Index of the oldest value (in `first` if chunked): below cap,
	 * which is at most 2^32 when bounded, and below a chunk's slots
	 * when not. 32 bits, so that the fields up to recvq stay in the
	 * first line (the static assertion below). Not a bit-field shared
	 * with closed or vsize: vsize is read without the lock, and a
	 * bit-field store rewrites its neighbours (ThreadSanitizer saw it). */
	uint32_t head;
	size_t cap;     /* WEFT_CHAN_UNBOUNDED: chunks, see above */
	size_t len;     /* values buffered */
	struct weft__wq sendq, recvq;
	/* join, the tag, the values. */
	size_t unfinished; /* values sent and not task_done() yet */
	struct weft__wq joinq;
	uint32_t tag; /* WEFT__LIVE while alive */
	/* Bounded: cap slots of SLOT(vsize) bytes, copied with memcpy only,
	 * so no slot needs more alignment than a byte's. Unbounded: a
	 * struct chunked. */
	_Alignas(void *) unsigned char buf[];
};

/* A send to a waiting receiver touches one line of the channel, as it did
 * before value channels (ping_pong across workers). */
_Static_assert(offsetof(struct weft_chan, recvq) + sizeof(struct weft__wq) <=
		       WEFT__CACHELINE,
	       "a channel's hot fields fit its first line");

struct chunk {
	struct chunk *next;
	_Alignas(void *) unsigned char slots[]; /* per slots */
};

/* An unbounded channel's chunks (in its buf[]), under its lock. */
struct chunked {
	struct chunk *first, *last; /* NULL before the first value */
	struct chunk *spare; /* for the next growth, or NULL */
	size_t tailn;        /* slots of last in use (from 0) */
	size_t per;          /* slots per chunk; set at create */
};

/* Around 4 KiB a chunk, and at least 4 values. */
#define CHUNK_BYTES 4096
#define CHUNK_MIN 4

static struct chunked *chunked(weft_chan *c)
{
	return (struct chunked *)(void *)c->buf;
}

/* Bytes a slot takes. */
#define SLOT(vsize) ((vsize) ? (vsize) : sizeof(void *))

static int chan_create(weft_chan **out, size_t capacity, size_t vsize)
{
	weft_chan *c;

	if (!out ||
	    (capacity > ((size_t)1 << 32) && capacity != WEFT_CHAN_UNBOUNDED))
		return -EINVAL;
	/* A line of its own: channels of tasks on different workers must
	 * not share one (false sharing doubled ping_pong's cost). No
	 * overflow: capacity <= 2^32, vsize <= WEFT_CHAN_VALUE_MAX. */
	size_t sz = sizeof(*c) + (capacity == WEFT_CHAN_UNBOUNDED
					  ? sizeof(struct chunked)
					  : capacity * SLOT(vsize));
	sz = (sz + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
	c = weft__mem_aligned(WEFT__CACHELINE, sz);
	if (!c)
		return -ENOMEM;
	memset(c, 0, sz);
	c->cap = capacity;
	c->vsize = (uint32_t)vsize;
	if (capacity == WEFT_CHAN_UNBOUNDED) {
		size_t per = CHUNK_BYTES / SLOT(vsize);

		chunked(c)->per = per < CHUNK_MIN ? CHUNK_MIN : per;
	}
	c->tag = WEFT__LIVE;
	*out = c;
	return 0;
}

int weft_chan_create(weft_chan **out, size_t capacity)
{
	return chan_create(out, capacity, 0);
}

int weft_chan_create_sized(weft_chan **out, size_t capacity,
			   size_t value_size)
{
	if (!value_size || value_size > WEFT_CHAN_VALUE_MAX)
		return -EINVAL;
	return chan_create(out, capacity, value_size);
}

void weft_chan_destroy(weft_chan *c)
{
	if (!c)
		return;
	weft__live_end(&c->tag, "weft_chan_destroy(): not a live channel "
				     "(destroyed already?)");
	/* A granter may still be between its DONE store and its unlock, a
	 * waiter between giving up and its unlink. A node of a select that
	 * was granted on another channel counts as a waiter: that select is
	 * still in progress here and will lock c to unlink it (this check
	 * used to skip such nodes, and the select then locked freed
	 * memory). */
	struct weft__wq *const qs[] = { &c->sendq, &c->recvq, &c->joinq };

	weft__wq_retire_n(&c->lock, qs, 3, "weft_chan_destroy() with waiters");
	if (c->cap == WEFT_CHAN_UNBOUNDED) {
		struct chunked *q = chunked(c);

		for (struct chunk *k = q->first, *next; k; k = next) {
			next = k->next;
			weft__mem_free(k);
		}
		weft__mem_free(q->spare);
	}
	weft__mem_free(c);
}

/* ---- values ------------------------------------------------------------
 * The helpers below take the channel's vsize as an argument, and the
 * operations pass it down always inlined: the pointer calls pass the
 * constant 0, so their copies compile to a move and their slot index to a
 * shift, as before value channels (bench/ping_pong runs no more
 * instructions); the value calls and select pass c->vsize. */

/* Copies one value from src to dst (a value channel's dst NULL: the value
 * is dropped; a pointer channel's dst is never NULL: the pointer calls
 * pass a variable of their own). */
static inline void value_copy(size_t vsize, void *dst, const void *src)
{
	if (!vsize)
		memcpy(dst, src, sizeof(void *));
	else if (dst)
		memcpy(dst, src, vsize);
}

/* What an operation leaves to do once the locks are dropped: a task or
 * thread to wake, a chunk to free. */
struct after {
	struct weft__wake wake;
	struct chunk *dead;
};

static inline void after_run(struct after a)
{
	weft__wq_wake(a.wake);
	if (a.dead)
		weft__mem_free(a.dead);
}

/* A bounded channel's i-th buffered value (0: the oldest). */
static inline void *ring_slot(weft_chan *c, size_t vsize, size_t i)
{
	i += c->head;
	if (i >= c->cap)
		i -= c->cap;
	return c->buf + i * SLOT(vsize);
}

/* Where an unbounded channel's next value goes, or NULL when its last
 * chunk is full (or there is none) and there is no spare. */
static void *chunk_tail(weft_chan *c, size_t vsize)
{
	struct chunked *q = chunked(c);

	if (!q->last || q->tailn == q->per) {
		struct chunk *k = q->spare;

		if (!k)
			return NULL;
		q->spare = NULL;
		k->next = NULL;
		if (q->last)
			q->last->next = k;
		else
			q->first = k;
		q->last = k;
		q->tailn = 0;
	}
	return q->last->slots + q->tailn++ * SLOT(vsize);
}

/* Takes an unbounded channel's oldest value into dst. A chunk emptied
 * with values after it is unlinked: kept as the spare, or left in *dead
 * to free; the last chunk, emptied, is reused from its start. */
static void chunk_take(weft_chan *c, size_t vsize, void *dst,
		       struct chunk **dead)
{
	struct chunked *q = chunked(c);
	struct chunk *k = q->first;

	value_copy(vsize, dst, k->slots + c->head++ * SLOT(vsize));
	if (!--c->len) {
		weft__assert(k == q->last && c->head == q->tailn);
		c->head = q->tailn = 0;
	} else if (c->head == q->per) {
		q->first = k->next;
		c->head = 0;
		if (!q->spare)
			q->spare = k;
		else
			*dead = k;
	}
}

/* Where the next value goes: NULL for an unbounded channel that needs a
 * chunk first (chan_grow). The caller checked len < cap, copies the value
 * in and counts it (len++). */
static inline void *tail_slot(weft_chan *c, size_t vsize)
{
	if (weft__likely(c->cap != WEFT_CHAN_UNBOUNDED))
		return ring_slot(c, vsize, c->len);
	return chunk_tail(c, vsize);
}

/* Takes the oldest value into dst (len > 0). */
static inline void take(weft_chan *c, size_t vsize, void *dst,
			struct after *a)
{
	if (weft__likely(c->cap != WEFT_CHAN_UNBOUNDED)) {
		value_copy(vsize, dst, ring_slot(c, vsize, 0));
		if (++c->head == c->cap)
			c->head = 0;
		c->len--;
	} else {
		chunk_take(c, vsize, dst, &a->dead);
	}
}

/* Gives an unbounded channel a spare chunk, allocated without its lock.
 * A racing sender may use it up first; the caller tries again (each such
 * round is another sender's progress). */
static int chan_grow(weft_chan *c)
{
	struct chunked *q = chunked(c); /* per: set at create */
	struct chunk *k =
		weft__mem_alloc(sizeof(*k) + q->per * SLOT(c->vsize));

	if (!k)
		return -ENOMEM;
	weft__spin_lock(&c->lock);
	if (!q->spare) {
		q->spare = k;
		k = NULL;
	}
	weft__spin_unlock(&c->lock);
	weft__mem_free(k);
	return 0;
}

/* A pointer channel's receive of the end (close): its value reads NULL;
 * a value channel leaves the destination as it was. */
static inline void value_end(size_t vsize, void *dst)
{
	if (!vsize)
		*(void **)dst = NULL;
}

/* ---- operations under the lock ----------------------------------------
 * Each returns OP_DONE when it completed the operation (and may have left
 * work in *a for after the unlock), OP_WAIT when the caller would have to
 * wait, OP_GROW (send) when an unbounded channel needs a chunk first.
 * src and dst: the value's bytes (for a pointer channel, the address of
 * the pointer); vsize: c->vsize (see above). A value counts as unfinished
 * (join) from the moment a send of it completes. */

enum { OP_WAIT, OP_DONE, OP_GROW };

#define INLINE static inline __attribute__((always_inline))

INLINE int send_locked(weft_chan *c, size_t vsize, const void *src, int *res,
		       struct after *a)
{
	struct weft__wnode *r;
	void *p;

	if (c->closed) {
		*res = -EPIPE;
		return OP_DONE;
	}
	if ((r = weft__wq_take(&c->recvq))) {
		value_copy(vsize, r->value, src);
		a->wake = weft__wq_grant(r, 0);
	} else if (c->len < c->cap) {
		if (!(p = tail_slot(c, vsize)))
			return OP_GROW;
		value_copy(vsize, p, src);
		c->len++;
	} else {
		return OP_WAIT;
	}
	c->unfinished++;
	*res = 0;
	return OP_DONE;
}

INLINE int recv_locked(weft_chan *c, size_t vsize, void *dst, int *res,
		       struct after *a)
{
	struct weft__wnode *s;

	if (c->len) {
		take(c, vsize, dst, a);
		/* Room now: the first waiting sender's value moves in
		 * (bounded: an unbounded channel has no waiting sender, and
		 * a bounded one's tail_slot() is never NULL). */
		if ((s = weft__wq_take(&c->sendq))) {
			value_copy(vsize, tail_slot(c, vsize), s->value);
			c->len++;
			c->unfinished++;
			a->wake = weft__wq_grant(s, 0);
		}
		*res = 0;
		return OP_DONE;
	}
	if ((s = weft__wq_take(&c->sendq))) {
		/* Rendezvous (cap 0), or a full channel of cap > 0 that a
		 * racing receiver emptied: take the value directly. */
		value_copy(vsize, dst, s->value);
		c->unfinished++;
		a->wake = weft__wq_grant(s, 0);
		*res = 0;
		return OP_DONE;
	}
	if (c->closed) {
		value_end(vsize, dst);
		*res = -EPIPE;
		return OP_DONE;
	}
	return OP_WAIT;
}

/* ---- send / recv ------------------------------------------------------ */

INLINE int chan_send(weft_chan *c, size_t vsize, const void *src,
		     uint64_t timeout_ns, bool wait)
{
	struct after a = { { NULL, NULL }, NULL };
	struct weft__wnode n;
	int res, err, op;

	for (;;) {
		weft__spin_lock(&c->lock);
		op = send_locked(c, vsize, src, &res, &a);
		if (op != OP_GROW)
			break;
		weft__spin_unlock(&c->lock);
		if ((err = chan_grow(c)) < 0)
			return err;
	}
	if (op == OP_DONE) {
		weft__spin_unlock(&c->lock);
		after_run(a);
		/* A producer that never finds the channel full must still
		 * let others run (Tokio's coop budget does the same). */
		if (wait)
			weft__task_coop_tick();
		return res;
	}
	if (!wait) {
		weft__spin_unlock(&c->lock);
		return -EAGAIN;
	}
	weft__wq_node_init(&n, (void *)src); /* only read through */
	weft__wq_why(&n, WEFT__W_CHAN_SEND, c);
	err = weft__wq_wait(&c->lock, &c->sendq, &n,
			    weft__wait_deadline(timeout_ns));
	return err ? err : n.result;
}

INLINE int chan_recv(weft_chan *c, size_t vsize, void *dst,
		     uint64_t timeout_ns, bool wait)
{
	struct after a = { { NULL, NULL }, NULL };
	struct weft__wnode n;
	int res, err;

	weft__spin_lock(&c->lock);
	if (recv_locked(c, vsize, dst, &res, &a) == OP_DONE) {
		weft__spin_unlock(&c->lock);
		after_run(a);
		if (wait)
			weft__task_coop_tick();
		return res;
	}
	if (!wait) {
		weft__spin_unlock(&c->lock);
		return -EAGAIN;
	}
	/* The granter writes the value (or, at a close, value_end()) to
	 * dst itself. */
	weft__wq_node_init(&n, dst);
	weft__wq_why(&n, WEFT__W_CHAN_RECV, c);
	err = weft__wq_wait(&c->lock, &c->recvq, &n,
			    weft__wait_deadline(timeout_ns));
	return err ? err : n.result;
}

/* The pointer calls on pointer channels, the value calls on value
 * channels: the other way round is -EINVAL, as the sizes differ. */
INLINE int ptr_send(weft_chan *c, void *value, uint64_t timeout_ns, bool wait)
{
	if (!c || c->vsize)
		return -EINVAL;
	return chan_send(c, 0, &value, timeout_ns, wait);
}

INLINE int ptr_recv(weft_chan *c, void **value, uint64_t timeout_ns, bool wait)
{
	void *tmp;

	if (!c || c->vsize)
		return -EINVAL;
	return chan_recv(c, 0, value ? value : &tmp, timeout_ns, wait);
}

static int val_send(weft_chan *c, const void *src, uint64_t timeout_ns,
		    bool wait)
{
	if (!c || !c->vsize || !src)
		return -EINVAL;
	return chan_send(c, c->vsize, src, timeout_ns, wait);
}

static int val_recv(weft_chan *c, void *dst, uint64_t timeout_ns, bool wait)
{
	if (!c || !c->vsize)
		return -EINVAL;
	return chan_recv(c, c->vsize, dst, timeout_ns, wait);
}

int weft_chan_send(weft_chan *c, void *value)
{
	return ptr_send(c, value, WEFT_NEVER, true);
}

int weft_chan_send_timeout(weft_chan *c, void *value, uint64_t timeout_ns)
{
	return ptr_send(c, value, timeout_ns, true);
}

int weft_chan_try_send(weft_chan *c, void *value)
{
	return ptr_send(c, value, 0, false);
}

int weft_chan_recv(weft_chan *c, void **value)
{
	return ptr_recv(c, value, WEFT_NEVER, true);
}

int weft_chan_recv_timeout(weft_chan *c, void **value, uint64_t timeout_ns)
{
	return ptr_recv(c, value, timeout_ns, true);
}

int weft_chan_try_recv(weft_chan *c, void **value)
{
	return ptr_recv(c, value, 0, false);
}

int weft_chan_send_val(weft_chan *c, const void *src)
{
	return val_send(c, src, WEFT_NEVER, true);
}

int weft_chan_send_val_timeout(weft_chan *c, const void *src,
			       uint64_t timeout_ns)
{
	return val_send(c, src, timeout_ns, true);
}

int weft_chan_try_send_val(weft_chan *c, const void *src)
{
	return val_send(c, src, 0, false);
}

int weft_chan_recv_val(weft_chan *c, void *dst)
{
	return val_recv(c, dst, WEFT_NEVER, true);
}

int weft_chan_recv_val_timeout(weft_chan *c, void *dst, uint64_t timeout_ns)
{
	return val_recv(c, dst, timeout_ns, true);
}

int weft_chan_try_recv_val(weft_chan *c, void *dst)
{
	return val_recv(c, dst, 0, false);
}

int weft_chan_close(weft_chan *c)
{
	struct weft__wnode *n;

	if (!c)
		return -EINVAL;
	weft__spin_lock(&c->lock);
	if (c->closed) {
		weft__spin_unlock(&c->lock);
		return -EALREADY;
	}
	c->closed = true;
	/* Every waiter learns of the close: senders fail, receivers (which
	 * wait only while the buffer is empty) see the end. In batches, each
	 * woken after the unlock: once closed, nobody new waits, so the
	 * queues only shrink between batches. */
	for (;;) {
		struct weft__wake batch[32];
		unsigned nb = 0;

		while (nb < 32 && (n = weft__wq_take(&c->sendq)))
			batch[nb++] = weft__wq_grant(n, -EPIPE);
		while (nb < 32 && (n = weft__wq_take(&c->recvq))) {
			value_end(c->vsize, n->value);
			batch[nb++] = weft__wq_grant(n, -EPIPE);
		}
		weft__spin_unlock(&c->lock);
		for (unsigned i = 0; i < nb; i++)
			weft__wq_wake(batch[i]);
		if (nb < 32)
			return 0;
		weft__spin_lock(&c->lock);
	}
}

size_t weft_chan_len(weft_chan *c)
{
	size_t n;

	if (!c)
		return 0;
	weft__spin_lock(&c->lock);
	n = c->len;
	weft__spin_unlock(&c->lock);
	return n;
}

size_t weft_chan_cap(weft_chan *c)
{
	return c ? c->cap : 0;
}

size_t weft_chan_value_size(weft_chan *c)
{
	return c ? c->vsize : 0;
}

/* ---- join / task_done (asyncio.Queue) ---------------------------------
 * unfinished counts values whose send completed (send_locked, or a
 * receiver taking a waiting sender's value) and that no task_done() has
 * accounted for yet; it changes only under the lock, and join links its
 * node under the same lock after seeing it non-zero, so the task_done()
 * that brings it to 0 finds every joiner linked and grants them all. A
 * joiner learns of it from its node only (wq.h, Lifetime): the channel
 * may be destroyed as soon as that task_done() has returned. */

int weft_chan_task_done(weft_chan *c)
{
	if (!c)
		return -EINVAL;
	weft__spin_lock(&c->lock);
	if (!c->unfinished) {
		weft__spin_unlock(&c->lock);
		return -EOVERFLOW;
	}
	if (--c->unfinished) {
		weft__spin_unlock(&c->lock);
		return 0;
	}
	weft__wq_grant_all(&c->lock, &c->joinq, 0, NULL, ~0u);
	return 0;
}

int weft_chan_join_timeout(weft_chan *c, uint64_t timeout_ns)
{
	struct weft__wnode n;
	int err;

	if (!c)
		return -EINVAL;
	weft__spin_lock(&c->lock);
	if (!c->unfinished) {
		weft__spin_unlock(&c->lock);
		weft__task_coop_tick(); /* done without waiting: counts */
		return 0;
	}
	weft__wq_node_init(&n, NULL);
	weft__wq_why(&n, WEFT__W_CHAN_JOIN, c);
	err = weft__wq_wait(&c->lock, &c->joinq, &n,
			    weft__wait_deadline(timeout_ns));
	return err ? err : n.result;
}

int weft_chan_join(weft_chan *c)
{
	return weft_chan_join_timeout(c, WEFT_NEVER);
}

/* ---- select -----------------------------------------------------------
 * Go's scheme: lock every channel involved (in address order, so two
 * selects never deadlock), take the first ready case; otherwise link one
 * node per case, all sharing one sel word, unlock and park. The first
 * granter to win the sel's CAS completes its case and unlinks the
 * select's other nodes on its channel; granters elsewhere find the word
 * taken and leave those nodes linked. On wake-up the select locks the
 * OTHER channels and unlinks its nodes there; after giving up (its own
 * CAS won, so no grant can come) it locks them all. wq.h argues why the
 * winning channel must not be touched again (its granter may destroy it
 * as soon as its call returns: a one-shot reply channel) and why the
 * others are still there. */

#define SEL_STACK 8

/*
 * Descriptors and tasks. A descriptor's readiness or a task's end is only
 * looked at: a select may see one and choose another case at no loss to
 * anyone. A channel case is a grant: a granter that won the sel word has
 * moved a value, and the select must report it. Hence:
 *   - before parking, poll(2) with a zero timeout looks at the
 *     descriptors, each task's done at its end, and the channels are tried
 *     under their locks, all in array order: the first ready case wins;
 *   - to park, each descriptor case gets a readiness watch in the worker's
 *     reactor (weft__ring_watch: an io_uring poll, or the epoll set), each
 *     task case a waiter node on the task's list (weft__await_watch), each
 *     channel case its wq node. A watch's completion, a task's end and a
 *     grant each make their record done (release) before waking us;
 *   - woken by a watch (sel_ready: SEL_SEEN), the select claims its sel
 *     word (sel_leave). If a granter had won it, its grant is reported;
 *     else the first case in array order whose watch is done;
 *   - before returning, every watch is ended: wq nodes unlinked
 *     (sel_unlink), waiter nodes taken off their tasks' lists, descriptor
 *     watches taken out or cancelled and their completions waited for (the
 *     records are on this stack). tests/model/select_watch.pml checks the
 *     grant against the watch.
 * Pinning. On io_uring only the ring's worker may cancel a poll, so the
 * task is pinned to it while a watch is in flight, as an I/O request pins
 * it. With one descriptor case the watch's completion unpins it (no poll
 * is left to cancel), so a rescuer that completes it for a worker stuck in
 * another task lets the select go on elsewhere, as a read does; with
 * several, each completion leaves the pin (the others may still need a
 * cancel) and a stuck worker holds the select until it runs again. On
 * epoll nothing pins: a watch is taken out of its list under the lists'
 * lock, from any thread.
 */
struct sel_watch {
	union {
		struct weft__op op;     /* READABLE, WRITABLE */
		struct weft__waiter tw; /* TASK */
	};
	struct weft__tcb *t; /* TASK: the task */
	bool on;             /* started: ended before the select returns */
};

/* sel_ready()'s "a watch is done", apart from every case index and error. */
#define SEL_SEEN (-100000)

struct sel_state {
	struct weft_sel *cases;
	size_t n;
	weft_chan **order; /* distinct channels in address order */
	size_t norder;
	struct weft__wnode *nodes;
	struct weft__sel *sel;
	struct sel_watch *watch; /* per case; NULL when no case needs one */
	struct weft__worker *w;  /* where the descriptor watches are */
	struct weft__tcb *self;
	size_t nfd;              /* descriptor cases */
	unsigned flags;          /* the task's own, put back after them */
	bool pinned;
	bool heap;               /* order, nodes, watch were allocated */
	weft_chan *grow;         /* sel_try(): SEL_GROW's channel */
};

enum { K_NONE, K_CHAN, K_FD, K_TASK };

/* What a case is: K_NONE (ignored), ..., or -EINVAL (a bad op). Each
 * kind reads only its own fields (a program that fills chan, op and value
 * of an uninitialised case, as it could before fd and task existed, must
 * not have those read). */
static int sel_kind(const struct weft_sel *k)
{
	if (k->op == WEFT_SEL_READABLE || k->op == WEFT_SEL_WRITABLE)
		return k->fd < 0 ? K_NONE : K_FD;
	if (k->op == WEFT_SEL_TASK)
		return k->task ? K_TASK : K_NONE;
	if (!k->chan)
		return K_NONE;
	return k->op == WEFT_SEL_SEND || k->op == WEFT_SEL_RECV ? K_CHAN
								 : -EINVAL;
}

static void lock_all(struct sel_state *s)
{
	for (size_t i = 0; i < s->norder; i++)
		weft__spin_lock(&s->order[i]->lock);
}

static void unlock_all(struct sel_state *s)
{
	for (size_t i = s->norder; i-- > 0;)
		weft__spin_unlock(&s->order[i]->lock);
}

static int ptr_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (weft_chan *const *)a;
	uintptr_t y = (uintptr_t) * (weft_chan *const *)b;

	return x < y ? -1 : x > y;
}

/* Where a channel case's value is (send) or goes (receive): the case's
 * value field itself for a pointer channel, the buffer it points to for a
 * value channel. */
static void *sel_value(struct weft_sel *k)
{
	return k->chan->vsize ? k->value : (void *)&k->value;
}

#define SEL_GROW (-2)

/* A watched case ready now: its result (and a task's value) written. */
static void sel_seen(struct weft_sel *k, struct sel_watch *x, int res)
{
	if (k->op == WEFT_SEL_TASK) {
		k->value = x->t->result;
		k->result = x->t->outcome;
		return;
	}
	k->result = res;
	/* The epoll reactor's guess that a read would find nothing (from
	 * the last short read) is wrong now: the read that follows should
	 * try at once, not wait for readiness it was just told of. */
	if (res > 0 && (res & POLLIN) && weft__epoll_on())
		weft__epoll_got(k->fd, 1, 1);
}

/* Looks at the descriptor cases now (poll(2), zero timeout): each one's
 * events into its watch's op.res (-EBADF for POLLNVAL; 0: not ready).
 * Returns 0, or -ENOMEM. */
static int sel_poll(struct sel_state *s, size_t nfd)
{
	struct pollfd stack[SEL_STACK], *p = stack;
	size_t i, j;

	if (!nfd)
		return 0;
	if (nfd > SEL_STACK && !(p = weft__mem_alloc(nfd * sizeof(*p))))
		return -ENOMEM;
	for (i = j = 0; i < s->n; i++) {
		if (sel_kind(&s->cases[i]) != K_FD)
			continue;
		p[j].fd = s->cases[i].fd;
		p[j].events = s->cases[i].op == WEFT_SEL_READABLE ? POLLIN
								   : POLLOUT;
		p[j++].revents = 0;
	}
	/* A zero timeout never blocks; EINTR or a failure: nothing ready. */
	if (poll(p, (nfds_t)nfd, 0) < 0)
		for (j = 0; j < nfd; j++)
			p[j].revents = 0;
	for (i = j = 0; i < s->n; i++)
		if (sel_kind(&s->cases[i]) == K_FD) {
			short r = p[j++].revents;

			s->watch[i].op.res = (r & POLLNVAL) ? -EBADF : r;
		}
	if (p != stack)
		weft__mem_free(p);
	return 0;
}

/* Tries the cases in order with every lock held; returns the index of the
 * one that completed (or is ready: a descriptor, a task), -1 if none
 * could, or SEL_GROW when a send to an unbounded channel (s->grow) needs
 * a chunk first. */
static int sel_try(struct sel_state *s, struct after *a)
{
	for (size_t i = 0; i < s->n; i++) {
		struct weft_sel *k = &s->cases[i];
		struct sel_watch *x = s->watch ? &s->watch[i] : NULL;
		int res, op;

		switch (sel_kind(k)) {
		case K_CHAN:
			op = k->op == WEFT_SEL_SEND
				     ? send_locked(k->chan, k->chan->vsize,
						   sel_value(k), &res, a)
				     : recv_locked(k->chan, k->chan->vsize,
						   sel_value(k), &res, a);
			if (op == OP_GROW) {
				s->grow = k->chan;
				return SEL_GROW;
			}
			if (op == OP_DONE) {
				k->result = res;
				return (int)i;
			}
			break;
		case K_FD:
			if (x->op.res) {
				sel_seen(k, x, x->op.res);
				return (int)i;
			}
			break;
		case K_TASK:
			/* Acquire: pairs with the end's release of done. */
			if (atomic_load_explicit(&x->t->done,
						 memory_order_acquire)) {
				sel_seen(k, x, 0);
				return (int)i;
			}
			break;
		}
	}
	return -1;
}

/* The first case in array order whose watch is done (acquire: pairs with
 * the completion's or the end's release), its result written; or -1. */
static int sel_first_seen(struct sel_state *s)
{
	for (size_t i = 0; s->watch && i < s->n; i++) {
		struct sel_watch *x = &s->watch[i];
		int kind = sel_kind(&s->cases[i]);

		if (kind == K_FD &&
		    atomic_load_explicit(&x->op.done, memory_order_acquire)) {
			sel_seen(&s->cases[i], x, x->op.res);
			return (int)i;
		}
		if (kind == K_TASK &&
		    atomic_load_explicit(&x->tw.done, memory_order_acquire)) {
			sel_seen(&s->cases[i], x, 0);
			return (int)i;
		}
	}
	return -1;
}

/* Starts a watch for every descriptor and task case (after the wq nodes
 * are linked). A watch that cannot start, or a task that ended meanwhile,
 * is made done at once with what it gives, so the park ends on it. */
static void sel_watch_start(struct sel_state *s)
{
	struct weft__tcb *self = s->self;

	/* Also what an epoll completion puts back: its CAS from the pinned
	 * flags then finds none to undo. */
	s->flags = weft__task_flags(self);
	for (size_t i = 0; i < s->n; i++) {
		struct weft_sel *k = &s->cases[i];
		struct sel_watch *x = &s->watch[i];
		int kind = sel_kind(k), err;

		x->on = false;
		if (kind == K_TASK) {
			x->on = weft__await_watch(x->t, &x->tw, self);
			if (!x->on)
				atomic_store_explicit(&x->tw.done, 1,
						      memory_order_relaxed);
			continue;
		}
		if (kind != K_FD)
			continue;
		if (!s->pinned && !s->w->ring.epoll) {
			weft__ring_op_pin(s->w, self, s->flags);
			s->pinned = true;
		}
		/* The flags a completion puts back (see Pinning above). */
		err = weft__ring_watch(s->w, &x->op, k->fd,
				       k->op == WEFT_SEL_READABLE ? POLLIN
								  : POLLOUT,
				       s->pinned && s->nfd > 1
					       ? s->flags | WEFT__T_PINNED
					       : s->flags);
		x->on = !err;
		if (err) {
			x->op.res = err;
			atomic_store_explicit(&x->op.done, 1,
					      memory_order_relaxed);
		}
	}
}

/* Waiting for the descriptor watches that unwatch could not take out:
 * their completions (a cancellation's, or the event's that beat it). */
struct sel_end {
	struct weft__wait wt;
	struct sel_state *s;
};

static bool sel_watch_ended(struct weft__wait *wt)
{
	struct sel_state *s = ((struct sel_end *)wt)->s;

	for (size_t i = 0; i < s->n; i++)
		if (s->watch[i].on && sel_kind(&s->cases[i]) == K_FD &&
		    !atomic_load_explicit(&s->watch[i].op.done,
					  memory_order_acquire))
			return false;
	return true;
}

static bool sel_never_gives_up(struct weft__wait *wt, int why)
{
	(void)wt;
	(void)why;
	return false;
}

/* Ends every watch started (see above); on the watching worker. */
static void sel_watch_end(struct sel_state *s)
{
	bool wait = false;

	for (size_t i = 0; i < s->n; i++) {
		struct sel_watch *x = &s->watch[i];

		if (!x->on)
			continue;
		if (sel_kind(&s->cases[i]) == K_TASK) {
			weft__await_unwatch(x->t, &x->tw);
			x->on = false;
		} else if (weft__ring_unwatch(s->w, &x->op)) {
			x->on = false;
		} else {
			wait = true;
		}
	}
	if (wait) {
		struct sel_end u;

		u.s = s;
		/* Unpinned (epoll, or io_uring's one watch done): wherever
		 * the task runs now. */
		weft__wait_init(&u.wt, weft__worker_self(), WEFT_NEVER);
		weft__wait_for(&u.wt, WEFT__W_SELECT, NULL, 1);
		u.wt.nocancel = true;
		weft__wait(&u.wt, sel_watch_ended, sel_never_gives_up);
	}
	if (s->pinned)
		atomic_store_explicit(&s->self->flags, s->flags,
				      memory_order_relaxed);
}

/*
 * Unlinks the select's nodes from every channel but skip (the channel
 * that granted it, whose granter took them all and may have destroyed it
 * since; NULL after giving up), in address order. Each of those channels
 * still holds every node of ours it was given: granters there lost the
 * sel CAS and left them linked, and their destroy refuses to free a
 * channel with a select node of a select that did not give up, or waits
 * for one that did (weft__wq_retire). The `linked` check is for a drop at
 * shutdown that came first.
 */
static void sel_unlink(struct sel_state *s, const weft_chan *skip)
{
	size_t i;

	for (i = 0; i < s->norder; i++)
		if (s->order[i] != skip)
			weft__spin_lock(&s->order[i]->lock);
	for (i = 0; i < s->n; i++) {
		struct weft_sel *k = &s->cases[i];
		struct weft__wnode *nd = &s->nodes[i];

		if (sel_kind(k) == K_CHAN && k->chan != skip && nd->linked)
			weft__wq_remove(nd->q, nd);
	}
	for (i = s->norder; i-- > 0;)
		if (s->order[i] != skip)
			weft__spin_unlock(&s->order[i]->lock);
}

/* Claims the select for leaving (winner OPEN -> GAVE_UP). Returns -1 if it
 * won (no grant can come any more), else the case a granter claimed,
 * once that grant is DONE (its granter holds the channel lock from its
 * CAS to the DONE store and never suspends there). */
static int sel_leave(struct weft__sel *sel)
{
	int won = WEFT__SEL_OPEN;

	/* acq_rel: pairs with the granter's CAS in weft__wq_take(). */
	if (atomic_compare_exchange_strong_explicit(
		    &sel->winner, &won, WEFT__SEL_GAVE_UP,
		    memory_order_acq_rel, memory_order_acquire))
		return -1;
	/* Acquire pairs with the release in weft__wq_grant(). */
	unsigned spin = 0;

	while (atomic_load_explicit(&sel->nodes[won].state,
				    memory_order_acquire) != WEFT__WN_DONE)
		weft__spin_backoff(&spin);
	return won;
}

/* Dropped at shutdown (weft__task_drop_all) while parked: its nodes leave
 * the channels, except the one that granted it, if one did (a thread
 * outside the runtime may have granted and destroyed it). Task watches
 * need nothing: the drop ends every task with the stacks still there;
 * descriptor watches are the reactor's requests, drained with the task. */
struct sel_wait {
	struct weft__wait wt;
	struct weft__unwait unwait; /* the drop calls unwait.fn(&unwait) */
	struct sel_state *s;
};

static void sel_unwait(struct weft__unwait *arg)
{
	struct sel_state *s =
		weft__container_of(arg, struct sel_wait, unwait)->s;
	int won = sel_leave(s->sel);

	sel_unlink(s, won >= 0 ? s->cases[won].chan : NULL);
	/* The rest is the select's own: its task never runs again, so what
	 * it allocated goes here (more than 8 cases leaked at shutdown).
	 * Its task watches leave their lists first: the drop ends every
	 * task next, and an end writes into the nodes on its list. The
	 * descriptor watches are back already: the workers' reactors were
	 * quiesced before the drop. */
	for (size_t i = 0; s->watch && i < s->n; i++)
		if (s->watch[i].on && sel_kind(&s->cases[i]) == K_TASK)
			weft__await_unwatch(s->watch[i].t, &s->watch[i].tw);
	if (s->heap) {
		weft__mem_free(s->order);
		weft__mem_free(s->nodes);
		weft__mem_free(s->watch);
	}
}

/* Granted: a case won (acquire, pairs with the granter's CAS) and its node
 * is DONE (acquire, pairs with weft__wq_grant's release). A case that won
 * without DONE yet is a grant on its way under that channel's lock: the
 * wait goes on, and its wake follows. Else a watch that is done ends the
 * wait with SEL_SEEN. */
static bool sel_ready(struct weft__wait *wt)
{
	struct sel_state *s = ((struct sel_wait *)wt)->s;
	int won = atomic_load_explicit(&s->sel->winner, memory_order_acquire);

	if (won >= 0) {
		if (atomic_load_explicit(&s->nodes[won].state,
					 memory_order_acquire) !=
		    WEFT__WN_DONE)
			return false;
		wt->res = won;
		return true;
	}
	if (s->watch) {
		for (size_t i = 0; i < s->n; i++) {
			struct sel_watch *x = &s->watch[i];
			int kind = sel_kind(&s->cases[i]);

			if ((kind == K_FD &&
			     atomic_load_explicit(&x->op.done,
						  memory_order_acquire)) ||
			    (kind == K_TASK &&
			     atomic_load_explicit(&x->tw.done,
						  memory_order_acquire))) {
				wt->res = SEL_SEEN;
				return true;
			}
		}
	}
	return false;
}

/* A granter that won first (sel_leave waits for its DONE) is reported. */
static bool sel_give_up(struct weft__wait *wt, int why)
{
	int won = sel_leave(((struct sel_wait *)wt)->s->sel);

	wt->res = won >= 0 ? won : why;
	return true;
}

static int sel_park(struct sel_state *s, uint64_t deadline)
{
	struct sel_wait u; /* field by field: see wq.c's park() */

	u.unwait.fn = sel_unwait;
	u.s = s;
	weft__wait_init(&u.wt, s->w, deadline);
	weft__wait_for(&u.wt, WEFT__W_SELECT, NULL, (int64_t)s->nfd);
	/* Dropped at shutdown: its nodes leave the channels. */
	u.wt.unwait = &u.unwait;
	return weft__wait(&u.wt, sel_ready, sel_give_up);
}

/* Checks the cases: counts the channel cases in *m, the descriptor cases
 * in *nfd, and whether any case needs a watch; resolves task handles into
 * watch (when given). 0 or the error to return. */
static int sel_scan(struct weft_sel *cases, size_t n, struct sel_watch *watch,
		    struct weft__tcb *self, size_t *m, size_t *nfd,
		    size_t *nobs)
{
	*m = *nfd = *nobs = 0;
	for (size_t i = 0; i < n; i++) {
		int kind = sel_kind(&cases[i]), err = 0;

		if (kind < 0)
			return kind;
		/* A value channel's send needs the value's bytes. */
		if (kind == K_CHAN && cases[i].op == WEFT_SEL_SEND &&
		    cases[i].chan->vsize && !cases[i].value)
			return -EINVAL;
		if (kind == K_CHAN)
			++*m;
		if (kind == K_FD)
			++*nfd;
		if (kind == K_FD || kind == K_TASK)
			++*nobs;
		if (kind != K_TASK || !watch)
			continue;
		watch[i].t = weft__task_resolve(cases[i].task, &err);
		if (!watch[i].t)
			return err;
		if (watch[i].t == self)
			return -EINVAL;
	}
	return 0;
}

int weft_select(struct weft_sel *cases, size_t n, uint64_t timeout_ns)
{
	struct weft__worker *w = weft__worker_self();
	weft_chan *order_stack[SEL_STACK];
	struct weft__wnode nodes_stack[SEL_STACK];
	struct sel_watch watch_stack[SEL_STACK];
	struct after a = { { NULL, NULL }, NULL };
	struct sel_state s = { .cases = cases, .n = n };
	struct weft__sel sel;
	uint64_t deadline;
	size_t i, m, nfd, nobs;
	int won;

	if (!w || !w->current)
		return -EPERM;
	if (!cases && n)
		return -EINVAL;
	won = sel_scan(cases, n, NULL, NULL, &m, &nfd, &nobs);
	if (won < 0)
		return won;
	if (!m && !nobs)
		return -EINVAL;
	deadline = weft__wait_deadline(timeout_ns);
	if (n <= SEL_STACK) {
		s.order = order_stack;
		s.nodes = nodes_stack;
		s.watch = nobs ? watch_stack : NULL;
	} else {
		s.heap = true;
		s.order = weft__mem_alloc((m ? m : 1) * sizeof(*s.order));
		s.nodes = weft__mem_alloc(n * sizeof(*s.nodes));
		s.watch = nobs ? weft__mem_alloc(n * sizeof(*s.watch)) : NULL;
		if (!s.order || !s.nodes || (nobs && !s.watch)) {
			won = -ENOMEM;
			goto out;
		}
	}
	s.w = w;
	s.self = w->current;
	s.nfd = nfd;
	if (nobs) {
		won = sel_scan(cases, n, s.watch, w->current, &m, &nfd, &nobs);
		if (won < 0 || (won = sel_poll(&s, nfd)) < 0)
			goto out;
	}
	for (i = 0; i < n; i++)
		if (sel_kind(&cases[i]) == K_CHAN)
			s.order[s.norder++] = cases[i].chan;
	qsort(s.order, s.norder, sizeof(*s.order), ptr_cmp);
	for (i = m = 0; i < s.norder; i++)
		if (!m || s.order[m - 1] != s.order[i])
			s.order[m++] = s.order[i];
	s.norder = m;

	for (;;) {
		lock_all(&s);
		won = sel_try(&s, &a);
		if (won != SEL_GROW)
			break;
		unlock_all(&s);
		if ((won = chan_grow(s.grow)) < 0)
			goto out;
	}
	if (won >= 0 || deadline <= weft_now() ||
	    weft__task_cancel_pending(w->current)) {
		unlock_all(&s);
		after_run(a);
		if (won < 0)
			won = weft__task_cancel_pending(w->current) ? -ECANCELED
								: -ETIMEDOUT;
		else
			/* Completed without suspending: counts against the
			 * budget like a send or receive that did (200,000
			 * ready selects starved a ticker task; issue 15 #7). */
			weft__task_coop_tick();
		goto out;
	}
	atomic_init(&sel.winner, WEFT__SEL_OPEN);
	sel.nodes = s.nodes;
	sel.n = n;
	s.sel = &sel;
	/* Every node is filled before the first unlock: a granter that finds
	 * one reads its siblings' obj (weft__wq_sel_take_siblings). A
	 * granter copies a receive's value to the case itself (or its
	 * buffer), before its DONE store: only the winning case is granted,
	 * so only its value is written. */
	for (i = 0; i < n; i++) {
		struct weft__wnode *nd = &s.nodes[i];
		bool chan = sel_kind(&cases[i]) == K_CHAN;

		weft__wq_node_init(nd, chan ? sel_value(&cases[i]) : NULL);
		nd->sel = &sel;
		nd->index = (int)i;
		nd->obj = chan ? cases[i].chan : NULL;
		if (!chan)
			continue;
		weft__wq_push(cases[i].op == WEFT_SEL_SEND
				      ? &cases[i].chan->sendq
				      : &cases[i].chan->recvq,
			      nd);
	}
	unlock_all(&s);
	if (s.watch)
		sel_watch_start(&s);
	won = sel_park(&s, deadline);
	if (won == SEL_SEEN) {
		/* A watch is done: a grant that won the word first is the
		 * answer (it moved a value), else the first case seen. */
		won = sel_leave(&sel);
		if (won < 0)
			won = sel_first_seen(&s);
	}
	/* Never the granting channel again (wq.h, Lifetime). */
	sel_unlink(&s, won >= 0 && sel_kind(&cases[won]) == K_CHAN
			       ? cases[won].chan
			       : NULL);
	if (s.watch)
		sel_watch_end(&s);
	if (won >= 0 && sel_kind(&cases[won]) == K_CHAN)
		cases[won].result = s.nodes[won].result;
out:
	if (s.heap) {
		weft__mem_free(s.order);
		weft__mem_free(s.nodes);
		weft__mem_free(s.watch);
	}
	return won;
}

/* ---- async generator --------------------------------------------------- */

struct weft_gen {
	weft_chan *chan; /* rendezvous: the body computes one value ahead */
	weft_task *task;
	weft_gen_fn body;
	void *arg;
	int status; /* body's return; read after awaiting the task */
};

static void *gen_main(void *arg)
{
	struct weft_gen *g = arg;

	g->status = g->body(g, g->arg);
	/* The end of the values: the consumer drains, then sees -EPIPE. */
	weft_chan_close(g->chan);
	return NULL;
}

int weft_gen_create(weft_gen **out, weft_gen_fn body, void *arg)
{
	struct weft_spawn_opts o = { .name = "generator" };
	struct weft_gen *g;
	int err;

	if (!out || !body)
		return -EINVAL;
	if (!weft_runtime_self())
		return -EPERM;
	g = weft__mem_calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->body = body;
	g->arg = arg;
	if ((err = weft_chan_create(&g->chan, 0)) < 0 ||
	    (err = weft_spawn_opts(&g->task, gen_main, g, &o)) < 0) {
		weft_chan_destroy(g->chan);
		weft__mem_free(g);
		return err;
	}
	*out = g;
	return 0;
}

int weft_gen_yield(weft_gen *g, void *value)
{
	int err;

	if (!g)
		return -EINVAL;
	err = weft_chan_send(g->chan, value);
	return err == -EPIPE ? -ECANCELED : err;
}

int weft_gen_next(weft_gen *g, void **value)
{
	int err;

	if (!g)
		return -EINVAL;
	err = weft_chan_recv(g->chan, value);
	if (err == 0)
		return 1;
	if (err != -EPIPE)
		return err;
	/* Closed: the body has returned (or the generator was closed).
	 * Its status is final once the task has ended. */
	err = weft_await(g->task, NULL);
	if (err < 0 && err != -ECANCELED)
		return err;
	return g->status < 0 ? g->status : 0;
}

void weft_gen_destroy(weft_gen *g)
{
	struct weft__worker *w = weft__worker_self();

	if (!g)
		return;
	/* From the body itself the wait below could never end. */
	weft__check(!w || !w->current || weft_self() != g->task,
		    "weft_gen_destroy() from the generator's own body");
	/* aclose(): the body's pending or next yield fails, and a cancel
	 * ends any other wait it is in. */
	weft_chan_close(g->chan);
	weft_cancel(g->task);
	/* Then wait until the body has returned, whatever happens: it still
	 * writes g->status and closes g->chan. A shield blocks cancellation
	 * but not the caller's deadline scope, which ended this wait at once
	 * in an expired scope and freed g under the running body (issue 15):
	 * the scope is lifted for the wait. A thread outside the runtime
	 * joins instead (weft_await refused it, and the free followed). */
	if (w && w->current) {
		struct weft__tcb *self = w->current;
		uint64_t saved = self->deadline;

		self->deadline = WEFT_NEVER;
		self->shield++;
		/* Shielded and without deadline it returns only once the
		 * body has ended (its outcome, -ECANCELED as a rule). The
		 * task may resume on another worker: self is still its
		 * control block. */
		(void)weft_await(g->task, NULL);
		self->shield--;
		self->deadline = saved;
	} else {
		int err = weft_join(g->task, NULL);

		weft__check(err != -EDEADLK,
			    "weft_gen_destroy() on a worker outside a task");
	}
	weft_task_release(g->task);
	weft_chan_destroy(g->chan);
	weft__mem_free(g);
}
