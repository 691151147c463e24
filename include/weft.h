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
 *     errno value on failure (host name resolution has codes of its own
 *     besides, WEFT_EAI_*). weft_strerror() names them.
 *   - Never read errno after a call that may suspend: the task may have moved
 *     to another thread, whose errno is another variable. weft calls report
 *     errors through their return value only.
 *   - "Task context" means code running inside a weft task. Calls that
 *     suspend (await, gather, yield) need it and return -EPERM elsewhere.
 *     "Any worker": a worker thread of a runtime, in a task or not. "A
 *     thread outside the runtime": a thread that is not one of its
 *     workers (the application's, or fn of weft_run_blocking()).
 *
 * The comment above each declaration is its contract. docs/api.md is the
 * map: an overview per section, and the rules common to many calls.
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
#include <stdio.h>
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

/* Which reactor serves a runtime's I/O, its timed waits and its wake-ups
 * (weft_config.reactor, weft_runtime_reactor()). */
enum weft_reactor {
	WEFT_REACTOR_AUTO = 0,  /* io_uring if this kernel (and its seccomp
				   filter) lets weft use it, else epoll */
	WEFT_REACTOR_URING = 1, /* io_uring only: weft_run() fails where it
				   is refused */
	WEFT_REACTOR_EPOLL = 2  /* epoll: readiness and non-blocking calls for
				   sockets, pipes and pidfds; files, opens
				   and stats on the blocking pool */
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
	/* enum weft_reactor. WEFT_REACTOR_AUTO (0) lets the environment
	 * variable WEFT_REACTOR=uring|epoll choose; if it does not, io_uring
	 * when it works, else epoll, with a one-line notice on stderr (once
	 * per process; WEFT_RUN_QUIET silences it). */
	int reactor;
	/* A signal (e.g. SIGQUIT, SIGUSR1) that makes the runtime print
	 * weft_dump() to stderr and carry on; 0: none. The handler only
	 * wakes a thread of the runtime's, which prints. The previous
	 * disposition is restored when the runtime stops. -EINVAL for a
	 * number that is not a signal, or SIGKILL, SIGSTOP, SIGSEGV, SIGBUS,
	 * SIGILL, SIGFPE, SIGPIPE, SIGURG, SIGRTMIN + 4 (the stall
	 * reports'; the runtime's own), 32 to SIGRTMIN - 1 (the C
	 * library's), SIGINT and
	 * SIGTERM with WEFT_RUN_STOP_ON_SIGNALS; -EBUSY from the start when
	 * 16 runtimes of the process already have one. docs/debugging.md. */
	int dump_signal;
	/* Stall reports (docs/debugging.md): a task that runs this
	 * many milliseconds without suspending is reported once on stderr,
	 * with its name, worker, backtrace and the tasks queued behind it
	 * (one blocked in a system call: without name and backtrace, and
	 * not interrupted). Run time: a worker whose thread waits for a
	 * CPU meanwhile gets a note instead, its task no report.
	 * 0: what the environment variable WEFT_STALL_MS says (a number of
	 * ms; 0 or unset: off). WEFT_STALL_OFF: off whatever the
	 * environment says. At least 10 when set. */
	unsigned stall_ms;
	/* Reserved for future use; must be zero. */
	unsigned reserved_stall;
};

/* weft_config.stall_ms: no stall reports, whatever WEFT_STALL_MS says. */
#define WEFT_STALL_OFF 0xffffffffu

/* weft_config.flags: SIGINT and SIGTERM call weft_stop() on the runtime
 * (a second one, while stopping, ends the process with the default
 * action; so does one that comes during the shutdown). One runtime of the
 * process at a time may ask for it; the previous dispositions are
 * restored when it stops (weft_run() returns, or weft_runtime_close()). */
#define WEFT_RUN_STOP_ON_SIGNALS 0x1u
/* weft_config.flags: no notice on stderr when io_uring is refused and the
 * runtime falls back to epoll by itself. */
#define WEFT_RUN_QUIET 0x2u
/* weft_config.flags: when every task of the runtime waits on something
 * only another of its tasks could end (a channel, a lock, an await, a
 * group...) and none waits on I/O, a timer, the blocking pool or a
 * deadline, for a second, and the process has no thread but the
 * runtime's own (one outside it could end the waits), print weft_dump()
 * to stderr and abort(); weft_run()'s runtime only.
 * docs/debugging.md says exactly what is and is not detected. */
#define WEFT_RUN_ABORT_ON_DEADLOCK 0x4u

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
 * returns (the blocking pool first finishes the calls it is running;
 * descriptors the program's tasks opened are theirs: weft does not track
 * or close them). weft_stop(), or
 * SIGINT/SIGTERM with WEFT_RUN_STOP_ON_SIGNALS, cancels main, and the same
 * shutdown follows once it returns.
 *
 * Returns 0, or:
 *   -ECANCELED  main was cancelled (weft_stop(), a signal, weft_cancel())
 *            before it returned; *result still gets what it returned
 *   -EINVAL  main is NULL, or config has a non-zero reserved field, a
 *            bad wake_mode, an unknown flag, workers above 1024 or
 *            stack_size above 2^40
 *   -ENOMEM  out of memory at start-up
 *   -EPERM, -ENOSYS  io_uring is refused by the kernel (seccomp, sysctl
 *            kernel.io_uring_disabled) or missing and config->reactor
 *            forces it (otherwise the runtime runs on epoll); also when a
 *            worker's io_uring_enter (or epoll_wait) fails for good while
 *            the runtime runs (any
 *            errno but EINTR, EAGAIN, EBUSY): it stops, its tasks are
 *            dropped, and weft_run() returns that error
 *   -EBUSY   called on a worker (from inside a task: nesting runtimes
 *            on one thread), or WEFT_RUN_STOP_ON_SIGNALS while another
 *            runtime has the signals
 *   other negative errno values from thread or ring creation.
 * main's result comes back through `result`, not as the return value,
 * which is for the runtime's own errors (io_uring is disabled in many
 * containers). May be called from any thread that is not a worker;
 * several may run at once, each on its own thread. Process-wide effects
 * (SIGPIPE ignored, SIGURG and SIGSEGV handlers, timer slack):
 * docs/api.md, Running.
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
	/* Reserved for fields to come (zero keeps today's behaviour); must
	 * be zero, or the spawn fails with -EINVAL. */
	uint64_t reserved[2];
};

/* Keep the task on the worker that spawned it: never stolen, always resumed
 * there (asyncio's single-threaded style, for data only it touches).
 * Ignored (no worker to pin to) when spawning from outside the runtime. */
#define WEFT_SPAWN_PINNED 0x1u
/* Do not return a handle: the task runs detached (out may be NULL). */
#define WEFT_SPAWN_DETACHED 0x2u

/*
 * Starts fn(arg) as a new task and returns its handle (one reference owned
 * by the caller), or NULL if it cannot: out of memory, not called from a
 * worker of a runtime, or fn NULL. The task is queued on the calling
 * worker and may be stolen by any other. Callable from task context or
 * any worker.
 */
WEFT_API weft_task *weft_spawn(weft_fn fn, void *arg);

/*
 * weft_spawn() with options. Stores the handle in *out unless
 * WEFT_SPAWN_DETACHED is set. Callable from task context, or from any
 * thread when opts->runtime names a running runtime (the task then goes
 * through the runtime's shared inject queue).
 * Returns 0, or -EINVAL (fn NULL, bad flags, out NULL without DETACHED,
 * stack_size above 2^40, a non-zero reserved field), -EPERM (no runtime given and not on a worker),
 * -ENOMEM, -ESHUTDOWN (from outside opts->runtime, which is shutting
 * down: main of weft_run() has returned, or weft_runtime_close() has
 * begun or ended).
 */
WEFT_API int weft_spawn_opts(weft_task **out, weft_fn fn, void *arg,
			     const struct weft_spawn_opts *opts);

/*
 * Spawn sites. weft_spawn(), weft_spawn_opts(), weft_group_spawn() and
 * weft_group_spawn_opts() are macros that call the *_at() forms below with
 * the place of the call ("file.c:123", a string literal: no cost at run
 * time beyond passing it), which weft_dump() and weft_tasks_foreach()
 * report. The plain functions stay exported, for programs built before
 * and for taking their address (a function-like macro is not expanded
 * without its parenthesis: `&weft_spawn` is the function). Define
 * WEFT_NO_SPAWN_SITES before including weft.h to call them directly.
 * site: NULL or a string that lives as long as the task.
 */
WEFT_API weft_task *weft_spawn_at(weft_fn fn, void *arg, const char *site);
WEFT_API int weft_spawn_opts_at(weft_task **out, weft_fn fn, void *arg,
				const struct weft_spawn_opts *opts,
				const char *site);

/*
 * Suspends the calling task until `task` ends, and stores its result in
 * *result (if result is not NULL). Only the calling task waits; its worker
 * runs others. Does not release the handle.
 * Returns 0 when the task returned normally, or:
 *   -ECANCELED  the awaited task was cancelled (weft_cancel() reached it
 *               before it returned; *result still gets what it returned),
 *               or the calling task was cancelled while waiting (it stops
 *               waiting; the awaited task keeps running: asyncio would
 *               cancel it too, weft leaves that to the caller)
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
 * order (-ECANCELED, -ENOMEM, -ESRCH, -EDEADLK, -EINVAL for a NULL
 * handle). If the calling task is cancelled while waiting, returns
 * -ECANCELED at once (-ETIMEDOUT if its deadline passes); results of tasks
 * not yet awaited are then NULL, and the tasks keep running. Also -EINVAL
 * (tasks NULL with n > 0), -EPERM outside task context.
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
 * suspension points do not report a pending cancellation; the first one
 * after the shield drops does. Shields hold off cancellation, not
 * deadlines. Returns 0 or -EPERM outside task context; weft_shield_end()
 * without a matching begin aborts with a message (API misuse). */
WEFT_API int weft_shield_begin(void);
WEFT_API int weft_shield_end(void);

/* 1 if a cancellation of the calling task is pending, 0 if not (or
 * outside task context). Does not consume it. */
WEFT_API int weft_cancelled(void);

/* Adds a reference to the handle; each needs a weft_task_release(). Also
 * valid on weft_self()'s handle, or on one whose references were all
 * released while its task still runs. Returns 0, -ESRCH (stale), -EINVAL
 * (NULL). Any thread. */
WEFT_API int weft_task_retain(weft_task *task);

/* Gives back one reference. The handle must not be used after its last
 * reference is gone. The task itself keeps running if it has not ended.
 * Returns 0, -ESRCH (stale, or released once more than it was retained:
 * the extra release is refused), -EINVAL (NULL). Callable from any
 * thread. */
WEFT_API int weft_task_release(weft_task *task);

/* Fire and forget: releases the caller's reference to a task whose result
 * nobody will collect ("I will never await this"). The same call as
 * weft_task_release(), named for intent. */
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

/* The reactor rt runs on (NULL: the caller's runtime): WEFT_REACTOR_URING
 * or WEFT_REACTOR_EPOLL, decided when it started; -EPERM if rt is NULL
 * outside a runtime. */
