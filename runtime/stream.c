/*
 * Receive and accept streams: the reactor's half (stream.h says who runs
 * what).
 *
 * A stream's life
 *   new (not armed) -> armed by the first weft_stream_recv() that finds
 *   its queue empty -> completions, each a buffer with bytes (queued) and
 *   IORING_CQE_F_MORE while the request goes on -> a last completion
 *   without F_MORE: end of stream (0), an error, -ENOBUFS (the worker's
 *   ring of buffers ran dry: `starved`, the next receive goes once without
 *   it, then arms again), or -ECANCELED (our close, or the shutdown's
 *   cancellation). The program's close gives the queued buffers back and,
 *   if armed, cancels; the stream's memory then waits for the last
 *   completion (the kernel's request names it), when it joins the
 *   worker's free list. Stream records are type-stable: they stay stream
 *   records, on the worker's lists, until the worker's ring is closed, so
 *   a second close finds magic 0 and is refused; and once a later open
 *   has taken the record, the old handle's gen (stream.h, handles) is no
 *   longer the record's, so it is refused too.
 *
 * An accept stream's life (a listener, weft_listener_*)
 *   new -> armed by the first weft_listener_accept() that finds its
 *   queue empty -> completions, each a new descriptor (queued) -> the
 *   queue reaches `bound`: listed, and reap() cancels the request (the
 *   settle list) -> its last completion (-ECANCELED; or an accept error,
 *   kept in `err` for the next call; or -EINVAL at once: multishot
 *   refused, `single`) -> armed again once the queue is at half the bound
 *   or less: by the take that brings it there, or by reap() if the last
 *   completion came after that take. Descriptors that come while closing
 *   or draining are closed at once; the close closes the queued ones.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "mem.h"
#include "runtime.h"
#include "stream.h"
#include "task.h"
#include "worker.h"

/* Bits 48-62 of a handle (stream.h). */
#define WEFT__STREAM_GENS 32767u
#define WEFT__HANDLE_TAG (UINT64_C(1) << 63)
#define WEFT__HANDLE_ADDR ((UINT64_C(1) << 47) - 1)

