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
 * task, also after the runtime that made it has ended. (Handles carry a
 * 36-bit generation of their control block: a stale handle could only
 * name a new task after its block was reused 2^36 times, some hours of
 * nothing but spawning on one worker.) A release of a handle whose
 * references were all released already is reported with -ESRCH and leaves
 * the task alone.
 *
 * A new task starts with the floating-point control state (rounding mode,
 * exception masks, x87 precision, flush-to-zero) its spawner had at the
 * spawn, with no exception flags raised; weft_run()'s main, with that of
 * the thread calling weft_run(). Each task then keeps its own across
 * switches.
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
/* The version as one number, major * 10000 + minor * 100 + patch, to
 * compare with weft_version_number(), the library's at run time (the
 * header a program was built with may be older or newer than the library
 * it runs with). */
#define WEFT_VERSION_NUMBER                                                \
	(WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 +             \
	 WEFT_VERSION_PATCH)

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

/* weft_config.stack_cache: keep no free stack's pages (0 means 64). */
#define WEFT_STACK_CACHE_NONE 0xffffffffu

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
	/* Free stacks each worker keeps ready, pages and all, before handing
	 * them to the shared pool. The pool keeps as many again per worker
	 * with their pages, and gives the pages of the rest back to the
	 * kernel about a second after they were freed (in batches: each
	 * give-back costs every CPU of the process a TLB flush). So up to
	 * 2 x stack_cache x workers free stacks stay resident.
	 * 0: 64. WEFT_STACK_CACHE_NONE: none; every free stack's pages go
	 * back (after that second). */
	unsigned stack_cache;
	/* enum weft_wake_mode. */
	int wake_mode;
	/* Most threads of the blocking pool (weft_run_blocking). 0: 64. */
	unsigned blocking_threads;
	/* A pool thread without work for this long exits. 0: 10000 ms. */
	unsigned blocking_idle_ms;
	/* Shutdown (main has returned, or weft_runtime_close()): the tasks
	 * left are cancelled and get this long to end before they are
	 * dropped. 0: 5000 ms; negative: none (dropped at once). */
	int shutdown_grace_ms;
	/* WEFT_RUN_* flags. */
	unsigned flags;
	/* Reserved for future use; must be zero. */
	uint64_t reserved[2];
};

/* weft_config.flags: SIGINT and SIGTERM call weft_stop() on the runtime
 * (a second one, while stopping, ends the process with the default
 * action; so does one that comes during the shutdown). One runtime of the
 * process at a time may ask for it; the previous dispositions are
 * restored when it stops (weft_run() returns, or weft_runtime_close()). */
#define WEFT_RUN_STOP_ON_SIGNALS 0x1u

/*
 * Runs `main(arg)` as the first task of a new runtime and returns when it
 * ends. The calling thread becomes worker 0; config->workers - 1 more
 * threads are started. If `result` is not NULL it receives main's return
 * value.
 *
 * Shutdown (asyncio.run's): when main's function returns, every other task
 * still alive is cancelled (as by weft_cancel(); tasks spawned meanwhile
 * too) and the runtime keeps running until none is left or
 * config->shutdown_grace_ms has passed. Then every worker stops at its
 * next scheduling point, tasks still alive (shielded, or ignoring their
 * cancellation) are dropped where they are, and all of the runtime's
 * threads, stacks, rings and descriptors are released before weft_run()
 * returns (descriptors the program's tasks opened are theirs: weft does
 * not track or close them). weft_stop(), or
 * SIGINT/SIGTERM with WEFT_RUN_STOP_ON_SIGNALS, cancels main, and the same
 * shutdown follows once it returns.
 *
 * Returns 0, or:
 *   -ECANCELED  main was cancelled (weft_stop(), a signal, weft_cancel())
 *            before it returned; *result still gets what it returned
 *   -EINVAL  config has a non-zero reserved field, a bad wake_mode or an
 *            unknown flag
 *   -ENOMEM  out of memory at start-up
 *   -EPERM, -ENOSYS  io_uring is refused by the kernel (seccomp, sysctl
 *            kernel.io_uring_disabled) or missing; also when a worker's
 *            io_uring_enter fails for good while the runtime runs (any
 *            errno but EINTR, EAGAIN, EBUSY): it stops, its tasks are
 *            dropped, and weft_run() returns that error
 *   -EBUSY   called from inside a task (nesting runtimes on one thread),
 *            or WEFT_RUN_STOP_ON_SIGNALS while another runtime has the
 *            signals
 *   other negative errno values from thread or ring creation.
 * May be called from any thread that is not a worker; several may run at
 * once, each on its own thread.
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
 * too large), -EPERM (no runtime given and not on a worker), -ENOMEM,
 * -ESHUTDOWN (from outside opts->runtime, which is shutting down: main of
 * weft_run() has returned, or weft_runtime_close() has begun or ended).
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
 *   -ENOMEM     the task could not start (no guarded stack could be had:
 *               out of memory, or of mappings, vm.max_map_count)
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

/* Adds a reference to the handle; each needs a weft_task_release(). Also
 * valid on weft_self()'s handle, or on one whose references were all
 * released while its task still runs. Returns 0, -ESRCH (stale), -EINVAL
 * (NULL). */
