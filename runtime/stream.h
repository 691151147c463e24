/*
 * Receive streams (runtime/stream.c): the reactor's half of weft_stream_*
 * (weft.h; the calls are in io/ops.c). A stream keeps one multishot
 * receive armed on its socket in the ring of the worker that opened it:
 * the kernel takes a lease buffer (pbuf.h) for each piece of data that
 * arrives and posts a completion, which reap() (ring.c) hands to
 * weft__stream_cqe(); the piece waits in the stream's queue until the task
 * asks for it. One submission serves every message of the connection.
 *
 * Everything here runs on the stream's worker: the opening task is pinned
 * there while it has a stream open (io/ops.c), and the completions come
 * there (a rescuer, ring.c, leaves them to the owner). So a stream needs no
 * lock, and the only cross-thread step is the task's park and wake
 * (wait.h).
 *
 * Accept streams (weft_listener_*, weft.h) are the same record on a
 * listening socket: one multishot accept stays armed, and each completion
 * is a new descriptor, queued in the record (fds) instead of a buffer.
 * The queue is bounded: a completion that fills it to `bound` puts the
 * record on the ring's settle list (ring.h), and reap() cancels the
 * request once cq_lock is dropped (a cancel takes an SQE, and a full SQ
 * reaps, which takes cq_lock again). Connections the kernel accepted
 * before the cancel took effect are still queued (the queue grows for
 * them): none is lost. Later connections wait in the kernel's listen
 * backlog until the queue is down to half the bound, when it is armed
 * again: by the task's take, or, if the request ended after that take,
 * by reap() from the settle list the same way.
 */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "pbuf.h"
#include "ring.h"

#define WEFT__STREAM_MAGIC 0x73747265616d2121ULL /* "stream!!" */
#define WEFT__LISTENER_MAGIC 0x6c697374656e6572ULL /* "listener" */
/* The largest bound an accept stream takes (weft_listener_open()). */
#define WEFT__LISTENER_MAX 65536u

struct weft__stream {
	/* WEFT__STREAM_MAGIC (a receive stream) or WEFT__LISTENER_MAGIC (an
	 * accept stream) while open, 0 once closed. */
	uint64_t magic;
	struct weft__op op; /* the multishot request, in ring.ops while armed */
	struct weft__worker *w;
	struct weft__pbuf *p; /* receive streams only */
	struct weft__tcb *task; /* the task that opened it */
	/* Which opening of this record this is (1..32767, then 1 again): a
	 * record is reused, so the handle given out carries it and a
	 * handle kept past its close no longer matches (weft__stream_handle()). */
	unsigned gen;
	int fd;
	bool armed;   /* a multishot receive is in flight */
	bool closing; /* closed while armed: freed at its last completion */
	bool starved; /* the last one ended for want of buffers (-ENOBUFS) */
	bool waiting; /* the task waits for a completion */
	bool single;  /* no multishot receive here (a 5.19 kernel refused
			 it): one weft_recv_lease() per call */
	bool got;     /* a completion has come since the last arming */
	int end;      /* after the queue: 0 none, 1 end of stream, < 0 error */
	struct weft__pbuf_q q; /* received, not yet taken */
	/* Accept streams: descriptors accepted and not yet taken, a ring of
	 * fd_cap (a power of two) from fd_head; at most `bound` while armed,
	 * plus what the kernel accepted before a stop took effect. */
	bool accept;
	bool stopping;     /* the queue reached bound: the request is being
			      cancelled (cleared by the next arming) */
	bool listed;       /* on the ring's settle list (ring.settle) */
	int err;           /* an accept's error, returned once after the
			      queue (the next call arms again) */
	unsigned bound;
	unsigned fd_head, fd_n, fd_cap;
	int *fds;
	struct weft__stream *settle_next; /* ring.settle */
	/* The worker's streams, open or free (ring.streams/streams_free). */
	struct weft__stream *next, *prev;
};

/* Where a task that opens its first stream should live: the worker of
 * w's runtime with the fewest open streams (w itself on a tie), whose
 * count takes the stream now (weft__stream_new(counted), or
 * weft__stream_uncount() if the open fails). Any worker's thread; the
 * counts are hints (relaxed). */
struct weft__worker *weft__stream_place(struct weft__worker *w);
void weft__stream_uncount(struct weft__worker *w);
/* A stream on fd for the calling task of w (its pool made if need be):
 * NULL if there is no memory. Not armed yet. counted: placed by
 * weft__stream_place(), which counted it. w's thread. */
struct weft__stream *weft__stream_new(struct weft__worker *w, int fd,
				      bool counted);
/* An accept stream on the listening socket fd, with a queue of at most
 * bound descriptors: NULL if there is no memory. As weft__stream_new()
 * otherwise. */
struct weft__stream *weft__stream_new_accept(struct weft__worker *w, int fd,
					     bool counted, unsigned bound);
/*
 * Handles. The program's weft_stream / weft_listener pointer is the record
 * with its opening's gen in bits 48-62 and bit 63 set: a user-space
 * address has neither (Linux on x86-64 and AArch64 hands out addresses
 * below 2^47 unless asked for more), so the record is found again, and a
 * handle kept after its close, whose record has been reused since, is
 * told apart (its gen is an older one) instead of acting on the new
 * stream. A record at a higher address (a 5-level page table's hint, a
 * memory tag) gets a plain pointer, without that check. Any thread (the
 * record is type-stable; the caller checks magic and ownership).
 */
void *weft__stream_handle(struct weft__stream *s);
/* The record of handle h if it is an open stream of that magic and the
 * opening h was given for, else NULL. */
struct weft__stream *weft__stream_from_handle(const void *h, uint64_t magic);
/* The oldest descriptor an accept stream queued, or -1 if none. w's
 * thread. */
int weft__stream_fd_pop(struct weft__stream *s);
/* reap() (ring.c), after it dropped cq_lock: the accept streams its
 * completions listed (ring.settle) are stopped (a full queue: the
 * request cancelled) or armed again (a request ended with the queue at
 * half or less). w's thread. */
void weft__stream_settle(struct weft__worker *w);
/* Arms the multishot receive, or accept for an accept stream (queued;
 * submitted with the next batch): 0,
 * or the ring's fatal error. w's thread. */
int weft__stream_arm(struct weft__stream *s);
/* Closed by the program: its queued buffers go back (an accept stream's
 * queued descriptors are closed), an armed request is
 * cancelled (the stream is then freed at its last completion), else it is
 * freed now. w's thread. */
void weft__stream_close(struct weft__stream *s);
/* Every stream t left open, closed as weft__stream_close() does: t
 * ends (task.c), on w, the worker its streams pin it to. */
void weft__stream_close_task(struct weft__worker *w, struct weft__tcb *t);
/* A completion of s's request (IORING_CQE_F_MORE in flags: the request
 * goes on), from reap() on w's thread under cq_lock, in CQ order: its
 * bytes queued, the stream's state updated. Returns the task to wake once
 * the lock is dropped, or NULL. draining: the ring is being shut down
 * (nothing is woken). */
struct weft__tcb *weft__stream_cqe(struct weft__stream *s, int res,
				   unsigned flags, bool draining);
/* Shutdown, after the ring was drained (weft__ring_fini()): every stream
 * of w, open or free, is freed. Its queued buffers go with the pool; an
 * accept stream's queued descriptors are closed. */
void weft__stream_fini(struct weft__worker *w);

#endif