WEFT_API int weft_runtime_reactor(const weft_runtime *rt);

/* Number of workers of the caller's runtime, or 0 outside one. */
WEFT_API unsigned weft_worker_count(void);

/* ---- metrics ------------------------------------------------------------
 * Counters kept by every worker at the cost of a plain increment (no
 * shared write on any hot path), summed when read. docs/metrics-and-
 * stalls.md lists what each one means and serves them to Prometheus.
 */

/* What an I/O call was, for weft_metrics.io_*: the receive calls
 * (weft_recv, weft_recvmsg, weft_recvfrom, weft_recv_lease,
 * weft_stream_recv), the send
 * calls, weft_accept, weft_connect, the read calls (weft_read,
 * weft_readv), the write calls, readiness waits, and the rest (close,
 * shutdown, open, stat, fsync). Calls built on these (weft_write_all,
 * the reader and writer) count once per call they make. */
enum weft_io_kind {
	WEFT_IO_RECV,
	WEFT_IO_SEND,
	WEFT_IO_ACCEPT,
	WEFT_IO_CONNECT,
	WEFT_IO_READ,
	WEFT_IO_WRITE,
	WEFT_IO_POLL,
	WEFT_IO_OTHER,
	WEFT_IO_KINDS
};

/* Buckets of the I/O latency histogram: bucket 0 counts calls that took
 * under 1024 ns, bucket i (1 <= i < 23) those that took 2^(9+i) ns up to
 * under 2^(10+i) ns, the last one everything from 2^32 ns (4.3 s) on. */
#define WEFT_METRICS_IO_BUCKETS 24

/* Version 1 of the metrics record. The caller sets `size` to
 * sizeof(struct weft_metrics) as it was compiled; fields are only ever
 * added at the end, so an older caller gets the fields it knows. */
struct weft_metrics {
	size_t size;           /* in: the caller's sizeof; out: bytes filled */
	unsigned workers;      /* worker threads */
	unsigned reserved0;
	/* Counters, since the runtime started. */
	uint64_t tasks_spawned;   /* weft_spawn and friends, main included */
	uint64_t tasks_finished;  /* tasks that ended */
	uint64_t switches;        /* tasks switched in (each resume counts) */
	uint64_t steals;          /* steals that found work */
	uint64_t steal_tasks;     /* tasks those steals moved */
	uint64_t parks;           /* a worker slept in its reactor */
	uint64_t wakes;           /* of those sleeps, ended by a notify */
	uint64_t timers_armed;    /* sleeps, deadlines, timers started */
	uint64_t timers_fired;    /* of those, fired (the rest cancelled) */
	uint64_t io_submitted[WEFT_IO_KINDS];
	uint64_t io_completed[WEFT_IO_KINDS];
	/* Latency of completed I/O calls (call to return), by bucket (see
	 * WEFT_METRICS_IO_BUCKETS), and its sum in ns. */
	uint64_t io_latency[WEFT_METRICS_IO_BUCKETS];
	uint64_t io_latency_sum_ns;
	uint64_t busy_ns;         /* worker time not asleep in the reactor */
	uint64_t stalls;          /* stall reports made (weft_config.stall_ms) */
	/* Gauges, as of the call. */
	uint64_t inject_depth;    /* tasks on the shared inject queue */
	uint64_t local_depth;     /* tasks on the workers' local queues */
	uint64_t blocking_threads; /* blocking-pool threads alive */
	uint64_t blocking_idle;   /* of those, waiting for a job */
	uint64_t blocking_queued; /* weft_run_blocking jobs not yet taken */
	uint64_t uptime_ns;       /* since the runtime started */
};

/*
 * Fills *m with rt's metrics (NULL: the runtime of the calling worker or
 * blocking-pool thread), summed over its
 * workers. Set m->size first (see struct weft_metrics); on return it says
 * how many bytes were filled. Any thread, while rt runs (between its start
 * and weft_runtime_destroy() or the end of weft_run()); lock-free for the
 * counters (the blocking-pool gauges take the pool's lock briefly).
 * Returns 0, -EINVAL (m NULL, m->size below the first version's), -EPERM
 * (rt NULL on any other thread), -ENOTSUP (weft built with
 * WEFT_METRICS=OFF).
 */
WEFT_API int weft_metrics(weft_runtime *rt, struct weft_metrics *m);
/*
 * The same for worker `index` alone: its counters, its busy time and its
 * local queue depth; the runtime-wide fields (stalls, inject_depth, the
 * blocking pool, and what was counted off the workers) are 0. An I/O call
 * counts as submitted where it started and completed where it returned,
 * which may differ. Returns 0, -EINVAL (as above, or index not below the
 * number of workers), -EPERM, -ENOTSUP.
 */
WEFT_API int weft_metrics_worker(weft_runtime *rt, unsigned index,
				 struct weft_metrics *m);

/*
 * Task-local storage: slots keyed process-wide, values per task (so code
 * need not use thread-locals, which change under a migrating task).
 * A key is created once; each task sees NULL until it sets a value. When a
 * task ends, the destructor (if any) runs on each non-NULL value, in the
 * task, before awaiters are woken; if destructors set values again this
 * repeats, up to 4 rounds, and values left after that are dropped. At
 * most WEFT_TLS_KEYS keys exist at a time in a process; a deleted key's
 * place can be taken by a new key.
 */
#define WEFT_TLS_KEYS 64
typedef unsigned weft_tls_key;
/* Returns 0 and stores the key, or -EAGAIN when WEFT_TLS_KEYS keys exist,
 * -EINVAL for key NULL. Any thread. */
WEFT_API int weft_tls_key_create(weft_tls_key *key, void (*destructor)(void *));
/* Deletes key (pthread_key_delete): the values tasks stored under it are
 * dropped without its destructor, and the key is invalid from now on, also
 * once its place is given to a new key (which starts with NULL in every
 * task). Returns 0, or -EINVAL for a key that does not exist (never
 * created, or deleted already). Any thread. */
WEFT_API int weft_tls_key_delete(weft_tls_key key);
/* Sets the calling task's value for key. Returns 0, -EINVAL (a key that
 * does not exist), -EPERM (not in a task), -ENOMEM. */
WEFT_API int weft_tls_set(weft_tls_key key, void *value);
/* The calling task's value for key, or NULL (also for a key that does not
 * exist, and outside a task). */
WEFT_API void *weft_tls_get(weft_tls_key key);

/* ---- time ---------------------------------------------------------------
 * Times are nanoseconds on CLOCK_MONOTONIC; deadlines are absolute values
 * of weft_now(), timeouts durations. Sums that would overflow (now plus a
 * timeout) saturate to WEFT_NEVER. One timer service serves the whole
 * runtime (a hierarchical timing wheel with 16.384 us slots per worker,
 * O(1) insert and cancel): a sleep never ends early, and ends at most one
 * slot plus a wake-up late while a worker is free to fire it, whichever
 * worker that is.
 */
#define WEFT_NSEC_PER_USEC UINT64_C(1000)
#define WEFT_NSEC_PER_MSEC UINT64_C(1000000)
#define WEFT_NSEC_PER_SEC UINT64_C(1000000000)
/* No deadline. */
#define WEFT_NEVER UINT64_MAX

/* The monotonic clock in ns (CLOCK_MONOTONIC). Callable from any thread. */
WEFT_API uint64_t weft_now(void);

/*
 * asyncio.sleep: suspends the calling task (not its thread) for at least
 * ns nanoseconds (weft_sleep_ms: ms milliseconds). A zero or already
 * elapsed sleep still yields once, as asyncio.sleep(0). Returns 0, or:
 *   -ECANCELED  the task was cancelled before or during the sleep (one
 *               pending at the call returns at once, without sleeping);
 *               a shield holds it off as at any suspension point
 *   -ETIMEDOUT  the task's deadline (weft_timeout_begin) comes before
 *               the end of the sleep, which then ends at the deadline
 *   -EPERM      not called from task context
 */
WEFT_API int weft_sleep(uint64_t ns);
WEFT_API int weft_sleep_ms(uint64_t ms);
/* Sleeps until weft_now() >= deadline; same returns as weft_sleep(). A
 * deadline in the past yields once and returns 0 (-ETIMEDOUT if the
 * task's own deadline is earlier still). Task context. */
WEFT_API int weft_sleep_until(uint64_t deadline);

/*
 * asyncio.timeout(): a deadline for everything the task waits on inside a
 * scope. Until the matching weft_timeout_end(), every suspension point of
 * the calling task that waits (sleep, await, gather, weft_await_timeout,
 * every I/O call, the waits of the coordination objects) returns
 * -ETIMEDOUT once weft_now() reaches the deadline; I/O in flight is
 * cancelled in the kernel first, so no buffer is touched after the call
 * returned. A call made once the deadline has passed does not wait: an
 * I/O call returns -ETIMEDOUT without starting anything (weft_close()
 * excepted: it always closes), so end the scope before clean-up I/O.
 * weft_yield() ignores the deadline. Scopes nest and only narrow: the
 * earliest deadline wins, and an inner scope cannot extend an outer one.
 * Shields hold off cancellation, not deadlines. The deadline is the
 * calling task's own: tasks it spawns or awaits do not inherit it.
 *
 *     uint64_t saved = weft_timeout_begin(500 * WEFT_NSEC_PER_MSEC);
 *     n = weft_recv(fd, buf, sizeof buf, 0);   // -ETIMEDOUT after 500 ms
 *     weft_timeout_end(saved);
 *
 * weft_timeout_begin() takes a relative timeout (asyncio.timeout),
 * weft_deadline_begin() an absolute deadline (asyncio.timeout_at); both
 * return the deadline in force before, which weft_timeout_end() restores
 * (end scopes in reverse order: nothing checks it). Outside task context
 * they do nothing and return WEFT_NEVER.
 */
WEFT_API uint64_t weft_timeout_begin(uint64_t timeout_ns);
WEFT_API uint64_t weft_deadline_begin(uint64_t deadline);
WEFT_API void weft_timeout_end(uint64_t saved);
/* The calling task's deadline in force, or WEFT_NEVER. */
WEFT_API uint64_t weft_deadline(void);

/*
 * Scopes that end themselves (GCC and Clang, C and C++): a begin/end pair
 * left unbalanced by an early return leaks its deadline into the rest of
 * the task. WEFT_TIMEOUT_SCOPE(ns) and WEFT_DEADLINE_SCOPE(deadline) open
 * a scope that ends when the enclosing block is left, however it is left
 * (the end of the block, return, break, continue, goto out of it):
 *
 *     {
 *         WEFT_TIMEOUT_SCOPE(500 * WEFT_NSEC_PER_MSEC);
 *         n = weft_recv(fd, buf, sizeof buf, 0);
 *         if (n <= 0)
 *             return n;            // the scope ends here too
 *         ...
 *     }                            // and here
 *
 * They are declarations (of a variable whose cleanup calls
 * weft_timeout_end()): one per line, where a declaration may stand.
 */
