/*
 * wake_latency: how fast one worker wakes another that sleeps in its ring,
 * for each wake mechanism (eventfd, IORING_OP_MSG_RING).
 *
 * Two workers. P is pinned to one, a chain of tasks Q_i to the other. Each
 * round P cancels Q_i (a cross-worker wake of a task parked on a sleeping
 * worker), and awaits it; Q_i, woken, spawns its successor Q_{i+1} on its
 * worker and returns, which wakes P across workers again. Both workers
 * have nothing else to do, so each wake finds its target asleep in
 * io_uring_enter. Reports microseconds per round trip (two wakes plus a
 * few hundred ns of task work), best of 3 after a warm-up, per mode.
 * Uses only the public API: a task parks "forever" by awaiting a task that
 * awaits it back.
 */
#include <stdatomic.h>

#include "bench.h"

static _Atomic(weft_task *) fa, fb; /* the two forever-parked tasks */
static _Atomic(weft_task *) next_q; /* handle of the Q to wake next */
static unsigned long rounds;

static void *forever_a(void *arg)
{
	weft_task *b;

	while (!(b = atomic_load(&fb)))
		weft_yield();
	weft_await(b, NULL);
	return arg;
}

static void *forever_b(void *arg)
{
	weft_await(atomic_load(&fa), NULL);
	return arg;
}

/* One link of the chain: announce itself (a task cancelled before it
 * starts never runs, so the controller may only cancel started links),
 * park until cancelled, then start the next link on this same worker. */
static void *q_fn(void *arg)
{
	weft_task *self = weft_self();
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED |
					      WEFT_SPAWN_DETACHED };

	weft_task_retain(self); /* the controller's reference */
	atomic_store(&next_q, self);
	/* Park until P cancels us (the A/B pair never ends). */
	weft_await(atomic_load(&fa), NULL);
	weft_spawn_opts(NULL, q_fn, arg, &o);
	return NULL;
}

static atomic_int chain_started;

/* Probe: if it got stolen onto a worker other than the controller's, it
 * starts the Q chain there (pinned to that worker). Busy for a while so
 * that the other worker has time to steal it. */
static void *probe(void *arg)
{
	int ctl_worker = (int)(intptr_t)arg;
	uint64_t until = bench_now_ns() + 200000;
	int zero = 0;

	while (bench_now_ns() < until)
		;
	if (weft_worker_index() != ctl_worker &&
	    atomic_compare_exchange_strong(&chain_started, &zero, 1)) {
		struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED |
						      WEFT_SPAWN_DETACHED };
		weft_spawn_opts(NULL, q_fn, NULL, &o);
	}
	return NULL;
}

static uint64_t rep(void *p)
{
	uint64_t t0 = bench_now_ns();

	(void)p;
	for (unsigned long i = 0; i < rounds; i++) {
		weft_task *q;
		while (!(q = atomic_exchange(&next_q, NULL)))
			weft_yield();
		weft_cancel(q);
		weft_await(q, NULL);
		weft_task_release(q);
	}
	return bench_now_ns() - t0;
}

static struct bench_args args;

/* The controller P, pinned to the worker it was spawned on. */
static void *controller(void *arg)
{
	int me = weft_worker_index();
	weft_task *a, *b;

	(void)arg;
	a = weft_spawn(forever_a, NULL);
	atomic_store(&fa, a);
	b = weft_spawn(forever_b, NULL);
	atomic_store(&fb, b);
	while (!atomic_load(&chain_started)) {
		weft_task *pr[4];
		for (int i = 0; i < 4; i++)
			pr[i] = weft_spawn(probe, (void *)(intptr_t)me);
		weft_gather(pr, 4, NULL);
		for (int i = 0; i < 4; i++)
			weft_task_release(pr[i]);
	}
	return (void *)(uintptr_t)bench_best(rep, NULL, args.reps);
}

static void *amain(void *arg)
{
	struct weft_spawn_opts pin = { .flags = WEFT_SPAWN_PINNED };
	int mode = (int)(intptr_t)arg;
	void *res = NULL;
	weft_task *p;

	if (weft_spawn_opts(&p, controller, NULL, &pin) < 0 ||
	    weft_await(p, &res) < 0 || !res)
		return (void *)1;
	weft_task_release(p);
	printf("RESULT weft wake_latency_%s %.2f us/roundtrip rounds=%lu "
	       "workers=2\n",
	       mode == WEFT_WAKE_MSG_RING ? "msg_ring" : "eventfd",
	       (double)(uintptr_t)res / rounds / 1000.0, rounds);
	return NULL;
}

int main(int argc, char **argv)
{
	static const int modes[] = { WEFT_WAKE_EVENTFD, WEFT_WAKE_MSG_RING };

	bench_parse(argc, argv, &args);
	rounds = args.n ? args.n : 20000;
	for (int m = 0; m < 2; m++) {
		struct weft_config cfg = { .workers = 2,
					   .wake_mode = modes[m] };
		void *res = NULL;
		int err;

		atomic_store(&fa, NULL);
		atomic_store(&fb, NULL);
		atomic_store(&next_q, NULL);
		atomic_store(&chain_started, 0);
		err = weft_run(amain, (void *)(intptr_t)modes[m], &cfg, &res);
		if (err < 0 || res) {
			fprintf(stderr, "wake_latency: %s\n",
				err < 0 ? weft_strerror(err) : "failed");
			return 1;
		}
	}
	return 0;
}
