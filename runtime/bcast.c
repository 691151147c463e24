/*
 * Broadcast channels (Tokio's sync::broadcast): every receiver sees every
 * value sent after it subscribed, in order; senders never wait.
 *
 * A broadcast keeps the last `cap` values in a ring: value number n
 * (counted from 0 since the create) sits in ring[n % cap], and `tail` is
 * the number of values sent so far. Each receiver (weft_bcast_rx) has its
 * own cursor `pos`, the number of the next value it reads, so the values
 * it may still read are pos .. tail - 1. A receiver that fell more than
 * cap behind (tail - pos > cap) has lost the oldest of them to newer
 * sends: its next call reports that once (-EOVERFLOW, the count added to
 * its `missed`) and moves its cursor to the oldest value still held,
 * tail - cap, where the following call goes on.
 *
 * State, all under the lock: ring, tail, closed, nrx (receivers
 * subscribed) and recvq, the receivers waiting for the next value (wq.h
 * argues the wait protocol). Invariant, whenever the lock is free: every
 * live node in recvq (one that weft__wq_take() may still grant) belongs
 * to a receiver whose pos == tail, and the broadcast is open. A receiver
 * links its node only after finding pos == tail and not closed, under
 * the lock; every send that moves tail grants every live node in the
 * same critical section, and so does close. Hence a granted receiver
 * knows what it got without touching the broadcast again: the grant
 * carries the value (value number pos, in the node), and the receiver
 * moves its own cursor past it after the wait. A receiver that gives up
 * instead (LEAVING: weft__wq_grant_all() skips it) did not move its
 * cursor, so the value stays in the ring for its next call: giving up
 * loses nothing.
 *
 * A cursor belongs to its receiver: only calls on that weft_bcast_rx
 * read or write pos and missed (under the lock, but for the move after a
 * grant, which the same receiver's next call follows), never a sender.
 * Values are pointers only: a value channel's copies would have to be
 * made into each waiter's buffer under the lock, once per receiver.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "base.h"
#include "mem.h"
#include "spin.h"
#include "task.h"
#include "wait.h"
#include "worker.h"
#include "wq.h"

struct weft_bcast {
	weft__spin lock;
	bool closed;
	size_t cap;    /* ring slots, >= 1 */
	uint64_t tail; /* values sent; the next one's number */
	size_t nrx;    /* receivers subscribed */
	struct weft__wq recvq; /* receivers with pos == tail, waiting */
	uint32_t tag;  /* WEFT__LIVE while alive */
	void *ring[];  /* value n in ring[n % cap] */
};

struct weft_bcast_rx {
	weft_bcast *b;
	uint64_t pos;    /* number of the next value to read */
	uint64_t missed; /* values skipped by lags, in all */
	uint32_t tag;    /* WEFT__LIVE while subscribed */
};

int weft_bcast_create(weft_bcast **out, size_t capacity)
{
	weft_bcast *b;

	if (!out || !capacity || capacity > ((size_t)1 << 32))
		return -EINVAL;
	b = weft__mem_calloc(1, sizeof(*b) + capacity * sizeof(void *));
	if (!b)
		return -ENOMEM;
	b->cap = capacity;
	b->tag = WEFT__LIVE;
	*out = b;
	return 0;
}

void weft_bcast_destroy(weft_bcast *b)
{
	size_t nrx;

	if (!b)
		return;
	weft__live_end(&b->tag, "weft_bcast_destroy(): not a live broadcast "
				     "(destroyed already?)");
	weft__wq_retire(&b->lock, &b->recvq, NULL,
			"weft_bcast_destroy() with waiters");
	/* Under the lock: pairs with the last unsubscribe's unlock. */
	weft__spin_lock(&b->lock);
	nrx = b->nrx;
	weft__spin_unlock(&b->lock);
	weft__check(!nrx, "weft_bcast_destroy() with receivers subscribed");
	weft__mem_free(b);
}

int weft_bcast_send(weft_bcast *b, void *value)
{
	size_t nrx;

	if (!b)
		return -EINVAL;
	weft__spin_lock(&b->lock);
	if (b->closed) {
		weft__spin_unlock(&b->lock);
		return -EPIPE;
	}
	b->ring[b->tail % b->cap] = value;
	b->tail++;
	nrx = b->nrx;
	/* Every waiter is at the value just sent (see the invariant); the
	 * lock is dropped here, the waiters woken after. */
	weft__wq_grant_all(&b->lock, &b->recvq, 0, value, ~0u);
	/* Never waits, so a task that only sends must still let others
	 * run (as a channel send that completes at once). */
	weft__task_coop_tick();
	return nrx > INT_MAX ? INT_MAX : (int)nrx;
}