static inline void weft_scope_end_(const uint64_t *saved)
{
	weft_timeout_end(*saved);
}
#define WEFT__CAT2(a, b) a##b
#define WEFT__CAT(a, b) WEFT__CAT2(a, b)
#define WEFT_TIMEOUT_SCOPE(timeout_ns)                                     \
	const uint64_t WEFT__CAT(weft_scope_, __LINE__)                    \
		__attribute__((cleanup(weft_scope_end_), unused)) =        \
			weft_timeout_begin(timeout_ns)
#define WEFT_DEADLINE_SCOPE(deadline)                                      \
	const uint64_t WEFT__CAT(weft_scope_, __LINE__)                    \
		__attribute__((cleanup(weft_scope_end_), unused)) =        \
			weft_deadline_begin(deadline)

/* weft_await_timeout(): cancel the awaited task when the timeout expires
 * (asyncio.wait_for). Without it the awaited task keeps running. */
#define WEFT_TIMEOUT_CANCEL 0x1u

/*
 * asyncio.wait_for: weft_await() that gives up after timeout_ns, or at the
 * caller's own deadline if that is earlier; timeout_ns 0 only checks
 * whether the task has ended. Returns what weft_await() returns,
 * -ETIMEDOUT when the time ran out first, or -EINVAL for unknown flags.
 * Without flags the awaited task keeps running after a timeout. With
 * WEFT_TIMEOUT_CANCEL it is then cancelled and waited for, shielded and
 * without a time limit, so it has ended when this returns (its result is
 * dropped; a task that ignores cancellation keeps the caller waiting, as
 * in asyncio). A cancellation of the caller returns -ECANCELED without
 * cancelling the awaited task, even with WEFT_TIMEOUT_CANCEL (asyncio's
 * wait_for would cancel it). Task context.
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
 * Cancellation: a call made with a cancellation pending (or its deadline
 * passed) starts nothing and returns -ECANCELED (-ETIMEDOUT). If the task
 * is cancelled (or its deadline passes) while a request is in flight, the
 * request is cancelled in the kernel (IORING_OP_ASYNC_CANCEL) and the call
 * returns -ECANCELED (-ETIMEDOUT) once the kernel has let go of the
 * buffer. Every buffer, address and msghdr may therefore live on the
 * task's stack. If the request completed first, its result is returned (an
 * accepted descriptor is then the caller's) and the cancellation stays
 * pending for the next suspension point. The kernel cannot interrupt
 * every request (a regular-file read or write it has started): the call
 * then waits for it and returns its result the same way. While a request
 * is in flight its task stays on the worker whose ring issued it. On the
 * epoll reactor a read or accept whose wait is ended so tries once more
 * without waiting and returns what had arrived, the same way.
 *
 * All descriptors are created close-on-exec. Sends never raise SIGPIPE
 * (MSG_NOSIGNAL is always added, and weft_run() sets SIGPIPE to SIG_IGN if
 * it was SIG_DFL, so writes to a closed pipe return -EPIPE).
 */

/* Sockets. weft_socket() is socket(2) with SOCK_CLOEXEC added, a direct
 * system call (it never blocks); returns the descriptor. */
WEFT_API int weft_socket(int domain, int type, int protocol);
/* Accepts a connection (accept4 with SOCK_CLOEXEC added to flags); returns
 * the new descriptor. Worth handling in an accept loop: -ECONNABORTED,
 * -EINTR (retry), -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM (back off). */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen,
			 int flags);
/* Connects; returns 0. Use a deadline scope for a connect timeout (the
 * kernel's own TCP timeout also gives -ETIMEDOUT). */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr,
			  socklen_t addrlen);
/* recv(2) and send(2) (MSG_NOSIGNAL added). recv returns the count, 0 at
 * end of stream; send may write less than len. One call moves at most
 * 0x7ffff000 bytes, as read(2) does: a larger len is capped (never cut to
 * 32 bits). */
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t len, int flags);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t len, int flags);

/*
 * Receiving into the runtime's buffers (a lease), for servers that parse
 * in place: no buffer waits with an idle connection, and nothing is
 * copied out. Each worker has a pool of WEFT_LEASE_COUNT buffers of
 * WEFT_LEASE_SIZE bytes (made at its first weft_recv_lease()); on
 * io_uring they sit in a provided-buffer ring (Linux 5.19+), from which
 * the kernel takes one only when data arrives.
 *
 * weft_recv_lease() is recv(2) into such a buffer (the lease passed in
 * must hold none: it is overwritten): on success (n > 0)
 * lease->data holds the n bytes (lease->len == n, at most
 * WEFT_LEASE_SIZE) until the lease is released; 0 at end of stream and a
 * negative errno on failure leave the lease empty (data NULL, len 0).
 * flags: as weft_recv(); MSG_PEEK and MSG_WAITALL give -EINVAL. When
 * every buffer is out (a program that holds many leases, a burst on many
 * connections), the call still succeeds: it receives into a buffer of
 * its own, released the same way. Cancellation and deadlines as
 * weft_recv(): bytes that came with the cancellation are returned, never
 * dropped.
 *
 * weft_lease_release() gives the buffer back; any thread, also after the
 * runtime ended (the memory lives until the last lease is back). Returns
 * 0, or -EINVAL for a lease that holds nothing: empty, or released
 * already (the lease is emptied by its release; a second release of the
 * same lease, or of a copy made before, is refused, not acted on, as long
 * as the pool lives: once a runtime has ended and its last lease is back,
 * its pool is freed, and releasing a copy then is undefined).
 */
#define WEFT_LEASE_SIZE 4096
#define WEFT_LEASE_COUNT 256

struct weft_lease {
	void *data;
	size_t len;
	uint64_t priv[2]; /* the runtime's */
};

WEFT_API ssize_t weft_recv_lease(int fd, struct weft_lease *lease, int flags);
WEFT_API int weft_lease_release(struct weft_lease *lease);

/*
 * A receive stream on a connected socket: one multishot receive stays
 * armed in the worker's ring (Linux 6.0+), so each message that arrives
 * costs one completion and no new request; what arrives waits, in lease
 * buffers, until weft_stream_recv() takes it. For connection tasks that
 * read more than once.
 *
 * weft_stream_open(): a stream for the calling task on fd (which it does
 * not own: close the stream before the descriptor; the kernel's request
 * holds the socket open until then). The task stays on one worker while
 * it has a stream open (it is pinned there, as WEFT_SPAWN_PINNED does,
 * until its last stream is closed): the completions come there. Its
 * first stream may move it to another worker, another thread: the one
 * with the fewest streams, so that connections spread. A stream still
 * open when its task ends is closed then. 0, or -EPERM (not in a task),
 * -EINVAL (out NULL), -ENOMEM.
 * weft_stream_recv(): the next bytes, as a lease (weft_recv_lease()): n >
 * 0, 0 at end of stream (and after), or a negative errno (the socket's
 * error, once the bytes before it were taken). Only the task that opened
 * the stream may call it (-EPERM otherwise; -EINVAL for a closed stream).
 * Cancellation and deadlines end the wait (-ECANCELED, -ETIMEDOUT) and
 * lose nothing: bytes that come later wait for the next call. When the
 * worker's buffers run out, the stream receives once as weft_recv_lease()
 * does and then goes on as before.
 * weft_stream_close(): stops receiving; bytes received and not taken are
 * dropped. 0, or -EINVAL for a stream closed already. Leases taken from
 * the stream stay valid. On the epoll reactor and before Linux 6.0 a
 * stream is a weft_recv_lease() per call, with the same results.
 */
typedef struct weft_stream weft_stream;

WEFT_API int weft_stream_open(weft_stream **out, int fd);
WEFT_API ssize_t weft_stream_recv(weft_stream *s, struct weft_lease *lease);
WEFT_API int weft_stream_close(weft_stream *s);

/*
 * A listener: accepts on a listening socket ahead of the program, up to a
 * bound. One multishot accept stays armed in the worker's ring (Linux
 * 5.19+), so each new connection costs one completion and no new request;
 * accepted descriptors wait in the listener's queue until
 * weft_listener_accept() takes them. For accept loops.
 *
 * weft_listener_open(): a listener for the calling task on the listening
 * socket fd (which it does not own: close the listener before the
 * descriptor; the kernel's request holds the socket open until then),
 * queueing at most `backlog` accepted connections (0:
 * WEFT_LISTENER_BACKLOG; at most 65536). Once the queue holds that many,
 * the listener stops accepting: later connections wait in the kernel's
 * listen backlog (listen(2)), as they would for a program that does not
 * call accept, and the listener accepts again once the queue is down to
 * half. (Connections the kernel had already accepted when the queue
 * filled, in a burst, are queued beyond the bound, never dropped.) The
 * task is pinned as for a stream (weft_stream_open(), which says where
 * and how long; a listener counts as a stream there), and a listener
 * still open when its task ends is closed then. 0, or -EPERM (not in a task), -EINVAL (out
 * NULL, fd < 0, backlog too large), -ENOMEM.
 * weft_listener_accept(): the next connection, as weft_accept() gives it
 * (the descriptor is the caller's, close-on-exec; flags: SOCK_NONBLOCK,
 * SOCK_CLOEXEC, else -EINVAL). addr may be NULL; if not, *addrlen is its
 * size and becomes the address's length, read with getpeername(2) when the
 * connection is taken: 0 if the peer has reset the connection meanwhile
 * (the descriptor is still returned; its first read says so). Only the
 * task that opened the listener may call it (-EPERM otherwise; -EINVAL for
 * a closed listener). Errors are accept(2)'s, returned once, after the
 * connections queued before them (the next call accepts again): handle
 * them as for weft_accept(). Cancellation and deadlines end the wait
 * (-ECANCELED, -ETIMEDOUT) and lose nothing: a connection accepted later
 * waits for the next call.
 * weft_listener_close(): stops accepting; connections accepted and not
 * taken are closed (their peers see a reset or end of stream). 0, or
 * -EINVAL for a listener closed already, -EPERM from another task. The
 * same happens to the queue of a listener whose task is dropped at
 * shutdown: descriptors never handed to the program are weft's to close.
 * On the epoll reactor and where the kernel refuses multishot accept
 * (before 5.19) a listener is a weft_accept() per call, with the same
 * results; nothing is queued then.
 */
#define WEFT_LISTENER_BACKLOG 64u

typedef struct weft_listener weft_listener;

WEFT_API int weft_listener_open(weft_listener **out, int fd,
				unsigned backlog);
WEFT_API int weft_listener_accept(weft_listener *l, struct sockaddr *addr,
				  socklen_t *addrlen, int flags);
WEFT_API int weft_listener_close(weft_listener *l);

/* Datagram forms, built on weft_recvmsg()/weft_sendmsg(). addr may be
 * NULL; *addrlen is updated on success. */
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
			       struct sockaddr *addr, socklen_t *addrlen);
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *addr, socklen_t addrlen);
/* recvmsg(2) and sendmsg(2) (the send with MSG_NOSIGNAL added). */
WEFT_API ssize_t weft_recvmsg(int fd, struct msghdr *msg, int flags);
WEFT_API ssize_t weft_sendmsg(int fd, const struct msghdr *msg, int flags);
/* shutdown(2); how: SHUT_RD, SHUT_WR, SHUT_RDWR. The way to wake another
 * task's weft_recv() on the socket (it returns 0); a close does not. */