WEFT_API int weft_task_retain(weft_task *task);

/* Gives back one reference. The handle must not be used after its last
 * reference is gone. The task itself keeps running if it has not ended.
 * Returns 0, -ESRCH (stale, or released once more than it was retained:
 * the extra release is refused), -EINVAL (NULL). Callable from any
 * thread. */
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
 * task, before awaiters are woken. At most WEFT_TLS_KEYS keys exist at a
 * time in a process; a deleted key's place can be taken by a new key.
 */
#define WEFT_TLS_KEYS 64
typedef unsigned weft_tls_key;
/* Returns 0 and stores the key, or -EAGAIN when WEFT_TLS_KEYS keys exist.
 * Any thread. */
WEFT_API int weft_tls_key_create(weft_tls_key *key, void (*destructor)(void *));
/* Deletes key (pthread_key_delete): the values tasks stored under it are
 * dropped without its destructor, and the key is invalid from now on, also
 * once its place is given to a new key (which starts with NULL in every
 * task). Returns 0, or -EINVAL for a key that does not exist (never
 * created, or deleted already). Any thread. */
WEFT_API int weft_tls_key_delete(weft_tls_key key);
/* Returns 0, -EINVAL (a key that does not exist), -EPERM (not in a task),
 * -ENOMEM. */
WEFT_API int weft_tls_set(weft_tls_key key, void *value);
/* The calling task's value for key, or NULL (also for a key that does not
 * exist, and outside a task). */
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
/* recv(2) and send(2) (MSG_NOSIGNAL added). One call moves at most
 * 0x7ffff000 bytes, as read(2) does: a larger len is capped. */
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
 * "::1", "0.0.0.0", "::"); NULL means any IPv4 address. Only
 * weft_tcp_connect() also takes a host name.
 *
 * weft_tcp_listen(): socket, SO_REUSEADDR, the WEFT_SO_* options in flags,
 * bind, listen. Returns the listening fd. port 0 picks a free port (see
 * weft_local_port()).
 * weft_tcp_connect(): socket, connect, TCP_NODELAY if asked. Returns the fd.
 * A numeric addr is used as it is; any other is a host name, resolved with
 * weft_getaddrinfo() (AF_UNSPEC, SOCK_STREAM), and each of its addresses is
 * tried in turn until one connects. Returns the resolver's error (-ENOENT:
 * no such host, -EAGAIN: no answer), or the last address's connect error;
 * cancellation or the deadline stops the tries (-ECANCELED, -ETIMEDOUT).
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

/* ---- errors as results ----------------------------------------------------
 * A task's result is a pointer. A task that fails returns an error pointer
 * (the Linux kernel's ERR_PTR idiom: the top 4095 addresses, which no object
 * has): weft_err_ptr(-EIO). Task groups treat such a result as the task's
 * failure (asyncio: the task raised).
 */
#define WEFT_MAX_ERRNO 4095
/* Casts that are C casts in C and named casts in C++ (a C++ program built
 * with -Wold-style-cast includes this header too). */
#ifdef __cplusplus
#define WEFT__SCAST(T, x) static_cast<T>(x)
#define WEFT__RCAST(T, x) reinterpret_cast<T>(x)
#else
#define WEFT__SCAST(T, x) ((T)(x))
#define WEFT__RCAST(T, x) ((T)(x))
#endif
static inline void *weft_err_ptr(int err)
{
	return WEFT__RCAST(void *, WEFT__SCAST(intptr_t, err));
}
static inline int weft_is_err(const void *p)
{
	return WEFT__RCAST(uintptr_t, p) >=
	       WEFT__SCAST(uintptr_t, -WEFT_MAX_ERRNO);
}
/* The negative errno value of an error pointer; 0 for any other. */
static inline int weft_ptr_err(const void *p)
{
	return weft_is_err(p) ? WEFT__SCAST(int, WEFT__RCAST(intptr_t, p)) : 0;
}

