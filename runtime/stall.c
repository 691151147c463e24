/*
 * Stall reports: a task that runs longer than weft_config.stall_ms
 * without suspending holds up everything queued on its worker. Detected
 * the way Go's sysmon finds a goroutine to preempt, with nothing added to
 * the switch path: every worker already counts the tasks it switches in
 * (worker->ticks, one relaxed store per switch). A watchdog thread samples
 * those counts every stall_ms / 2. A worker that is not asleep in its
 * reactor (ring.in_wait) and whose count has not moved for stall_ms has
 * been running one task, or sitting in its scheduler, all that time.
 *
 * Which: the watchdog cannot read the worker's current task (a plain
 * field of the owner's) nor its stack (it is running). So it asks the
 * worker: a signal (WEFT__STALL_SIG, sent to that thread alone) whose
 * handler, on the worker's thread between two instructions of the task,
 * copies the task's name and the frames of its stack (glibc's
 * backtrace(), async-signal-safe once it has been called outside a
 * handler: the first call loads libgcc's unwinder) into the worker's
 * slot (struct weft__stall_slot, whose protocol stall.h states), and the
 * watchdog prints them. A worker blocked in a system call is not asked
 * (the signal would end the call with EINTR): blocked_in() reads which
 * call from /proc, and the report goes without frames. One report per stall: the watchdog reports a
 * count once, and only a new switch (a new count) can start another.
 *
 * Run time, not waiting time: a worker whose thread waits for a CPU (the
 * machine is short of them: other threads or processes have them) does
 * not switch either, through no fault of its task. So the watchdog also
 * reads each worker thread's CPU clock when its count moves, and judges
 * a worker stuck only once its thread has used at least 3/4 of stall_ms
 * of CPU since (a quarter's slack for the look's granularity: on a
 * machine with a CPU to spare the two clocks agree). A worker that has
 * waited past stall_ms with less is named in a note, at most every
 * WEFT__STALL_NOTE_NS per runtime, and its task only once it has run
 * for long. A worker blocked in a system call uses no CPU either, and is
 * reported as before (blocked_in() is read first).
 *
 * Cost: nothing when off (no thread, no signal); when on, one thread that
 * wakes every stall_ms / 2 and reads two words per worker.
 */
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lq.h"
#include "mem.h"
#include "metrics.h"
#include "runtime.h"
#include "stall.h"
#include "task.h"
#include "worker.h"

/* Least stall_ms honoured: the watchdog wakes every stall_ms / 2. */
#define WEFT__STALL_MIN_MS 10u
/* Least time between two notes of workers short of CPU (one runtime). */
#define WEFT__STALL_NOTE_NS (10 * WEFT_NSEC_PER_SEC)
/* How long the watchdog waits for a worker's answer. */
#define WEFT__STALL_ANSWER_NS (100 * WEFT_NSEC_PER_MSEC)

enum { SLOT_IDLE, SLOT_ASKED, SLOT_FILLING, SLOT_DONE };

struct weft__stall {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled to stop */
	bool stop;           /* under lock */
	uint64_t budget_ns;
	/* The watchdog's own view of each worker: the count last seen, when
	 * it was first seen, and whether that count was dealt with. */
	unsigned long *seen;
	uint64_t *since;
	bool *done;
	/* Each worker thread's CPU time at `since` (thread_cpu_ns()), and
	 * whether this wait was counted in a note; the last note's time
	 * and the waits counted since it. */
	uint64_t *cpu_at;
	bool *noted;
	uint64_t note_at;
	unsigned unnoted;
};

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;

/* Pinned tasks ready on w: its own list, which only its thread touches,
 * walked here by that thread's signal handler. The interrupted code may
 * be appending to it (a task scheduling a pinned one), so the walk may see
 * the list a step behind; blocks are never freed while the runtime runs,
 * and the walk is bounded. */
static unsigned count_pins(struct weft__worker *w)
{
	struct weft__tcb *t = w->pins.head;
	unsigned n = 0;

	while (t && n < 100000) {
		n++;
		t = t->qnext;
	}
	return n;
}

/* On the worker's thread, inside whatever it was running, on its
 * alternate signal stack (64 KiB, stack.c; SA_ONSTACK). Touches only
 * the worker's own slot, its own fields and the running task's name;
 * backtrace() was warmed up in stall_install(). */