WEFT_API int weft_shutdown(int fd, int how);
/* Closes any descriptor, through the ring; outside a task it is close(2).
 * Always closes, even with a cancellation pending or the deadline passed
 * (cleanup code must not leak descriptors). A request still in flight on
 * fd in another task is not woken by the close (the kernel holds its own
 * reference): use weft_shutdown() for sockets or cancel that task. */
WEFT_API int weft_close(int fd);

/*
 * Socket helpers. addr is a numeric IPv4 or IPv6 address ("127.0.0.1",
 * "::1", "0.0.0.0", "::"); NULL means any IPv4 address. Only
 * weft_tcp_connect() also takes a host name. Creation, options, bind and
 * listen are direct system calls: only the two connect helpers need task
 * context. On failure a helper closes the socket it made.
 *
 * weft_tcp_listen(): socket, SO_REUSEADDR, the WEFT_SO_* options in flags,
 * bind, listen. Returns the listening fd. port 0 picks a free port (see
 * weft_local_port()); a backlog of 0 or less means SOMAXCONN. Errors:
 * -EINVAL (bad address or flags), -EADDRINUSE, -EACCES, -EMFILE, ...
 * weft_tcp_connect(): socket, TCP_NODELAY if WEFT_SO_NODELAY (the only
 * flag accepted: -EINVAL otherwise), connect. Returns the fd. A numeric
 * addr (or NULL) is used as it is; any other is a host name, resolved with
 * weft_getaddrinfo() (AF_UNSPEC, SOCK_STREAM) on the blocking pool, and
 * its addresses are tried in the order the resolver gives until one
 * connects. Returns the resolver's error (WEFT_EAI_NONAME: no such host,
 * WEFT_EAI_AGAIN: no answer, ...: see weft_getaddrinfo(); weft_strerror()
 * gives the resolver's message), or the last address's connect error
 * (-ECONNREFUSED,
 * -ENETUNREACH, -ETIMEDOUT from the kernel's timeout, ...); cancellation
 * or the deadline ends the tries at once (-ECANCELED, -ETIMEDOUT).
 * weft_udp_bind(): a UDP socket bound to addr:port (port 0: any);
 * WEFT_SO_NODELAY is ignored.
 * weft_unix_listen()/weft_unix_connect(): SOCK_STREAM Unix sockets; a path
 * starting with '@' names an abstract socket. A path that exists already
 * gives -EADDRINUSE (remove a stale one first); -ENAMETOOLONG for an empty
 * path or one longer than sun_path holds (107 bytes), -EINVAL for NULL.
 * A backlog of 0 or less means SOMAXCONN.
 */
#define WEFT_SO_REUSEPORT 0x1u /* SO_REUSEPORT before bind */
#define WEFT_SO_NODELAY 0x2u   /* TCP_NODELAY (accepted sockets inherit it) */
#define WEFT_SO_V6ONLY 0x4u    /* IPV6_V6ONLY on an IPv6 socket; without
				  it "::" accepts IPv4 too */
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
/* The local port a socket is bound to, or a negative errno value
 * (-EAFNOSUPPORT for a socket that is not IPv4 or IPv6). */
WEFT_API int weft_local_port(int fd);
/* Sets TCP_NODELAY on (non-zero) or off (0). */
WEFT_API int weft_tcp_nodelay(int fd, int on);

/* Files. openat(2) (weft_open(): relative to the working directory);
 * flags and mode as for openat(2); O_CLOEXEC is always added. Returns the
 * descriptor. Opening a FIFO for writing waits for a reader, as openat(2)
 * does (with O_NONBLOCK: -ENXIO). Known difference: opening a FIFO for
 * reading returns at once even with no writer (io_uring's open tries
 * without blocking first, and that succeeds), so reads then see end of
 * file until a writer opens (on the epoll reactor also with O_CREAT, which
 * io_uring opens blocking). Where that matters, open it O_RDWR (reads
 * then wait for data), or with open(2) through weft_run_blocking(). */
WEFT_API int weft_open(const char *path, int flags, mode_t mode);
WEFT_API int weft_openat(int dirfd, const char *path, int flags, mode_t mode);
/* pread/pwrite at offset, or read/write at (and moving) the file position
 * when offset is -1, which is also what pipes, sockets and terminals need.
 * One call moves at most 0x7ffff000 bytes (as Linux's read and write do);
 * counts may be short. weft_write() does not add MSG_NOSIGNAL (see
 * "SIGPIPE" in docs/io.md). The vectored forms return -EINVAL for a
 * negative iovcnt. */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t len, int64_t offset);
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len,
			    int64_t offset);
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt,
			    int64_t offset);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt,
			     int64_t offset);
/* fsync(2) and fdatasync(2). */
WEFT_API int weft_fsync(int fd);
WEFT_API int weft_fdatasync(int fd);
struct stat;
/* stat(2) of path (relative to the working directory, symbolic links
 * followed), through statx; weft_fstat() of an open descriptor (statx
 * with AT_EMPTY_PATH). -EINVAL for NULL arguments. */
WEFT_API int weft_stat(const char *path, struct stat *st);
WEFT_API int weft_fstat(int fd, struct stat *st);

/*
 * Loops for servers, built on weft_read()/weft_write(): they work on
 * files, pipes and sockets, and stop at the first cancellation or
 * deadline. weft_read_exact() reads exactly len bytes (offset -1: from the
 * current position; otherwise from offset on), retrying short reads;
 * returns len, or the bytes read before end of file (less than len), or
 * the first negative errno value (bytes read before it are in buf but not
 * counted). weft_write_all() writes all len bytes, retrying short writes;
 * returns len or the first negative errno value (bytes already written
 * are then lost to the caller, as with any failed stream); -EIO if a
 * write makes no progress. With offset -1 it sends with MSG_NOSIGNAL
 * (weft_send) when fd is a socket, else it uses weft_write().
 */
WEFT_API ssize_t weft_read_exact(int fd, void *buf, size_t len,
				 int64_t offset);
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len,
				int64_t offset);
/* weft_write_all() for a vector: writes every byte of iov[0..iovcnt-1] in
 * order, retrying short writes (sendmsg with MSG_NOSIGNAL on a socket at
 * offset -1, else writev). Returns the total, or the first negative errno
 * value (bytes written before it are lost to the caller); -EINVAL for a
 * negative iovcnt, iov NULL with iovcnt > 0, or a total above SSIZE_MAX.
 * iov is not modified. Entries of length 0 are allowed. */
WEFT_API ssize_t weft_writev_all(int fd, const struct iovec *iov, int iovcnt,
				 int64_t offset);

/*
 * Buffered reader over a descriptor, for line and HTTP-style protocols.
 * The caller owns the buffer; the reader keeps only offsets into it. Reads
 * go through weft_read(fd, ..., -1), so they honour cancellation and
 * deadlines and work on sockets, pipes and files. Not for concurrent use
 * by two tasks. weft_reader_init() works in any context.
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
 * delimiter is not within the buffer's capacity (cap bytes hold none: a
 * line too long), -EINVAL (delim or out NULL, delim_len 0 or above cap),
 * or weft_read()'s error; on an error nothing buffered is lost.
 */
WEFT_API ssize_t weft_reader_until(struct weft_reader *r, const char *delim,
				   size_t delim_len, char **out);
/* Copies up to len bytes: from the buffer first, else one read. Returns
 * the count, 0 at end of file, or a negative errno. Use it (not
 * weft_read() on the descriptor) for a body after a header: the header's
 * read may have buffered part of it. */
WEFT_API ssize_t weft_reader_read(struct weft_reader *r, void *dst,
				  size_t len);
/* Bytes read from the descriptor but not consumed yet. Any context. */
static inline size_t weft_reader_buffered(const struct weft_reader *r)
{
	return r->end - r->start;
}

/*
 * Buffered writer over a descriptor, the reader's counterpart: small
 * writes gather in a caller-owned buffer and go out together at a flush,
 * or when one no longer fits, in one vectored write with the new bytes
 * (weft_writev_all's rules: sockets get MSG_NOSIGNAL). Writes go to the
 * descriptor's position (offset -1). They honour cancellation and
 * deadlines like any write. Not for concurrent use by two tasks;
 * weft_writer_init() works in any context.
 */
struct weft_writer {
	int fd;
	char *buf;
	size_t cap; /* bytes in buf */
	size_t len; /* bytes buffered, not yet written */
};
WEFT_API void weft_writer_init(struct weft_writer *w, int fd, void *buf,
			       size_t cap);
/*
 * Takes len bytes: into the buffer if they fit in the room left; if not,
 * what is buffered and these bytes are written now. Returns 0 once all of
 * data is buffered or written, or a negative errno value: -EINVAL (w or
 * data NULL with len > 0), or the write's error. After an error the
 * buffer holds exactly what of it was not written yet (a flush may try
 * again: after -ETIMEDOUT, say); none of data was taken, unless the
 * buffer had all gone out and the error came while writing data itself
 * (then, as with weft_write_all(), the bytes of data written are lost to
 * the caller).
 */
WEFT_API int weft_writer_write(struct weft_writer *w, const void *data,
			       size_t len);
/* Writes everything buffered. Returns 0, or a negative errno value; the
 * buffer then holds exactly the bytes not written yet, so a later flush
 * goes on from there. */
WEFT_API int weft_writer_flush(struct weft_writer *w);
/* Bytes buffered and not written yet. Any context. */
static inline size_t weft_writer_buffered(const struct weft_writer *w)
{
	return w->len;
}

/* ---- errors as results ----------------------------------------------------
 * A task's result is a pointer. A task that fails returns an error pointer
 * (the Linux kernel's ERR_PTR idiom: the top 4095 addresses, which no object
 * has): weft_err_ptr(-EIO). Task groups treat such a result as the task's
 * failure (asyncio: the task raised); weft_await(), weft_gather() and
 * weft_join() pass it through like any other result. The helpers are
 * inline and work anywhere.
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
/* The error pointer for err, a negative errno value from -1 to
 * -WEFT_MAX_ERRNO. weft_err_ptr(0) is NULL, which is not an error. */
