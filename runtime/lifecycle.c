/*
 * Event-loop control (asyncio's loop methods): explicit runtimes that any
 * non-worker thread drives (create, run, run_forever, close, destroy),
 * weft_stop(), the graceful shutdown drain, and SIGINT/SIGTERM handling.
 * runtime.c builds and tears runtimes down; this file decides when.
 *
 * Runs and stops
 *   Everything below is guarded by rt->life_lock unless it is atomic. A run
 *   is weft_run() (one, for the runtime's life), weft_runtime_run() or
 *   weft_runtime_run_forever(); `running` is 1 while one is in progress,
 *   and at most one is. The main task of a run (weft_run's or
 *   weft_runtime_run's) is published in run_task, which weft_stop()
 *   cancels. weft_stop() sets stop_requested (which tasks read without the
 *   lock, acquire, paired with its release store) and, with no main task to
 *   cancel, stop_pending: an unconsumed stop, which makes run_forever
 *   return, and which a run begun later consumes at once (asyncio: a
 *   stop() before run_forever() makes it return after one pass). A run that
 *   begins without a pending stop clears stop_requested; one that ends
 *   leaves it set, so that tasks still running after run_forever() returned
 *   can tell that the loop was stopped (examples/tut_forever.c).
 *   The cancel happens under life_lock, and the runner clears run_task
 *   under it before it releases the handle, so weft_stop() never cancels
 *   through a stale handle. weft_run()'s main task clears run_task itself
 *   when its function has returned (the drain), so that a weft_stop()
 *   racing with its end cannot turn an outcome of 0 into -ECANCELED after
 *   the fact. Main is spawned with life_lock held, so it cannot reach the
 *   drain before run_task is set.
 *
 * Graceful shutdown (the drain)
 *   When weft_run()'s main function returns (task.c calls
 *   weft__lifecycle_drain() in the main task, before it ends and stops the
 *   workers), or when weft_runtime_close() is called, every other live task
 *   is cancelled (weft__task_cancel_all(), task.c) and the runtime keeps
 *   running until none is live or the grace period has passed; tasks still
 *   alive then are dropped when the runtime stops. The sweep is repeated
 *   (after 1 ms, backing off to 16 ms), which also cancels tasks spawned
 *   meanwhile (by cleanup code). The main task drains shielded and with no deadline,
 *   so its own pending cancellation (weft_stop) does not cut its sleeps
 *   short.
 *
 * Spawn gate (threads outside the runtime)
 *   A spawn from a thread that is not one of rt's workers allocates from
 *   rt's pools and pushes on its inject queue, which close() frees. So it
 *   enters a gate: fetch_add(outside) then load(shutdown), both seq_cst;
 *   quiesce() stores shutdown then loads outside until it reads 0, both
 *   seq_cst. Dekker: either the spawner sees shutdown (and backs out with
 *   -ESHUTDOWN) or quiesce sees it counted and waits for its leave, whose
 *   release pairs with quiesce's load, so the queued task is visible before
 *   anything is freed. Spawns from rt's own workers need no gate: they
 *   stop with the workers.
 *
 * Signals (WEFT_RUN_STOP_ON_SIGNALS)
 *   One runtime of the process at a time owns SIGINT and SIGTERM: it claims
 *   them at start (sig_owner under sig_lock; -EBUSY if taken), installs the
 *   handler once its workers run, and restores the previous dispositions
 *   and gives the claim up when it stops. The rest of the signal state is
 *   static, used by the owner's start and stop only; the mutex hand-over
 *   of the claim orders one owner's use before the next one's.
 *   The handler does only async-signal-safe work on static atomics (lock-
 *   free atomics are safe in handlers): the first signal writes to an
 *   eventfd, which a watcher thread of the runtime reads and turns into
 *   weft_stop(rt); a signal that finds sig_stopping already set (a signal
 *   came before, or shutdown has begun) restores SIG_DFL and re-raises, so
 *   the process ends the default way once the handler returns (Python's
 *   second Ctrl-C). A run that begins without a pending stop clears
 *   sig_stopping again.
 *   The handler never dereferences the runtime: it reads the eventfd from
 *   sig_efd. Uninstalling must not close that descriptor under a handler
 *   that is about to write to it: a handler counts itself in sig_active
 *   (seq_cst RMW) before it loads sig_efd (seq_cst); the uninstaller
 *   restores the dispositions, stores sig_efd = -1 (seq_cst), and waits
 *   until it loads sig_active == 0 (seq_cst) before it closes the
 *   descriptor. In the single total order either the handler's increment
 *   comes first (and the uninstaller waits for it) or its load of sig_efd
 *   comes after the store of -1 (and it writes nothing).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "lifecycle.h"
#include "pool.h"
#include "runtime.h"
#include "task.h"
#include "worker.h"

#define WEFT__DEFAULT_GRACE_MS 5000
/* How long the drain waits before it sweeps again while tasks are still
 * live: 1 ms at first, doubling up to 16 ms, so that tasks that end at
 * once are seen at once, and a long drain over many blocks (a sweep reads
 * every control block) does not keep a worker busy. */