/* ---- coordination between tasks -------------------------------------------
 * Every object below is safe to share between tasks on any workers (they
 * run in parallel, unlike asyncio's). Waiting suspends the task, not its
 * thread; waiters are served first come, first served. Every wait:
 *   - returns -ECANCELED if the task is cancelled while waiting (nothing
 *     was taken: no value received, no lock or permit held);
 *   - returns -ETIMEDOUT once the task's deadline (weft_timeout_begin)
 *     passes, or the call's own timeout (the *_timeout variants, relative
 *     ns; 0 polls, WEFT_NEVER waits for ever);
 *   - works from a thread outside any runtime too (it then blocks that
 *     thread; no cancellation there), except where a call says otherwise;
 *   - counts against the task's cooperative budget when it completes
 *     without suspending (a free lock or permit, a set event, a finished
 *     future, a channel ready at once): after 128 such calls in a row the
 *     task yields, so a loop of them cannot starve its worker.
 * Non-waiting calls (try_*, set, release, close, notify) work from any
 * thread. Objects are created with *_create() (-ENOMEM, -EINVAL) and freed
 * with *_destroy(), which the caller may call only once nothing waits on
 * the object or will use it again. A destroy with tasks still waiting, or
 * a second destroy of the same object, aborts the process with a message
 * naming the call (a misuse that is detected; memory reused by another
 * allocation since cannot always be told apart).
 * Lifetime after a grant: a call that satisfies a waiter (a send or
 * receive that completes a waiting one, close, set, fail, release,
 * notify, a group's last task ending) ends that waiter's use of the
 * object. Once that call has returned the object may be destroyed, even
 * before the waiter has run: a task may send a reply on a one-shot channel
 * and destroy it, or set an event and destroy it. A waiter whose timeout
 * or cancellation comes at that moment either gets the grant or gives up
 * without it, and a destroy waits for one that is still giving up. A
 * select is in progress on every channel of its cases until it returns,
 * except the one whose operation completed it.
 */

/* Channel: a bounded multi-producer multi-consumer FIFO of pointers
 * (asyncio.Queue with maxsize, Go's chan). capacity 0 makes a rendezvous
 * channel: a send completes when a receiver takes the value. */
typedef struct weft_chan weft_chan;
WEFT_API int weft_chan_create(weft_chan **out, size_t capacity);
WEFT_API void weft_chan_destroy(weft_chan *c);
/* Sends value, waiting while the channel is full. Returns 0, -EPIPE if the
 * channel is closed (before or while waiting: the value was not sent),
 * -ECANCELED, -ETIMEDOUT. */
WEFT_API int weft_chan_send(weft_chan *c, void *value);
WEFT_API int weft_chan_send_timeout(weft_chan *c, void *value,
				    uint64_t timeout_ns);
/* Receives into *value, waiting while the channel is empty. Returns 0,
 * -EPIPE once the channel is closed and drained (values sent before the
 * close are received first), -ECANCELED, -ETIMEDOUT. */
WEFT_API int weft_chan_recv(weft_chan *c, void **value);
WEFT_API int weft_chan_recv_timeout(weft_chan *c, void **value,
				    uint64_t timeout_ns);
/* Without waiting: -EAGAIN when full (send) or empty (recv), -EPIPE when
 * closed (and, for recv, drained). */
WEFT_API int weft_chan_try_send(weft_chan *c, void *value);
WEFT_API int weft_chan_try_recv(weft_chan *c, void **value);
/* Closes: sends fail with -EPIPE from now on, waiting senders are woken
 * with -EPIPE, receivers drain what is buffered and then get -EPIPE.
 * Returns 0, or -EALREADY if it was closed already. */
WEFT_API int weft_chan_close(weft_chan *c);
/* Values buffered now, and the capacity. */
WEFT_API size_t weft_chan_len(weft_chan *c);
WEFT_API size_t weft_chan_cap(weft_chan *c);

/* Select: waits until one of several channel operations can complete,
 * does that one only, and returns its index (Go's select). Cases with a
 * NULL chan are ignored. When several are ready, the first in the array
 * wins. A receive from a closed, drained channel and a send to a closed one
 * are ready: they complete with result -EPIPE. Returns the index, or
 * -ETIMEDOUT (timeout_ns passed, or the deadline; 0 polls), -ECANCELED,
 * -EINVAL (no usable case, or a bad op), -ENOMEM (more than 8 cases need
 * memory), -EPERM outside task context. */
#define WEFT_SEL_SEND 1
#define WEFT_SEL_RECV 2
struct weft_sel {
	weft_chan *chan;
	int op;      /* WEFT_SEL_SEND or WEFT_SEL_RECV */
	void *value; /* SEND: the value to send; RECV: the value received */
	int result;  /* set for the case chosen: 0 or -EPIPE */
};
WEFT_API int weft_select(struct weft_sel *cases, size_t n,
			 uint64_t timeout_ns);

/* Future: a one-shot result that one party sets and any number await
 * (asyncio.Future). */