static inline void *weft_err_ptr(int err)
{
	return WEFT__RCAST(void *, WEFT__SCAST(intptr_t, err));
}
/* 1 if p is an error pointer, else 0 (NULL included). */
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
 * thread; waiters are served first come, first served. A call that can
 * complete at once does, and succeeds, even with a cancellation pending or
 * the deadline passed: only a call that has to wait looks at them (the
 * I/O calls, in contrast, check first). Every wait:
 *   - returns -ECANCELED if the task is cancelled before or while it
 *     waits (a shield holds this off as at any suspension point); nothing
 *     was taken: no value sent or received, no lock or permit held;
 *   - returns -ETIMEDOUT once the task's deadline (weft_timeout_begin)
 *     passes, or the call's own timeout (the *_timeout variants, relative
 *     ns; 0 polls, WEFT_NEVER waits for ever), whichever is earlier;
 *   - if the grant came first, reports the grant, and a cancellation
 *     stays pending for the next suspension point;
 *   - works from a thread outside any runtime too (it then blocks that
 *     thread, honours the call's own timeout, and cannot be cancelled),
 *     except where a call says "task context";
 *   - counts against the task's cooperative budget when it completes
 *     without suspending (a free lock or permit, a set event, a finished
 *     future, a channel ready at once): after 128 such calls in a row the
 *     task yields, so a loop of them cannot starve its worker.
 * Non-waiting calls (try_*, set, fail, clear, release, close, notify, the
 * queries) work from any thread. A NULL object gives -EINVAL from the
 * calls that report errors and 0 from the queries; the void calls ignore
 * it. Objects are created with *_create() (0, -ENOMEM, -EINVAL: out NULL
 * or a bad argument; from any thread) and freed with *_destroy() (NULL is
 * ignored; any thread), which the caller may call only once nothing waits
 * on the object or will use it again. A destroy with tasks still waiting,
 * or a second destroy of the same object, aborts the process with a
 * message naming the call (a misuse that is detected; memory reused by
 * another allocation since cannot always be told apart).
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
 * (asyncio.Queue with maxsize, Go's chan) that buffers up to capacity
 * values (-EINVAL above 2^32). capacity 0 makes a rendezvous channel: a
 * send completes when a receiver takes the value. capacity
 * WEFT_CHAN_UNBOUNDED makes an unbounded channel (asyncio.Queue()): its
 * sends never wait, and it takes memory a chunk of values at a time as it
 * grows, giving it back as it drains (a send that needs memory and cannot
 * get it returns -ENOMEM, sending nothing). NULL is a value like any
 * other; what a value points to is the business of sender and receiver.
 * Destroying drops the values still buffered unlooked-at. */
#define WEFT_CHAN_UNBOUNDED SIZE_MAX
typedef struct weft_chan weft_chan;
WEFT_API int weft_chan_create(weft_chan **out, size_t capacity);
WEFT_API void weft_chan_destroy(weft_chan *c);
/* Sends value: straight to the receiver that has waited longest, else
 * into the buffer, else waits for room. Values come out in the order they
 * went in, those of waiting senders included. Returns 0, -EPIPE if the
 * channel is closed (before or while waiting: the value was not sent),
 * -ECANCELED, -ETIMEDOUT (not sent), -ENOMEM (unbounded only: not sent),
 * -EINVAL. */
WEFT_API int weft_chan_send(weft_chan *c, void *value);
WEFT_API int weft_chan_send_timeout(weft_chan *c, void *value,
				    uint64_t timeout_ns);
/* Receives the oldest value into *value (value may be NULL to drop it),
 * waiting while the channel is empty. Returns 0, -EPIPE once the channel
 * is closed and drained (values sent before the close are received first;
 * *value is then NULL), -ECANCELED, -ETIMEDOUT (nothing received),
 * -EINVAL. */
WEFT_API int weft_chan_recv(weft_chan *c, void **value);
WEFT_API int weft_chan_recv_timeout(weft_chan *c, void **value,
				    uint64_t timeout_ns);
/* Without waiting: -EAGAIN when full (send; rendezvous: no receiver
 * waits) or empty (recv: no value buffered and no sender waiting), -EPIPE
 * when closed (and, for recv, drained). */
WEFT_API int weft_chan_try_send(weft_chan *c, void *value);
WEFT_API int weft_chan_try_recv(weft_chan *c, void **value);
/* Closes: sends fail with -EPIPE from now on, waiting senders are woken
 * with -EPIPE (their values are not sent), receivers drain what is
 * buffered and then get -EPIPE. Returns 0, -EALREADY if it was closed
 * already, -EINVAL. */
WEFT_API int weft_chan_close(weft_chan *c);
/* Values buffered now (a snapshot), and the capacity
 * (WEFT_CHAN_UNBOUNDED for an unbounded channel). */
WEFT_API size_t weft_chan_len(weft_chan *c);
WEFT_API size_t weft_chan_cap(weft_chan *c);
/* Unfinished work (asyncio.Queue's join() and task_done()), on every
 * channel: each send that completes counts one value more as unfinished;
 * weft_chan_task_done() says that one value received has been dealt with.
 * task_done returns 0, -EOVERFLOW if no value is unfinished (called more
 * times than values were sent; nothing changes), -EINVAL. Any thread.
 * join waits until no value is unfinished (at once if none is; a close
 * changes nothing), and returns 0, -ECANCELED, -ETIMEDOUT, -EINVAL. A
 * task_done that brings the count to 0 wakes every joiner; values sent
 * after it do not hold them back. */
WEFT_API int weft_chan_task_done(weft_chan *c);
WEFT_API int weft_chan_join(weft_chan *c);
WEFT_API int weft_chan_join_timeout(weft_chan *c, uint64_t timeout_ns);

/* Value channel: a channel whose values are value_size bytes each
 * (1 to WEFT_CHAN_VALUE_MAX, else -EINVAL), carried by copy, so that small
 * values need no allocation per message. The channel buffers copies;
 * everything above holds for it (capacity, order, close, waits, select),
 * with the value calls below in place of the pointer calls: a pointer
 * call on a value channel, or a value call on a pointer channel, returns
 * -EINVAL and moves nothing. Copies are made under the channel's lock,
 * hence the bound: pass larger values by pointer. */
#define WEFT_CHAN_VALUE_MAX 65536
WEFT_API int weft_chan_create_sized(weft_chan **out, size_t capacity,
				    size_t value_size);
/* Sends a copy of the value_size bytes at src (-EINVAL for src NULL); src
 * may be reused as soon as the call has returned. Returns as
 * weft_chan_send(). */
WEFT_API int weft_chan_send_val(weft_chan *c, const void *src);
WEFT_API int weft_chan_send_val_timeout(weft_chan *c, const void *src,
					uint64_t timeout_ns);
WEFT_API int weft_chan_try_send_val(weft_chan *c, const void *src);
/* Receives the oldest value into the value_size bytes at dst (dst may be
 * NULL to drop it). Returns as weft_chan_recv(); dst is written only when
 * the call returns 0. */
WEFT_API int weft_chan_recv_val(weft_chan *c, void *dst);
WEFT_API int weft_chan_recv_val_timeout(weft_chan *c, void *dst,
					uint64_t timeout_ns);
WEFT_API int weft_chan_try_recv_val(weft_chan *c, void *dst);
/* A value channel's value_size; 0 for a pointer channel (and NULL). */
WEFT_API size_t weft_chan_value_size(weft_chan *c);

/* Select: waits until one of several operations can complete, does that
 * one only, and returns its index (Go's select, with descriptors and tasks
 * as cases too). The kinds of case:
 *   WEFT_SEL_SEND, WEFT_SEL_RECV  a send of value to chan, a receive from
 *       chan into value; result 0, or -EPIPE: a receive from a closed,
 *       drained channel and a send to a closed one are ready and complete
 *       with -EPIPE (a receive's value is then NULL). On a value channel,
 *       value points to the bytes to send (SEND) or to the buffer that
 *       receives them (RECV; NULL drops the value), and is not changed;
 *       the buffer is written only by the chosen case, with result 0. A
 *       NULL chan is ignored.
 *   WEFT_SEL_READABLE, WEFT_SEL_WRITABLE  fd is ready to read (POLLIN) or
 *       to write (POLLOUT), as poll(2) would say; result: the events it
 *       reports (at least one of those asked for, or POLLHUP, POLLERR;
 *       > 0), or a negative errno value: -EBADF for a descriptor that is
 *       not open, or why it cannot be watched (-ENOMEM, -ENOSPC).
 *       Nothing is read or written: do the I/O after (another reader may
 *       take the data first, so a read may still find nothing and wait).
 *       Being poll(2)'s answer, it can wait for ever where poll would: a
 *       full Unix stream socket whose peer shut its reading side down is
 *       never writable (a send would fail with -EPIPE); bound such waits.
 *       Do not close a descriptor a select waits on (cancel the select
 *       first). fd < 0 is ignored, as poll(2) ignores it.
 *   WEFT_SEL_TASK  task has ended; result is its outcome and value its
 *       result, as weft_await() gives them (the handle is not released:
 *       await it, or select on it, again at will). A NULL task is ignored.
 * Any other case with a NULL chan is ignored too, whatever its op: a
 * zeroed case is. Each kind reads only its own fields. When several are
 * ready as the select looks, the first in the array wins; once it waits,
 * the first to become ready does. Only the chosen case's result and value
 * are written. Returns the index, or -ETIMEDOUT (timeout_ns passed, or the
 * deadline; 0 polls), -ECANCELED (no case completed), -EINVAL (cases NULL
 * with n > 0, no case left, a bad op, a SEND on a value channel with value
 * NULL, a task case naming the caller), -ESRCH (a stale task handle),
 * -ENOMEM (more than 8 cases need memory, or the chosen send to an
 * unbounded channel does: nothing was done), -EPERM outside task context:
 * task context only. A descriptor's readiness and a task's end are only
 * looked at: a select that chooses another case takes nothing from them. */
#define WEFT_SEL_SEND 1
#define WEFT_SEL_RECV 2
#define WEFT_SEL_READABLE 3
#define WEFT_SEL_WRITABLE 4
#define WEFT_SEL_TASK 5
struct weft_sel {
	weft_chan *chan; /* SEND, RECV */
	int op;          /* WEFT_SEL_* */
	void *value;     /* SEND: the value to send; RECV, TASK: what came
			    (value channel: where the bytes are, or go) */
	int result;      /* set for the case chosen */
	int fd;          /* READABLE, WRITABLE */
	weft_task *task; /* TASK */
};
WEFT_API int weft_select(struct weft_sel *cases, size_t n,
			 uint64_t timeout_ns);

/* Broadcast channel (Tokio's broadcast): every receiver sees every value
 * sent after it subscribed, in the order sent; values are pointers, as on
 * a channel. It holds the last `capacity` values (1 to 2^32, else
 * -EINVAL), and senders never wait: a receiver that falls more than
 * capacity values behind loses the oldest of them, learns it once
 * (-EOVERFLOW from its next receive) and goes on from the oldest value
 * still held. destroy: only once no receiver is subscribed (else it
 * aborts, like a destroy with waiters). */
typedef struct weft_bcast weft_bcast;
/* A receiver's handle: its own position in the values. For one task or
 * thread at a time. */
typedef struct weft_bcast_rx weft_bcast_rx;
WEFT_API int weft_bcast_create(weft_bcast **out, size_t capacity);
WEFT_API void weft_bcast_destroy(weft_bcast *b);
/* Sends value to every receiver subscribed, without waiting (with no
 * receiver it is kept for none). Returns the number of receivers
 * subscribed (0 or more; INT_MAX at most), -EPIPE once closed (not sent),
 * -EINVAL. Any thread; counts against a task's budget. */
WEFT_API int weft_bcast_send(weft_bcast *b, void *value);
/* Closes: sends fail with -EPIPE from now on; each receiver reads what it
 * has not read yet (lags included), then gets -EPIPE; waiting receivers
 * are woken. Returns 0, -EALREADY if closed already, -EINVAL. */
WEFT_API int weft_bcast_close(weft_bcast *b);
/* A new receiver, which sees the values sent from now on (on a closed
 * broadcast: -EPIPE at once). Returns 0, -ENOMEM, -EINVAL. Any thread.
 * Each one is released with weft_bcast_unsubscribe() (NULL is ignored),
 * only once no call on it is in progress: one waiting aborts, and so does
 * a second unsubscribe. */
WEFT_API int weft_bcast_subscribe(weft_bcast *b, weft_bcast_rx **out);
WEFT_API void weft_bcast_unsubscribe(weft_bcast_rx *rx);
/* Receives the receiver's next value into *value (value may be NULL),
 * waiting while it has read every value sent. Returns 0; -EOVERFLOW
 * (*value NULL) when values it had not read were overwritten: the
 * receiver moved on to the oldest value held, the next call returns it,
 * and weft_bcast_missed() counts the values skipped; -EPIPE (*value NULL)
 * once closed and every value read; -ECANCELED, -ETIMEDOUT (nothing
 * read: the value stays for the next call), -EINVAL. try_recv: -EAGAIN
 * (*value untouched) instead of waiting. */
WEFT_API int weft_bcast_recv(weft_bcast_rx *rx, void **value);
WEFT_API int weft_bcast_recv_timeout(weft_bcast_rx *rx, void **value,
				     uint64_t timeout_ns);
WEFT_API int weft_bcast_try_recv(weft_bcast_rx *rx, void **value);
/* Values this receiver skipped because it lagged, in all (0 for NULL). */
WEFT_API uint64_t weft_bcast_missed(weft_bcast_rx *rx);

/* Future: a one-shot result that one party sets and any number of tasks
 * and threads await (asyncio.Future). */
typedef struct weft_future weft_future;
WEFT_API int weft_future_create(weft_future **out);
WEFT_API void weft_future_destroy(weft_future *f);
/* Sets the value (set_result) or an error (set_exception; err < 0, e.g.
 * -ECANCELED for cancel()) and wakes every awaiter. Returns 0, -EALREADY
 * if the future was already done (nothing changes), -EINVAL (NULL; for
 * weft_future_fail() also err >= 0). */
WEFT_API int weft_future_set(weft_future *f, void *value);
WEFT_API int weft_future_fail(weft_future *f, int err);
/* Waits until done. Returns 0 with the value in *value (value may be
 * NULL), or the error it was failed with (*value NULL); a done future
 * answers at once, as often as asked. Also -ECANCELED, -ETIMEDOUT (the
 * future is not affected), -EINVAL. */
WEFT_API int weft_future_await(weft_future *f, void **value);
WEFT_API int weft_future_await_timeout(weft_future *f, void **value,
				       uint64_t timeout_ns);
/* 1 once set or failed, else 0 (also for NULL). */
WEFT_API int weft_future_done(weft_future *f);

/* Event (asyncio.Event): a flag that tasks wait for; it starts clear.
 * set() sets it and wakes every waiter; clear() clears it (waiters woken
 * already are not affected); is_set() is 1 or 0. */
typedef struct weft_event weft_event;
WEFT_API int weft_event_create(weft_event **out);
WEFT_API void weft_event_destroy(weft_event *e);
WEFT_API void weft_event_set(weft_event *e);
WEFT_API void weft_event_clear(weft_event *e);
WEFT_API int weft_event_is_set(weft_event *e);
/* Returns 0 at once while the event is set, else once weft_event_set()
 * is called; -ECANCELED, -ETIMEDOUT, -EINVAL. */
WEFT_API int weft_event_wait(weft_event *e);
WEFT_API int weft_event_wait_timeout(weft_event *e, uint64_t timeout_ns);

/* Lock (asyncio.Lock): an async mutex; waiting for it suspends the task,
 * not the thread, so it may be held across suspension points. Fair:
 * release() hands the lock to the longest waiter directly, so no newcomer
 * can overtake it. No owner, not recursive: any task or thread may
 * release it (as in asyncio), and a task that acquires a lock it holds
 * waits until someone else releases it. Starts unlocked. */
typedef struct weft_lock weft_lock;
WEFT_API int weft_lock_create(weft_lock **out);
WEFT_API void weft_lock_destroy(weft_lock *l);
/* Returns 0 with the lock held, -ECANCELED, -ETIMEDOUT (not held),
 * -EINVAL. */
WEFT_API int weft_lock_acquire(weft_lock *l);
WEFT_API int weft_lock_acquire_timeout(weft_lock *l, uint64_t timeout_ns);
/* Takes the lock if it is free. Returns 0, -EBUSY (held; tasks wait only
 * while it is held), -EINVAL. */
WEFT_API int weft_lock_try_acquire(weft_lock *l);
/* Releases the lock, or passes it to the longest waiter. Returns 0,
 * -EPERM if the lock is not held, -EINVAL. */
WEFT_API int weft_lock_release(weft_lock *l);
/* 1 if held, else 0. */
WEFT_API int weft_lock_locked(weft_lock *l);

/* Semaphore of `value` permits (asyncio.Semaphore; BoundedSemaphore with
 * WEFT_SEM_BOUNDED, the only flag: a release above the initial value
 * fails with -EOVERFLOW). Fair like the lock: a release gives the permit
 * straight to the longest waiter. create: -EINVAL for unknown flags. */
#define WEFT_SEM_BOUNDED 0x1u
typedef struct weft_sem weft_sem;
WEFT_API int weft_sem_create(weft_sem **out, unsigned value, unsigned flags);
WEFT_API void weft_sem_destroy(weft_sem *s);
/* Takes a permit, waiting while none is free. Returns 0, -ECANCELED,
 * -ETIMEDOUT (no permit taken), -EINVAL. */
WEFT_API int weft_sem_acquire(weft_sem *s);
WEFT_API int weft_sem_acquire_timeout(weft_sem *s, uint64_t timeout_ns);
/* Takes a permit if one is free. Returns 0, -EAGAIN (none free; tasks
 * wait only while none is), -EINVAL. */
WEFT_API int weft_sem_try_acquire(weft_sem *s);
/* Gives a permit back: to the longest waiter if there is one, else to the
 * count. Returns 0, -EOVERFLOW (bounded and back at its initial value, or
 * the count at UINT_MAX), -EINVAL. */
WEFT_API int weft_sem_release(weft_sem *s);
/* Permits free now (0 while tasks wait). */
WEFT_API unsigned weft_sem_value(weft_sem *s);

/* Condition (asyncio.Condition) over a weft_lock the caller holds.
 * wait() releases the lock, waits for a notify, and takes the lock again
 * before it returns, whatever it returns (as asyncio does; that re-acquire
 * is neither cancelled nor timed out). The waiter is queued before the
 * lock is released, so a notify from whoever takes the lock next reaches
 * it. Another task may run between the notify and the wake-up: a woken
 * waiter re-checks its predicate in a loop. */
typedef struct weft_cond weft_cond;
WEFT_API int weft_cond_create(weft_cond **out);
WEFT_API void weft_cond_destroy(weft_cond *c);
/* Returns 0 (notified), -ECANCELED, -ETIMEDOUT; -EPERM if lock is not
 * held (by anyone: locks have no owner), -EINVAL (NULL). */
WEFT_API int weft_cond_wait(weft_cond *c, weft_lock *lock);
WEFT_API int weft_cond_wait_timeout(weft_cond *c, weft_lock *lock,
				    uint64_t timeout_ns);
/* Wakes up to n waiters (notify), longest-waiting first, or all
 * (notify_all). Returns how many were woken (0 for NULL). Change the
 * state the waiters test while holding the lock. */
WEFT_API unsigned weft_cond_notify(weft_cond *c, unsigned n);
WEFT_API unsigned weft_cond_notify_all(weft_cond *c);

/* Task group (asyncio.TaskGroup), also a wait group: a scope that awaits
 * every task spawned in it. When a task of the group fails (returns an
 * error pointer, or cannot start: no stack, -ENOMEM), the group cancels
 * the others and refuses new ones; a task that ends cancelled is not a
 * failure. */
typedef struct weft_group weft_group;
WEFT_API int weft_group_create(weft_group **out);
/* Spawns fn(arg) in the group, as a task named "group task". out (may be
 * NULL) receives a handle with a reference of its own, to release as
 * usual; with out NULL the task is detached, and the group still waits
 * for it. Members may spawn into their own group. Returns 0, -ECANCELED
 * if the group has failed or was cancelled (the task was not started),
 * -EINVAL (g or fn NULL), -ENOMEM, -EPERM (not on a worker). Task context
 * or any worker. */
WEFT_API int weft_group_spawn(weft_group *g, weft_task **out, weft_fn fn,
			      void *arg);
/* weft_group_spawn() with spawn options (opts may be NULL): the task's
 * name (NULL: "group task"), stack size and WEFT_SPAWN_* flags, as for
 * weft_spawn_opts(); with WEFT_SPAWN_DETACHED *out gets NULL. -EINVAL
 * also for an unknown flag, a stack size above 2^40, a non-zero reserved
 * field, or opts->runtime set (a group's tasks are spawned by its
 * runtime's workers). */
WEFT_API int weft_group_spawn_opts(weft_group *g, weft_task **out,
				   weft_fn fn, void *arg,
				   const struct weft_spawn_opts *opts);
/* With the spawn site (see weft_spawn_at). */
WEFT_API int weft_group_spawn_at(weft_group *g, weft_task **out,
				 weft_fn fn, void *arg, const char *site);
WEFT_API int weft_group_spawn_opts_at(weft_group *g, weft_task **out,
				      weft_fn fn, void *arg,
				      const struct weft_spawn_opts *opts,
				      const char *site);
/* Waits until every task of the group has ended, those spawned meanwhile
 * included. Returns 0 if none failed (cancelled members do not count), or
 * the first failure's error (tasks were cancelled because of it). If the
 * calling task is cancelled or its deadline passes while waiting, the
 * group's tasks are cancelled and awaited (shielded, without a time
 * limit), and -ECANCELED (-ETIMEDOUT) is returned. -EINVAL for NULL. From
 * a thread outside the runtime it blocks that thread until the members
 * have ended. */
WEFT_API int weft_group_wait(weft_group *g);
/* Cancels every task of the group and refuses new ones from then on
 * (weft_group_spawn returns -ECANCELED). Not a failure: a later
 * weft_group_wait() returns 0 unless a member failed. */
WEFT_API void weft_group_cancel(weft_group *g);
/* Tasks of the group that have not ended. */
WEFT_API size_t weft_group_size(weft_group *g);
/* Frees the group; first waits as weft_group_wait() does (from a task or
 * a thread outside the runtime) if tasks are left. */
WEFT_API void weft_group_destroy(weft_group *g);

/* Waiting on several tasks. weft_wait_any() (asyncio.wait with
 * FIRST_COMPLETED) returns the index of a task that has ended (if some had
 * ended already, the lowest such index at once), -ETIMEDOUT, -ECANCELED,
 * -EINVAL (n is 0, tasks NULL, a stale or NULL handle). The handles are
 * neither released nor awaited: weft_await() then returns the result at
 * once. A waitset yields the tasks in the order they end
 * (asyncio.as_completed; n may be 0): each weft_waitset_next() returns the
 * index of the next one, waiting while every ended task was returned
 * already, or -ENOENT once all were returned; tasks that had ended when
 * the set was made come first, in index order. A -ECANCELED or -ETIMEDOUT
 * from it loses no index (a later call returns it). One task at a time
 * per set. timeout_ns is relative (0 only checks, WEFT_NEVER waits
 * without limit), and the caller's deadline applies too. They return
 * -EPERM outside task context; wait_any and waitset_create also -ENOMEM,
 * and -EINVAL for the caller's own handle, out NULL or tasks NULL with
 * n > 0 (next: ws NULL). A waitset takes no references: keep the handles
 * until weft_waitset_destroy(). Task context only. */
WEFT_API int weft_wait_any(weft_task *const *tasks, size_t n,
			   uint64_t timeout_ns);
typedef struct weft_waitset weft_waitset;
WEFT_API int weft_waitset_create(weft_waitset **out, weft_task *const *tasks,
				 size_t n);
WEFT_API int weft_waitset_next(weft_waitset *ws, uint64_t timeout_ns);
/* Frees the set; its tasks not yet returned keep running. NULL is
 * ignored. Any thread, once no weft_waitset_next() on it is in progress. */
WEFT_API void weft_waitset_destroy(weft_waitset *ws);

/* Async generator: a producer task that yields values one at a time to a
 * consumer (the tutorial's `async def ... yield`, consumed by `async for`).
 * The body runs as its own task (named "generator") and computes at most
 * one value ahead, since each weft_gen_yield() waits until the consumer
 * asks. */
typedef struct weft_gen weft_gen;
typedef int (*weft_gen_fn)(weft_gen *g, void *arg);
/* Starts body(g, arg). Returns 0, -EINVAL (out or body NULL), -ENOMEM,
 * -EPERM (not on a worker). Task context or any worker. */
WEFT_API int weft_gen_create(weft_gen **out, weft_gen_fn body, void *arg);
/* In the body: hands value to the consumer, waiting until its
 * weft_gen_next() takes it. Returns 0, or -ECANCELED once the consumer
 * destroyed the generator (the body should clean up and return) or the
 * body was cancelled: the value was not delivered; -ETIMEDOUT past the
 * body's deadline scope; -EINVAL. Task context (the body). */
WEFT_API int weft_gen_yield(weft_gen *g, void *value);
/* In the consumer: 1 with the next value in *value (value may be NULL),
 * waiting until the body yields it. Once the body has returned: 0 if it
 * returned 0 or more, its return value if negative; every later call
 * says the same. Also -ECANCELED, -ETIMEDOUT (the consumer's wait ended;
 * the body keeps its value for the next call), -EINVAL. Task context. */
WEFT_API int weft_gen_next(weft_gen *g, void **value);
/* aclose() and free: the body's pending or next weft_gen_yield() returns
 * -ECANCELED and the body task is cancelled (so any other wait of its
 * ends too); then waits for the body to return (shielded, and past any
 * deadline scope of the caller), and frees. Call it whether or not the
 * body has finished. NULL is ignored. From a task, or from a thread
 * outside the runtime (which then blocks); from the body's own task it
 * aborts with a message (the wait could never end). */
WEFT_API void weft_gen_destroy(weft_gen *g);

/* ---- offload and callbacks -------------------------------------------------
 * weft_run_blocking (asyncio.to_thread / run_in_executor): runs fn(arg) on
 * a thread of the runtime's blocking pool and suspends the calling task
 * until it has returned. For code that would stall a worker: blocking
 * system calls, libraries without async interfaces, long computations. The
 * pool starts threads on demand up to weft_config.blocking_threads and lets
 * a thread go after blocking_idle_ms without work; calls beyond the
 * threads wait in a FIFO queue. fn runs on a thread that is not a worker
 * (weft_worker_index() is -1 there, task calls return -EPERM, waits on
 * coordination objects block the thread) and that blocks every signal.
 * Once fn has started nothing stops it, and the call returns only after
 * it, so arg may live on the task's stack. Returns 0 with fn's result in
 * *result (result may be NULL), or:
 *   -ECANCELED, -ETIMEDOUT  the task was cancelled (its deadline passed)
 *               before a pool thread took the call: fn did not run. Once
 *               fn runs it runs to the end and the call returns after it
 *               (arg stays valid for it), reporting fn's result; the
 *               cancellation stays pending for the next suspension point.
 *   -EAGAIN     (or another error of pthread_create(), -ENOMEM) the
 *               pool has no thread and could not start one: fn did not
 *               run. With threads running, the call waits for one of them
 *               instead.
 *   -EINVAL     fn is NULL.
 *   -EPERM      not called from task context.
 * Runtime teardown waits for the calls that are running (fn cannot be
 * interrupted) and joins every pool thread; queued calls never run (they
 * return -ECANCELED).
 */
WEFT_API int weft_run_blocking(weft_fn fn, void *arg, void **result);

/* The resolver's failures that no errno value names, one code each for
 * getaddrinfo()'s EAI_* code of the same name (libuv's UV_EAI_* do the
 * same). weft_strerror() gives gai_strerror(3)'s text for them, e.g. "Name
 * or service not known" for WEFT_EAI_NONAME. Negative and above
 * -WEFT_MAX_ERRNO (weft_err_ptr() takes them), and no errno value of
 * Linux's. */
#define WEFT_EAI_NONAME (-3001)	    /* no such host (or service) */
#define WEFT_EAI_AGAIN (-3002)	    /* temporary failure: no name server
				       answered; try again later */
#define WEFT_EAI_FAIL (-3003)	    /* the name server failed for good */
#define WEFT_EAI_NODATA (-3004)	    /* the host exists but has no address */
#define WEFT_EAI_ADDRFAMILY (-3005) /* ... none in the family asked for */
#define WEFT_EAI_SERVICE (-3006)    /* no such service for the socket
				       type asked for */

/* Host name resolution through the blocking pool (getaddrinfo(3), called
 * with the same arguments; it may read files and wait seconds for a name
 * server). Returns 0 with *res to free with freeaddrinfo(), or
 * WEFT_EAI_NONAME, WEFT_EAI_AGAIN, WEFT_EAI_FAIL, WEFT_EAI_NODATA,
 * WEFT_EAI_ADDRFAMILY, WEFT_EAI_SERVICE (the EAI_* code of that name),
 * -ENOMEM (EAI_MEMORY), -EAFNOSUPPORT (EAI_FAMILY), -EINVAL (EAI_BADFLAGS,
 * EAI_SOCKTYPE; res NULL; host and service both NULL), -EIO (any
 * undocumented code), -ECANCELED, -ETIMEDOUT (as weft_run_blocking: a
 * lookup already started finishes and is returned; nothing to free),
 * -EPERM outside task context, or the errno of a system error
 * (EAI_SYSTEM; -EIO if none). *res is NULL after a failure. Task
 * context. */
struct addrinfo;
WEFT_API int weft_getaddrinfo(const char *host, const char *service,
			      const struct addrinfo *hints,
			      struct addrinfo **res);

/* Callbacks, as tasks (asyncio.loop.call_soon/call_later/call_at), so
 * they may suspend: fn(arg) runs as a new task named "callback", at once,
 * after delay_ns, or at the deadline (a weft_now() value; a past one
 * means at once). out receives a handle with one reference; with out NULL
 * the task is detached. Cancelling the handle before fn started keeps fn
 * from running (TimerHandle.cancel); awaiting it then gives -ECANCELED.
 * Until its time a delayed callback is a sleeping task that holds a
 * stack. Callable from task context or any worker. Returns 0, -ENOMEM,
 * -EPERM (not on a worker), -EINVAL (fn NULL). */
WEFT_API int weft_call_soon(weft_task **out, weft_fn fn, void *arg);
WEFT_API int weft_call_later(weft_task **out, uint64_t delay_ns, weft_fn fn,
			     void *arg);
WEFT_API int weft_call_at(weft_task **out, uint64_t deadline, weft_fn fn,
			  void *arg);
/* call_soon_threadsafe / run_coroutine_threadsafe (with weft_join()):
 * from any thread, runs fn(arg) as a task of rt; from outside rt it goes
 * through rt's shared inject queue. rt comes from weft_runtime_self() or
 * weft_runtime_create() and must not have been destroyed. out as for
 * weft_call_soon(). Returns 0, -ENOMEM, -ESHUTDOWN (rt is shutting down
 * or closed), -EINVAL (rt or fn NULL). */
WEFT_API int weft_call_soon_threadsafe(weft_runtime *rt, weft_task **out,
				       weft_fn fn, void *arg);
/* Blocks the calling thread, which must not be a worker, until task has
 * ended (Future.result() of run_coroutine_threadsafe); stores its result.
 * For the thread that drives a weft_runtime_create() runtime, threads of
 * the application, fn of weft_run_blocking(). No timeout, no
 * cancellation. Does not release the handle, which must stay valid, with
 * its runtime alive, until the call returns. Returns what weft_await()
 * would (0, -ECANCELED, -ENOMEM, -ESRCH, -EINVAL), or -EDEADLK on a
 * worker thread of any runtime (use weft_await() there). */
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
 * Pipe fds are blocking-mode pipes, close-on-exec, owned by the handle;
 * use the weft calls on them, since a plain read(2) would block the
 * worker.
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
	uint64_t reserved[2];    /* for fields to come; must be zero */
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
 *   -EINVAL   out or argv NULL, argv[0] NULL, unknown flags, both
 *             WEFT_PROC_STDERR and WEFT_PROC_STDERR_TO_STDOUT, or a
 *             non-zero reserved field
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
 * -1 for NULL. Any thread. */
WEFT_API pid_t weft_proc_pid(weft_proc *p);
/* The parent's ends of the pipes, or -1 where not piped (and stdin once
 * weft_proc_close_stdin() closed it) or p is NULL. Owned by p: do not
 * close them. Any thread. */
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
 * Waits for the child to exit and reaps it. Stores the return code in
 * *returncode (returncode may be NULL) as asyncio has it: the exit status
 * (0..255), or -N if killed by signal N.
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
 * Sends sig through the child's pidfd (SIGTERM: asyncio's terminate(),
 * SIGKILL: kill(); 0 checks that the child has not been reaped). Any
 * thread. Returns 0 (also when the child has exited but was not reaped
 * yet: the signal does nothing), -ESRCH once the child was reaped,
 * -EINVAL (bad signal, NULL p), -EPERM (as for kill(2)).
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
 * workers run them whether or not a run is in progress), until the
 * runtime is closed. At most one run of a runtime is in progress at a
 * time. Several runtimes may exist and run in one process at once, each
 * with its own workers. weft_stop(), weft_stop_requested() and
 * weft_runtime_is_running() serve the runtime of weft_run() too
 * (weft_runtime_self()); weft_run() closes that one itself.
 */
