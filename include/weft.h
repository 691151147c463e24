/*
 * weft: Python asyncio's programming model for C, on all cores.
 *
 * This is the one header users include. A program hands its main function to
 * weft_run(), which starts one worker thread per CPU. Inside, any function
 * may spawn green tasks (each with its own stack), await them, gather them,
 * yield and cancel them. Suspending a task never blocks its thread: the
 * worker runs other tasks meanwhile, and idle workers steal queued tasks from
 * busy ones, so a task may resume on another thread than the one it left.
 *
 * Conventions (as in liburing and libuv):
 *   - Calls that can fail return 0 (or a count) on success and a negative
 *     errno value on failure. weft_strerror() names them.
 *   - Never read errno after a call that may suspend: the task may have moved
 *     to another thread, whose errno is another variable. weft calls report
 *     errors through their return value only.
 *   - "Task context" means code running inside a weft task. Calls that
 *     suspend (await, gather, yield) need it and return -EPERM elsewhere.
 *
 * Handles: weft_spawn() returns a reference-counted handle. The caller owns
 * one reference and gives it back with weft_task_release() (or, for a task
 * whose result nobody wants, weft_detach()). Any number of tasks may await
 * one handle. A handle whose task has ended and whose last reference was
 * released is stale; calls on it return -ESRCH rather than touch another
 * task, as long as the runtime that made it is alive.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING) && defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* A task handle. Opaque: its layout is private and may change. */
typedef struct weft_task weft_task;

/* A running runtime, for code outside it (foreign threads) to spawn into. */
typedef struct weft_runtime weft_runtime;

/* A task's body. Its return value is the task's result. */
typedef void *(*weft_fn)(void *arg);

/* How an idle worker is woken by another thread. */
enum weft_wake_mode {
	WEFT_WAKE_DEFAULT = 0, /* the measured-faster mechanism (MSG_RING) */
	WEFT_WAKE_EVENTFD = 1, /* write to an eventfd the ring keeps a read on */
	WEFT_WAKE_MSG_RING = 2 /* IORING_OP_MSG_RING from the waker's ring
				  (worker to worker; foreign threads and
				  failed sends use the eventfd) */
};

/*
 * Runtime settings. Zero-initialise and set what you need; every zero field
 * takes its default. Pass NULL to weft_run() for all defaults.
 */
struct weft_config {
	/* Worker threads, counting the thread that calls weft_run().
	 * 0: the number of online CPUs. */
	unsigned workers;
	/* Default usable stack size of a task in bytes, rounded up to pages.
	 * 0: 256 KiB. Pages are committed only when touched. */
	size_t stack_size;
	/* Free stacks each worker keeps ready (hot) before handing them to
	 * the shared pool, which gives their pages back to the kernel.
	 * 0: 64. */
	unsigned stack_cache;
	/* enum weft_wake_mode. */
	int wake_mode;
	/* Reserved for future use; must be zero. */
	uint64_t reserved[4];
};

/*
 * Runs `main(arg)` as the first task of a new runtime and returns when it
 * ends. The calling thread becomes worker 0; config->workers - 1 more
 * threads are started. When main returns, every worker stops at its next
 * scheduling point, tasks that are still parked are dropped, and all
 * threads, stacks, rings and descriptors are released before weft_run()
 * returns. If `result` is not NULL it receives main's return value.
 *
 * Returns 0, or:
 *   -EINVAL  config has a non-zero reserved field or a bad wake_mode
 *   -ENOMEM  out of memory at start-up
 *   -EPERM, -ENOSYS  io_uring is refused by the kernel (seccomp, sysctl
 *            kernel.io_uring_disabled) or missing
 *   -EBUSY   called from inside a task (nesting runtimes on one thread)
 *   other negative errno values from thread or ring creation.
 * May be called from any thread that is not a worker.
 */
WEFT_API int weft_run(weft_fn main, void *arg, const struct weft_config *config,
		      void **result);

/* Options for weft_spawn_opts(). Zero-initialise; zero means default. */
struct weft_spawn_opts {
	/* Name for diagnostics (stack-overflow reports, debuggers). Copied;
	 * truncated to 31 bytes. NULL: "task". */
	const char *name;
	/* Usable stack size in bytes for this task; 0: the runtime's. */
	size_t stack_size;
	/* WEFT_SPAWN_* flags. */
	unsigned flags;
	/* Runtime to spawn into when calling from a thread that is not one
	 * of its workers. NULL: the calling worker's runtime. */
	weft_runtime *runtime;
};

