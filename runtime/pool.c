/*
 * The blocking pool: plain threads, one pool per runtime, that run the
 * calls of weft_run_blocking() (asyncio.to_thread), so that a call which
 * blocks stalls a pool thread instead of a worker and the tasks queued on
 * it. weft_getaddrinfo() (io/resolve.c) is one such call.
 *
 * Threads start lazily: a call that is queued while fewer threads are idle
 * (or starting) than jobs are queued starts one more, up to
 * weft_config.blocking_threads. A thread that finds no work for
 * blocking_idle_ms leaves. Pool threads block every signal, so that
 * process-directed signals (SIGINT) go to the application's threads, and
 * they are not workers: weft__worker_self() is NULL there, so the task
 * calls of the API return -EPERM in fn, as on any foreign thread.
 * Each pool thread records its runtime in a thread-local (pool_owner,
 * written once by the thread itself before it takes a job, read only on
 * that thread: no ordering involved). weft_runtime_close() looks at it
 * and refuses with -EDEADLK when fn tries to close its own runtime: the
 * close would end in weft__pool_fini(), waiting for `threads` to reach 0,
 * and the caller is one of them (issue 15).
 *
 * Protocol between a waiting task and the pool
 * --------------------------------------------
 * A job (struct weft__job) lives on the stack of the task that waits for it,
 * so it must not be touched once that task may have returned. Its fields:
 *   fn, arg, task    written by the task before it queues the job; the
 *                    queue's mutex publishes them to the thread that takes
 *                    it.
 *   links, state     guarded by pool->lock. state is QUEUED while the job
 *                    is on the queue and TAKEN once a thread has unlinked it
 *                    (it then belongs to that thread until `done`), or
 *                    DROPPED when teardown or a failed thread start emptied
 *                    the queue.
 *   result, err      written by whoever completes the job (the thread that
 *                    ran it, or the dropper), before `done`.
 *   done             set last, with a release store, by the completer, who
 *                    reads everything it still needs (the task pointer)
 *                    before that store and never touches the job after it.
 *                    The task reads done with an acquire load: seeing 1, it
 *                    sees result and err, and owns its stack memory again.
 * After the release store the completer wakes the task with
 * weft__task_wake() (callable from any thread). The task may already have
 * seen `done` and returned by then: the wake then lands on a task (or a
 * reused control block, which is type-stable) that is not waiting for it,
 * which the park protocol (wait.h) allows as a spurious wake.
 *
 * The waiting task waits with weft__wait() (wait.h): its own condition is
 * `done` (acquire, above); cancellation and the deadline are the common
 * ones. Each party makes its condition true before it wakes the task, and
 * the task checks after the park is prepared, so no wake is lost (the
 * argument of wait.h).
 *
 * Who decides the outcome of a cancellation or deadline is settled under
 * pool->lock: the task, woken by cancel or timer, locks and looks at state.
 * QUEUED: it unlinks the job itself; no thread can take it any more, fn
 * never runs, and the call returns -ECANCELED or -ETIMEDOUT. TAKEN: a
 * thread runs (or ran) fn, which cannot be interrupted; the task stops
 * looking at cancel and timer (the cancel flag stays set, so the next
 * suspension point reports it) and waits for `done`. A thread takes a job
 * only under the same lock, by unlinking it and setting TAKEN, so exactly
 * one of the two happens. DROPPED jobs are completed (done = 1, err =
 * -ECANCELED or the thread-start error) by the dropper under the same
 * rules as a finished job.
 *
 * Thread accounting (all under pool->lock): `threads` counts threads from
 * the decision to create one until it leaves; `starting` those not yet in
 * their loop; `idle` those waiting on `work`. A submitter starts a thread
 * when queued > idle + starting (some job would find nobody to take it)
 * and threads < max, and signals `work` whenever a thread is idle. If
 * pthread_create() fails and no thread is left, nobody would ever take the
 * queued jobs: they are all dropped with the error (which the submitter's
 * own call returns). If threads remain, the queue waits for them: a thread
 * leaves only when the queue is empty.
 *
 * Joining: a leaving thread records itself in `exited` and joins the thread
 * recorded there before it; weft__pool_fini() waits until `threads` is 0
 * and joins the last. So every thread is joined, by at most one joiner, and
 * no worker ever blocks in pthread_join().
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "mem.h"
#include "pool.h"
#include "runtime.h"
#include "task.h"
#include "wait.h"
#include "worker.h"

#define WEFT__POOL_DEFAULT_THREADS 64u
#define WEFT__POOL_DEFAULT_IDLE_MS 10000u

enum { JOB_QUEUED = 0, JOB_TAKEN, JOB_DROPPED };

/* One weft_run_blocking() call, on the waiting task's stack. Ownership of
 * each field is given in the protocol above. */