static void list_add(struct weft__stream **head, struct weft__stream *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

static void list_del(struct weft__stream **head, struct weft__stream *s)
{
	if (s->next)
		s->next->prev = s->prev;
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
}

struct weft__worker *weft__stream_place(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;
	struct weft__worker *best = w;
	unsigned least = atomic_load_explicit(&w->ring.nstreams,
					      memory_order_relaxed);

	for (unsigned i = 0; i < rt->nworkers && least; i++) {
		struct weft__worker *v = rt->workers[i];
		unsigned n = atomic_load_explicit(&v->ring.nstreams,
						  memory_order_relaxed);

		if (n < least) {
			least = n;
			best = v;
		}
	}
	/* Counted now, before the task gets there: a burst of opens on one
	 * worker spreads instead of all choosing the same one. */
	atomic_fetch_add_explicit(&best->ring.nstreams, 1, memory_order_relaxed);
	return best;
}

void weft__stream_uncount(struct weft__worker *w)
{
	atomic_fetch_sub_explicit(&w->ring.nstreams, 1, memory_order_relaxed);
}

/* A record for a new stream of w's current task on fd: from the free
 * list, else allocated; NULL if there is no memory. */
static struct weft__stream *stream_alloc(struct weft__worker *w, int fd,
					 bool counted)
{
	struct weft__stream *s = w->ring.streams_free;
	unsigned gen = 0;

	if (s) {
		list_del(&w->ring.streams_free, s);
		gen = s->gen;
	} else if (!(s = malloc(sizeof(*s)))) {
		return NULL;
	}
	memset(s, 0, sizeof(*s));
	s->gen = gen % WEFT__STREAM_GENS + 1; /* a new opening: 1..GENS */
	s->magic = WEFT__STREAM_MAGIC;
	s->w = w;
	s->task = w->current;
	s->fd = fd;
	list_add(&w->ring.streams, s);
	if (!counted)
		atomic_fetch_add_explicit(&w->ring.nstreams, 1,
					  memory_order_relaxed);
	return s;
}

struct weft__stream *weft__stream_new(struct weft__worker *w, int fd,
				      bool counted)
{
	struct weft__pbuf *p = weft__pbuf_get(w);
	struct weft__stream *s;

	if (!p || !(s = stream_alloc(w, fd, counted)))
		return NULL;
	s->p = p;
	return s;
}

void *weft__stream_handle(struct weft__stream *s)
{
#if UINTPTR_MAX > 0xffffffffu
	uintptr_t a = (uintptr_t)s;

	if (!(a & ~(uintptr_t)WEFT__HANDLE_ADDR))
		return (void *)(a | WEFT__HANDLE_TAG |
				((uintptr_t)s->gen << 48));
#endif
	return s;
}

struct weft__stream *weft__stream_from_handle(const void *h, uint64_t magic)
{
	uintptr_t a = (uintptr_t)h;
	struct weft__stream *s = (struct weft__stream *)(uintptr_t)h;
	unsigned gen = 0;

#if UINTPTR_MAX > 0xffffffffu
	if (a & WEFT__HANDLE_TAG) {
		gen = (unsigned)((a >> 48) & WEFT__STREAM_GENS);
		s = (struct weft__stream *)(a & WEFT__HANDLE_ADDR);
	}
#endif
	if (!s || s->magic != magic)
		return NULL;
	/* A tagged handle names one opening: an older one's is stale. */
	return gen && gen != s->gen ? NULL : s;
}

/* The queue starts with room for the bound, so that completions, which
 * arrive under cq_lock, allocate only for what comes after a stop. */
static unsigned fd_cap_for(unsigned bound)
{
	unsigned cap = 8;

	while (cap < bound)
		cap <<= 1;
	return cap;
}

struct weft__stream *weft__stream_new_accept(struct weft__worker *w, int fd,
					     bool counted, unsigned bound)
{
	unsigned cap = fd_cap_for(bound);
	int *fds = weft__mem_alloc(cap * sizeof(*fds));
	struct weft__stream *s;

	if (!fds)
		return NULL;
	if (!(s = stream_alloc(w, fd, counted))) {
		weft__mem_free(fds);
		return NULL;
	}
	s->magic = WEFT__LISTENER_MAGIC;
	s->accept = true;
	s->bound = bound;
	s->fds = fds;
	s->fd_cap = cap;
	return s;
}

int weft__stream_fd_pop(struct weft__stream *s)
{
	int fd;

	if (!s->fd_n)
		return -1;
	fd = s->fds[s->fd_head];
	s->fd_head = (s->fd_head + 1) & (s->fd_cap - 1);
	s->fd_n--;
	return fd;
}

/* Queues an accepted descriptor; false if the queue had to grow and
 * there was no memory. */
static bool fd_push(struct weft__stream *s, int fd)
{
	if (s->fd_n == s->fd_cap) {
		unsigned cap = s->fd_cap * 2;
		int *fds = weft__mem_alloc(cap * sizeof(*fds));

		if (!fds)
			return false;
		for (unsigned i = 0; i < s->fd_n; i++)
			fds[i] = s->fds[(s->fd_head + i) & (s->fd_cap - 1)];
		weft__mem_free(s->fds);
		s->fds = fds;
		s->fd_cap = cap;
		s->fd_head = 0;
	}
	s->fds[(s->fd_head + s->fd_n) & (s->fd_cap - 1)] = fd;
	s->fd_n++;
	return true;
}

/* Closes what the queue holds: the connections nobody will take. */
static void fd_close_all(struct weft__stream *s)
{
	int fd;

	while ((fd = weft__stream_fd_pop(s)) >= 0)
		close(fd);
}

/* Test hook, debug builds only: WEFT_DEBUG_NO_MULTISHOT=1 makes every
 * arming (receive or accept) carry an unknown flag, which the kernel
 * refuses with -EINVAL as a 5.19 kernel refuses IORING_RECV_MULTISHOT
 * (and one before 5.19 IORING_ACCEPT_MULTISHOT), so that tests reach the
 * fallback (`single`). Read once per process. */
static bool debug_no_multishot(void)
{
#ifndef NDEBUG
	static atomic_int v = -1; /* relaxed: any reader computes the same */
	int x = atomic_load_explicit(&v, memory_order_relaxed);

	if (x < 0) {
		const char *e = getenv("WEFT_DEBUG_NO_MULTISHOT");

		x = e && e[0] == '1';
		atomic_store_explicit(&v, x, memory_order_relaxed);
	}
	return x;
#else
	return false;
#endif
}

int weft__stream_arm(struct weft__stream *s)
{
	struct io_uring_sqe *sqe;

	if (!s->accept)
		weft__pbuf_refill(s->p);
	sqe = weft__ring_sqe(s->w);
	if (!sqe)
		return atomic_load_explicit(&s->w->rt->fatal,
					    memory_order_relaxed);
	if (s->accept) {
		/* Plain descriptors, not direct ones: tasks move between
		 * rings, where a direct descriptor means nothing. No
		 * address: one buffer would serve every completion; the
		 * taker asks getpeername(2). */
		io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL,
					       SOCK_CLOEXEC);
	} else {
		io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = WEFT__PBUF_GROUP;
	}
	/* For both, multishot is a flag in ioprio that older kernels refuse
	 * with -EINVAL, as they refuse this unknown one. */
	if (weft__unlikely(debug_no_multishot()))
		sqe->ioprio |= 0x8000;
	weft__ring_multi_start(s->w, &s->op, sqe);
	s->armed = true;
	s->got = false;
	s->starved = false;
	s->stopping = false;
	return 0;
}

