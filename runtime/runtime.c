/*
 * weft_run(): builds a runtime, turns the calling thread into worker 0,
 * starts the other workers, runs the main task and tears everything down.
 *
 * Start-up: each worker creates its own ring on its own thread (the ring's
 * SINGLE_ISSUER owner) and reports success or failure through `boot`;
 * weft_run() waits for all reports before spawning main, so a kernel that
 * refuses io_uring gives an error code, not a half-started runtime.
 *
 * Shutdown: when the main task ends (task.c) it sets rt->stopping and wakes
 * every worker. Each leaves its loop at its next scheduling point; worker 0
 * joins the others, then frees what is left: task stacks (the arena),
 * control blocks (including those of tasks still parked, which are simply
 * dropped), rings and eventfds. Nothing of the runtime survives the return.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "internal.h"

#define WEFT__DEFAULT_STACK (256u * 1024u)
#define WEFT__DEFAULT_CACHE 64u
#define WEFT__MAX_WORKERS 1024u

struct boot {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned reported;
	int err;
	bool go;
};

struct worker_arg {
	struct weft__worker *w;
	struct boot *boot;
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
	weft__worker_set_self(w);
	return 0;
}

/* Per-thread part of shutdown. The ring stays open: another worker may
 * still send this one a wake-up until all have stopped, so rings are
 * closed by weft_run() after the joins (closing a ring from another
 * thread is allowed; only submitting is tied to the issuer). */
static void worker_stop(struct weft__worker *w)
{
	weft__worker_set_self(NULL);
	weft__stack_signal_fini(w);
}

static void rings_close(struct weft_runtime *rt)
{
	unsigned i;

	for (i = 0; i < rt->nworkers; i++)
		if (rt->workers[i]->wake_fd >= 0)
			weft__ring_fini(rt->workers[i]);
}

void *weft__worker_thread(void *arg)
{
	struct worker_arg *wa = arg;
	struct weft__worker *w = wa->w;
	struct boot *b = wa->boot;
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
	weft__free(wa);
	if (err < 0)
		return NULL;
	if (go)
		weft__worker_loop(w);
	worker_stop(w);
	return NULL;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1u : (unsigned)n;
}

static void runtime_free(struct weft_runtime *rt)
{
	unsigned i;

	weft__pool_fini(rt); /* no-op if done already or never set up */
	weft__task_pool_fini(rt);
	weft__stack_fini(rt);
	if (rt->workers) {
		for (i = 0; i < rt->nworkers; i++)
			free(rt->workers[i]);
		weft__free(rt->workers);
	}
	weft__free(rt);
}

static int config_check(const struct weft_config *c)
{
	unsigned i;

	if (!c)
		return 0;
	for (i = 0; i < 2; i++)
		if (c->reserved[i])
			return -EINVAL;
	if (c->wake_mode < WEFT_WAKE_DEFAULT ||
	    c->wake_mode > WEFT_WAKE_MSG_RING)
		return -EINVAL;
	if (c->workers > WEFT__MAX_WORKERS)
		return -EINVAL;
	if (c->stack_size > ((size_t)1 << 40))
		return -EINVAL;
	return 0;
}