int weft_bcast_close(weft_bcast *b)
{
	if (!b)
		return -EINVAL;
	weft__spin_lock(&b->lock);
	if (b->closed) {
		weft__spin_unlock(&b->lock);
		return -EALREADY;
	}
	b->closed = true;
	/* The waiters have read everything (pos == tail): the end. */
	weft__wq_grant_all(&b->lock, &b->recvq, -EPIPE, NULL, ~0u);
	return 0;
}

int weft_bcast_subscribe(weft_bcast *b, weft_bcast_rx **out)
{
	weft_bcast_rx *rx;

	if (!b || !out)
		return -EINVAL;
	rx = weft__mem_calloc(1, sizeof(*rx));
	if (!rx)
		return -ENOMEM;
	rx->b = b;
	rx->tag = WEFT__LIVE;
	weft__spin_lock(&b->lock);
	rx->pos = b->tail;
	b->nrx++;
	weft__spin_unlock(&b->lock);
	*out = rx;
	return 0;
}

void weft_bcast_unsubscribe(weft_bcast_rx *rx)
{
	weft_bcast *b;

	if (!rx)
		return;
	weft__live_end(&rx->tag, "weft_bcast_unsubscribe(): not a subscribed "
				      "receiver (unsubscribed already?)");
	b = rx->b;
	weft__spin_lock(&b->lock);
	/* A receive still waiting on rx would write its cursor after the
	 * free. One that is giving up (LEAVING) touches only the broadcast,
	 * which is still there. A linked node is LEAVING or waiting, the
	 * latter with or without a sleeping thread's SLEEPER bit (comparing
	 * with WAITING alone let a thread sleeping on rx through). */
	for (struct weft__wnode *n = b->recvq.head; n; n = n->next)
		weft__check(n->obj != rx ||
				    atomic_load_explicit(&n->state,
							 memory_order_relaxed) ==
					    WEFT__WN_LEAVING,
			    "weft_bcast_unsubscribe() while a receive waits "
			    "on the receiver");
	b->nrx--;
	weft__spin_unlock(&b->lock);
	weft__mem_free(rx);
}

/* Under the lock: reads rx's next value into *v. Returns 0, -EOVERFLOW
 * (lagged: the cursor moved to the oldest value held), -EPIPE (closed, all
 * read), or -EAGAIN (nothing new: the caller would wait). */
static int rx_locked(weft_bcast_rx *rx, const weft_bcast *b, void **v)
{
	if (b->tail - rx->pos > b->cap) {
		uint64_t oldest = b->tail - b->cap;

		rx->missed += oldest - rx->pos;
		rx->pos = oldest;
		*v = NULL;
		return -EOVERFLOW;
	}
	if (rx->pos != b->tail) {
		*v = b->ring[rx->pos % b->cap];
		rx->pos++;
		return 0;
	}
	if (!b->closed)
		return -EAGAIN;
	*v = NULL;
	return -EPIPE;
}

static int bcast_recv(weft_bcast_rx *rx, void **value, uint64_t timeout_ns,
		      bool wait)
{
	struct weft__wnode n;
	weft_bcast *b;
	void *tmp;
	int res, err;

	if (!rx)
		return -EINVAL;
	if (!value)
		value = &tmp;
	b = rx->b;
	weft__spin_lock(&b->lock);
	res = rx_locked(rx, b, value);
	if (res != -EAGAIN || !wait) {
		weft__spin_unlock(&b->lock);
		if (wait)
			weft__task_coop_tick(); /* done without waiting */
		return res;
	}
	weft__wq_node_init(&n, NULL);
	n.obj = rx; /* for weft_bcast_unsubscribe()'s check */
	weft__wq_why(&n, WEFT__W_BCAST, rx);
	err = weft__wq_wait(&b->lock, &b->recvq, &n,
			    weft__wait_deadline(timeout_ns));
	if (err)
		return err;
	/* Granted: value number pos (a send), or the end (close); b is
	 * not touched again. */
	*value = n.result ? NULL : n.value;
	if (!n.result)
		rx->pos++;
	return n.result;
}

int weft_bcast_recv(weft_bcast_rx *rx, void **value)
{
	return bcast_recv(rx, value, WEFT_NEVER, true);
}

int weft_bcast_recv_timeout(weft_bcast_rx *rx, void **value,
			    uint64_t timeout_ns)
{
	return bcast_recv(rx, value, timeout_ns, true);
}

int weft_bcast_try_recv(weft_bcast_rx *rx, void **value)
{
	return bcast_recv(rx, value, 0, false);
}

uint64_t weft_bcast_missed(weft_bcast_rx *rx)
{
	uint64_t m;

	if (!rx)
		return 0;
	weft__spin_lock(&rx->b->lock);
	m = rx->missed;
	weft__spin_unlock(&rx->b->lock);
	return m;
}