struct weft__job {
	struct weft__job *next, *prev; /* queue links, under pool->lock */
	weft_fn fn;
	void *arg;
	struct weft__tcb *task; /* the task to wake */
	void *result;           /* fn's return, written before done */
	int err;                /* 0, or why fn never ran (dropped) */
	int state;              /* JOB_*, under pool->lock */
	atomic_int done;        /* 1 once completed (release) */
};

/* A pool thread's record; freed by the thread that joins it. */
struct weft__pool_thread {
	pthread_t tid; /* written by the thread itself, read by its joiner */
	struct weft_runtime *rt;
};

/* The runtime whose pool the calling thread belongs to, or NULL (see the
 * file comment). */
static _Thread_local struct weft_runtime *pool_owner;

unsigned weft__pool_threads(struct weft_runtime *rt)
{
	unsigned n;

	if (!rt->pool.ready)
		return 0;
	pthread_mutex_lock(&rt->pool.lock);
	n = rt->pool.threads;
	pthread_mutex_unlock(&rt->pool.lock);
	return n;
}

struct weft_runtime *weft__pool_owner(void)
{
	return pool_owner;
}

/* ---- the queue (caller holds pool->lock) ------------------------------ */

static void queue_append(struct weft__pool *p, struct weft__job *j)
{
	j->next = NULL;
	j->prev = p->tail;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	j->state = JOB_QUEUED;
	p->queued++;
}

static void queue_unlink(struct weft__pool *p, struct weft__job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		p->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		p->tail = j->prev;
	j->next = j->prev = NULL;
	p->queued--;
}

/* Empties the queue, marking every job DROPPED; returns the chain (linked
 * through next) for drop_complete(), to run after the unlock. */
static struct weft__job *queue_drop_all(struct weft__pool *p)
{
	struct weft__job *list = p->head, *j;

	for (j = list; j; j = j->next)
		j->state = JOB_DROPPED;
	p->head = p->tail = NULL;
	p->queued = 0;
	return list;
}

/* Completes dropped jobs with err. Each job's next link is read before its
 * done store: after it the job may be gone. */
static void drop_complete(struct weft__job *list, int err)
{
	while (list) {
		struct weft__job *j = list;
		struct weft__tcb *t = j->task;

		list = j->next;
		j->err = err;
		/* Release: pairs with the waiting task's acquire load of
		 * done, which then sees err (protocol above). */
		atomic_store_explicit(&j->done, 1, memory_order_release);
		weft__task_wake(t);
	}
}

/* ---- pool threads --------------------------------------------------------- */

/* Runs a job taken from the queue and completes it. */
static void job_run(struct weft__job *j)
{
	struct weft__tcb *t = j->task;
	void *r = j->fn(j->arg);

	j->result = r;
	/* Release: the task's acquire load of done sees result. Nothing of
	 * the job is touched after this store (t was read before). */
	atomic_store_explicit(&j->done, 1, memory_order_release);
	weft__task_wake(t);
}

static void idle_deadline(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / WEFT_NSEC_PER_SEC);
	ts->tv_nsec = (long)(ns % WEFT_NSEC_PER_SEC);
}

