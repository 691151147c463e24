/*
 * Lease buffers (runtime/pbuf.c): each worker's pool of the buffers that
 * weft_recv_lease() receives into and weft_lease_release() gives back
 * (weft.h). Buffers are named by an id. The first WEFT_LEASE_COUNT ids
 * are the pool's base; on io_uring (5.19+) they sit in a provided-buffer
 * ring registered with the worker's ring (group WEFT__PBUF_GROUP), where
 * the kernel takes one only when data arrives. Ids past those are
 * overflow buffers, made when every buffer is out and kept for reuse; the
 * pool hands those (and, without a kernel ring, all) out itself.
 *
 * Who may do what: the owner (the worker's thread) takes buffers, refills
 * the kernel ring and makes the pool; any thread gives a buffer back
 * (weft__pbuf_give(), weft__pbuf_release()), the owner directly, others
 * through a stack the owner empties. The pool lives while the worker runs
 * or a lease is out (a count of references).
 */
#ifndef WEFT_PBUF_H
#define WEFT_PBUF_H

#include <stdbool.h>
#include <stddef.h>

struct weft_lease;
struct weft__pbuf;
struct weft__worker;

#define WEFT__PBUF_GROUP 1

/* The calling worker w's pool, made at its first use: NULL if there is no
 * memory for it. Owner. */
struct weft__pbuf *weft__pbuf_get(struct weft__worker *w);
/* Whether the kernel takes p's base buffers from a registered ring: then
 * a receive may select from group WEFT__PBUF_GROUP. Owner. */
bool weft__pbuf_ring(const struct weft__pbuf *p);
/* Puts the buffers given back from other threads into the ring or the
 * free list. Owner. */
void weft__pbuf_refill(struct weft__pbuf *p);
/* A free buffer for the pool to hand out: its id (an overflow buffer if
 * the kernel holds the base ones; more are made when none is free), or
 * -ENOBUFS past 65536 ids out, -ENOMEM. Owner. */
int weft__pbuf_take(struct weft__pbuf *p);
/* Buffer id's memory (WEFT_LEASE_SIZE bytes); any thread. */
void *weft__pbuf_addr(struct weft__pbuf *p, unsigned id);
/* Buffer id (taken, or selected by the kernel) now holds n > 0 received
 * bytes: lease l holds it. Any thread (the task that received). */
void weft__pbuf_lease(struct weft__pbuf *p, unsigned id, size_t n,
		      struct weft_lease *l);
/* Buffer id (taken, or selected by the kernel) goes back unleased: the
 * receive into it got nothing. Any thread. */
void weft__pbuf_give(struct weft__pbuf *p, unsigned id);
/* A first-in first-out queue of buffers holding received bytes (a
 * stream's, stream.c), linked through the pool: ids + 1, 0 ends. Owner. */
struct weft__pbuf_q {
	unsigned head, tail;
};
void weft__pbuf_q_push(struct weft__pbuf *p, struct weft__pbuf_q *q,
		       unsigned id, unsigned len);
/* The first buffer's id and, in *len, its byte count; -1 if empty. */
int weft__pbuf_q_pop(struct weft__pbuf *p, struct weft__pbuf_q *q,
		     unsigned *len);
/* weft_lease_release(): 0 or -EINVAL (the lease holds nothing). Any
 * thread. */
int weft__pbuf_release(struct weft_lease *l);
/* Shutdown, on w's thread after weft__ring_quiesce() drained its ring:
 * the kernel ring is unregistered. */
void weft__pbuf_quiesce(struct weft__worker *w);
/* The worker's reference is dropped (after the joins; any thread): the
 * pool is freed now or with its last lease. keep: the kernel may still
 * write into the buffers (the ring's drain gave up): never freed. */
void weft__pbuf_fini(struct weft__worker *w, bool keep);

#endif