#define WEFT__DRAIN_POLL_NS (1 * WEFT_NSEC_PER_MSEC)
#define WEFT__DRAIN_POLL_MAX_NS (16 * WEFT_NSEC_PER_MSEC)

/* The next wait of a drain: at most `poll`, not past `end`; doubles poll. */
static uint64_t drain_wait(uint64_t *poll, uint64_t now, uint64_t end)
{
	uint64_t ns = end - now < *poll ? end - now : *poll;

	if (*poll < WEFT__DRAIN_POLL_MAX_NS)
		*poll *= 2;
	return ns;
}

/* ---- signals ------------------------------------------------------------ */

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft_runtime *sig_owner; /* under sig_lock */
/* Owner's start/stop only (see the file comment). */
static bool sig_installed;
static struct sigaction sig_old_int, sig_old_term;
static pthread_t sig_thread;
static int sig_fd = -1;
/* Read by the handler. */
static atomic_int sig_efd = -1;
static atomic_int sig_active;
static atomic_int sig_stopping;
/* Set (release) before the watcher is woken for the last time; read
 * (acquire) by the watcher after each wake-up. */
static atomic_int sig_quit;

static void on_signal(int sig)
{
	static const struct sigaction dfl = { .sa_handler = SIG_DFL };
	int saved = errno, fd;

	atomic_fetch_add_explicit(&sig_active, 1, memory_order_seq_cst);
	if (atomic_exchange_explicit(&sig_stopping, 1, memory_order_seq_cst)) {
		/* Already stopping: the default action, once we return
		 * (sig is blocked while its handler runs). */
		sigaction(sig, &dfl, NULL);
		raise(sig);
	} else if ((fd = atomic_load_explicit(&sig_efd,
					      memory_order_seq_cst)) >= 0) {
		uint64_t one = 1;
		ssize_t r = write(fd, &one, sizeof(one));
		(void)r; /* cannot fail short of a counter at 2^64-1 */
	}
	atomic_fetch_sub_explicit(&sig_active, 1, memory_order_seq_cst);
	errno = saved;
}

/* The watcher: turns each signal into weft_stop() outside the handler. */
static void *sig_watch(void *arg)
{
	struct weft_runtime *rt = arg;
	uint64_t v;

	for (;;) {
		ssize_t r = read(sig_fd, &v, sizeof(v));

		if (atomic_load_explicit(&sig_quit, memory_order_acquire))
			break;
		if (r == (ssize_t)sizeof(v))
			weft_stop(rt);
	}
	return NULL;
}

/* Marks the owner's runtime as stopping for the handler: the next signal
 * ends the process. */
static void sig_mark_stopping(struct weft_runtime *rt, int v)
{
	if (rt->signals)
		atomic_store_explicit(&sig_stopping, v, memory_order_seq_cst);
}

int weft__lifecycle_signals_start(struct weft_runtime *rt)
{
	struct sigaction sa;
	int err;

	if (!rt->signals)
		return 0;
	sig_fd = eventfd(0, EFD_CLOEXEC);
	if (sig_fd < 0)
		return -errno;
	atomic_store_explicit(&sig_quit, 0, memory_order_relaxed);
	atomic_store_explicit(&sig_stopping, 0, memory_order_relaxed);
	err = -pthread_create(&sig_thread, NULL, sig_watch, rt);
	if (err < 0) {
		close(sig_fd);
		sig_fd = -1;
		return err;
	}
	atomic_store_explicit(&sig_efd, sig_fd, memory_order_seq_cst);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, &sig_old_int);
	sigaction(SIGTERM, &sa, &sig_old_term);
	sig_installed = true;
	return 0;
}

