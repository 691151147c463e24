/*
 * Channels (bounded MPMC FIFO of pointers, or of fixed-size values carried
 * by copy), select over channel operations, and the async generator built
 * on a channel.
 *
 * A channel is a ring buffer of `cap` slots plus two wait queues (wq.h
 * argues the protocol), all under one spinlock:
 *   sendq  senders waiting for room (their node carries the value);
 *   recvq  receivers waiting for a value.
 * Invariants, true whenever the lock is free:
 *   - recvq holds live nodes only while the buffer is empty and no sender
 *     waits (a sender that finds a receiver hands the value over directly);
 *   - sendq holds live nodes only while the buffer is full (len == cap;
 *     for cap 0 always), and a receiver that takes a buffered value moves
 *     the first waiting sender's value into the freed slot, so FIFO order
 *     across buffered and waiting values is kept;
 *   - after close, neither queue holds a live node: close granted them
 *     all (-EPIPE), and no one links a node on a closed channel.
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
 * Direct hand-off keeps a send to a waiting receiver at one lock round and
 * one wake: the woken receiver goes to the sender's worker's next slot and
 * runs as soon as the sender suspends (ping-pong needs that).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "mem.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

struct weft_chan {
	/* What a send or receive touches, in the first line. */
	weft__spin lock;
	bool closed;
	uint32_t vsize; /* value channel: bytes per value; 0: pointers */
	size_t cap, head, len;
	struct weft__wq sendq, recvq;
	uint32_t tag; /* WEFT__LIVE while alive */
	/* cap slots of SLOT(vsize) bytes; copied with memcpy only, so no
	 * slot needs more alignment than a byte's. */
	_Alignas(void *) unsigned char buf[];
};

/* A send to a waiting receiver touches one line of the channel, as it did
 * before value channels (ping_pong across workers). */
_Static_assert(offsetof(struct weft_chan, recvq) + sizeof(struct weft__wq) <=
		       WEFT__CACHELINE,
	       "a channel's hot fields fit its first line");

/* Bytes a slot takes. */
#define SLOT(vsize) ((vsize) ? (vsize) : sizeof(void *))