typedef struct weft_future weft_future;
WEFT_API int weft_future_create(weft_future **out);
WEFT_API void weft_future_destroy(weft_future *f);
/* Sets the value (set_result) or an error (set_exception; err < 0, e.g.
 * -ECANCELED for cancel()) and wakes every awaiter. Returns 0 or
 * -EALREADY if the future was already done. */
WEFT_API int weft_future_set(weft_future *f, void *value);
WEFT_API int weft_future_fail(weft_future *f, int err);
/* Waits until done; stores the value. Returns 0, the error it was failed
 * with, -ECANCELED, -ETIMEDOUT. weft_future_fail() returns -EINVAL for
 * err >= 0. */
WEFT_API int weft_future_await(weft_future *f, void **value);
WEFT_API int weft_future_await_timeout(weft_future *f, void **value,
				       uint64_t timeout_ns);
/* 1 once set or failed, else 0. */
WEFT_API int weft_future_done(weft_future *f);

/* Event (asyncio.Event): wait() returns at once while set. */
typedef struct weft_event weft_event;
WEFT_API int weft_event_create(weft_event **out);
WEFT_API void weft_event_destroy(weft_event *e);
WEFT_API void weft_event_set(weft_event *e);
WEFT_API void weft_event_clear(weft_event *e);
WEFT_API int weft_event_is_set(weft_event *e);
/* Returns 0 once the event is set, -ECANCELED, -ETIMEDOUT. */
WEFT_API int weft_event_wait(weft_event *e);
WEFT_API int weft_event_wait_timeout(weft_event *e, uint64_t timeout_ns);

/* Lock (asyncio.Lock): an async mutex. Fair: release() hands the lock to
 * the longest waiter directly, so no newcomer can overtake it. Not
 * recursive; any task may release it (as in asyncio). */
typedef struct weft_lock weft_lock;
WEFT_API int weft_lock_create(weft_lock **out);
WEFT_API void weft_lock_destroy(weft_lock *l);
/* Returns 0 with the lock held, -ECANCELED, -ETIMEDOUT (not held). */
WEFT_API int weft_lock_acquire(weft_lock *l);
WEFT_API int weft_lock_acquire_timeout(weft_lock *l, uint64_t timeout_ns);
/* Returns 0 or -EBUSY (held, or others are waiting for it). */
WEFT_API int weft_lock_try_acquire(weft_lock *l);
/* Returns 0, or -EPERM if the lock is not held. */
WEFT_API int weft_lock_release(weft_lock *l);
WEFT_API int weft_lock_locked(weft_lock *l);

/* Semaphore (asyncio.Semaphore; BoundedSemaphore with WEFT_SEM_BOUNDED:
 * a release above the initial value fails with -EOVERFLOW). Fair like the
 * lock. */
#define WEFT_SEM_BOUNDED 0x1u
typedef struct weft_sem weft_sem;
WEFT_API int weft_sem_create(weft_sem **out, unsigned value, unsigned flags);
WEFT_API void weft_sem_destroy(weft_sem *s);
WEFT_API int weft_sem_acquire(weft_sem *s);
WEFT_API int weft_sem_acquire_timeout(weft_sem *s, uint64_t timeout_ns);
/* Returns 0 or -EAGAIN (no permit free, or others are waiting). */
WEFT_API int weft_sem_try_acquire(weft_sem *s);
/* Returns 0, or -EOVERFLOW (bounded, above the initial value). */
WEFT_API int weft_sem_release(weft_sem *s);
/* Permits free now. */
WEFT_API unsigned weft_sem_value(weft_sem *s);

/* Condition (asyncio.Condition) over a weft_lock the caller holds.
 * wait() releases the lock, waits for a notify, and takes the lock again
 * before it returns, whatever it returns (as asyncio does); a woken waiter
 * re-checks its predicate in a loop. */
typedef struct weft_cond weft_cond;
WEFT_API int weft_cond_create(weft_cond **out);
WEFT_API void weft_cond_destroy(weft_cond *c);
/* Returns 0 (notified), -ECANCELED, -ETIMEDOUT; -EPERM if lock is not
 * held. */
WEFT_API int weft_cond_wait(weft_cond *c, weft_lock *lock);
WEFT_API int weft_cond_wait_timeout(weft_cond *c, weft_lock *lock,
				    uint64_t timeout_ns);
/* Wakes up to n waiters (notify), or all (notify_all). Returns how many
 * were woken. */
WEFT_API unsigned weft_cond_notify(weft_cond *c, unsigned n);
WEFT_API unsigned weft_cond_notify_all(weft_cond *c);

/* Task group (asyncio.TaskGroup), also a wait group: a scope that awaits
 * every task spawned in it. When a task of the group fails (returns an
 * error pointer, or cannot start), the group cancels the others; a task
 * that ends cancelled is not a failure. */