static void *pool_thread(void *arg)
{
	struct weft__pool_thread *me = arg, *prev;
	struct weft__pool *p = &me->rt->pool;
	struct timespec until;
	struct weft__job *j;

	me->tid = pthread_self();
	pool_owner = me->rt;
	/* 15 characters at most; tests count pool threads by this name. */
	pthread_setname_np(me->tid, "weft-blocking");
	pthread_mutex_lock(&p->lock);
	p->starting--;
	for (;;) {
		if (!p->head && !p->stop) {
			int rc = 0;

			/* One deadline for the whole wait, so that spurious
			 * wake-ups do not extend it. */
			idle_deadline(&until, p->idle_ns);
			p->idle++;
			while (!p->head && !p->stop && rc != ETIMEDOUT)
				rc = pthread_cond_timedwait(&p->work, &p->lock,
							    &until);
			p->idle--;
		}
		/* Leave on teardown, or when the idle time ran out with the
		 * queue still empty (never while a job is queued: a failed
		 * thread start relies on that). */
		if (p->stop || !p->head)
			break;
		j = p->head;
		queue_unlink(p, j);
		j->state = JOB_TAKEN;
		pthread_mutex_unlock(&p->lock);
		job_run(j);
		pthread_mutex_lock(&p->lock);
	}
	p->threads--;
	prev = p->exited;
	p->exited = me;
	if (p->stop)
		pthread_cond_broadcast(&p->gone);
	pthread_mutex_unlock(&p->lock);
	/* Our predecessor has left the lock for good; it is at most a few
	 * instructions from its end. */
	if (prev) {
		pthread_join(prev->tid, NULL);
		weft__mem_free(prev);
	}
	return NULL;
}

