/*
 * Each worker's local run queue: a bounded ring of WEFT__LQ_SIZE task
 * pointers with one producer (the owning worker) and many consumers (the
 * owner and any thief). Go's runq and Tokio's local queue have the same
 * shape; this one is written from their published design.
 *
 * Protocol
 *   tail  only the owner writes it. A store-release publishes the slots
 *         below it.
 *   head  everybody advances it, always by compare-and-swap, so each
 *         slot in [head, tail) is taken by exactly one consumer.
 *   slot  the owner writes slot[tail % SIZE] only while tail - head < SIZE,
 *         i.e. never a slot that still lies in [head, tail).
 *
 * A consumer reads head (acquire), tail (acquire, pairing with the owner's
 * release so the slots and the tasks they point to are visible), copies the
 * slots it wants, then tries CAS(head, h, h + n). If the CAS fails someone
 * else took some of those slots first, and the copy is thrown away. The
 * copy may have read a slot the owner was overwriting, but only when head
 * had already moved past it (the owner writes a slot only after it left
 * [head, tail)), in which case the CAS fails: a torn read is never used.
 * Slots are atomics (relaxed) so that such a racing read is not a data
 * race in C11's sense.
 *
 * The 32-bit indices wrap; differences are taken modulo 2^32 and are never
 * more than SIZE apart.
 */
#ifndef WEFT_LQ_H
#define WEFT_LQ_H

#include "base.h"
#include "task.h"

#define WEFT__LQ_SIZE 256u
#define WEFT__LQ_MASK (WEFT__LQ_SIZE - 1)

struct weft__lq {
	/* Next slot to take; advanced by the owner's pops and by stealers,
	 * always with a CAS. */
	_Alignas(WEFT__CACHELINE) atomic_uint head;
	/* Next slot to fill; written only by the owner. */
	_Alignas(WEFT__CACHELINE) atomic_uint tail;
	_Alignas(WEFT__CACHELINE) _Atomic(struct weft__tcb *) slot[WEFT__LQ_SIZE];
};

static inline unsigned weft__lq_len(struct weft__lq *q)
{
	unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);
	unsigned t = atomic_load_explicit(&q->tail, memory_order_acquire);
	return t - h;
}

/* Owner only. Pushes t; returns false if the queue is full (the caller
 * then moves half of it to the inject queue). */
static inline bool weft__lq_push(struct weft__lq *q, struct weft__tcb *t)
{
	unsigned tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
	unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);

	if (tl - h >= WEFT__LQ_SIZE)
		return false;
	atomic_store_explicit(&q->slot[tl & WEFT__LQ_MASK], t,
			      memory_order_relaxed);
	/* Pairs with the acquire load of tail in pop/steal. */
	atomic_store_explicit(&q->tail, tl + 1, memory_order_release);
	return true;
}

/* Owner only, queue full: takes the older half out of the queue into a
 * linked list for the inject queue. Returns the number taken (0 if a thief
 * emptied part of the queue meanwhile: just retry the push). */
static inline unsigned weft__lq_take_half(struct weft__lq *q,
					  struct weft__tcb **head,
					  struct weft__tcb **tail)
{
	unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);
	unsigned tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
	unsigned n = WEFT__LQ_SIZE / 2, i;
	struct weft__tcb *first = NULL, *last = NULL;

	if (tl - h < WEFT__LQ_SIZE)
		return 0;
	/* The slots are ours once the CAS succeeds; read them after, since
	 * nobody can overwrite them but us (the owner). */
	if (!atomic_compare_exchange_strong_explicit(
		    &q->head, &h, h + n, memory_order_acq_rel,
		    memory_order_relaxed))
		return 0;
	for (i = 0; i < n; i++) {
		struct weft__tcb *t = atomic_load_explicit(
			&q->slot[(h + i) & WEFT__LQ_MASK], memory_order_relaxed);
		t->qnext = NULL;
		if (last)
			last->qnext = t;
		else
			first = t;
		last = t;
	}
	*head = first;
	*tail = last;
	return n;
}

/* Any consumer: takes the oldest task, or NULL if empty. If `more` is
 * given, it is set when tasks remained behind the one taken. */
static inline struct weft__tcb *weft__lq_pop(struct weft__lq *q, bool *more)
{
	unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);

	for (;;) {
		unsigned tl = atomic_load_explicit(&q->tail,
						   memory_order_acquire);
		struct weft__tcb *t;

		if (h == tl)
			return NULL;
		t = atomic_load_explicit(&q->slot[h & WEFT__LQ_MASK],
					 memory_order_relaxed);
		/* On failure h is reloaded and we try again. */
		if (atomic_compare_exchange_weak_explicit(
			    &q->head, &h, h + 1, memory_order_acq_rel,
			    memory_order_acquire)) {
			if (more)
				*more = tl - h > 1;
			return t;
		}
	}
}

/*
 * Thief: moves half (rounded up) of victim's tasks into the thief's own
 * queue `dst`, which must be empty (the thief only steals when it has
 * nothing). Returns one of them to run at once (not placed in dst), or
 * NULL if the victim had nothing.
 */
static inline struct weft__tcb *weft__lq_steal(struct weft__lq *victim,
					       struct weft__lq *dst)
{
	unsigned dtail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
	unsigned h = atomic_load_explicit(&victim->head, memory_order_acquire);
	unsigned n, i;

	for (;;) {
		unsigned tl = atomic_load_explicit(&victim->tail,
						   memory_order_acquire);
		n = tl - h;
		n -= n / 2;
		if (n == 0)
			return NULL;
		if (n > WEFT__LQ_SIZE / 2) {
			/* head and tail read at different moments; reread. */
			h = atomic_load_explicit(&victim->head,
						 memory_order_acquire);
			continue;
		}
		for (i = 0; i < n; i++) {
			struct weft__tcb *t = atomic_load_explicit(
				&victim->slot[(h + i) & WEFT__LQ_MASK],
				memory_order_relaxed);
			/* dst is ours and empty: its head cannot move past
			 * dtail, and no one reads these slots until our
			 * release store of tail below. */
			atomic_store_explicit(
				&dst->slot[(dtail + i) & WEFT__LQ_MASK], t,
				memory_order_relaxed);
		}
		if (atomic_compare_exchange_weak_explicit(
			    &victim->head, &h, h + n, memory_order_acq_rel,
			    memory_order_acquire))
			break;
	}
	/* Keep the last one to run now; publish the rest. */
	n--;
	struct weft__tcb *run = atomic_load_explicit(
		&dst->slot[(dtail + n) & WEFT__LQ_MASK], memory_order_relaxed);
	if (n)
		atomic_store_explicit(&dst->tail, dtail + n,
				      memory_order_release);
	return run;
}

#endif /* WEFT_LQ_H */