typedef struct weft_group weft_group;
WEFT_API int weft_group_create(weft_group **out);
/* Spawns fn(arg) in the group. out (may be NULL) receives a handle of
 * its own. Returns 0, -ECANCELED if the group has failed or was cancelled
 * (the task was not started), -ENOMEM, -EPERM (no runtime). */
WEFT_API int weft_group_spawn(weft_group *g, weft_task **out, weft_fn fn,
			      void *arg);
/* Waits until every task of the group has ended. Returns 0, or the first
 * failure's error (tasks were cancelled because of it). If the calling
 * task is cancelled or its deadline passes while waiting, the group's
 * tasks are cancelled and awaited, and -ECANCELED (-ETIMEDOUT) is
 * returned. From a thread outside the runtime it blocks that thread. */
WEFT_API int weft_group_wait(weft_group *g);
/* Cancels every task of the group (and refuses new ones). */
WEFT_API void weft_group_cancel(weft_group *g);
/* Tasks of the group that have not ended. */
WEFT_API size_t weft_group_size(weft_group *g);
/* Frees the group; waits (as weft_group_wait) if tasks are left. */
WEFT_API void weft_group_destroy(weft_group *g);

/* Waiting on several tasks. weft_wait_any() (asyncio.wait with
 * FIRST_COMPLETED) returns the index of a task that has ended, -ETIMEDOUT,
 * -ECANCELED, -EINVAL (n is 0, a stale or NULL handle). A waitset yields
 * the tasks in the order they end (asyncio.as_completed): each
 * weft_waitset_next() returns the index of the next one, or -ENOENT once
 * all were returned. Both also return -EPERM outside task context and
 * -ENOMEM; -EINVAL covers the caller's own handle too. A waitset takes no
 * references: keep the handles until weft_waitset_destroy(). Task context
 * only. */
WEFT_API int weft_wait_any(weft_task *const *tasks, size_t n,
			   uint64_t timeout_ns);
typedef struct weft_waitset weft_waitset;
WEFT_API int weft_waitset_create(weft_waitset **out, weft_task *const *tasks,
				 size_t n);
WEFT_API int weft_waitset_next(weft_waitset *ws, uint64_t timeout_ns);
WEFT_API void weft_waitset_destroy(weft_waitset *ws);

/* Async generator: a producer task that yields values one at a time to a
 * consumer (the tutorial's `async def ... yield`, consumed by `async for`).
 * The body runs as its own task and computes at most one value ahead. */
typedef struct weft_gen weft_gen;
typedef int (*weft_gen_fn)(weft_gen *g, void *arg);
/* Starts body(g, arg). Returns 0, -ENOMEM, -EPERM (not in a runtime). */
WEFT_API int weft_gen_create(weft_gen **out, weft_gen_fn body, void *arg);
/* In the body: hands value to the consumer, waiting until it asks.
 * Returns 0, or -ECANCELED once the consumer destroyed the generator
 * (the body should return) or the body was cancelled, -ETIMEDOUT past the
 * body's deadline scope. */
WEFT_API int weft_gen_yield(weft_gen *g, void *value);
/* In the consumer: 1 with the next value, 0 when the body has returned
 * 0 or more, the body's return value if it returned a negative error,
 * -ECANCELED, -ETIMEDOUT. */
WEFT_API int weft_gen_next(weft_gen *g, void **value);
/* Cancels the body if it is still running, waits for it (shielded, and
 * past any deadline scope of the caller), frees (aclose). From a task, or
 * from a thread outside the runtime (which then blocks); from the body's
 * own task it aborts (the wait could never end). */
WEFT_API void weft_gen_destroy(weft_gen *g);

/* ---- offload and callbacks -------------------------------------------------
 * weft_run_blocking (asyncio.to_thread / run_in_executor): runs fn(arg) on
 * a thread of the runtime's blocking pool and suspends the calling task
 * until it has returned. For code that would stall a worker: blocking
 * system calls, libraries without async interfaces, long computations. The
 * pool starts threads on demand up to weft_config.blocking_threads and lets
 * a thread go after blocking_idle_ms without work; calls beyond the
 * threads wait in a FIFO queue. fn runs on a thread that is not a worker
 * (weft_worker_index() is -1 there, task calls return -EPERM) and that
 * blocks every signal. Returns 0 with fn's result in *result (may be
 * NULL), or:
 *   -ECANCELED, -ETIMEDOUT  the task was cancelled (its deadline passed)
 *               before a pool thread took the call: fn did not run. Once
 *               fn runs it runs to the end and the call returns after it
 *               (arg stays valid for it), reporting fn's result; the
 *               cancellation stays pending for the next suspension point.
 *   -EAGAIN     (or another error of pthread_create()) the pool has no
 *               thread and could not start one: fn did not run. With
 *               threads running, the call waits for one of them instead.
 *   -EINVAL     fn is NULL.
 *   -EPERM      not called from task context.
 * Runtime teardown waits for the calls that are running (fn cannot be
 * interrupted) and joins every pool thread; queued calls never run.
 */