/* Starts a pool thread with every signal blocked. Returns 0 or -errno. */
static int thread_start(struct weft_runtime *rt)
{
	struct weft__pool_thread *rec = weft__mem_alloc(sizeof(*rec));
	pthread_attr_t attr;
	sigset_t all;
	pthread_t tid;
	int err;

	if (!rec)
		return -ENOMEM;
	rec->rt = rt;
	sigfillset(&all);
	err = pthread_attr_init(&attr);
	if (err) {
		weft__mem_free(rec);
		return -err;
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
	/* The new thread starts with this mask: no window in which a
	 * signal could be delivered to it. */
	err = pthread_attr_setsigmask_np(&attr, &all);
	if (!err)
		err = pthread_create(&tid, &attr, pool_thread, rec);
#else
	{
		/* A new thread inherits its creator's mask. */
		sigset_t old;

		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = pthread_create(&tid, &attr, pool_thread, rec);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
#endif
	pthread_attr_destroy(&attr);
	if (err) {
		weft__mem_free(rec);
		return -err;
	}
	/* Not detached: joined by the next thread to leave, or by
	 * weft__pool_fini(). */
	return 0;
}

/* Queues j and starts a thread if the queue needs one. Returns 0, or the
 * thread start error when no thread is left to take the job (j was
 * dropped with it then, and is already done), or -ECANCELED after
 * teardown began. */
static int submit(struct weft_runtime *rt, struct weft__job *j)
{
	struct weft__pool *p = &rt->pool;
	struct weft__job *dropped;
	bool start = false;
	int err;

	pthread_mutex_lock(&p->lock);
	if (p->stop) {
		pthread_mutex_unlock(&p->lock);
		return -ECANCELED;
	}
	queue_append(p, j);
	if (p->queued > p->idle + p->starting && p->threads < p->max) {
		p->threads++;
		p->starting++;
		start = true;
	}
	if (p->idle)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	if (!start)
		return 0;

	/* Outside the lock: thread creation takes tens of microseconds. */
	err = thread_start(rt);
	if (!err)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->threads--;
	p->starting--;
	if (p->threads > 0) {
		/* Someone is left to take the queue, ours included. */
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	/* Nobody will take these jobs, and their submitters may have
	 * counted on the thread that just failed: fail them all. */
	dropped = queue_drop_all(p);
	pthread_mutex_unlock(&p->lock);
	drop_complete(dropped, err);
	return err;
}

/* Takes j off the queue if no thread has taken it. True if it did. */
static bool withdraw(struct weft__pool *p, struct weft__job *j)
{
	bool queued;

	pthread_mutex_lock(&p->lock);
	queued = j->state == JOB_QUEUED;
	if (queued)
		queue_unlink(p, j);
	pthread_mutex_unlock(&p->lock);
	return queued;
}

struct job_wait {
	struct weft__wait wt;
	struct weft__job *job;
};

/* Acquire: pairs with the completer's release store; result and err are
 * ours to read from here on. */
static bool job_ready(struct weft__wait *wt)
{
	return atomic_load_explicit(&((struct job_wait *)wt)->job->done,
				    memory_order_acquire);
}

/* Cancelled or timed out: a job no thread has taken is withdrawn and the
 * wait ends with why; one that runs or ran is waited for, leaving the
 * cancellation pending. */
static bool job_give_up(struct weft__wait *wt, int why)
{
	struct job_wait *u = (struct job_wait *)wt;

	if (!withdraw(&wt->self->rt->pool, u->job))
		return false;
	wt->res = why;
	return true;
}

int weft_run_blocking(weft_fn fn, void *arg, void **result)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *self;
	struct weft__job job;
	struct job_wait u;
	int err;

	if (!w || !w->current)
		return -EPERM;
	if (!fn)
		return -EINVAL;
	self = w->current;
	job.fn = fn;
	job.arg = arg;
	job.task = self;
	job.result = NULL;
	job.err = 0;
	atomic_init(&job.done, 0);

	/* Already cancelled or past the deadline: fn must not run, so the
	 * job is not even queued. */
	if (weft__task_cancel_pending(self))
		return -ECANCELED;
	if (self->deadline != WEFT_NEVER && self->deadline <= weft_now())
		return -ETIMEDOUT;
	err = submit(self->rt, &job);
	if (err < 0 && !atomic_load_explicit(&job.done, memory_order_acquire))
		return err; /* refused at once (teardown): never queued */
	weft__wait_init(&u.wt, w, self->deadline);
	weft__wait_for(&u.wt, WEFT__W_BLOCKING, (const void *)(uintptr_t)fn,
		       0);
	u.job = &job;
	err = weft__wait(&u.wt, job_ready, job_give_up);
	if (err)
		return err;
	if (job.err)
		return job.err;
	if (result)
		*result = job.result;
	return 0;
}

/* ---- lifetime --------------------------------------------------------- */

void weft__pool_init(struct weft_runtime *rt, const struct weft_config *c)
{
	struct weft__pool *p = &rt->pool;
	pthread_condattr_t ca;
	unsigned ms;

	p->max = (c && c->blocking_threads) ? c->blocking_threads
					    : WEFT__POOL_DEFAULT_THREADS;
	ms = (c && c->blocking_idle_ms) ? c->blocking_idle_ms
					: WEFT__POOL_DEFAULT_IDLE_MS;
	p->idle_ns = (uint64_t)ms * WEFT_NSEC_PER_MSEC;
	p->head = p->tail = NULL;
	p->queued = p->threads = p->idle = p->starting = 0;
	p->exited = NULL;
	p->stop = false;
	/* Default attributes: these calls cannot fail on Linux. */
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	/* Idle timeouts must not move with the wall clock. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&p->gone, NULL);
	p->ready = true;
}

void weft__pool_fini(struct weft_runtime *rt)
{
	struct weft__pool *p = &rt->pool;
	struct weft__pool_thread *last;
	struct weft__job *dropped;

	if (!p->ready)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	dropped = queue_drop_all(p);
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	/* Their tasks are normally gone by now (dropped with the runtime,
	 * stacks still mapped); any still waiting return -ECANCELED. */
	drop_complete(dropped, -ECANCELED);

	pthread_mutex_lock(&p->lock);
	/* Threads running a call finish it first: fn cannot be
	 * interrupted (asyncio.run waits for its executor too). */
	while (p->threads)
		pthread_cond_wait(&p->gone, &p->lock);
	last = p->exited;
	p->exited = NULL;
	pthread_mutex_unlock(&p->lock);
	if (last) {
		pthread_join(last->tid, NULL);
		weft__mem_free(last);
	}
	pthread_cond_destroy(&p->gone);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	p->ready = false;
}
