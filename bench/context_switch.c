/*
 * context_switch: two tasks on one worker switch back and forth with
 * weft_yield (n = yields per task, default 1,000,000). With nothing else
 * runnable, each yield is exactly one switch to the other task. Reports ns
 * per switch. Runs with one worker unless --workers says otherwise (the
 * tasks are pinned, so they share a worker either way).
 */
#include "bench.h"

static unsigned long n;

static void *pingpong(void *arg)
{
	for (unsigned long i = 0; i < n; i++)
		weft_yield();
	return arg;
}

static uint64_t rep(void *p)
{
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };
	weft_task *h[2];
	uint64_t t0;

	(void)p;
	if (weft_spawn_opts(&h[0], pingpong, NULL, &o) < 0 ||
	    weft_spawn_opts(&h[1], pingpong, NULL, &o) < 0)
		return 0;
	t0 = bench_now_ns();
	/* main parks here; only the two yielders run on this worker. */
	if (weft_gather(h, 2, NULL) < 0)
		return 0;
	uint64_t d = bench_now_ns() - t0;
	weft_task_release(h[0]);
	weft_task_release(h[1]);
	return d;
}

static struct bench_args args;

static void *amain(void *p)
{
	uint64_t best = bench_best(rep, p, args.reps);

	if (!best)
		return (void *)1;
	printf("RESULT weft context_switch %.2f ns/switch switches=%lu "
	       "workers=%u\n",
	       (double)best / (2.0 * n), 2 * n, weft_worker_count());
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	if (!args.workers)
		args.workers = 1;
	n = args.n ? args.n : 1000000;
	return bench_run(amain, NULL, &args);
}