WEFT_API int weft_run_blocking(weft_fn fn, void *arg, void **result);

/* Host name resolution through the blocking pool (getaddrinfo(3), called
 * with the same arguments). Returns 0 with *res to free with
 * freeaddrinfo(), or -ENOENT (no such host or service: EAI_NONAME,
 * EAI_SERVICE, EAI_NODATA, EAI_ADDRFAMILY), -EAGAIN (temporary failure,
 * e.g. no DNS server answered), -ENOMEM, -EAFNOSUPPORT (EAI_FAMILY),
 * -EINVAL (EAI_BADFLAGS, EAI_SOCKTYPE; res NULL; host and service both
 * NULL), -EIO (EAI_FAIL), -ECANCELED, -ETIMEDOUT (as weft_run_blocking:
 * nothing to free), -EPERM outside task context, or the errno of a system
 * error (EAI_SYSTEM). *res is NULL after a failure. Task context. */
struct addrinfo;
WEFT_API int weft_getaddrinfo(const char *host, const char *service,
			      const struct addrinfo *hints,
			      struct addrinfo **res);

/* Callbacks, as tasks (asyncio.loop.call_soon/call_later/call_at): fn(arg)
 * runs as a new task, at once, after delay_ns, or at the deadline (a
 * weft_now() value). out (may be NULL) receives a handle: cancelling it
 * before fn started keeps fn from running (TimerHandle.cancel). Callable
 * from task context or a worker. Returns 0, -ENOMEM, -EPERM, -EINVAL (fn
 * NULL). */
WEFT_API int weft_call_soon(weft_task **out, weft_fn fn, void *arg);
WEFT_API int weft_call_later(weft_task **out, uint64_t delay_ns, weft_fn fn,
			     void *arg);
WEFT_API int weft_call_at(weft_task **out, uint64_t deadline, weft_fn fn,
			  void *arg);
/* call_soon_threadsafe / run_coroutine_threadsafe: from any thread, runs
 * fn(arg) as a task of rt. Returns 0, -ENOMEM, -ESHUTDOWN (rt is shutting
 * down or closed), -EINVAL. */
WEFT_API int weft_call_soon_threadsafe(weft_runtime *rt, weft_task **out,
				       weft_fn fn, void *arg);
/* Blocks the calling thread, which must not be a worker, until task has
 * ended (Future.result() of run_coroutine_threadsafe); stores its result.
 * Returns what weft_await() would, or -EDEADLK on a worker thread. */
WEFT_API int weft_join(weft_task *task, void **result);

/* ---- subprocesses -----------------------------------------------------------
 * asyncio.create_subprocess_exec: a child process with pipes to its
 * standard streams, read and written with the I/O calls (weft_read,
 * weft_write_all, a weft_reader) like any descriptor.
 *
 *     char *argv[] = { "ls", "-l", NULL };
 *     struct weft_proc_opts o = { .flags = WEFT_PROC_STDOUT |
 *                                          WEFT_PROC_SEARCH_PATH };
 *     weft_proc *p;
 *     int code;
 *     if (weft_proc_spawn(&p, argv, &o) == 0) {
 *             ... weft_read(weft_proc_stdout(p), buf, n, -1) until 0 ...
 *             weft_proc_wait(p, &code);   // exit status, or -signal
 *             weft_proc_destroy(p);
 *     }
 *
 * The child is started with posix_spawn(3) and watched through a pidfd
 * (Linux 5.4): no SIGCHLD handler is installed, and signals never reach a
 * later process that reuses the pid. Do not reap weft's children by other
 * means (waitpid(-1, ...), SIGCHLD set to SIG_IGN): the wait then returns
 * -ECHILD. The child gets no descriptor of the parent's but its three
 * standard streams (every other fd >= 3 is closed in it, as Python's
 * close_fds=True), an empty signal mask, and SIGPIPE and SIGXFSZ at their
 * default action (weft_run() ignores SIGPIPE in the parent). Streams not
 * piped are inherited from the parent unless WEFT_PROC_DEVNULL is set.
 * Pipe fds are blocking-mode pipes, close-on-exec, owned by the handle.
 */
typedef struct weft_proc weft_proc;
#define WEFT_PROC_STDIN 0x1u     /* pipe to the child's stdin */
#define WEFT_PROC_STDOUT 0x2u    /* pipe from its stdout */
#define WEFT_PROC_STDERR 0x4u    /* pipe from its stderr */
#define WEFT_PROC_STDERR_TO_STDOUT 0x8u /* stderr goes where stdout goes
				    (its pipe, /dev/null or the parent's);
				    not with WEFT_PROC_STDERR */
#define WEFT_PROC_DEVNULL 0x10u  /* streams not piped go to /dev/null
				    instead of being inherited */
#define WEFT_PROC_SEARCH_PATH 0x20u /* look argv[0] up in PATH (the
				    parent's PATH, not envp's), as
				    posix_spawnp/execvp do */