void weft__lifecycle_signals_stop(struct weft_runtime *rt)
{
	if (!rt->signals)
		return;
	if (sig_installed) {
		sigaction(SIGINT, &sig_old_int, NULL);
		sigaction(SIGTERM, &sig_old_term, NULL);
		atomic_store_explicit(&sig_efd, -1, memory_order_seq_cst);
		while (atomic_load_explicit(&sig_active, memory_order_seq_cst))
			sched_yield();
		atomic_store_explicit(&sig_quit, 1, memory_order_release);
		eventfd_write(sig_fd, 1);
		pthread_join(sig_thread, NULL);
		close(sig_fd);
		sig_fd = -1;
		sig_installed = false;
	}
	pthread_mutex_lock(&sig_lock);
	if (sig_owner == rt)
		sig_owner = NULL;
	pthread_mutex_unlock(&sig_lock);
	rt->signals = false;
}

/* ---- set-up ------------------------------------------------------------- */

int weft__lifecycle_init(struct weft_runtime *rt,
			 const struct weft_config *c)
{
	int grace = c ? c->shutdown_grace_ms : 0;

	rt->grace_ms = grace ? grace : WEFT__DEFAULT_GRACE_MS;
	if (c && (c->flags & WEFT_RUN_STOP_ON_SIGNALS)) {
		int err = 0;

		pthread_mutex_lock(&sig_lock);
		if (sig_owner)
			err = -EBUSY;
		else
			sig_owner = rt;
		pthread_mutex_unlock(&sig_lock);
		if (err)
			return err;
		rt->signals = true;
	}
	pthread_mutex_init(&rt->life_lock, NULL);
	pthread_cond_init(&rt->life_cond, NULL);
	return 0;
}

void weft__lifecycle_fini(struct weft_runtime *rt)
{
	/* Gives the claim up if start failed before the signals started. */
	weft__lifecycle_signals_stop(rt);
	pthread_mutex_destroy(&rt->life_lock);
	pthread_cond_destroy(&rt->life_cond);
}

/* ---- the spawn gate ---------------------------------------------------- */

int weft__lifecycle_enter(struct weft_runtime *rt)
{
	/* seq_cst RMW, then seq_cst load: the spawner's half of the Dekker
	 * pair with quiesce() (file comment). */
	atomic_fetch_add_explicit(&rt->outside, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&rt->shutdown, memory_order_seq_cst)) {
		weft__lifecycle_leave(rt);
		return -ESHUTDOWN;
	}
	return 0;
}

void weft__lifecycle_leave(struct weft_runtime *rt)
{
	/* Release: the queued task is visible to quiesce()'s load. */
	atomic_fetch_sub_explicit(&rt->outside, 1, memory_order_release);
}

/* Shutdown has begun: spawns from outside are refused, and a signal now
 * ends the process. */
static void shutdown_begin(struct weft_runtime *rt)
{
	atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
	sig_mark_stopping(rt, 1);
}

void weft__lifecycle_quiesce(struct weft_runtime *rt)
{
	atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
	/* seq_cst (acquire and more): pairs with enter()'s RMW and
	 * leave()'s release. Spawns hold the gate for a few hundred ns. */
	while (atomic_load_explicit(&rt->outside, memory_order_seq_cst))
		sched_yield();
}

/* ---- runs ---------------------------------------------------------------- */

/* A run begins (life_lock held, nothing running). Returns whether a stop
 * requested before it is to end it at once. The relaxed stores reach the
 * run's tasks through the queue push that publishes main (release), and
 * other threads through life_lock; is_running() from elsewhere is a status
 * query with no ordering promised. */
static bool run_begin(struct weft_runtime *rt)
{
	bool stop = rt->stop_pending;

	rt->stop_pending = false;
	if (!stop) {
		atomic_store_explicit(&rt->stop_requested, 0,
				      memory_order_relaxed);
		sig_mark_stopping(rt, 0);
	}
	atomic_store_explicit(&rt->running, 1, memory_order_relaxed);
	return stop;
}