static int run(weft_fn main_fn, void *arg, const struct weft_config *config,
	       void **result)
{
	struct weft_runtime *rt;
	struct boot boot;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned i, started = 0;
	struct weft_task *mt;
	int err;

	if (!main_fn)
		return -EINVAL;
	if ((err = config_check(config)) < 0)
		return err;
	if (weft__worker_self())
		return -EBUSY;

	rt = weft__calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->nworkers = (config && config->workers) ? config->workers
						    : online_cpus();
	rt->stack_size = (config && config->stack_size) ? config->stack_size
							: WEFT__DEFAULT_STACK;
	rt->stack_size = (rt->stack_size + ps - 1) & ~(ps - 1);
	rt->stack_cache = (config && config->stack_cache)
				  ? config->stack_cache
				  : WEFT__DEFAULT_CACHE;
	rt->wake_mode = config ? config->wake_mode : WEFT_WAKE_DEFAULT;
	/* MSG_RING measured faster (bench/wake_latency); see io/ring.c. */
	if (rt->wake_mode == WEFT_WAKE_DEFAULT)
		rt->wake_mode = WEFT_WAKE_MSG_RING;
	weft__stack_init(rt);
	weft__idle_init(rt);
	weft__timer_init(rt);
	weft__pool_init(rt, config);

	rt->workers = weft__calloc(rt->nworkers, sizeof(*rt->workers));
	if (!rt->workers) {
		weft__free(rt);
		return -ENOMEM;
	}
	const char *dm = getenv("WEFT_DEBUG_MIGRATE");
	bool debug_migrate = dm && dm[0] == '1';

	for (i = 0; i < rt->nworkers; i++) {
		struct weft__worker *w =
			aligned_alloc(WEFT__CACHELINE, sizeof(*w));
		if (!w) {
			runtime_free(rt);
			return -ENOMEM;
		}
		memset(w, 0, sizeof(*w));
		w->rt = rt;
		w->index = i;
		w->rng = 0x9e3779b9u * (i + 1);
		w->inject_countdown = WEFT__INJECT_INTERVAL;
		w->debug_migrate = debug_migrate;
		w->wake_fd = -1;
		rt->workers[i] = w;
	}

	/* Worker 0 is this thread. */
	err = worker_start(rt->workers[0]);
	if (err < 0) {
		runtime_free(rt);
		return err;
	}

	pthread_mutex_init(&boot.lock, NULL);
	pthread_cond_init(&boot.cond, NULL);
	boot.reported = 0;
	boot.err = 0;
	boot.go = false;
	for (i = 1; i < rt->nworkers; i++) {
		struct worker_arg *wa = weft__malloc(sizeof(*wa));
		if (!wa) {
			err = -ENOMEM;
			break;
		}
		wa->w = rt->workers[i];
		wa->boot = &boot;
		err = -pthread_create(&rt->workers[i]->thread, NULL,
				      weft__worker_thread, wa);
		if (err < 0) {
			weft__free(wa);
			break;
		}
		started++;
	}
	pthread_mutex_lock(&boot.lock);
	while (boot.reported < started)
		pthread_cond_wait(&boot.cond, &boot.lock);
	if (!err)
		err = boot.err;
	if (err)
		boot.err = err;
	else
		boot.go = true;
	pthread_cond_broadcast(&boot.cond);
	pthread_mutex_unlock(&boot.lock);

	if (!err)
		err = weft__spawn_main(rt, main_fn, arg, &mt);
	if (err) {
		/* Workers may already be in their loops (spawning main
		 * failed after "go"): stop and wake them before joining. */
		atomic_store(&rt->stopping, 1);
		weft__idle_wake_all(rt);
		for (i = 1; i <= started; i++)
			pthread_join(rt->workers[i]->thread, NULL);
		worker_stop(rt->workers[0]);
		weft__pool_fini(rt); /* before the rings close: see pool.c */
		rings_close(rt);
		pthread_mutex_destroy(&boot.lock);
		pthread_cond_destroy(&boot.cond);
		runtime_free(rt);
		return err;
	}

	weft__worker_loop(rt->workers[0]);

	for (i = 1; i < rt->nworkers; i++)
		pthread_join(rt->workers[i]->thread, NULL);
	pthread_mutex_destroy(&boot.lock);
	pthread_cond_destroy(&boot.cond);
	/* Every worker has stopped: the block is ours to read. */
	if (result)
		*result = mt->result;
	err = mt->outcome;
	worker_stop(rt->workers[0]);
	weft__pool_fini(rt); /* before the rings close: see pool.c */
	rings_close(rt);
	runtime_free(rt);
	return err;
}

/* Process-wide settings the runtime needs around run(): SIGPIPE ignored
 * unless the program chose a disposition (so writes to a closed pipe
 * return -EPIPE instead of killing it; sockets use MSG_NOSIGNAL anyway),
 * and the calling thread's timer slack put back afterwards. */
int weft_run(weft_fn main_fn, void *arg, const struct weft_config *config,
	     void **result)
{
	int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	struct sigaction sa;
	int err;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
	    !(sa.sa_flags & SA_SIGINFO)) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
	err = run(main_fn, arg, config, result);
	if (slack > 0)
		prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
	return err;
}
