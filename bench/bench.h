/*
 * Shared scaffolding of the benchmark programs: argument parsing, the
 * clock, the warm-up-then-best-of-N loop, and the RESULT line.
 *
 * Every program times its workload inside the main task (runtime start-up
 * excluded), runs it once to warm up, then `reps` more times, and reports
 * the best repetition as
 *   RESULT weft <workload> <value> <unit> key=value...
 * which bench/run collects into its table.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

struct bench_args {
	unsigned workers; /* 0: runtime default (online CPUs) */
	unsigned reps;    /* measured repetitions after the warm-up */
	unsigned long n;  /* workload size; 0: the program's default */
};

static inline void bench_parse(int argc, char **argv, struct bench_args *a)
{
	a->workers = 0;
	a->reps = 3;
	a->n = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--workers"))
			a->workers = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--reps"))
			a->reps = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--n"))
			a->n = strtoul(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr,
				"usage: %s [--workers N] [--reps N] [--n N]\n",
				argv[0]);
			exit(2);
		}
	}
}

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Computes for ns without suspending (a task's slice of work). */
static inline void bench_compute_ns(uint64_t ns)
{
	uint64_t end = bench_now_ns() + ns;

	while (bench_now_ns() < end)
		;
}

/* A task body that computes slice_ns at a time and yields, until *stop
 * (the busy workers of loaded_latency and burst_rss). */
static inline void bench_slices(const atomic_int *stop, uint64_t slice_ns)
{
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		bench_compute_ns(slice_ns);
		weft_yield();
	}
}

/* qsort() order for uint64_t samples. */
static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Peak resident set of the process so far, in KiB. */
static inline long bench_peak_rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Current resident set in KiB. */
static inline long bench_rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * 4;
}

/* Runs one repetition; returns its duration in ns, or 0 on failure. */
typedef uint64_t (*bench_rep_fn)(void *ctx);

/* Warm-up, then the best of `reps`. Returns 0 if any repetition failed. */
static inline uint64_t bench_best(bench_rep_fn fn, void *ctx, unsigned reps)
{
	uint64_t best = UINT64_MAX;

	if (fn(ctx) == 0)
		return 0;
	for (unsigned i = 0; i < reps; i++) {
		uint64_t d = fn(ctx);
		if (d == 0)
			return 0;
		if (d < best)
			best = d;
	}
	return best;
}

/* Starts the runtime with the requested workers around `main_fn`. */
static inline int bench_run(weft_fn main_fn, void *ctx,
			    const struct bench_args *a)
{
	struct weft_config cfg = { .workers = a->workers };
	void *res = NULL;
	int err = weft_run(main_fn, ctx, &cfg, &res);

	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}

static inline unsigned bench_workers(const struct bench_args *a)
{
	return a->workers ? a->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
}

#endif /* WEFT_BENCH_H */