/* A run ends (life_lock held): a stop that came during it was for it. */
static void run_end(struct weft_runtime *rt)
{
	rt->run_task = NULL;
	rt->stop_pending = false;
	atomic_store_explicit(&rt->running, 0, memory_order_relaxed);
	pthread_cond_broadcast(&rt->life_cond);
}

int weft__lifecycle_start_main(struct weft_runtime *rt, weft_fn fn,
			       void *arg, struct weft__tcb **out)
{
	bool stop;
	int err;

	/* The run begins before main is queued: main may run at once on
	 * another worker, and must find `running` set. */
	pthread_mutex_lock(&rt->life_lock);
	stop = run_begin(rt);
	err = weft__task_spawn_main(rt, fn, arg, out);
	if (!err) {
		rt->run_task = weft__task_handle(*out);
		/* A stop before the run (a signal during start-up): main
		 * must still run, to end the runtime. */
		if (stop)
			weft_cancel(rt->run_task);
	} else {
		run_end(rt);
	}
	pthread_mutex_unlock(&rt->life_lock);
	return err;
}

void weft__lifecycle_drain(struct weft__tcb *self)
{
	struct weft_runtime *rt = self->rt;
	uint64_t end, now, saved, poll = WEFT__DRAIN_POLL_NS;

	pthread_mutex_lock(&rt->life_lock);
	rt->run_task = NULL;
	pthread_mutex_unlock(&rt->life_lock);
	shutdown_begin(rt);
	if (rt->grace_ms < 0)
		return;
	saved = self->deadline;
	self->deadline = WEFT_NEVER;
	self->shield++;
	end = weft_now() + (uint64_t)rt->grace_ms * WEFT_NSEC_PER_MSEC;
	while (weft__task_cancel_all(rt, self) && (now = weft_now()) < end)
		weft_sleep(drain_wait(&poll, now, end));
	self->shield--;
	self->deadline = saved;
}

/* weft_runtime_close()'s drain, from a thread outside the runtime. */
static void drain_outside(struct weft_runtime *rt)
{
	uint64_t end, now, poll = WEFT__DRAIN_POLL_NS;

	if (rt->grace_ms < 0)
		return;
	end = weft_now() + (uint64_t)rt->grace_ms * WEFT_NSEC_PER_MSEC;
	while (weft__task_cancel_all(rt, NULL) && (now = weft_now()) < end) {
		struct timespec ts = { 0, (long)drain_wait(&poll, now, end) };

		nanosleep(&ts, NULL);
	}
}

/* ---- the public calls ---------------------------------------------------- */


int weft_runtime_create(weft_runtime **out, const struct weft_config *config)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return weft__runtime_start(out, config, false);
}

/* Checks shared by the runs (life_lock held). */
static int run_check(struct weft_runtime *rt)
{
	if (rt->closing || atomic_load_explicit(&rt->closed,
						memory_order_relaxed))
		return -ESHUTDOWN;
	if (atomic_load_explicit(&rt->running, memory_order_relaxed))
		return -EBUSY;
	return 0;
}

int weft_runtime_run(weft_runtime *rt, weft_fn main, void *arg,
		     void **result)
{
	struct weft_spawn_opts o = { .name = "main", .runtime = rt };
	weft_task *h = NULL;
	int err;

	if (!rt || !main)
		return -EINVAL;
	if (weft__worker_self())
		return -EDEADLK;
	pthread_mutex_lock(&rt->life_lock);
	err = run_check(rt);
	/* Begun before main is queued (see start_main). */
	if (!err && run_begin(rt)) {
		/* A stop came before the run: main would be cancelled
		 * before it started, which means it never runs. */
		run_end(rt);
		if (result)
			*result = NULL;
		err = -ECANCELED;
	} else if (!err) {
		err = weft_spawn_opts(&h, main, arg, &o);
		if (!err)
			rt->run_task = h;
		else
			run_end(rt);
	}
	pthread_mutex_unlock(&rt->life_lock);
	if (err)
		return err;
	err = weft_join(h, result);
	pthread_mutex_lock(&rt->life_lock);
	run_end(rt);
	pthread_mutex_unlock(&rt->life_lock);
	weft_task_release(h);
	/* A ring failed for good: the runtime stopped under main, which
	 * was dropped (weft__lifecycle_fatal); report why. */
	if (atomic_load_explicit(&rt->fatal, memory_order_relaxed))
		err = atomic_load_explicit(&rt->fatal, memory_order_relaxed);
	return err;
}