static void stall_handler(int sig)
{
	int e = errno, s = SLOT_ASKED;
	struct weft__worker *w = weft__worker_tls;
	struct weft__stall_slot *sl;
	struct weft__tcb *t;

	(void)sig;
	if (!w)
		goto out;
	sl = &w->stall;
	if (!atomic_compare_exchange_strong_explicit(&sl->state, &s,
						     SLOT_FILLING,
						     memory_order_acquire,
						     memory_order_relaxed))
		goto out;
	sl->ticks = atomic_load_explicit(&w->ticks, memory_order_relaxed);
	t = w->current;
	if (t) {
		memcpy(sl->name, t->name, sizeof(sl->name));
		sl->name[sizeof(sl->name) - 1] = '\0';
#ifdef WEFT__REGISTRY
		sl->site = t->site;
#else
		sl->site = NULL;
#endif
		sl->nframes = backtrace(sl->frames, WEFT__STALL_FRAMES);
		sl->pins = count_pins(w);
	} else {
		sl->nframes = -1;
	}
	atomic_store_explicit(&sl->state, SLOT_DONE, memory_order_release);
out:
	errno = e;
}

/* Set by the destructor below when it left SIG_IGN in place of our
 * handler: stall_install() may take the signal again from there. */
static bool stall_ignored_by_us;

/* Whether our handler holds the signal. */
static bool stall_installed(void)
{
	struct sigaction cur;

	return sigaction(WEFT__STALL_SIG, NULL, &cur) == 0 &&
	       !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == stall_handler;
}

/* Once per process, and only over the default disposition: a program
 * that uses the signal keeps it (reports then come without frames). */
static void stall_install(void)
{
	struct sigaction cur, sa;
	void *warm[4];

	/* The first backtrace() loads the unwinder (dlopen, malloc): never
	 * in the handler. */
	(void)backtrace(warm, 4);
	pthread_mutex_lock(&sig_lock);
	if (sigaction(WEFT__STALL_SIG, NULL, &cur) == 0 &&
	    !(cur.sa_flags & SA_SIGINFO) &&
	    (cur.sa_handler == SIG_DFL ||
	     (cur.sa_handler == SIG_IGN && stall_ignored_by_us))) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = stall_handler;
		/* On the worker's alternate signal stack (stack.c), not the
		 * task's: the signal frame (several KiB with AVX-512 state)
		 * and the unwinder must not overflow a task that is near the
		 * end of its stack, which it would not have done unasked.
		 * backtrace() unwinds through the signal frame onto the
		 * task's stack all the same. */
		sa.sa_flags = SA_RESTART | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(WEFT__STALL_SIG, &sa, NULL);
	}
	pthread_mutex_unlock(&sig_lock);
}

/* dlclose() or exit: a late signal must not run unmapped code. Ignored,
 * not the default: a watchdog still running at exit() may be between its
 * stall_installed() check and its tgkill() (ask()), and this signal's
 * default action ends the process. */
__attribute__((destructor)) static void stall_uninstall(void)
{
	pthread_mutex_lock(&sig_lock);
	if (stall_installed()) {
		signal(WEFT__STALL_SIG, SIG_IGN);
		stall_ignored_by_us = true;
	}
	pthread_mutex_unlock(&sig_lock);
}

/* Tasks waiting behind the running one on w: its local queue, its next
 * slot, its woken list and pinned tasks handed over by other threads (its
 * own pinned list is counted by the handler). Atomic
 * reads, a moment's view. */
static unsigned queued_on(struct weft__worker *w)
{
	return weft__lq_len(&w->lq) +
	       (atomic_load_explicit(&w->next, memory_order_relaxed) != NULL) +
	       atomic_load_explicit(&w->woken_n, memory_order_relaxed) +
	       (unsigned)atomic_load_explicit(&w->remote_n,
					      memory_order_relaxed);
}

/* The system call w's thread is blocked in, from
 * /proc/self/task/TID/syscall (its first field: the call's number, or
 * "running", or -1 when blocked outside a call); -1 if it is not blocked
 * in one, or that cannot be read. */
static long blocked_in(struct weft__worker *w)
{
	char buf[64], *end;
	long nr;

	if (weft__base_thread_file(w->ring.tid, "syscall", buf,
				   sizeof(buf)) < 0)
		return -1;
	nr = strtol(buf, &end, 10);
	return end != buf && (*end == ' ' || *end == '\n') && nr >= 0 ? nr
								     : -1;
}