/* Keep the task on the worker that spawned it: never stolen, always resumed
 * there (asyncio's single-threaded style, for data only it touches).
 * Ignored (no worker to pin to) when spawning from outside the runtime. */
#define WEFT_SPAWN_PINNED 0x1u
/* Do not return a handle: the task runs detached (out may be NULL). */
#define WEFT_SPAWN_DETACHED 0x2u

/*
 * Starts fn(arg) as a new task and returns its handle (one reference owned
 * by the caller), or NULL if it cannot: out of memory, or not called from a
 * worker of a runtime. The task is queued on the calling worker and may be
 * stolen by any other. Callable from task context or any worker.
 */
WEFT_API weft_task *weft_spawn(weft_fn fn, void *arg);

/*
 * weft_spawn() with options. Stores the handle in *out unless
 * WEFT_SPAWN_DETACHED is set. Callable from task context, or from any
 * thread when opts->runtime names a running runtime (the task then goes
 * through the runtime's shared inject queue).
 * Returns 0, or -EINVAL (bad flags, out NULL without DETACHED, stack_size
 * too large), -EPERM (no runtime given and not on a worker), -ENOMEM.
 */
WEFT_API int weft_spawn_opts(weft_task **out, weft_fn fn, void *arg,
			     const struct weft_spawn_opts *opts);

/*
 * Suspends the calling task until `task` ends, and stores its result in
 * *result (if result is not NULL). Only the calling task waits; its worker
 * runs others. Does not release the handle.
 * Returns 0 when the task returned normally, or:
 *   -ECANCELED  the awaited task was cancelled (weft_cancel() reached it
 *               before it returned; *result still gets what it returned),
 *               or the calling task was cancelled while waiting (it stops
 *               waiting; the awaited task keeps running)
 *   -ETIMEDOUT  the calling task's deadline (weft_timeout_begin) passed
 *               while waiting; the awaited task keeps running
 *   -ENOMEM     the task could not start (no stack could be had)
 *   -ESRCH      stale handle (its task ended and was released)
 *   -EDEADLK    a task awaiting itself
 *   -EPERM      not called from task context
 *   -EINVAL     task is NULL
 * Counts against the cooperative budget when it returns without suspending.
 */
WEFT_API int weft_await(weft_task *task, void **result);

/*
 * asyncio.gather: awaits every task in `tasks` and stores the results, in
 * the order given, in results[0..n-1] (results may be NULL). Waits for all
 * of them even when some were cancelled. Returns 0 if all returned
 * normally, otherwise the first error weft_await() would give for them, in
 * order (-ECANCELED, -ENOMEM, -ESRCH, -EDEADLK). If the calling task is
 * cancelled while waiting, returns -ECANCELED at once (-ETIMEDOUT if its
 * deadline passes); results of tasks not yet awaited are then NULL.
 */
WEFT_API int weft_gather(weft_task *const *tasks, size_t n, void **results);

/*
 * Lets every other runnable task on this worker run, then continues (the
 * task goes to the back of its worker's queue). Returns 0, or -ECANCELED if
 * a cancellation is pending (the yield still happened), or -EPERM outside
 * task context.
 */
WEFT_API int weft_yield(void);

/*
 * Requests cancellation of `task`: its current suspension point (if it is
 * suspended) or its next one returns -ECANCELED, unless a shield is up, in
 * which case the first suspension after the shield drops does. A task
 * cancelled before it started never runs. Awaiters of a task that was
 * cancelled before it returned get -ECANCELED. Callable from any thread.
 * Returns 0, -EALREADY if the task has already ended, -ESRCH for a stale
 * handle, -EINVAL for NULL.
 */
WEFT_API int weft_cancel(weft_task *task);

/* Raise/lower the calling task's cancellation shield (nestable). While up,
 * suspension points do not report a pending cancellation. Returns 0 or
 * -EPERM outside task context; weft_shield_end() without a matching begin
 * aborts (API misuse). */
WEFT_API int weft_shield_begin(void);
WEFT_API int weft_shield_end(void);

/* 1 if a cancellation of the calling task is pending, 0 if not (or
 * outside task context). Does not consume it. */
WEFT_API int weft_cancelled(void);

/* Adds a reference to the handle; each needs a weft_task_release().
 * Returns 0, -ESRCH (stale), -EINVAL (NULL). */
