/*
 * Channels (bounded MPMC FIFO of pointers), select over channel
 * operations, and the async generator built on a channel.
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
 * Direct hand-off keeps a send to a waiting receiver at one lock round and
 * one wake: the woken receiver goes to the sender's worker's next slot and
 * runs as soon as the sender suspends (ping-pong needs that).
 */
#include <errno.h>
#include <poll.h>
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
	weft__spin lock;
	bool closed;
	size_t cap, head, len;
	struct weft__wq sendq, recvq;
	uint32_t tag; /* WEFT__LIVE while alive */
	void *buf[]; /* cap slots */
};

int weft_chan_create(weft_chan **out, size_t capacity)
{
	weft_chan *c;

	if (!out || capacity > ((size_t)1 << 32))
		return -EINVAL;
	/* A line of its own: channels of tasks on different workers must
	 * not share one (false sharing doubled ping_pong's cost). */
	size_t sz = sizeof(*c) + capacity * sizeof(void *);
	sz = (sz + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
	c = weft__mem_aligned(WEFT__CACHELINE, sz);
	if (!c)
		return -ENOMEM;
	memset(c, 0, sz);
	c->cap = capacity;
	c->tag = WEFT__LIVE;
	*out = c;
	return 0;
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

/* ---- operations under the lock ----------------------------------------
 * Each returns 1 when it completed the operation (and may set *wake to a
 * task to wake after unlocking), 0 when the caller would have to wait. */

static int send_locked(weft_chan *c, void *v, int *res, struct weft__wake *wake)
{
	struct weft__wnode *r;

	if (c->closed) {
		*res = -EPIPE;
		return 1;
	}
	if ((r = weft__wq_take(&c->recvq))) {
		r->value = v;
		*wake = weft__wq_grant(r, 0);
		*res = 0;
		return 1;
	}
	if (c->len < c->cap) {
		size_t i = c->head + c->len;
		if (i >= c->cap)
			i -= c->cap;
		c->buf[i] = v;
		c->len++;
		*res = 0;
		return 1;
	}
	return 0;
}

static int recv_locked(weft_chan *c, void **v, int *res,
		       struct weft__wake *wake)
{
	struct weft__wnode *s;

	if (c->len) {
		*v = c->buf[c->head];
		if (++c->head == c->cap)
			c->head = 0;
		c->len--;
		/* Room now: the first waiting sender's value moves in. */
		if ((s = weft__wq_take(&c->sendq))) {
			size_t i = c->head + c->len;
			if (i >= c->cap)
				i -= c->cap;
			c->buf[i] = s->value;
			c->len++;
			*wake = weft__wq_grant(s, 0);
		}
		*res = 0;
		return 1;
	}
	if ((s = weft__wq_take(&c->sendq))) {
		/* Rendezvous (cap 0), or a full channel of cap > 0 that a
		 * racing receiver emptied: take the value directly. */
		*v = s->value;
		*wake = weft__wq_grant(s, 0);
		*res = 0;
		return 1;
	}
	if (c->closed) {
		*v = NULL;
		*res = -EPIPE;
		return 1;
	}
	return 0;
}

/* ---- send / recv ------------------------------------------------------ */

static int chan_send(weft_chan *c, void *v, uint64_t timeout_ns, bool wait)
{
	struct weft__wake wake = { NULL, NULL };
	struct weft__wnode n;
	int res, err;

	if (!c)
		return -EINVAL;
	weft__spin_lock(&c->lock);
	if (send_locked(c, v, &res, &wake)) {
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
	weft__wq_node_init(&n, v);
	weft__wq_push(&c->sendq, &n);
	weft__spin_unlock(&c->lock);
	err = weft__wq_park(&c->lock, &c->sendq, &n,
			    weft__wait_deadline(timeout_ns));
	return err ? err : n.result;
}

static int chan_recv(weft_chan *c, void **v, uint64_t timeout_ns, bool wait)
{
	struct weft__wake wake = { NULL, NULL };
	struct weft__wnode n;
	void *tmp;
	int res, err;

	if (!c)
		return -EINVAL;
	if (!v)
		v = &tmp;
	weft__spin_lock(&c->lock);
	if (recv_locked(c, v, &res, &wake)) {
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
	weft__wq_node_init(&n, NULL);
	weft__wq_push(&c->recvq, &n);
	weft__spin_unlock(&c->lock);
	err = weft__wq_park(&c->lock, &c->recvq, &n,
			    weft__wait_deadline(timeout_ns));
	if (err)
		return err;
	*v = n.result ? NULL : n.value;
	return n.result;
}

int weft_chan_send(weft_chan *c, void *value)
{
	return chan_send(c, value, WEFT_NEVER, true);
}

int weft_chan_send_timeout(weft_chan *c, void *value, uint64_t timeout_ns)
{
	return chan_send(c, value, timeout_ns, true);
}

int weft_chan_try_send(weft_chan *c, void *value)
{
	return chan_send(c, value, 0, false);
}

int weft_chan_recv(weft_chan *c, void **value)
{
	return chan_recv(c, value, WEFT_NEVER, true);
}

int weft_chan_recv_timeout(weft_chan *c, void **value, uint64_t timeout_ns)
{
	return chan_recv(c, value, timeout_ns, true);
}

int weft_chan_try_recv(weft_chan *c, void **value)
{
	return chan_recv(c, value, 0, false);
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
			n->value = NULL;
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
 * one that completed (or is ready: a descriptor, a task), or -1. */
static int sel_try(struct sel_state *s, struct weft__wake *wake)
{
	for (size_t i = 0; i < s->n; i++) {
		struct weft_sel *k = &s->cases[i];
		struct sel_watch *x = s->watch ? &s->watch[i] : NULL;
		int res;

		switch (sel_kind(k)) {
		case K_CHAN:
			if (k->op == WEFT_SEL_SEND
				    ? send_locked(k->chan, k->value, &res, wake)
				    : recv_locked(k->chan, &k->value, &res,
						  wake)) {
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
	struct weft__wake wake = { NULL, NULL };
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
	 * one reads its siblings' obj (weft__wq_sel_take_siblings). */
	for (i = 0; i < n; i++) {
		struct weft__wnode *nd = &s.nodes[i];
		bool chan = sel_kind(&cases[i]) == K_CHAN;

		weft__wq_node_init(nd, chan ? cases[i].value : NULL);
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
	if (won >= 0 && sel_kind(&cases[won]) == K_CHAN) {
		struct weft__wnode *nd = &s.nodes[won];
		cases[won].result = nd->result;
		if (cases[won].op == WEFT_SEL_RECV)
			cases[won].value = nd->result ? NULL : nd->value;
	}
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