/* Makes a runtime with config (NULL: defaults), starts its workers and
 * returns; unlike with weft_run(), the caller is not one of them. The
 * process-wide effects of weft_run() apply from here on. The caller owns
 * the handle and gives it back with weft_runtime_destroy(). Returns 0,
 * -EINVAL (out NULL, bad config), -ENOMEM, -EPERM/-ENOSYS (io_uring
 * refused or missing), -EBUSY (WEFT_RUN_STOP_ON_SIGNALS while another
 * runtime has the signals), or an errno from thread or ring creation.
 * Any thread. */
WEFT_API int weft_runtime_create(weft_runtime **out,
				 const struct weft_config *config);
/* Runs main(arg) as rt's main task (the one weft_stop() cancels) and
 * blocks until it has ended (loop.run_until_complete), its result in
 * *result if result is not NULL.
 * Other tasks are not waited for. If a stop is pending (see weft_stop),
 * main never runs: -ECANCELED at once, *result NULL. Returns what
 * weft_await() would for main (-ECANCELED when it was cancelled, by
 * weft_stop() among others), or -EBUSY (a run of rt is in progress),
 * -ESHUTDOWN (closed or closing), -EINVAL (rt or main NULL), -EDEADLK
 * (called on a worker). Any thread that is not a worker. */