WEFT_API int weft_task_retain(weft_task *task);

/* Gives back one reference. The handle must not be used after its last
 * reference is gone. The task itself keeps running if it has not ended.
 * Returns 0, -ESRCH (stale), -EINVAL (NULL). Callable from any thread. */
WEFT_API int weft_task_release(weft_task *task);

/* Fire and forget: releases the caller's reference to a task whose result
 * nobody will collect. The same call as weft_task_release(), named for
 * intent. */
WEFT_API int weft_detach(weft_task *task);

/* The calling task's handle (no new reference), or NULL outside tasks. */
WEFT_API weft_task *weft_self(void);

/* The task's name (valid while the handle is), or NULL if stale. */
WEFT_API const char *weft_task_name(weft_task *task);

/* 1 if the task has ended, 0 if not, -ESRCH if the handle is stale. */
WEFT_API int weft_task_done(weft_task *task);

/* Index (0..workers-1) of the worker running the caller, or -1 outside
 * any worker. A task may be on another worker after any suspension. */
WEFT_API int weft_worker_index(void);

/* The runtime the caller runs in, or NULL outside one. Pass it to
 * weft_spawn_opts() from foreign threads while it runs. */
WEFT_API weft_runtime *weft_runtime_self(void);

/* Number of workers of the caller's runtime, or 0 outside one. */
WEFT_API unsigned weft_worker_count(void);

/*
 * Task-local storage: slots keyed process-wide, values per task (so code
 * need not use thread-locals, which change under a migrating task).
 * A key is created once; each task sees NULL until it sets a value. When a
 * task ends, the destructor (if any) runs on each non-NULL value, in the
 * task, before awaiters are woken. At most WEFT_TLS_KEYS keys per process.
 */
#define WEFT_TLS_KEYS 64
typedef unsigned weft_tls_key;
/* Returns 0 and stores the key, or -EAGAIN when all keys are taken. */
WEFT_API int weft_tls_key_create(weft_tls_key *key, void (*destructor)(void *));
/* Returns 0, -EINVAL (bad key), -EPERM (not in a task), -ENOMEM. */
WEFT_API int weft_tls_set(weft_tls_key key, void *value);
/* The calling task's value for key, or NULL. */
WEFT_API void *weft_tls_get(weft_tls_key key);

/* ---- time ---------------------------------------------------------------
 * Times are nanoseconds on CLOCK_MONOTONIC; deadlines are absolute values
 * of weft_now(). One timer service serves the whole runtime (a hierarchical
 * timing wheel with 16.384 us slots, O(1) insert and cancel): a sleep never
 * ends early, and ends at most one slot plus a wake-up late while a worker
 * is free to fire it, whichever worker that is.
 */
#define WEFT_NSEC_PER_USEC UINT64_C(1000)
#define WEFT_NSEC_PER_MSEC UINT64_C(1000000)
#define WEFT_NSEC_PER_SEC UINT64_C(1000000000)
/* No deadline. */
#define WEFT_NEVER UINT64_MAX

/* The monotonic clock in ns (CLOCK_MONOTONIC). Callable from any thread. */
WEFT_API uint64_t weft_now(void);

/*
 * asyncio.sleep: suspends the calling task for at least ns nanoseconds
 * (0 yields). Returns 0, -ECANCELED if the task was cancelled meanwhile,
 * -ETIMEDOUT if the task's deadline (weft_timeout_begin) passes first, or
 * -EPERM outside task context.
 */
WEFT_API int weft_sleep(uint64_t ns);
WEFT_API int weft_sleep_ms(uint64_t ms);
/* Sleeps until weft_now() >= deadline; same returns as weft_sleep(). */
WEFT_API int weft_sleep_until(uint64_t deadline);

/*
 * asyncio.timeout(): a deadline for everything the task waits on inside a
 * scope. Until the matching weft_timeout_end(), every suspension point of
 * the calling task (sleep, await, gather, every I/O call) returns
 * -ETIMEDOUT once weft_now() reaches the deadline; I/O in flight is
 * cancelled in the kernel first, so no buffer is touched after the call
 * returned. Scopes nest: the earliest deadline wins.
 *
 *     uint64_t saved = weft_timeout_begin(500 * WEFT_NSEC_PER_MSEC);
 *     n = weft_recv(fd, buf, sizeof buf, 0);   // -ETIMEDOUT after 500 ms
 *     weft_timeout_end(saved);
 *
 * weft_timeout_begin() takes a relative timeout, weft_deadline_begin() an
 * absolute deadline; both return the deadline in force before, which
 * weft_timeout_end() restores. Outside task context they do nothing and
 * return WEFT_NEVER.
 */
