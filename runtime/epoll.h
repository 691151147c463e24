/*
 * The epoll reactor (runtime/epoll.c, issue 11): each worker's epoll
 * instance, for runtimes that run where io_uring is refused (container
 * seccomp profiles, kernel.io_uring_disabled, gVisor) or that ask for it
 * (WEFT_REACTOR_EPOLL). ring.c turns to these calls when ring.epoll is
 * set; io/ops.c calls weft__epoll_wait_fd() for a task that must wait for
 * a descriptor to become ready, and does the non-blocking system call
 * itself.
 */
#ifndef WEFT_EPOLL_H
#define WEFT_EPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft__worker;

/* The scheduler's half, as the ring.h calls of the same names. */
int weft__epoll_init(struct weft__worker *w);
void weft__epoll_fini(struct weft__worker *w);
unsigned weft__epoll_quiesce(struct weft__worker *w);
void weft__epoll_wait(struct weft__worker *w, uint64_t timeout_ns);
void weft__epoll_poll(struct weft__worker *w);
unsigned weft__epoll_rescue(struct weft__worker *v);

/*
 * The calling task waits until fd is ready for `events` (EPOLLIN,
 * EPOLLOUT, ...: the poll(2) bits, which are the same). Returns the
 * events that came (at least one of those asked for, or EPOLLERR /
 * EPOLLHUP; a wake-up may be spurious, so the caller retries its call and
 * waits again on -EAGAIN), or -ECANCELED / -ETIMEDOUT (the task's
 * cancellation or deadline; nothing was consumed), -EPERM (fd cannot be
 * waited for this way: a regular file or a directory; or not in a task),
 * -EBADF, -ENOMEM. Task context.
 */
int weft__epoll_wait_fd(int fd, unsigned events);

/* The epoll halves of weft__ring_watch() and weft__ring_unwatch()
 * (ring.h): fd joins w's list of waiters for the descriptor, armed. */
struct weft__op;
int weft__epoll_watch(struct weft__worker *w, struct weft__op *op, int fd,
		      unsigned events, unsigned task_flags);
bool weft__epoll_unwatch(struct weft__worker *w, struct weft__op *op);

/* rt (an epoll runtime) joins or leaves the list weft__epoll_closed()
 * walks: after its workers are set up, before they are freed. */
struct weft_runtime;
void weft__epoll_runtime_add(struct weft_runtime *rt);
void weft__epoll_runtime_remove(struct weft_runtime *rt);

/* fd was just closed or replaced by weft (weft_close(), a dup3 over it):
 * every task of an epoll runtime waiting on it is woken (EPOLLERR |
 * EPOLLHUP) to try its call again. Any thread. */
void weft__epoll_closed(int fd);

/* The calling worker's guess that a read of fd would find nothing now:
 * its last read there of a stream returned less than asked (the buffer
 * was drained). weft__epoll_got() records each read's outcome. A read
 * call that gets `true` waits for readiness before it tries, which saves
 * the failed call of a request-response connection. */
bool weft__epoll_dry(int fd);
void weft__epoll_got(int fd, size_t got, size_t asked);

/* Whether the calling worker's runtime runs the epoll reactor. */
bool weft__epoll_on(void);

#endif