struct weft_proc_opts {
	unsigned flags;          /* WEFT_PROC_* */
	char *const *envp;       /* NULL: the parent's environment */
	const char *cwd;         /* NULL: the parent's; a relative argv[0] is
				    looked up from here */
};
/*
 * Starts argv[0] with arguments argv (NULL-terminated; argv[0] is also
 * the program's own argv[0]) and stores a new handle in *out, to give back
 * with weft_proc_destroy(). opts may be NULL (no pipes, all inherited).
 * Makes no ring call: callable from any thread, in a runtime or not. The
 * calling thread is held until the child has called exec (typically 0.1-0.2
 * ms), which is how an exec failure comes back here rather than
 * as a child exiting 127. Returns 0, or:
 *   -ENOENT   no such program (or cwd does not exist)
 *   -EACCES   the file is not executable (or is a directory)
 *   -ENOEXEC  not a format the kernel runs (a script without #!)
 *   -ENOTDIR  a component of the path or cwd is not a directory
 *   -EINVAL   out or argv NULL, argv[0] NULL, unknown flags, or both
 *             WEFT_PROC_STDERR and WEFT_PROC_STDERR_TO_STDOUT
 *   -ENOMEM, -EMFILE, -ENFILE, -EAGAIN (process limit), -E2BIG
 *   -ENOSYS   the kernel has no pidfd_open (before 5.3): the child was
 *             started, then killed and reaped
 * Nothing is left behind on failure: no descriptor, no process. A piped
 * stdin holds one descriptor more than its pipe end until it is closed
 * (what weft_proc_close_stdin() leaves in its place).
 */
WEFT_API int weft_proc_spawn(weft_proc **out, char *const argv[],
			     const struct weft_proc_opts *opts);
/* The child's process id (still valid after it was reaped, for logs), or
 * -1 for NULL. */
WEFT_API pid_t weft_proc_pid(weft_proc *p);
/* The parent's ends of the pipes, or -1 where not piped (and stdin once
 * weft_proc_close_stdin() closed it). Owned by p: do not close them. Any
 * thread. */
WEFT_API int weft_proc_stdin(weft_proc *p);
WEFT_API int weft_proc_stdout(weft_proc *p);
WEFT_API int weft_proc_stderr(weft_proc *p);
/* Closes the child's stdin pipe: it reads end of file once it has read
 * what was written. Safe while another task writes to stdin (a
 * weft_write_all() to weft_proc_stdin(p), say): a request already in
 * flight completes on the pipe, and the child sees end of file after it;
 * every later write through the number, the rest of that write_all
 * included, fails with -EPIPE. The descriptor number is not freed until
 * weft_proc_destroy() (it is left referring to a pipe without reader),
 * so no descriptor opened in the meantime can receive the child's input.
 * Needs no free descriptor. Any thread. Returns 0, -EBADF if stdin is not
 * piped or is already closed, -EINVAL for NULL. */
WEFT_API int weft_proc_close_stdin(weft_proc *p);
/*
 * Waits for the child to exit and reaps it. Stores the return code as
 * asyncio has it: the exit status (0..255), or -N if killed by signal N.
 * Once reaped, every later call returns 0 with the same code at once. Any
 * number of tasks may wait on one handle at the same time; each gets the
 * code. Task context. Returns 0, or:
 *   -ECANCELED  the task was cancelled while waiting
 *   -ETIMEDOUT  its deadline passed (the child keeps running; wait again)
 *   -EPERM      not called from task context
 *   -ECHILD     the child was reaped behind weft's back (see above)
 *   -EINVAL     p is NULL
 * To stop a child first and wait after: weft_proc_kill(), then this.
 */
WEFT_API int weft_proc_wait(weft_proc *p, int *returncode);
/*
 * Sends sig (SIGTERM: asyncio's terminate(), SIGKILL: kill(); 0 checks
 * that the child has not been reaped). Any thread. Returns 0 (also when
 * the child has exited but was not reaped yet: the signal does nothing),
 * -ESRCH once the child was reaped, -EINVAL (bad signal, NULL p), -EPERM.
 */
WEFT_API int weft_proc_kill(weft_proc *p, int sig);
/*
 * Closes the pipes; a child still running is killed (SIGKILL) and reaped,
 * as asyncio's transport close does, so no zombie is left. Frees p. The
 * reap after SIGKILL blocks the calling thread (a worker perhaps) until
 * the kernel has torn the child down: normally microseconds, longer for a
 * child stuck in uninterruptible sleep. Any thread, once no other call on
 * p is in progress or will be made (no task still waiting, reading or
 * writing its pipes). NULL is ignored.
 */