static int chan_create(weft_chan **out, size_t capacity, size_t vsize)
{
	weft_chan *c;

	if (!out || capacity > ((size_t)1 << 32))
		return -EINVAL;
	/* A line of its own: channels of tasks on different workers must
	 * not share one (false sharing doubled ping_pong's cost). No
	 * overflow: capacity <= 2^32, vsize <= WEFT_CHAN_VALUE_MAX. */
	size_t sz = sizeof(*c) + capacity * SLOT(vsize);
	sz = (sz + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
	c = weft__mem_aligned(WEFT__CACHELINE, sz);
	if (!c)
		return -ENOMEM;
	memset(c, 0, sz);
	c->cap = capacity;
	c->vsize = (uint32_t)vsize;
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
	weft__wq_retire(&c->lock, &c->sendq, &c->recvq,
			"weft_chan_destroy() with waiters");
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

/* The i-th buffered value (0: the oldest). */
static inline void *slot(weft_chan *c, size_t vsize, size_t i)
{
	i += c->head;
	if (i >= c->cap)
		i -= c->cap;
	return c->buf + i * SLOT(vsize);
}

/* A pointer channel's receive of the end (close): its value reads NULL;
 * a value channel leaves the destination as it was. */
static inline void value_end(size_t vsize, void *dst)
{
	if (!vsize)
		*(void **)dst = NULL;
}

/* ---- operations under the lock ----------------------------------------
 * Each returns 1 when it completed the operation (and may set *wake to a
 * task to wake after unlocking), 0 when the caller would have to wait.
 * src and dst: the value's bytes (for a pointer channel, the address of
 * the pointer); vsize: c->vsize (see above). */

#define INLINE static inline __attribute__((always_inline))

INLINE int send_locked(weft_chan *c, size_t vsize, const void *src, int *res,
		       struct weft__wake *wake)
{
	struct weft__wnode *r;

	if (c->closed) {
		*res = -EPIPE;
		return 1;
	}
	if ((r = weft__wq_take(&c->recvq))) {
		value_copy(vsize, r->value, src);
		*wake = weft__wq_grant(r, 0);
		*res = 0;
		return 1;
	}
	if (c->len < c->cap) {
		value_copy(vsize, slot(c, vsize, c->len), src);
		c->len++;
		*res = 0;
		return 1;
	}
	return 0;
}

INLINE int recv_locked(weft_chan *c, size_t vsize, void *dst, int *res,
		       struct weft__wake *wake)
{
	struct weft__wnode *s;

	if (c->len) {
		value_copy(vsize, dst, slot(c, vsize, 0));
		if (++c->head == c->cap)
			c->head = 0;
		c->len--;
		/* Room now: the first waiting sender's value moves in. */
		if ((s = weft__wq_take(&c->sendq))) {
			value_copy(vsize, slot(c, vsize, c->len), s->value);
			c->len++;
			*wake = weft__wq_grant(s, 0);
		}
		*res = 0;
		return 1;
	}
	if ((s = weft__wq_take(&c->sendq))) {
		/* Rendezvous (cap 0), or a full channel of cap > 0 that a
		 * racing receiver emptied: take the value directly. */
		value_copy(vsize, dst, s->value);
		*wake = weft__wq_grant(s, 0);
		*res = 0;
		return 1;
	}
	if (c->closed) {
		value_end(vsize, dst);
		*res = -EPIPE;
		return 1;
	}
	return 0;
}

/* ---- send / recv ------------------------------------------------------ */

INLINE int chan_send(weft_chan *c, size_t vsize, const void *src,
		     uint64_t timeout_ns, bool wait)
{
	struct weft__wake wake = { NULL, NULL };
	struct weft__wnode n;
	int res, err;

	weft__spin_lock(&c->lock);
	if (send_locked(c, vsize, src, &res, &wake)) {
		weft__spin_unlock(&c->lock);
		weft__wq_wake(wake);
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
	err = weft__wq_wait(&c->lock, &c->sendq, &n,
			    weft__wait_deadline(timeout_ns));
	return err ? err : n.result;
}

INLINE int chan_recv(weft_chan *c, size_t vsize, void *dst,
		     uint64_t timeout_ns, bool wait)
{
	struct weft__wake wake = { NULL, NULL };
	struct weft__wnode n;
	int res, err;

	weft__spin_lock(&c->lock);
	if (recv_locked(c, vsize, dst, &res, &wake)) {
		weft__spin_unlock(&c->lock);
		weft__wq_wake(wake);
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

struct sel_state {
	struct weft_sel *cases;
	size_t n;
	weft_chan **order; /* distinct channels in address order */
	size_t norder;
	struct weft__wnode *nodes;
	struct weft__sel *sel;
};

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

/* Where a case's value is (send) or goes (receive): the case's value
 * field itself for a pointer channel, the buffer it points to for a value
 * channel. */
static void *sel_value(struct weft_sel *k)
{
	return k->chan->vsize ? k->value : (void *)&k->value;
}

/* Tries the cases in order with every lock held; returns the index of the
 * one that completed, or -1. */
static int sel_try(struct sel_state *s, struct weft__wake *wake)
{
	for (size_t i = 0; i < s->n; i++) {
		struct weft_sel *k = &s->cases[i];
		int res;

		if (!k->chan)
			continue;
		if (k->op == WEFT_SEL_SEND
			    ? send_locked(k->chan, k->chan->vsize,
					  sel_value(k), &res, wake)
			    : recv_locked(k->chan, k->chan->vsize,
					  sel_value(k), &res, wake)) {
			k->result = res;
			return (int)i;
		}
	}
	return -1;
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

		if (k->chan && k->chan != skip && nd->linked)
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
 * outside the runtime may have granted and destroyed it). */
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
}

/* Granted: a case won (acquire, pairs with the granter's CAS) and its node
 * is DONE (acquire, pairs with weft__wq_grant's release). A case that won
 * without DONE yet is a grant on its way under that channel's lock: the
 * wait goes on, and its wake follows. */
static bool sel_ready(struct weft__wait *wt)
{
	struct sel_state *s = ((struct sel_wait *)wt)->s;
	int won = atomic_load_explicit(&s->sel->winner, memory_order_acquire);

	if (won < 0 || atomic_load_explicit(&s->nodes[won].state,
					    memory_order_acquire) !=
			       WEFT__WN_DONE)
		return false;
	wt->res = won;
	return true;
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
	weft__wait_init(&u.wt, weft__worker_self(), deadline);
	/* Dropped at shutdown: its nodes leave the channels. */
	u.wt.unwait = &u.unwait;
	return weft__wait(&u.wt, sel_ready, sel_give_up);
}

int weft_select(struct weft_sel *cases, size_t n, uint64_t timeout_ns)
{
	struct weft__worker *w = weft__worker_self();
	weft_chan *order_stack[SEL_STACK];
	struct weft__wnode nodes_stack[SEL_STACK];
	struct weft__wake wake = { NULL, NULL };
	struct sel_state s = { .cases = cases, .n = n };
	struct weft__sel sel;
	uint64_t deadline;
	size_t i, m = 0;
	int won;

	if (!w || !w->current)
		return -EPERM;
	if (!cases && n)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (!cases[i].chan)
			continue;
		if (cases[i].op != WEFT_SEL_SEND &&
		    cases[i].op != WEFT_SEL_RECV)
			return -EINVAL;
		/* A value channel's send needs the value's bytes. */
		if (cases[i].op == WEFT_SEL_SEND && cases[i].chan->vsize &&
		    !cases[i].value)
			return -EINVAL;
		m++;
	}
	if (!m)
		return -EINVAL;
	deadline = weft__wait_deadline(timeout_ns);
	if (n <= SEL_STACK) {
		s.order = order_stack;
		s.nodes = nodes_stack;
	} else {
		s.order = weft__mem_alloc(m * sizeof(*s.order));
		s.nodes = weft__mem_alloc(n * sizeof(*s.nodes));
		if (!s.order || !s.nodes) {
			weft__mem_free(s.order);
			weft__mem_free(s.nodes);
			return -ENOMEM;
		}
	}
	for (i = 0; i < n; i++)
		if (cases[i].chan)
			s.order[s.norder++] = cases[i].chan;
	qsort(s.order, s.norder, sizeof(*s.order), ptr_cmp);
	for (i = m = 0; i < s.norder; i++)
		if (!m || s.order[m - 1] != s.order[i])
			s.order[m++] = s.order[i];
	s.norder = m;

	lock_all(&s);
	won = sel_try(&s, &wake);
	if (won >= 0 || deadline <= weft_now() ||
	    weft__task_cancel_pending(w->current)) {
		unlock_all(&s);
		weft__wq_wake(wake);
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
	 * buffer), before its DONE store: only the winning case is
	 * granted, so only its value is written. */
	for (i = 0; i < n; i++) {
		struct weft__wnode *nd = &s.nodes[i];
		weft__wq_node_init(nd, cases[i].chan ? sel_value(&cases[i])
						     : NULL);
		nd->sel = &sel;
		nd->index = (int)i;
		nd->obj = cases[i].chan;
		if (!cases[i].chan)
			continue;
		weft__wq_push(cases[i].op == WEFT_SEL_SEND
				      ? &cases[i].chan->sendq
				      : &cases[i].chan->recvq,
			      nd);
	}
	unlock_all(&s);
	won = sel_park(&s, deadline);
	/* Never the granting channel again (wq.h, Lifetime). */
	sel_unlink(&s, won >= 0 ? cases[won].chan : NULL);
	if (won >= 0)
		cases[won].result = s.nodes[won].result;
out:
	if (s.order != order_stack) {
		weft__mem_free(s.order);
		weft__mem_free(s.nodes);
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
