/*
 * blocking_rt: the cost of one weft_run_blocking() round trip of an empty
 * function: queue the call, wake an idle pool thread, run fn there,
 * publish the result, wake the parked task and switch back to it. Two
 * workloads: one task calling it n times in a loop (default 100,000; pure
 * latency, one pool thread busy at a time), and 8 tasks doing n/8 calls
 * each at once (the pool's lock and wake-ups under contention, up to 8
 * pool threads). Reports ns per call of the best repetition of each:
 *   RESULT weft blocking_rt_1 <ns> ns/call ...
 *   RESULT weft blocking_rt_8 <ns> ns/call ...
 */
#include <stdatomic.h>

#include "bench.h"

#define CONC 8

static unsigned long n;
static atomic_ulong failed;

static void *empty(void *arg)
{
	return arg;
}

static void *caller(void *arg)
{
	unsigned long calls = (unsigned long)(uintptr_t)arg;
	void *r;

	for (unsigned long i = 0; i < calls; i++) {
		if (weft_run_blocking(empty, (void *)(uintptr_t)i, &r) < 0 ||
		    r != (void *)(uintptr_t)i) {
			atomic_fetch_add(&failed, 1);
			return NULL;
		}
	}
	return NULL;
}

/* ctx: the number of concurrent callers. */
static uint64_t rep(void *ctx)
{
	unsigned tasks = (unsigned)(uintptr_t)ctx;
	weft_task *h[CONC];
	uint64_t t0 = bench_now_ns();

	if (tasks == 1) {
		caller((void *)(uintptr_t)n);
	} else {
		for (unsigned i = 0; i < tasks; i++)
			if (!(h[i] = weft_spawn(caller,
						(void *)(uintptr_t)(n / tasks))))
				return 0;
		weft_gather(h, tasks, NULL);
		for (unsigned i = 0; i < tasks; i++)
			weft_task_release(h[i]);
	}
	uint64_t d = bench_now_ns() - t0;
	if (atomic_load(&failed)) {
		fprintf(stderr, "blocking_rt: a weft_run_blocking call failed\n");
		return 0;
	}
	return d;
}

static struct bench_args args;

static void *amain(void *p)
{
	static const unsigned conc[] = { 1, CONC };

	(void)p;
	for (unsigned k = 0; k < 2; k++) {
		unsigned long calls = conc[k] == 1 ? n : n / conc[k] * conc[k];
		uint64_t best = bench_best(rep, (void *)(uintptr_t)conc[k],
					   args.reps);

		if (!best)
			return (void *)1;
		printf("RESULT weft blocking_rt_%u %.0f ns/call calls=%lu "
		       "tasks=%u workers=%u\n",
		       conc[k], (double)best / calls, calls, conc[k],
		       weft_worker_count());
	}
	return NULL;
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &args);
	n = args.n ? args.n : 100000;
	if (n < CONC)
		n = CONC;
	return bench_run(amain, NULL, &args);
}
