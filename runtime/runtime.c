/*
 * Building and tearing down a runtime, and weft_run().
 *
 * Two ways in. weft_run() turns the calling thread into worker 0, starts
 * the other workers, runs the main task and tears everything down before
 * it returns. weft_runtime_create() (lifecycle.c) starts every worker as a
 * thread of its own and returns; the caller and any other thread that is
 * not a worker then drive the runtime. Both go through the same pieces:
 * weft__runtime_start(), weft__runtime_stop(), weft__runtime_release() and
 * weft__runtime_free().
 *
 * Start-up: each worker creates its own ring on its own thread (the ring's
 * SINGLE_ISSUER owner) and reports success or failure through the boot
 * rendezvous; start waits for all reports before it lets any worker into
 * its loop, so a kernel that refuses io_uring gives an error code, not a
 * half-started runtime.
 *
 * Shutdown: when weft_run()'s main task returns, it first cancels the
 * other tasks and gives them the grace period to end (the drain,
 * lifecycle.c); then (task.c) it sets rt->stopping and wakes every worker.
 * Each leaves its loop at its next scheduling point; worker 0 joins the
 * others, then frees what is left: task stacks (the arena), control blocks
 * (including those of tasks still parked, which are simply dropped), rings
 * and eventfds. Nothing of the runtime survives the return.
 * weft_runtime_close() does the same from outside: drain, then stop.
 */
#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base.h"
#include "debug.h"
#include "epoll.h"
#include "idle.h"
#include "lifecycle.h"
#include "mem.h"
#include "pool.h"
#include "ring.h"
#include "runtime.h"
#include "stack.h"
#include "stall.h"
#include "task.h"
#include "timer.h"
#include "worker.h"

/*
 * weft's gdb extension (tools/gdb/weft-gdb.py: info weft-tasks, weft-bt)
 * travels inside the library, in the .debug_gdb_scripts section, which gdb
 * reads as "run this Python" (kind 4: a name line, then the script) when it
 * loads an object that has it and `auto-load safe-path` allows its
 * directory. Here, in the object weft_run() lives in, so a static link
 * keeps it too. The section is not loaded at run time; strip --strip-debug
 * moves it with the debug information. CMake passes the script's path.
 */
#ifdef WEFT_GDB_SCRIPT
#if defined(__aarch64__)
#define GDB_PROGBITS "%progbits"
#else
#define GDB_PROGBITS "@progbits"
#endif
__asm__(".pushsection \".debug_gdb_scripts\", \"MS\", " GDB_PROGBITS ", 1\n"
	".byte 4\n"
	".ascii \"weft-gdb.py\\n\"\n"
	".incbin \"" WEFT_GDB_SCRIPT "\"\n"
	".byte 0\n"
	".popsection\n");
#endif

#define WEFT__DEFAULT_STACK (256u * 1024u)
#define WEFT__DEFAULT_CACHE 64u
#define WEFT__MAX_WORKERS 1024u

/* Start-up rendezvous. Lives as long as the runtime: a worker thread may
 * still be leaving pthread_cond_wait() when start returns. */
struct weft__boot {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned reported;
	int err;
	bool go;
};

struct worker_arg {
	struct weft__worker *w;
	struct weft__boot *boot;

};

static void worker_san_init(struct weft__worker *w)
{
#ifdef WEFT__TSAN
	w->tsan_sched_fiber = __tsan_get_current_fiber();
#endif
#ifdef WEFT__ASAN
	pthread_attr_t a;
	void *lo;
	size_t sz;
	if (pthread_getattr_np(pthread_self(), &a) == 0) {
		pthread_attr_getstack(&a, &lo, &sz);
		pthread_attr_destroy(&a);
		w->asan_sched_lo = lo;
		w->asan_sched_size = sz;
	}
#endif
	(void)w;
}