void weft__lifecycle_fatal(struct weft_runtime *rt)
{
	/* No worker runs: what waits for a task waits for ever unless
	 * the task is dropped now (it would be at the close anyway). */
	weft__task_drop_all(rt);
	pthread_mutex_lock(&rt->life_lock);
	rt->stop_pending = true;
	pthread_cond_broadcast(&rt->life_cond);
	pthread_mutex_unlock(&rt->life_lock);
}

int weft_runtime_run_forever(weft_runtime *rt)
{
	int err;

	if (!rt)
		return -EINVAL;
	if (weft__worker_self())
		return -EDEADLK;
	pthread_mutex_lock(&rt->life_lock);
	err = run_check(rt);
	if (!err) {
		bool stop = run_begin(rt);

		while (!stop && !rt->stop_pending)
			pthread_cond_wait(&rt->life_cond, &rt->life_lock);
		run_end(rt);
	}
	pthread_mutex_unlock(&rt->life_lock);
	return err;
}

int weft_stop(weft_runtime *rt)
{
	if (!rt)
		rt = weft_runtime_self();
	if (!rt)
		return -EINVAL;
	pthread_mutex_lock(&rt->life_lock);
	/* Release: pairs with weft_stop_requested()'s acquire. */
	atomic_store_explicit(&rt->stop_requested, 1, memory_order_release);
	if (rt->run_task)
		weft_cancel(rt->run_task); /* -EALREADY: it is ending */
	else
		rt->stop_pending = true;
	pthread_cond_broadcast(&rt->life_cond);
	pthread_mutex_unlock(&rt->life_lock);
	return 0;
}

int weft_stop_requested(void)
{
	struct weft_runtime *rt = weft_runtime_self();

	return rt ? atomic_load_explicit(&rt->stop_requested,
					 memory_order_acquire) != 0
		  : 0;
}

int weft_runtime_close(weft_runtime *rt)
{
	struct weft__worker *w = weft__worker_self();

	if (!rt)
		return -EINVAL;
	/* A worker of rt would wait for its own join; a thread of rt's
	 * blocking pool (fn of weft_run_blocking) for weft__pool_fini() to
	 * see the pool empty, which it is one of (issue 15). Both are
	 * refused before anything changes, so a later close from elsewhere
	 * still works. */
	if ((w && w->rt == rt) || weft__pool_owner() == rt)
		return -EDEADLK;
	pthread_mutex_lock(&rt->life_lock);
	if (atomic_load_explicit(&rt->closed, memory_order_relaxed)) {
		pthread_mutex_unlock(&rt->life_lock);
		return 0;
	}
	if (atomic_load_explicit(&rt->running, memory_order_relaxed)) {
		pthread_mutex_unlock(&rt->life_lock);
		return -EBUSY;
	}
	if (rt->closing) {
		/* Another thread closes it: done when that one is. */
		while (!atomic_load_explicit(&rt->closed, memory_order_relaxed))
			pthread_cond_wait(&rt->life_cond, &rt->life_lock);
		pthread_mutex_unlock(&rt->life_lock);
		return 0;
	}
	rt->closing = true;
	pthread_mutex_unlock(&rt->life_lock);

	shutdown_begin(rt);
	drain_outside(rt);
	weft__runtime_stop(rt);
	weft__runtime_release(rt);

	pthread_mutex_lock(&rt->life_lock);
	atomic_store_explicit(&rt->closed, 1, memory_order_relaxed);
	pthread_cond_broadcast(&rt->life_cond);
	pthread_mutex_unlock(&rt->life_lock);
	return 0;
}

int weft_runtime_is_running(weft_runtime *rt)
{
	return rt && atomic_load_explicit(&rt->running, memory_order_relaxed);
}

int weft_runtime_is_closed(weft_runtime *rt)
{
	return rt && atomic_load_explicit(&rt->closed, memory_order_relaxed);
}

void weft_runtime_destroy(weft_runtime *rt)
{
	int err;

	if (!rt)
		return;
	err = weft_runtime_close(rt);
	weft__check(err == 0, "weft_runtime_destroy() while the runtime runs, "
			      "or from one of its own workers or "
			      "blocking-pool threads");
	weft__runtime_free(rt);
}