WEFT_API int weft_runtime_run(weft_runtime *rt, weft_fn main, void *arg,
			      void **result);
/* Blocks until weft_stop(rt) (loop.run_forever); returns at once if a
 * stop is pending. Returns 0, -EBUSY, -ESHUTDOWN, -EINVAL, -EDEADLK as
 * above. Any thread that is not a worker. */
WEFT_API int weft_runtime_run_forever(weft_runtime *rt);
/*
 * Asks rt (NULL: the caller's runtime) to stop (loop.stop):
 * weft_runtime_run_forever() returns; the main task of weft_run() or
 * weft_runtime_run() is cancelled, so that it can stop accepting, clean
 * up and return, and the run then ends as it always does (weft_run():
 * with the graceful shutdown). With no main task
 * to cancel the stop stays pending until a run consumes it (the
 * run_forever in progress, or else the next run, which ends at once).
 * Returns 0 (on a closed runtime too, doing nothing), -EINVAL (NULL
 * outside a runtime). Any thread; not async-signal-safe (use
 * WEFT_RUN_STOP_ON_SIGNALS).
 */
WEFT_API int weft_stop(weft_runtime *rt);
/* 1 once weft_stop() was called for the caller's runtime, else 0 (also
 * outside a runtime). Stays 1 after the run it stopped has ended, so that
 * tasks still running after weft_runtime_run_forever() returned can tell;
 * back to 0 when a run begins with no stop pending. Any thread. */