/* Per-thread part of start-up: ring, signal stack, sanitizer context. */
static int worker_start(struct weft__worker *w)
{
	int err = weft__ring_init(w);

	if (err < 0)
		return err;
	/* The kernel's default 50 us timer slack would be added to every
	 * timed ring wait; timers are to fire within tens of microseconds
	 * (timer.c). Worker 0's old value is put back by weft_run(). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	err = weft__stack_signal_init(w);
	if (err < 0) {
		weft__ring_fini(w);
		return err;
	}
	worker_san_init(w);
	weft__metrics_worker_init(w);
	weft__stall_thread_init(w);
	weft__worker_set_self(w);
	return 0;
}

/* Per-thread part of shutdown. The ring stays open: another worker may
 * still send this one a wake-up until all have stopped, so rings are
 * closed by weft__runtime_release() after the joins (closing a ring from
 * another thread is allowed; only submitting is tied to the issuer). */
static void worker_stop(struct weft__worker *w)
{
	/* Requests still in flight point into task stacks: cancelled and
	 * reaped here, on the ring's own thread (ring.c). */
	weft__ring_quiesce(w);
	weft__worker_set_self(NULL);
	weft__stall_thread_fini(w);
	weft__stack_signal_fini(w);
}

/* Returns whether a ring still had requests in flight (its worker's
 * weft__ring_quiesce() gave up waiting): the kernel may then still write
 * into task stacks. */
static bool rings_close(struct weft_runtime *rt)
{
	bool left = false;
	unsigned i;

	for (i = 0; rt->workers && i < rt->nworkers; i++)
		if (rt->workers[i] && weft__ring_ready(&rt->workers[i]->ring)) {
			left |= weft__ring_inflight(&rt->workers[i]->ring) != 0;
			weft__ring_fini(rt->workers[i]);
		}
	return left;
}

void *weft__runtime_thread(void *arg)
{
	struct worker_arg *wa = arg;
	struct weft__worker *w = wa->w;
	struct weft__boot *b = wa->boot;
	int err = worker_start(w);
	bool go;

	pthread_mutex_lock(&b->lock);
	if (err < 0 && !b->err)
		b->err = err;
	b->reported++;
	pthread_cond_broadcast(&b->cond);
	while (!b->go && !b->err)
		pthread_cond_wait(&b->cond, &b->lock);
	go = b->go && !b->err;
	pthread_mutex_unlock(&b->lock);
	weft__mem_free(wa);
	if (err < 0)
		return NULL;
	if (go)
		weft__worker_loop(w);
	worker_stop(w);
	/* acq_rel: the last one out sees every other worker's stop. */
	if (go &&
	    atomic_fetch_add_explicit(&w->rt->exited, 1,
				      memory_order_acq_rel) + 1 ==
		    w->rt->nworkers &&
	    atomic_load_explicit(&w->rt->fatal, memory_order_relaxed))
		weft__lifecycle_fatal(w->rt);
	return NULL;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1u : (unsigned)n;
}

static int config_check(const struct weft_config *c)
{
	if (!c)
		return 0;
	if (c->reserved_stall)
		return -EINVAL;
	if (c->reactor < WEFT_REACTOR_AUTO || c->reactor > WEFT_REACTOR_EPOLL)
		return -EINVAL;
	if (c->wake_mode < WEFT_WAKE_DEFAULT ||
	    c->wake_mode > WEFT_WAKE_MSG_RING)
		return -EINVAL;
	if (c->workers > WEFT__MAX_WORKERS)
		return -EINVAL;
	if (c->stack_size > ((size_t)1 << 40))
		return -EINVAL;
	if (c->flags & ~(WEFT_RUN_STOP_ON_SIGNALS | WEFT_RUN_QUIET |
			 WEFT_RUN_ABORT_ON_DEADLOCK))
		return -EINVAL;
	if (weft__debug_signal_check(c) < 0)
		return -EINVAL;
	return 0;
}

/* Process-wide setting the runtime needs: SIGPIPE ignored unless the
 * program chose a disposition (so writes to a closed pipe return -EPIPE
 * instead of killing it; sockets use MSG_NOSIGNAL anyway). */
static void sigpipe_ignore(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
	    !(sa.sa_flags & SA_SIGINFO)) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

/*
 * Which reactor the runtime runs on (issue 11): what the configuration
 * asks for; if it leaves it to weft, what WEFT_REACTOR says; if that says
 * nothing either, io_uring when the probe finds it working (ring.c,
 * weft__ring_probe()), else epoll, with a notice on stderr: once per
 * process, unless WEFT_RUN_QUIET. A forced io_uring is not probed: where
 * it is refused, the workers' set-up fails and weft_run() returns why.
 */
static atomic_bool reactor_noticed;

static void reactor_notice(const char *fmt, const char *what)
{
	if (atomic_exchange_explicit(&reactor_noticed, true,
				     memory_order_relaxed))
		return;
	fprintf(stderr, fmt, what);
}

static int reactor_choose(const struct weft_config *c)
{
	int r = c ? c->reactor : WEFT_REACTOR_AUTO;
	bool quiet = c && (c->flags & WEFT_RUN_QUIET);
	const char *e;
	int err;

	if (r != WEFT_REACTOR_AUTO)
		return r;
	e = getenv("WEFT_REACTOR");
	if (e && (!strcmp(e, "uring") || !strcmp(e, "io_uring")))
		return WEFT_REACTOR_URING;
	if (e && !strcmp(e, "epoll"))
		return WEFT_REACTOR_EPOLL;
	if (e && *e && strcmp(e, "auto") && !quiet)
		reactor_notice("weft: WEFT_REACTOR=%s is not uring, epoll or "
			       "auto; choosing as for auto\n", e);
	/* WEFT_REACTOR=auto: the choice is left to weft knowingly. */
	quiet |= e && !strcmp(e, "auto");
	err = weft__ring_probe();
	if (err == 0)
		return WEFT_REACTOR_URING;
	if (!quiet)
		reactor_notice("weft: io_uring is not available here (%s); "
			       "running on epoll (WEFT_REACTOR=epoll or auto "
			       "chooses it quietly)\n",
			       strerror(-err));
	return WEFT_REACTOR_EPOLL;
}

int weft_runtime_reactor(const weft_runtime *rt)
{
	if (!rt)
		rt = weft_runtime_self();
	return rt ? rt->reactor : -EPERM;
}

/* The index of the first worker that runs on a thread of its own. */
static unsigned first_thread(const struct weft_runtime *rt)
{
	return rt->caller_is_worker ? 1u : 0u;
}

/* Starts workers first_thread()..nworkers-1 and waits until each has
 * reported; lets them into their loops if all started. On failure every
 * thread started is joined again. */
static int threads_start(struct weft_runtime *rt)
{
	struct weft__boot *b = rt->boot;
	unsigned i, first = first_thread(rt), started = 0;
	int err = 0;

	for (i = first; i < rt->nworkers; i++) {
		struct worker_arg *wa = weft__mem_alloc(sizeof(*wa));
		if (!wa) {
			err = -ENOMEM;
			break;
		}
		wa->w = rt->workers[i];
		wa->boot = b;
		err = -pthread_create(&rt->workers[i]->thread, NULL,
				      weft__runtime_thread, wa);
		if (err < 0) {
			weft__mem_free(wa);
			break;
		}
		started++;
	}
	pthread_mutex_lock(&b->lock);
	while (b->reported < started)
		pthread_cond_wait(&b->cond, &b->lock);
	if (!err)
		err = b->err;
	if (err)
		b->err = err;
	else
		b->go = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	if (err)
		for (i = first; i < first + started; i++)
			pthread_join(rt->workers[i]->thread, NULL);
	return err;
}

int weft__runtime_start(struct weft_runtime **out,
			const struct weft_config *config,
			bool caller_is_worker)
{
	struct weft_runtime *rt;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned i;
	int err;

	if ((err = config_check(config)) < 0)
		return err;
	if (caller_is_worker && weft__worker_self())
		return -EBUSY;

	rt = weft__mem_calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	/* First: it claims the signals, which a second runtime may not. */
	err = weft__lifecycle_init(rt, config);
	if (err < 0) {
		weft__mem_free(rt);
		return err;
	}
	rt->caller_is_worker = caller_is_worker;
	rt->metrics_start = weft_now();
	rt->stall_ms = weft__stall_ms(config);
	rt->nworkers = (config && config->workers) ? config->workers
						    : online_cpus();
	rt->stack_size = (config && config->stack_size) ? config->stack_size
							: WEFT__DEFAULT_STACK;
	rt->stack_size = (rt->stack_size + ps - 1) & ~(ps - 1);
	rt->stack_cache = (config && config->stack_cache)
				  ? config->stack_cache
				  : WEFT__DEFAULT_CACHE;
	if (rt->stack_cache == WEFT_STACK_CACHE_NONE)
		rt->stack_cache = 0;
	rt->reactor = reactor_choose(config);
	rt->wake_mode = config ? config->wake_mode : WEFT_WAKE_DEFAULT;
	/* MSG_RING measured faster (bench/wake_latency); see ring.c. */
	if (rt->wake_mode == WEFT_WAKE_DEFAULT)
		rt->wake_mode = WEFT_WAKE_MSG_RING;
	weft__stack_init(rt);
	weft__idle_init(rt);
	weft__timer_init(rt);
	weft__pool_init(rt, config);

	err = -ENOMEM;
	rt->workers = weft__mem_calloc(rt->nworkers, sizeof(*rt->workers));
	rt->boot = weft__mem_calloc(1, sizeof(*rt->boot));
	if (!rt->workers || !rt->boot)
		goto fail;
	pthread_mutex_init(&rt->boot->lock, NULL);
	pthread_cond_init(&rt->boot->cond, NULL);
	const char *dm = getenv("WEFT_DEBUG_MIGRATE");
	bool debug_migrate = dm && dm[0] == '1';

	for (i = 0; i < rt->nworkers; i++) {
		/* At a page boundary: the worker's hot fields (its first
		 * 2.5 KiB) then never share their address bits 0-11 with the
		 * top of a task stack (page aligned), where every switch
		 * stores. Where the allocator happened to put them the other
		 * way, the load of remote_n in each pick waited on the
		 * switch's stores (4K aliasing): yield_many 4% slower when
		 * the runtime's struct shrank by the old wheel's 3 KiB. */
		struct weft__worker *w =
			weft__mem_aligned(4096, sizeof(*w));
		if (!w)
			goto fail;
		memset(w, 0, sizeof(*w));
		w->rt = rt;
		w->index = i;
		w->rng = 0x9e3779b9u * (i + 1);
		w->dbg_now = weft_now();
		/* The periodic pick starts at every pick and lengthens as
		 * fast picks are measured (worker.c, pick_periodic). */
		w->inject_countdown = 1;
		w->periodic_every = 1;
		w->debug_migrate = debug_migrate;
		w->ring.wake_fd = -1;
		w->ring.epfd = -1;
		w->ring.tfd = -1;
		w->ring.epoll = rt->reactor == WEFT_REACTOR_EPOLL;
		weft__timer_wheel_init(&w->wheel);
		rt->workers[i] = w;
	}

	sigpipe_ignore();
	if (caller_is_worker) {
		/* Worker 0 is this thread. */
		err = worker_start(rt->workers[0]);
		if (err < 0)
			goto fail;
	}
	err = threads_start(rt);
	if (err < 0) {
		if (caller_is_worker)
			worker_stop(rt->workers[0]);
		goto fail;
	}
	if (rt->reactor == WEFT_REACTOR_EPOLL) {
		weft__epoll_runtime_add(rt);
		rt->ep_listed = true;
	}
	err = weft__lifecycle_signals_start(rt);
	if (!err)
		err = weft__stall_start(rt, config);
	if (!err)
		err = weft__debug_start(rt, config);
	if (err < 0) {
		weft__runtime_stop(rt);
		goto fail;
	}
	*out = rt;
	return 0;

fail:
	weft__runtime_release(rt);
	weft__runtime_free(rt);
	return err;
}

/*
 * Stops the runtime: no more spawns from outside (and those in flight are
 * waited for), the signals go back to their owners, every worker leaves
 * its loop and is joined. Worker 0 of weft_run() is the calling thread,
 * whose loop has returned already. Control blocks stay readable.
 */
void weft__runtime_stop(struct weft_runtime *rt)
{
	unsigned i;

	/* The watchdog first: it reads the workers and signals them. */
	weft__stall_stop(rt);
	weft__debug_stop(rt);
	weft__lifecycle_signals_stop(rt);
	weft__lifecycle_quiesce(rt);
	/* seq_cst: pairs with the seq_cst loads of ring.in_wait's sleepers
	 * (ring.c); the wake-ups below reach those already asleep. */
	atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
	weft__idle_wake_all(rt);
	for (i = first_thread(rt); i < rt->nworkers; i++)
		pthread_join(rt->workers[i]->thread, NULL);
	if (rt->caller_is_worker)
		worker_stop(rt->workers[0]);
}

/* Frees everything of a stopped (or never started) runtime but the
 * handle. The blocking pool goes first: before the rings close (a
 * finishing call wakes its task, which may wake a worker) and before the
 * task stacks its jobs live on (pool.c). */
void weft__runtime_release(struct weft_runtime *rt)
{
	bool io_left;
	unsigned i;

	/* No weft_dump() of another thread reads what goes below. */
	weft__debug_release(rt);
	/* Dropped tasks end first: a blocking-pool call (or any thread)
	 * waiting for one in weft_join(), a waitset or a group returns, so
	 * the pool's shutdown below does not wait for it for ever. Nothing
	 * is freed here, and no worker runs. */
	weft__task_drop_all(rt);
	weft__pool_fini(rt); /* no-op if done already or never set up */
	if (rt->ep_listed) {
		weft__epoll_runtime_remove(rt);
		rt->ep_listed = false;
	}
	io_left = rings_close(rt);
	weft__task_pool_fini(rt);
	/* A request the kernel did not give back in time: leak the stacks
	 * rather than let it write into freed memory. */
	if (!io_left)
		weft__stack_fini(rt);
	if (rt->workers) {
		for (i = 0; i < rt->nworkers; i++)
			weft__mem_free(rt->workers[i]);
		weft__mem_free(rt->workers);
		rt->workers = NULL;
	}
	if (rt->boot) {
		pthread_mutex_destroy(&rt->boot->lock);
		pthread_cond_destroy(&rt->boot->cond);
		weft__mem_free(rt->boot);
		rt->boot = NULL;
	}
}

void weft__runtime_free(struct weft_runtime *rt)
{
	weft__lifecycle_fini(rt);
	weft__mem_free(rt);
}

static int run(weft_fn main_fn, void *arg, const struct weft_config *config,
	       void **result)
{
	struct weft_runtime *rt;
	struct weft__tcb *mt;
	int err;

	if (!main_fn)
		return -EINVAL;
	err = weft__runtime_start(&rt, config, true);
	if (err < 0)
		return err;
	err = weft__lifecycle_start_main(rt, main_fn, arg, &mt);
	if (!err)
		weft__worker_loop(rt->workers[0]);
	weft__runtime_stop(rt);
	if (!err) {
		/* Every worker has stopped: the block is ours to read. */
		if (result)
			*result = mt->result;
		err = mt->outcome;
		/* A ring failed for good and stopped the runtime under
		 * main (ring.c); the joins order the store. */
		if (atomic_load_explicit(&rt->fatal, memory_order_relaxed))
			err = atomic_load_explicit(&rt->fatal,
						   memory_order_relaxed);
	}
	weft__runtime_release(rt);
	weft__runtime_free(rt);
	return err;
}

/* The calling thread's timer slack is put back afterwards (worker 0 ran
 * with 1 ns). */
int weft_run(weft_fn main_fn, void *arg, const struct weft_config *config,
	     void **result)
{
	int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	int err;

	err = run(main_fn, arg, config, result);
	if (slack > 0)
		prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
	return err;
}