WEFT_API uint64_t weft_timeout_begin(uint64_t timeout_ns);
WEFT_API uint64_t weft_deadline_begin(uint64_t deadline);
WEFT_API void weft_timeout_end(uint64_t saved);
/* The calling task's deadline in force, or WEFT_NEVER. */
WEFT_API uint64_t weft_deadline(void);

/* weft_await_timeout(): cancel the awaited task when the timeout expires
 * (asyncio.wait_for). Without it the awaited task keeps running. */
#define WEFT_TIMEOUT_CANCEL 0x1u

/*
 * asyncio.wait_for: weft_await() that gives up after timeout_ns. Returns
 * what weft_await() returns, or -ETIMEDOUT when the time ran out first.
 * With WEFT_TIMEOUT_CANCEL the awaited task is then cancelled and waited
 * for (so it has ended when this returns; its result is dropped).
 */
WEFT_API int weft_await_timeout(weft_task *task, void **result,
				uint64_t timeout_ns, unsigned flags);

/* ---- I/O ----------------------------------------------------------------
 * Every call here suspends only the calling task: the request goes to the
 * io_uring of the worker the task runs on, and the task sleeps until its
 * completion (batched with others: one io_uring_enter per scheduling round
 * or per park). All return the result of the system call they stand for,
 * or a negative errno value; they never set errno. Calls that go through
 * the ring return -EPERM outside task context; the helpers that only make
 * non-blocking system calls (weft_socket, weft_tcp_listen, weft_udp_bind,
 * weft_unix_listen, weft_sockaddr, weft_local_port, weft_tcp_nodelay) and
 * weft_close() work from any thread.
 *
 * Cancellation: if the task is cancelled (or its deadline passes) while a
 * request is in flight, the request is cancelled in the kernel
 * (IORING_OP_ASYNC_CANCEL) and the call returns -ECANCELED (-ETIMEDOUT)
 * once the kernel has let go of the buffer. If the request completed first,
 * its result is returned and the cancellation stays pending for the next
 * suspension point.
 *
 * All descriptors are created close-on-exec. Sends never raise SIGPIPE
 * (MSG_NOSIGNAL is always added, and weft_run() sets SIGPIPE to SIG_IGN if
 * it was SIG_DFL, so writes to a closed pipe return -EPIPE).
 */

/* Sockets. weft_socket() adds SOCK_CLOEXEC. */
WEFT_API int weft_socket(int domain, int type, int protocol);
/* Accepts a connection (accept4 with SOCK_CLOEXEC added to flags). */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen,
			 int flags);
/* Connects; use a deadline scope for a connect timeout. */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr,
			  socklen_t addrlen);
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t len, int flags);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t len, int flags);
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
			       struct sockaddr *addr, socklen_t *addrlen);
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *addr, socklen_t addrlen);
WEFT_API ssize_t weft_recvmsg(int fd, struct msghdr *msg, int flags);
WEFT_API ssize_t weft_sendmsg(int fd, const struct msghdr *msg, int flags);
/* how: SHUT_RD, SHUT_WR, SHUT_RDWR. */
WEFT_API int weft_shutdown(int fd, int how);
/* Closes any descriptor. Always closes, even with a cancellation pending
 * or the deadline passed (cleanup code must not leak descriptors). A
 * request still in flight on fd in another task is not woken by the close
 * (the kernel holds its own reference): use weft_shutdown() for sockets or
 * cancel that task. */
WEFT_API int weft_close(int fd);

/*
 * Socket helpers. addr is a numeric IPv4 or IPv6 address ("127.0.0.1",
 * "::1", "0.0.0.0", "::"); NULL means any IPv4 address. Host names are not
 * resolved here.
 *
 * weft_tcp_listen(): socket, SO_REUSEADDR, the WEFT_SO_* options in flags,
 * bind, listen. Returns the listening fd. port 0 picks a free port (see
 * weft_local_port()).
 * weft_tcp_connect(): socket, connect, TCP_NODELAY if asked. Returns the fd.
 * weft_udp_bind(): a UDP socket bound to addr:port (port 0: any).
 * weft_unix_listen()/weft_unix_connect(): SOCK_STREAM Unix sockets; a path
 * starting with '@' names an abstract socket.
 */
