/*
 * Lease buffers: each worker's pool for weft_recv_lease() (pbuf.h says
 * who may call what).
 *
 * Ids and memory
 *   Buffers are grouped in chunks of PBUF_CHUNK ids. The first
 *   WEFT_LEASE_COUNT ids (the base) share one mapping made with the pool;
 *   an overflow chunk is made when the pool has to hand out a buffer and
 *   none is free. A chunk, once published in p->chunks (release; readers
 *   acquire), never moves and lives as long as the pool.
 *
 * Where a buffer is
 *   In the kernel's ring (base ids, while the ring is registered), in the
 *   owner's free list (free_head, linked through next[]), in the return
 *   stack (ret_head, the same links), or out: selected by the kernel or
 *   taken, in a receive under way, or leased. state[] counts its leases:
 *   generation << 1, plus 1 while leased. A lease carries the generation
 *   it was given under, and its release turns exactly that state back to
 *   not-leased with a CAS: a second release, of the lease or of a copy,
 *   finds another state and is refused.
 *
 * Giving back (weft__pbuf_give(), also from a release)
 *   On the owner's thread while the pool is live: straight into the
 *   kernel ring or the free list. Elsewhere: pushed on the return stack
 *   (a CAS loop, release), which the owner takes whole (exchange, acquire)
 *   in weft__pbuf_refill(). That pairing orders the releasing thread's use
 *   of the bytes before the kernel's or the next receiver's writes into
 *   them (the ring's tail is published with a release store by
 *   io_uring_buf_ring_advance()). The stack is push-only for all but the
 *   owner, who takes every entry at once, so it has no ABA: a pusher's
 *   CAS succeeds only while the head it linked below is still the head.
 *
 * Lifetime
 *   refs: one for the worker, one per lease out. The worker's is dropped
 *   at shutdown (weft__pbuf_fini(), after its thread ended: `live` is
 *   cleared first, so no later thread takes the owner's path), each
 *   lease's by its release; the last one frees the pool. A lease may so
 *   outlive its runtime.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "weft.h"

#include "base.h"
#include "pbuf.h"
#include "ring.h"
#include "worker.h"

#define PBUF_CHUNK 64u
#define PBUF_MAX_IDS 65536u
#define PBUF_NCHUNKS (PBUF_MAX_IDS / PBUF_CHUNK)
#define PBUF_MAGIC 0x6c65617365706f6fULL /* "leasepoo" */

_Static_assert(WEFT_LEASE_COUNT % PBUF_CHUNK == 0 &&
		       (WEFT_LEASE_COUNT & (WEFT_LEASE_COUNT - 1)) == 0 &&
		       WEFT_LEASE_COUNT <= 32768,
	       "the base is whole chunks, and a kernel ring's size");

struct pbuf_chunk {
	char *mem; /* PBUF_CHUNK * WEFT_LEASE_SIZE bytes */
	_Atomic uint32_t state[PBUF_CHUNK];
	_Atomic uint32_t next[PBUF_CHUNK]; /* id + 1 below; 0 ends */
	uint32_t qlen[PBUF_CHUNK];         /* in a queue: its byte count */
};

struct weft__pbuf {
	uint64_t magic;
	struct weft__worker *w;
	atomic_bool live;
	atomic_uint refs;
	bool kring; /* base ids in the kernel's ring (owner) */
	bool keep;  /* never freed: the kernel may still write */
	struct io_uring_buf_ring *br;
	char *base;
	_Atomic(struct pbuf_chunk *) chunks[PBUF_NCHUNKS];
	unsigned nchunks;  /* owner */
	uint32_t free_head; /* owner: id + 1, 0: empty */
	_Atomic uint32_t ret_head;
};

static struct pbuf_chunk *chunk_of(struct weft__pbuf *p, unsigned id)
{
	return atomic_load_explicit(&p->chunks[id / PBUF_CHUNK],
				    memory_order_acquire);
}

void *weft__pbuf_addr(struct weft__pbuf *p, unsigned id)
{
	return chunk_of(p, id)->mem + (size_t)(id % PBUF_CHUNK) * WEFT_LEASE_SIZE;
}

bool weft__pbuf_ring(const struct weft__pbuf *p)
{
	return p->kring;
}

static void free_push(struct weft__pbuf *p, unsigned id)
{
	atomic_store_explicit(&chunk_of(p, id)->next[id % PBUF_CHUNK],
			      p->free_head, memory_order_relaxed);
	p->free_head = id + 1;
}

/* Owner: id back where the pool keeps it free. */
static void put_owned(struct weft__pbuf *p, unsigned id)
{
	if (p->kring && id < WEFT_LEASE_COUNT) {
		io_uring_buf_ring_add(p->br, weft__pbuf_addr(p, id),
				      WEFT_LEASE_SIZE, (unsigned short)id,
				      io_uring_buf_ring_mask(WEFT_LEASE_COUNT),
				      0);
		io_uring_buf_ring_advance(p->br, 1);
	} else {
		free_push(p, id);
	}
}

