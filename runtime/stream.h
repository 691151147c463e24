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
 */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "pbuf.h"
#include "ring.h"

#define WEFT__STREAM_MAGIC 0x73747265616d2121ULL /* "stream!!" */

struct weft__stream {
	uint64_t magic; /* WEFT__STREAM_MAGIC while open, 0 once closed */
	struct weft__op op; /* the multishot request, in ring.ops while armed */
	struct weft__worker *w;
	struct weft__pbuf *p;
	struct weft__tcb *task; /* the task that opened it */
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
/* Arms the multishot receive (queued; submitted with the next batch): 0,
 * or the ring's fatal error. w's thread. */
int weft__stream_arm(struct weft__stream *s);
/* Closed by the program: its queued buffers go back, an armed request is
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
 * of w, open or free, is freed. Its queued buffers go with the pool. */
void weft__stream_fini(struct weft__worker *w);

#endif