/* The CPU time (user and system, ns) thread tid of this process has
 * used, or UINT64_MAX if it cannot be read. The clock id is the kernel's
 * per-thread CPU clock, (~tid << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED:
 * what pthread_getcpuclockid() builds from a pthread_t, which worker 0
 * of weft_run() (the caller's thread) gives us no handle for. */
static uint64_t thread_cpu_ns(int tid)
{
	struct timespec ts;

	if (tid <= 0 ||
	    clock_gettime((clockid_t)((~(unsigned)tid << 3) | 6u), &ts) != 0)
		return UINT64_MAX;
	return (uint64_t)ts.tv_sec * WEFT_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* A note, rate-limited: workers that waited past stall_ms for a CPU, so
 * that an overloaded machine is seen without blaming a task for it. */
static void note_short_of_cpu(struct weft__stall *st, struct weft__worker *w,
			      uint64_t waited_ns, uint64_t cpu_ns, uint64_t now)
{
	if (st->note_at && now - st->note_at < WEFT__STALL_NOTE_NS) {
		st->unnoted++;
		return;
	}
	fprintf(stderr,
		"weft: worker %u has had %llu ms of CPU in the last %llu ms: "
		"its thread waits for a CPU (the machine is short of them); "
		"no task is blamed until it has run for stall_ms",
		w->index, (unsigned long long)(cpu_ns / WEFT_NSEC_PER_MSEC),
		(unsigned long long)(waited_ns / WEFT_NSEC_PER_MSEC));
	if (st->unnoted)
		fprintf(stderr, " (%u more such waits since the last note)",
			st->unnoted);
	fputc('\n', stderr);
	st->note_at = now;
	st->unnoted = 0;
}

/* Asks w for its task and frames; true with the slot DONE, false if no
 * answer came (the slot is then IDLE again). */
static bool ask(struct weft__worker *w)
{
	struct weft__stall_slot *sl = &w->stall;
	uint64_t until = weft_now() + WEFT__STALL_ANSWER_NS;
	int s;

	if (!stall_installed())
		return false;
	/* IDLE -> ASKED: a slot a handler still fills (one that never
	 * finished, below) is not asked again. */
	s = SLOT_DONE; /* a late answer to an ask given up on: stale */
	atomic_compare_exchange_strong_explicit(&sl->state, &s, SLOT_IDLE,
						memory_order_acquire,
						memory_order_relaxed);
	s = SLOT_IDLE;
	if (!atomic_compare_exchange_strong_explicit(&sl->state, &s, SLOT_ASKED,
						     memory_order_release,
						     memory_order_relaxed))
		return false;
	if (syscall(SYS_tgkill, (int)getpid(), w->ring.tid,
		    WEFT__STALL_SIG) != 0)
		goto give_up;
	for (;;) {
		s = atomic_load_explicit(&sl->state, memory_order_acquire);
		if (s == SLOT_DONE)
			return true;
		if (s == SLOT_ASKED && weft_now() >= until)
			break;
		usleep(1000);
	}
give_up:
	s = SLOT_ASKED;
	if (atomic_compare_exchange_strong_explicit(&sl->state, &s, SLOT_IDLE,
						    memory_order_relaxed,
						    memory_order_relaxed))
		return false;
	/* The handler took it meanwhile: its answer is coming, within a
	 * bound. backtrace() is not async-signal-safe by POSIX: with glibc it
	 * takes no lock unless the program registers unwind tables of its
	 * own (a JIT), and a handler that interrupted such a registration
	 * would never finish. The watchdog then gives up on this worker's
	 * slot (it stays FILLING, so it is not asked again) rather than hang
	 * here and make weft__stall_stop(), and the runtime's stop, wait for
	 * ever. */
	until = weft_now() + WEFT__STALL_ANSWER_NS;
	while (atomic_load_explicit(&sl->state, memory_order_acquire) !=
	       SLOT_DONE) {
		if (weft_now() >= until)
			return false;
		usleep(100);
	}
	return true;
}

static void print_report(struct weft_runtime *rt, struct weft__stall *st,
			 struct weft__worker *w, uint64_t ran_ns, bool answered,
			 long sys)
{
	struct weft__stall_slot *sl = &w->stall;
	unsigned queued = queued_on(w) + (answered ? sl->pins : 0);
	char **sym = NULL;
	int i, skip = 0;

	atomic_fetch_add_explicit(&rt->metrics.stalls, 1, memory_order_relaxed);
	flockfile(stderr);
	fprintf(stderr,
		"weft: stall: task \"%s\" has run on worker %u for at least "
		"%llu ms "
		"without suspending (stall_ms %llu); %u task%s queued "
		"behind it\n",
		answered ? sl->name : "?", w->index,
		(unsigned long long)(ran_ns / WEFT_NSEC_PER_MSEC),
		(unsigned long long)(st->budget_ns / WEFT_NSEC_PER_MSEC),
		queued, queued == 1 ? "" : "s");
	if (answered && sl->nframes >= 0 && sl->site)
		fprintf(stderr, "weft: stall:   spawned at %s\n", sl->site);
	if (!answered && sys >= 0) {
		fprintf(stderr, "weft: stall:   (no backtrace: the worker is "
				"blocked in system call %ld, which a signal "
				"would interrupt)\n",
			sys);
	} else if (!answered) {
		fprintf(stderr, "weft: stall:   (no backtrace: the worker did "
				"not answer signal SIGRTMIN+4)\n");
	} else if (sl->nframes > 0) {
		/* Frame 0 is the handler, frame 1 the signal return
		 * trampoline: the task's own frames follow. */
		skip = sl->nframes > 2 ? 2 : 0;
		sym = backtrace_symbols(sl->frames + skip, sl->nframes - skip);
		for (i = 0; i < sl->nframes - skip; i++) {
			if (sym)
				fprintf(stderr, "weft: stall:   #%d %s\n", i,
					sym[i]);
			else
				fprintf(stderr, "weft: stall:   #%d %p\n", i,
					sl->frames[skip + i]);
		}
		free(sym);
	}
	funlockfile(stderr);
}

/* One look at every worker. */
static void look(struct weft_runtime *rt, struct weft__stall *st)
{
	uint64_t now = weft_now();
	unsigned i;

	for (i = 0; i < rt->nworkers; i++) {
		struct weft__worker *w = rt->workers[i];
		unsigned long ticks = atomic_load_explicit(
			&w->ticks, memory_order_relaxed);
		bool answered;
		long sys;

		/* A new switch, or asleep in its reactor (idle, not stuck):
		 * the worker's clock starts again. Restarting it on a sleep
		 * keeps a worker that has just woken from being judged on
		 * its sleep. */
		if (ticks != st->seen[i] ||
		    atomic_load_explicit(&w->ring.in_wait,
					 memory_order_relaxed)) {
			st->seen[i] = ticks;
			st->since[i] = now;
			st->done[i] = false;
			st->noted[i] = false;
			/* ring.tid is written before the worker's first
			 * switch, whose count (ticks != 0) was read above. */
			st->cpu_at[i] = ticks ? thread_cpu_ns(w->ring.tid)
					      : UINT64_MAX;
			continue;
		}
		/* A worker that has never run a task is starting. */
		if (st->done[i] || ticks == 0 ||
		    now - st->since[i] < st->budget_ns)
			continue;
		/* Blocked in a system call (a task calling sleep(), poll(),
		 * a blocking read): not signalled, since the signal would
		 * end most such calls early with EINTR (SA_RESTART restarts
		 * only some), changing what the program does because a
		 * report was asked for. Reported without frames, and
		 * whatever its CPU time. (A thread that enters a call
		 * between this look and the signal can still be
		 * interrupted: the window is this one read.) */
		sys = blocked_in(w);
		if (sys < 0 && st->cpu_at[i] != UINT64_MAX) {
			uint64_t cpu = thread_cpu_ns(w->ring.tid);

			/* Not enough run time yet: the thread waited for a
			 * CPU. Looked at again next time, not done. */
			if (cpu != UINT64_MAX &&
			    cpu - st->cpu_at[i] < st->budget_ns / 4 * 3) {
				if (!st->noted[i])
					note_short_of_cpu(st, w,
							  now - st->since[i],
							  cpu - st->cpu_at[i],
							  now);
				st->noted[i] = true;
				continue;
			}
		}
		st->done[i] = true;
		answered = sys < 0 && ask(w);
		/* No task (the scheduler searching), or it switched
		 * meanwhile: no stall of a task. */
		if (!answered || (w->stall.nframes >= 0 &&
				  w->stall.ticks == ticks))
			print_report(rt, st, w, weft_now() - st->since[i],
				     answered, sys);
		/* Only this thread asks, so the slot is ours until here. */
		if (answered)
			atomic_store_explicit(&w->stall.state, SLOT_IDLE,
					      memory_order_relaxed);
	}
}

static void *watchdog(void *arg)
{
	struct weft_runtime *rt = arg;
	struct weft__stall *st = rt->stall;
	uint64_t period = st->budget_ns / 2;

	pthread_setname_np(pthread_self(), "weft-watchdog");
	pthread_mutex_lock(&st->lock);
	while (!st->stop) {
		struct timespec ts;
		uint64_t at;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		at = (uint64_t)ts.tv_sec * WEFT_NSEC_PER_SEC +
		     (uint64_t)ts.tv_nsec + period;
		ts.tv_sec = (time_t)(at / WEFT_NSEC_PER_SEC);
		ts.tv_nsec = (long)(at % WEFT_NSEC_PER_SEC);
		pthread_cond_timedwait(&st->cond, &st->lock, &ts);
		if (st->stop)
			break;
		pthread_mutex_unlock(&st->lock);
		look(rt, st);
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* The configuration's stall_ms, else WEFT_STALL_MS; 0: off. */
unsigned weft__stall_ms(const struct weft_config *c)
{
	unsigned ms = c ? c->stall_ms : 0;
	const char *e;

	if (ms == WEFT_STALL_OFF)
		return 0;
	if (!ms && (e = getenv("WEFT_STALL_MS")) && *e) {
		char *end;
		unsigned long v = strtoul(e, &end, 10);

		ms = *end || v > 86400000ul ? 0 : (unsigned)v;
	}
	if (ms && ms < WEFT__STALL_MIN_MS)
		ms = WEFT__STALL_MIN_MS;
	return ms;
}

void weft__stall_thread_init(struct weft__worker *w)
{
	sigset_t cur, one;

	w->stall_unblocked = false;
	if (!w->rt->stall_ms || pthread_sigmask(SIG_BLOCK, NULL, &cur) != 0 ||
	    !sigismember(&cur, WEFT__STALL_SIG))
		return;
	sigemptyset(&one);
	sigaddset(&one, WEFT__STALL_SIG);
	/* Only this signal, which the watchdog alone sends, and only to
	 * this thread (tgkill): the program's others stay as it set them. */
	w->stall_unblocked = pthread_sigmask(SIG_UNBLOCK, &one, NULL) == 0;
}

void weft__stall_thread_fini(struct weft__worker *w)
{
	sigset_t one;

	if (!w->stall_unblocked)
		return;
	/* Worker 0 of weft_run() is the caller's thread: its mask goes
	 * back. A signal still pending (an ask that timed out) waits there
	 * as before; the handler finds no worker and does nothing. */
	sigemptyset(&one);
	sigaddset(&one, WEFT__STALL_SIG);
	pthread_sigmask(SIG_BLOCK, &one, NULL);
	w->stall_unblocked = false;
}

static void stall_free(struct weft__stall *st)
{
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	weft__mem_free(st->seen);
	weft__mem_free(st->since);
	weft__mem_free(st->done);
	weft__mem_free(st->cpu_at);
	weft__mem_free(st->noted);
	weft__mem_free(st);
}

int weft__stall_start(struct weft_runtime *rt, const struct weft_config *c)
{
	unsigned ms = rt->stall_ms, n = rt->nworkers;
	struct weft__stall *st;
	pthread_condattr_t ca;
	int err;

	(void)c; /* read into rt->stall_ms already */
	if (!ms)
		return 0;
	st = weft__mem_calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	st->budget_ns = (uint64_t)ms * WEFT_NSEC_PER_MSEC;
	st->seen = weft__mem_calloc(n, sizeof(*st->seen));
	st->since = weft__mem_calloc(n, sizeof(*st->since));
	st->done = weft__mem_calloc(n, sizeof(*st->done));
	st->cpu_at = weft__mem_calloc(n, sizeof(*st->cpu_at));
	st->noted = weft__mem_calloc(n, sizeof(*st->noted));
	if (!st->seen || !st->since || !st->done || !st->cpu_at ||
	    !st->noted) {
		stall_free(st);
		return -ENOMEM;
	}
	stall_install();
	rt->stall = st;
	err = -pthread_create(&st->thread, NULL, watchdog, rt);
	if (err < 0) {
		rt->stall = NULL;
		stall_free(st);
	}
	return err;
}

void weft__stall_stop(struct weft_runtime *rt)
{
	struct weft__stall *st = rt->stall;

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->stop = true;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->thread, NULL);
	rt->stall = NULL;
	stall_free(st);
}