static void pool_free(struct weft__pbuf *p)
{
	unsigned i;

	if (p->keep)
		return;
	for (i = 0; i < p->nchunks; i++) {
		struct pbuf_chunk *c = atomic_load_explicit(
			&p->chunks[i], memory_order_relaxed);

		if (i >= WEFT_LEASE_COUNT / PBUF_CHUNK)
			free(c->mem);
		free(c);
	}
	if (p->base)
		munmap(p->base, (size_t)WEFT_LEASE_COUNT * WEFT_LEASE_SIZE);
	if (p->br)
		munmap(p->br, WEFT_LEASE_COUNT * sizeof(struct io_uring_buf));
	p->magic = 0;
	free(p);
}

/* Acq_rel: every use of the pool by the dropping thread comes before the
 * freeing thread's munmap and free. */
static void unref(struct weft__pbuf *p)
{
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		pool_free(p);
}

/* A new chunk of ids at p->nchunks, its ids free; mem: its memory (NULL:
 * allocate it). Owner. */
static int grow(struct weft__pbuf *p, char *mem)
{
	struct pbuf_chunk *c;
	unsigned first = p->nchunks * PBUF_CHUNK, i;

	if (p->nchunks == PBUF_NCHUNKS)
		return -ENOBUFS;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mem = mem ? mem : malloc((size_t)PBUF_CHUNK * WEFT_LEASE_SIZE);
	if (!c->mem) {
		free(c);
		return -ENOMEM;
	}
	atomic_store_explicit(&p->chunks[p->nchunks], c, memory_order_release);
	p->nchunks++;
	/* Lowest ids first out of the free list. */
	for (i = PBUF_CHUNK; i-- > 0;)
		free_push(p, first + i);
	return 0;
}

/* The base in the kernel's ring, if the kernel has provided-buffer rings
 * (5.19+) and the reactor is io_uring. The ring is this thread's (it is
 * SINGLE_ISSUER: registration only works from here). */
static void ring_register(struct weft__pbuf *p, struct weft__worker *w)
{
	struct io_uring_buf_reg reg;
	size_t len = WEFT_LEASE_COUNT * sizeof(struct io_uring_buf);
	unsigned id;
	void *br;

	if (w->ring.epoll)
		return;
	br = mmap(NULL, len, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED)
		return;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = WEFT_LEASE_COUNT;
	reg.bgid = WEFT__PBUF_GROUP;
	if (io_uring_register_buf_ring(&w->ring.uring, &reg, 0) < 0) {
		munmap(br, len);
		return;
	}
	p->br = br;
	p->kring = true;
	io_uring_buf_ring_init(p->br);
	/* The base ids leave the free list for the ring. */
	p->free_head = 0;
	for (id = 0; id < WEFT_LEASE_COUNT; id++)
		io_uring_buf_ring_add(p->br, weft__pbuf_addr(p, id),
				      WEFT_LEASE_SIZE, (unsigned short)id,
				      io_uring_buf_ring_mask(WEFT_LEASE_COUNT),
				      (int)id);
	io_uring_buf_ring_advance(p->br, WEFT_LEASE_COUNT);
}

struct weft__pbuf *weft__pbuf_get(struct weft__worker *w)
{
	struct weft__pbuf *p = w->ring.pbuf;
	size_t len = (size_t)WEFT_LEASE_COUNT * WEFT_LEASE_SIZE;
	unsigned i;

	if (weft__likely(p != NULL))
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->base = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->base == MAP_FAILED) {
		free(p);
		return NULL;
	}
	for (i = 0; i < WEFT_LEASE_COUNT / PBUF_CHUNK; i++)
		if (grow(p, p->base + (size_t)i * PBUF_CHUNK * WEFT_LEASE_SIZE)) {
			p->nchunks = i; /* pool_free() frees those made */
			pool_free(p);
			return NULL;
		}
	p->magic = PBUF_MAGIC;
	p->w = w;
	atomic_init(&p->live, true);
	atomic_init(&p->refs, 1);
	atomic_init(&p->ret_head, 0);
	ring_register(p, w);
	w->ring.pbuf = p;
	return p;
}

void weft__pbuf_refill(struct weft__pbuf *p)
{
	uint32_t h;

	if (!atomic_load_explicit(&p->ret_head, memory_order_relaxed))
		return;
	h = atomic_exchange_explicit(&p->ret_head, 0, memory_order_acquire);
	while (h) {
		unsigned id = h - 1;

		h = atomic_load_explicit(&chunk_of(p, id)->next[id % PBUF_CHUNK],
					 memory_order_relaxed);
		put_owned(p, id);
	}
}