WEFT_API int weft_stop_requested(void);
/* Graceful close (loop.close with asyncio.run's clean-up): cancels the
 * tasks left, gives them weft_config.shutdown_grace_ms to end, drops the
 * rest, stops the workers and the blocking pool (after the calls it is
 * running) and releases everything but the handle. From then on runs
 * fail with -ESHUTDOWN, and so do spawns into rt from other threads.
 * Handles of rt's tasks must not be used afterwards. Returns 0 (also when
 * already closed, or once another thread's close has finished), -EBUSY
 * while a run is in progress, -EINVAL (NULL), -EDEADLK from a worker of
 * rt or from a thread of its blocking pool (a weft_run_blocking()
 * function), which the close would wait for; the runtime is left as it
 * was. */
WEFT_API int weft_runtime_close(weft_runtime *rt);
/* 1 while a weft_runtime_run/run_forever of rt (or the weft_run that made
 * it) is in progress, else 0. Any thread. */
WEFT_API int weft_runtime_is_running(weft_runtime *rt);
/* 1 once weft_runtime_close() has closed rt, else 0. Any thread. */
WEFT_API int weft_runtime_is_closed(weft_runtime *rt);
/* Closes if needed (as weft_runtime_close) and frees the handle, which
 * must not be used again. NULL is ignored. During a run, or on a worker
 * or blocking-pool thread of rt, it aborts with a message (API misuse). */
WEFT_API void weft_runtime_destroy(weft_runtime *rt);

/* ---- Debugging: the task registry and dumps (docs/debugging.md) ------ */

/* What a task is doing (weft_task_info.state). */
enum weft_task_state {
	WEFT_TASK_RUNNABLE = 0, /* queued, or woken and not yet run */
	WEFT_TASK_RUNNING = 1,  /* on a worker now (weft_task_info.worker) */
	WEFT_TASK_PARKED = 2    /* waiting (weft_task_info.wait) */
};

/* What a parked task waits on (weft_task_info.wait), and what wait_obj
 * and wait_arg then hold. */
enum weft_wait {
	WEFT_WAIT_NONE = 0,  /* not waiting */
	WEFT_WAIT_SLEEP,     /* weft_sleep*(); arg: the deadline (weft_now) */
	WEFT_WAIT_IO,        /* an io_uring request; arg: opcode << 32 | fd */
	WEFT_WAIT_IO_EPOLL,  /* readiness (epoll); arg: events << 32 | fd */
	WEFT_WAIT_STREAM,    /* weft_stream_recv(); arg: fd */
	WEFT_WAIT_CHAN_SEND, /* obj: the weft_chan */
	WEFT_WAIT_CHAN_RECV, /* obj: the weft_chan */
	WEFT_WAIT_CHAN_JOIN, /* obj: the weft_chan */
	WEFT_WAIT_SELECT,    /* weft_select(); arg: its descriptor cases */
	WEFT_WAIT_LOCK,      /* obj: the weft_lock */
	WEFT_WAIT_SEM,       /* obj: the weft_sem */
	WEFT_WAIT_COND,      /* obj: the weft_cond */
	WEFT_WAIT_EVENT,     /* obj: the weft_event */
	WEFT_WAIT_FUTURE,    /* obj: the weft_future */
	WEFT_WAIT_AWAIT,     /* weft_await/gather; obj: the awaited weft_task */
	WEFT_WAIT_WAITSET,   /* obj: the weft_waitset */
	WEFT_WAIT_GROUP,     /* weft_group_wait(); obj: the weft_group */
	WEFT_WAIT_BLOCKING,  /* weft_run_blocking(); obj: its function */
	WEFT_WAIT_BCAST,     /* obj: the weft_bcast_rx */
	WEFT_WAIT_OTHER      /* a wait with no reason recorded */
};

/* One task, as weft_tasks_foreach() saw it. */
struct weft_task_info {
	weft_task *task;      /* its handle (no reference of its own) */
	uint64_t id;          /* short number, unique among live tasks */
	char name[32];
	const char *site;     /* "file.c:12" of its spawn, or NULL */
	int state;            /* enum weft_task_state */
	int worker;           /* RUNNING: the worker's index; else -1 */
	int wait;             /* PARKED: enum weft_wait; else WEFT_WAIT_NONE */
	int timed;            /* the wait also ends at a deadline */
	const char *wait_name; /* "chan recv", "sleep"...; "" when none */
	const void *wait_obj; /* by wait (AWAIT: the awaited weft_task *) */
	int64_t wait_arg;     /* by wait */
	/* Moments are the worker's coarse clock's (docs/debugging.md):
	 * late by up to about 50 us while the worker serves I/O or timers,
	 * by up to about 4000 switches otherwise. */
	uint64_t wait_ns;     /* PARKED: how long so far */
	uint64_t spawn_ns;    /* weft_now() at the spawn (about 1 ms steps) */
	uint64_t reserved[6];
};

/* Return non-zero to stop the walk (weft_tasks_foreach returns it). */
typedef int (*weft_task_visit_fn)(const struct weft_task_info *info,
				  void *arg);

/*
 * Calls fn once for every live task of rt (NULL: the caller's runtime)
 * with a snapshot of it, while the runtime runs: from a task or from any
 * thread. Each snapshot is of one moment of that task (a block reused
 * while it was read is skipped, not reported half old, half new); tasks
 * spawned or ended during the walk may or may not be seen. fn may call
 * anything but must not wait for the tasks it is told about, nor close
 * rt (a close waits for the walks in progress). Returns 0, fn's non-zero
 * value, -EINVAL (no runtime), -ESHUTDOWN (rt was closed, or its
 * weft_run() is ending), -ENOSYS (built with WEFT_TASK_REGISTRY=OFF).
 */
WEFT_API int weft_tasks_foreach(weft_runtime *rt, weft_task_visit_fn fn,
				void *arg);

/*
 * Prints rt's (NULL: the caller's) workers and tasks to out, grouped by
 * state and wait reason, each task with its name, spawn site, time in
 * its state and, unless it is on a CPU, its backtrace (frame pointers:
 * frames of code built without them may be missing; names through
 * dladdr, so link with -rdynamic to see the program's own functions).
 * Ends with "all tasks are asleep - deadlock?" when that may be
 * (docs/debugging.md). From a task or any thread; allocates and takes
 * stdio's lock, so not from a signal handler (weft_config.dump_signal
 * is for that). Returns 0, -EINVAL (no runtime, out NULL), -ESHUTDOWN
 * (as weft_tasks_foreach), -ENOMEM, -ENOSYS (WEFT_TASK_REGISTRY=OFF).
 */
WEFT_API int weft_dump(weft_runtime *rt, FILE *out);

/* Static text for a weft error code: a negative errno value, or a
 * WEFT_EAI_* code (gai_strerror(3)'s text for its EAI_* code). Never
 * NULL. */
WEFT_API const char *weft_strerror(int err);

/* Library version as "major.minor.patch" (e.g. "0.1.0"). */
WEFT_API const char *weft_version(void);
/* Library version as WEFT_VERSION_NUMBER counts it. */
WEFT_API unsigned weft_version_number(void);

#ifdef __cplusplus
}
#endif

/* The spawn-site macros (see weft_spawn_at). */
#if !defined(WEFT_NO_SPAWN_SITES) && !defined(WEFT_BUILDING)
#define WEFT_SITE_STR2_(l) #l
#define WEFT_SITE_STR_(l) WEFT_SITE_STR2_(l)
#define WEFT_SITE_ __FILE__ ":" WEFT_SITE_STR_(__LINE__)
#define weft_spawn(fn, arg) weft_spawn_at((fn), (arg), WEFT_SITE_)
#define weft_spawn_opts(out, fn, arg, opts) \
	weft_spawn_opts_at((out), (fn), (arg), (opts), WEFT_SITE_)
#define weft_group_spawn(g, out, fn, arg) \
	weft_group_spawn_at((g), (out), (fn), (arg), WEFT_SITE_)
#define weft_group_spawn_opts(g, out, fn, arg, opts) \
	weft_group_spawn_opts_at((g), (out), (fn), (arg), (opts), WEFT_SITE_)
#endif

#endif /* WEFT_H */