#define WEFT_SO_REUSEPORT 0x1u /* SO_REUSEPORT before bind */
#define WEFT_SO_NODELAY 0x2u   /* TCP_NODELAY (accepted sockets inherit it) */
#define WEFT_SO_V6ONLY 0x4u    /* IPV6_V6ONLY on an IPv6 listener */
WEFT_API int weft_tcp_listen(const char *addr, uint16_t port, int backlog,
			     unsigned flags);
WEFT_API int weft_tcp_connect(const char *addr, uint16_t port,
			      unsigned flags);
WEFT_API int weft_udp_bind(const char *addr, uint16_t port, unsigned flags);
WEFT_API int weft_unix_listen(const char *path, int backlog);
WEFT_API int weft_unix_connect(const char *path);
/* Fills *ss from a numeric address and port; returns its length or
 * -EINVAL. NULL addr: 0.0.0.0. */
WEFT_API int weft_sockaddr(struct sockaddr_storage *ss, const char *addr,
			   uint16_t port);
/* The local port a socket is bound to, or a negative errno value. */
WEFT_API int weft_local_port(int fd);
/* Sets TCP_NODELAY on (1) or off (0). */
WEFT_API int weft_tcp_nodelay(int fd, int on);

/* Files. flags and mode as for openat(2); O_CLOEXEC is always added. */
WEFT_API int weft_open(const char *path, int flags, mode_t mode);
WEFT_API int weft_openat(int dirfd, const char *path, int flags, mode_t mode);
/* Read or write at offset; offset -1 uses (and moves) the file position,
 * which is also what pipes, sockets and terminals need. */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t len, int64_t offset);
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len,
			    int64_t offset);
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt,
			    int64_t offset);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt,
			     int64_t offset);
WEFT_API int weft_fsync(int fd);
WEFT_API int weft_fdatasync(int fd);
struct stat;
/* stat(2) of path (relative to the working directory); weft_fstat() of an
 * open descriptor. -EINVAL for NULL arguments. */
WEFT_API int weft_stat(const char *path, struct stat *st);
WEFT_API int weft_fstat(int fd, struct stat *st);

/*
 * Loops for servers. weft_read_exact() reads exactly len bytes (offset -1:
 * from the current position; otherwise from offset on), retrying short
 * reads; returns len, or the bytes read before end of file (less than len),
 * or a negative errno value. weft_write_all() writes all len bytes,
 * retrying short writes; returns len or a negative errno value (bytes
 * already written are then lost to the caller, as with any failed stream).
 * With offset -1 it sends with MSG_NOSIGNAL when fd is a socket.
 */
WEFT_API ssize_t weft_read_exact(int fd, void *buf, size_t len,
				 int64_t offset);
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len,
				int64_t offset);

/*
 * Buffered reader over a descriptor, for line and HTTP-style protocols.
 * The caller owns the buffer; the reader keeps only offsets into it.
 */
struct weft_reader {
	int fd;
	char *buf;
	size_t cap;   /* bytes in buf */
	size_t start; /* first unconsumed byte */
	size_t end;   /* one past the last byte read */
};
WEFT_API void weft_reader_init(struct weft_reader *r, int fd, void *buf,
			       size_t cap);
/*
 * Reads until `delim` (a byte string of delim_len >= 1 bytes, e.g. "\n" or
 * "\r\n\r\n") is in the buffer; stores in *out a pointer to the data up to
 * and including the delimiter and returns its length. The data stays valid
 * until the next call on the reader. Returns 0 at end of file (any partial
 * data is left in the buffer: see weft_reader_buffered()), -ENOBUFS if the
 * delimiter is not within the buffer's capacity, or a negative errno.
 */
WEFT_API ssize_t weft_reader_until(struct weft_reader *r, const char *delim,
				   size_t delim_len, char **out);
/* Copies up to len bytes: from the buffer first, else one read. Returns
 * the count, 0 at end of file, or a negative errno. */
WEFT_API ssize_t weft_reader_read(struct weft_reader *r, void *dst,
				  size_t len);
/* Bytes read from the descriptor but not consumed yet. */
static inline size_t weft_reader_buffered(const struct weft_reader *r)
{
	return r->end - r->start;
}

/* Static text for a weft error code (negative errno). Never NULL. */
WEFT_API const char *weft_strerror(int err);

/* Library version as "major.minor.patch". */
WEFT_API const char *weft_version(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