int weft__pbuf_take(struct weft__pbuf *p)
{
	unsigned id;

	if (!p->free_head)
		weft__pbuf_refill(p);
	if (!p->free_head) {
		int err = grow(p, NULL);

		if (err)
			return err;
	}
	id = p->free_head - 1;
	p->free_head = atomic_load_explicit(
		&chunk_of(p, id)->next[id % PBUF_CHUNK], memory_order_relaxed);
	return (int)id;
}

void weft__pbuf_lease(struct weft__pbuf *p, unsigned id, size_t n,
		      struct weft_lease *l)
{
	_Atomic uint32_t *st = &chunk_of(p, id)->state[id % PBUF_CHUNK];
	/* The buffer is ours alone now: no release can race this store. */
	uint32_t gen = (atomic_load_explicit(st, memory_order_relaxed) >> 1) + 1;

	/* Relaxed: the lease reaches a releasing thread only through the
	 * program's own hand-over (which orders it), and the release's CAS
	 * reads this store or a later one of the same location. */
	atomic_store_explicit(st, gen << 1 | 1, memory_order_relaxed);
	/* Relaxed: the worker's own reference is held (refs >= 1) while a
	 * lease is made, so the count cannot reach 0 here; the decrements
	 * (unref, acq_rel) order every use before the free. */
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	l->data = weft__pbuf_addr(p, id);
	l->len = n;
	l->priv[0] = (uint64_t)(uintptr_t)p;
	l->priv[1] = (uint64_t)(gen & 0x7fffffffu) << 32 | id;
}

void weft__pbuf_give(struct weft__pbuf *p, unsigned id)
{
	_Atomic uint32_t *next;
	uint32_t h;

	if (weft__worker_self() == p->w &&
	    atomic_load_explicit(&p->live, memory_order_acquire)) {
		put_owned(p, id);
		return;
	}
	next = &chunk_of(p, id)->next[id % PBUF_CHUNK];
	h = atomic_load_explicit(&p->ret_head, memory_order_relaxed);
	do
		atomic_store_explicit(next, h, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&p->ret_head, &h, id + 1,
						      memory_order_release,
						      memory_order_relaxed));
}

void weft__pbuf_q_push(struct weft__pbuf *p, struct weft__pbuf_q *q,
		       unsigned id, unsigned len)
{
	struct pbuf_chunk *c = chunk_of(p, id);

	c->qlen[id % PBUF_CHUNK] = len;
	atomic_store_explicit(&c->next[id % PBUF_CHUNK], 0,
			      memory_order_relaxed);
	if (q->tail)
		atomic_store_explicit(
			&chunk_of(p, q->tail - 1)->next[(q->tail - 1) % PBUF_CHUNK],
			id + 1, memory_order_relaxed);
	else
		q->head = id + 1;
	q->tail = id + 1;
}

int weft__pbuf_q_pop(struct weft__pbuf *p, struct weft__pbuf_q *q,
		     unsigned *len)
{
	struct pbuf_chunk *c;
	unsigned id;

	if (!q->head)
		return -1;
	id = q->head - 1;
	c = chunk_of(p, id);
	*len = c->qlen[id % PBUF_CHUNK];
	q->head = atomic_load_explicit(&c->next[id % PBUF_CHUNK],
				       memory_order_relaxed);
	if (!q->head)
		q->tail = 0;
	return (int)id;
}

int weft__pbuf_release(struct weft_lease *l)
{
	struct weft__pbuf *p;
	struct pbuf_chunk *c;
	uint32_t id, gen, want;

	if (!l || !l->priv[0])
		return -EINVAL;
	p = (struct weft__pbuf *)(uintptr_t)l->priv[0];
	id = (uint32_t)l->priv[1];
	gen = (uint32_t)(l->priv[1] >> 32);
	if (p->magic != PBUF_MAGIC || id >= PBUF_MAX_IDS ||
	    !(c = chunk_of(p, id)))
		return -EINVAL;
	want = gen << 1 | 1;
	if (!atomic_compare_exchange_strong_explicit(
		    &c->state[id % PBUF_CHUNK], &want, gen << 1,
		    memory_order_relaxed, memory_order_relaxed))
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	weft__pbuf_give(p, id);
	unref(p);
	return 0;
}

void weft__pbuf_quiesce(struct weft__worker *w)
{
	struct weft__pbuf *p = w->ring.pbuf;

	if (p && p->kring) {
		io_uring_unregister_buf_ring(&w->ring.uring, WEFT__PBUF_GROUP);
		p->kring = false;
	}
}

void weft__pbuf_fini(struct weft__worker *w, bool keep)
{
	struct weft__pbuf *p = w->ring.pbuf;

	if (!p)
		return;
	w->ring.pbuf = NULL;
	p->keep = keep;
	atomic_store_explicit(&p->live, false, memory_order_release);
	unref(p);
}