void weft__stream_settle(struct weft__worker *w)
{
	struct weft__stream *s;

	while ((s = w->ring.settle) != NULL) {
		w->ring.settle = s->settle_next;
		s->listed = false;
		if (s->closing || s->magic != WEFT__LISTENER_MAGIC)
			continue;
		if (s->armed && s->fd_n >= s->bound) {
			/* The queue filled, and the request goes on. */
			s->stopping = true;
			weft__ring_multi_cancel(w, &s->op);
		} else if (!s->armed && !s->single && !s->err &&
			   s->fd_n <= s->bound / 2) {
			/* Stopped (or ended by an overflowing CQ) with room
			 * again, taken while the stop was on its way: armed
			 * here, or the connections would wait in the kernel
			 * until the queue is empty. A failed arming (the ring
			 * failed for good) leaves it to the next call. */
			(void)weft__stream_arm(s);
		}
	}
}

/* Off the open list, onto the free one (magic already 0). */
static void stream_free(struct weft__stream *s)
{
	weft__mem_free(s->fds);
	s->fds = NULL;
	list_del(&s->w->ring.streams, s);
	list_add(&s->w->ring.streams_free, s);
}

void weft__stream_close(struct weft__stream *s)
{
	unsigned len;
	int id;

	s->magic = 0;
	weft__stream_uncount(s->w);
	if (s->accept)
		fd_close_all(s);
	else
		while ((id = weft__pbuf_q_pop(s->p, &s->q, &len)) >= 0)
			weft__pbuf_give(s->p, (unsigned)id);
	if (s->armed) {
		s->closing = true;
		weft__ring_multi_cancel(s->w, &s->op);
		return;
	}
	stream_free(s);
}

void weft__stream_close_task(struct weft__worker *w, struct weft__tcb *t)
{
	struct weft__stream *s, *next;

	for (s = w->ring.streams; s; s = next) {
		next = s->next; /* a close may move s to the free list */
		if (s->task == t && (s->magic == WEFT__STREAM_MAGIC ||
				     s->magic == WEFT__LISTENER_MAGIC))
			weft__stream_close(s);
	}
}

/* s's arming is to change (stop or arm again), once reap() has dropped
 * cq_lock (weft__stream_settle()). */
static void settle_later(struct weft__stream *s)
{
	if (s->listed)
		return;
	s->listed = true;
	s->settle_next = s->w->ring.settle;
	s->w->ring.settle = s;
}

/* An accept stream's completion (see weft__stream_cqe()). */
static struct weft__tcb *accept_cqe(struct weft__stream *s, int res,
				    unsigned flags, bool draining)
{
	bool first = !s->got;

	s->got = true;
	if (res >= 0) {
		/* A connection nobody will take (closed, shutdown), or no
		 * memory to queue it: closed, so no descriptor leaks; the
		 * peer sees its connection reset. */
		if (s->closing || draining || !fd_push(s, res))
			close(res);
		else if (s->fd_n >= s->bound && !s->stopping &&
			 (flags & IORING_CQE_F_MORE))
			settle_later(s);
	} else if (res != -ECANCELED) {
		if (res == -EINVAL && first && !(flags & IORING_CQE_F_MORE))
			s->single = true; /* multishot refused (before 5.19) */
		else if (!s->closing)
			s->err = res; /* for the next call, once */
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		s->armed = false;
		if (s->closing) {
			stream_free(s);
			return NULL;
		}
		if (!draining && !s->single && !s->err &&
		    s->fd_n <= s->bound / 2)
			settle_later(s);
	}
	return s->waiting && !draining ? s->task : NULL;
}

struct weft__tcb *weft__stream_cqe(struct weft__stream *s, int res,
				   unsigned flags, bool draining)
{
	bool first = !s->got;

	if (s->accept)
		return accept_cqe(s, res, flags, draining);

	s->got = true;
	if (flags & IORING_CQE_F_BUFFER) {
		unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0 && !s->closing && !draining)
			weft__pbuf_q_push(s->p, &s->q, id, (unsigned)res);
		else
			weft__pbuf_give(s->p, id);
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		s->armed = false;
		if (res == -ENOBUFS)
			s->starved = true;
		else if (res == -EINVAL && first)
			s->single = true; /* multishot refused (before 6.0) */
		else if (res == 0)
			s->end = 1;
		else if (res < 0 && res != -ECANCELED)
			s->end = res;
		if (s->closing) {
			stream_free(s);
			return NULL;
		}
	}
	/* Same thread as the task's check (both on s->w); the park
	 * protocol's RMW in the wake pairs with it anyway. */
	return s->waiting && !draining ? s->task : NULL;
}

void weft__stream_fini(struct weft__worker *w)
{
	struct weft__stream *s;

	while ((s = w->ring.streams)) {
		list_del(&w->ring.streams, s);
		if (s->accept)
			fd_close_all(s);
		weft__mem_free(s->fds);
		free(s);
	}
	while ((s = w->ring.streams_free)) {
		list_del(&w->ring.streams_free, s);
		free(s);
	}
}
