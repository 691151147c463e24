/*
 * stuck_read: how late a read completes when its worker is stuck in one
 * long task (issue 17). Two workers (--workers to change). Each round,
 * a reader task starts a task pinned to its own worker that computes for
 * 100 ms without suspending, then reads one stamped byte from a pipe; a
 * plain thread writes the byte 10 ms into the computation. The read's
 * latency is the time from the write to the read's return. The other
 * worker is idle all along. Without help it is the rest of the
 * computation (about 90 ms); with the stuck worker's completions rescued
 * by another worker (runtime/ring.c) it is the time an idle worker takes
 * to notice (500 us without a task switch, seen across two looks).
 * 20 rounds (--n to change). Reports, in microseconds:
 *   RESULT weft stuck_read <p50> us/p50 rounds= max_us=
 * No warm-up and no best-of (--reps is ignored).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"

#define STUCK_NS (100 * WEFT_NSEC_PER_MSEC)
#define WRITE_AT_NS (10 * WEFT_NSEC_PER_MSEC)
#define MAX_ROUNDS 1000

struct run {
	int p[2];
	unsigned rounds;
	atomic_int started; /* the stuck task began computing */
	uint64_t lat[MAX_ROUNDS];
	int failed;
};

static void *stuck(void *arg)
{
	struct run *r = arg;

	atomic_store(&r->started, 1);
	bench_compute_ns(STUCK_NS);
	return NULL;
}

/* One round: on whichever worker it runs, that worker gets stuck. */
static void *reader(void *arg)
{
	struct run *r = arg;
	struct weft_spawn_opts o = {
		.flags = WEFT_SPAWN_PINNED | WEFT_SPAWN_DETACHED
	};
	uint64_t sent;

	if (weft_spawn_opts(NULL, stuck, r, &o) != 0)
		return (void *)1;
	if (weft_read(r->p[0], &sent, sizeof(sent), -1) != sizeof(sent))
		return (void *)1;
	return (void *)(uintptr_t)(weft_now() - sent);
}

/* A plain thread: the stamped byte, WRITE_AT_NS after the stuck task
 * started. weft_now() is CLOCK_MONOTONIC, as bench_now_ns(). */
static void *writer(void *arg)
{
	struct run *r = arg;
	struct timespec ts = { 0, WRITE_AT_NS };
	uint64_t t;

	while (!atomic_load(&r->started))
		sched_yield();
	nanosleep(&ts, NULL);
	t = bench_now_ns();
	if (write(r->p[1], &t, sizeof(t)) != sizeof(t))
		r->failed = 1;
	return NULL;
}

static void *amain(void *arg)
{
	struct run *r = arg;

	for (unsigned i = 0; i < r->rounds && !r->failed; i++) {
		weft_task *t;
		pthread_t th;
		void *res = NULL;

		atomic_store(&r->started, 0);
		if (pthread_create(&th, NULL, writer, r) != 0) {
			r->failed = 1;
			break;
		}
		t = weft_spawn(reader, r);
		if (!t || weft_await(t, &res) != 0 || res == (void *)1)
			r->failed = 1;
		else
			r->lat[i] = (uint64_t)(uintptr_t)res;
		if (t)
			weft_task_release(t);
		pthread_join(th, NULL);
		/* Let the stuck task end before the next round. */
		weft_sleep(STUCK_NS);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct bench_args a;
	struct run r;
	struct weft_config cfg = { 0 };
	int err;

	bench_parse(argc, argv, &a);
	memset(&r, 0, sizeof(r));
	r.rounds = a.n ? (unsigned)a.n : 20;
	if (r.rounds > MAX_ROUNDS)
		r.rounds = MAX_ROUNDS;
	cfg.workers = a.workers ? a.workers : 2;
	if (pipe(r.p) != 0)
		return 1;
	err = weft_run(amain, &r, &cfg, NULL);
	if (err != 0 || r.failed) {
		fprintf(stderr, "stuck_read: %s\n",
			err ? weft_strerror(err) : "a round failed");
		return 1;
	}
	qsort(r.lat, r.rounds, sizeof(r.lat[0]), bench_cmp_u64);
	printf("RESULT weft stuck_read %.1f us/p50 rounds=%u max_us=%.1f\n",
	       r.lat[r.rounds / 2] / 1e3, r.rounds,
	       r.lat[r.rounds - 1] / 1e3);
	return 0;
}