WEFT_API void weft_proc_destroy(weft_proc *p);

/* ---- event-loop control ------------------------------------------------------
 * A runtime made explicitly (asyncio.new_event_loop) starts its workers as
 * threads of its own; any thread that is not one of them drives it:
 *
 *     weft_runtime *rt;
 *     weft_runtime_create(&rt, NULL);
 *     weft_runtime_run(rt, main_fn, arg, &res);  // run_until_complete
 *     weft_runtime_run_forever(rt);               // until weft_stop(rt)
 *     weft_runtime_destroy(rt);                   // close() and free
 *
 * Tasks outlive a run: those still pending keep running between runs (the
 * workers run them whether or not a run is in progress). At most one run
 * of a runtime is in progress at a time. Several runtimes may exist and
 * run in one process at once, each with its own workers.
 */
/* Makes a runtime with config (NULL: defaults), starts its workers and
 * returns; the caller owns the handle and gives it back with
 * weft_runtime_destroy(). Returns 0, -EINVAL (out NULL, bad config),
 * -ENOMEM, -EPERM/-ENOSYS (io_uring refused or missing), -EBUSY
 * (WEFT_RUN_STOP_ON_SIGNALS while another runtime has the signals), or an
 * errno from thread or ring creation. Any thread. */
WEFT_API int weft_runtime_create(weft_runtime **out,
				 const struct weft_config *config);
/* Runs main(arg) as rt's main task (the one weft_stop() cancels) and
 * blocks until it has ended, its result in *result if result is not NULL.
 * Other tasks are not waited for. If a stop is pending (see weft_stop),
 * main never runs: -ECANCELED at once, *result NULL. Returns what
 * weft_await() would for main, or -EBUSY (a run of rt is in progress),
 * -ESHUTDOWN (closed or closing), -EINVAL (rt or main NULL), -EDEADLK
 * (called on a worker). Any thread that is not a worker. */
WEFT_API int weft_runtime_run(weft_runtime *rt, weft_fn main, void *arg,
			      void **result);
/* Blocks until weft_stop(rt); returns at once if a stop is pending.
 * Returns 0, -EBUSY, -ESHUTDOWN, -EINVAL, -EDEADLK as above. */
WEFT_API int weft_runtime_run_forever(weft_runtime *rt);
/*
 * Asks rt (NULL: the caller's runtime) to stop: weft_runtime_run_forever()
 * returns; the main task of weft_run() or weft_runtime_run() is cancelled,
 * so that it can stop accepting, clean up and return. With no main task
 * to cancel the stop stays pending until a run consumes it (the
 * run_forever in progress, or else the next run, which ends at once).
 * Returns 0 (on a closed runtime too, doing nothing), -EINVAL (NULL
 * outside a runtime). Any thread; not async-signal-safe (use
 * WEFT_RUN_STOP_ON_SIGNALS).
 */
WEFT_API int weft_stop(weft_runtime *rt);
/* 1 once weft_stop() was called for the caller's runtime, else 0 (also
 * outside a runtime). Stays 1 after the run it stopped has ended; back to
 * 0 when a run begins with no stop pending. */
WEFT_API int weft_stop_requested(void);
/* Graceful close (loop.close with asyncio.run's clean-up): cancels the
 * tasks left, gives them weft_config.shutdown_grace_ms to end, drops the
 * rest, stops the workers and releases everything but the handle. Handles
 * of rt's tasks must not be used afterwards. Returns 0 (also when already
 * closed, or once another thread's close has finished), -EBUSY while a
 * run is in progress, -EINVAL (NULL), -EDEADLK from a worker of rt or
 * from a thread of its blocking pool (a weft_run_blocking() function),
 * which the close would wait for; the runtime is left as it was. */
WEFT_API int weft_runtime_close(weft_runtime *rt);
/* 1 while a weft_runtime_run/run_forever (or weft_run) is in progress. */
WEFT_API int weft_runtime_is_running(weft_runtime *rt);
/* 1 after weft_runtime_close(). */
WEFT_API int weft_runtime_is_closed(weft_runtime *rt);
/* Closes if needed and frees the handle. NULL is ignored. During a run,
 * or on a worker or blocking-pool thread of rt, it aborts (API misuse). */
WEFT_API void weft_runtime_destroy(weft_runtime *rt);

/* Static text for a weft error code (negative errno). Never NULL. */
WEFT_API const char *weft_strerror(int err);

/* Library version as "major.minor.patch". */
WEFT_API const char *weft_version(void);
/* Library version as WEFT_VERSION_NUMBER counts it. */
WEFT_API unsigned weft_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
