/*
 * yield_many: 1,000 tasks each yield 1,000 times (n = yields per task).
 * Reports wall ns per yield over all tasks.
 */
#include "bench.h"

#define TASKS 1000

static unsigned long yields;

static void *yielder(void *arg)
{
	for (unsigned long i = 0; i < yields; i++)
		weft_yield();
	return arg;
}

static uint64_t rep(void *p)
{
	weft_task *h[TASKS];
	uint64_t t0 = bench_now_ns();

	(void)p;
	for (int i = 0; i < TASKS; i++)
		if (!(h[i] = weft_spawn(yielder, NULL)))
			return 0;
	if (weft_gather(h, TASKS, NULL) < 0)
		return 0;
	uint64_t d = bench_now_ns() - t0;
	for (int i = 0; i < TASKS; i++)
		weft_task_release(h[i]);
	return d;
}

static struct bench_args args;

static void *amain(void *p)
{
	uint64_t best = bench_best(rep, p, args.reps);

	if (!best)
		return (void *)1;
	printf("RESULT weft yield_many %.2f ns/yield tasks=%d yields=%lu "
	       "workers=%u\n",
	       (double)best / ((double)TASKS * yields), TASKS, yields,
	       weft_worker_count());
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	yields = args.n ? args.n : 1000;
	return bench_run(amain, NULL, &args);
}
