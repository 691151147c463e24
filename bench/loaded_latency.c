/*
 * loaded_latency: how late I/O and timers are served on busy workers
 * (issue 17). Two workers run S spinner tasks (default 4, then 16 with
 * --n 16) that each compute for 1 ms and yield, for ever. Beside them:
 *   - a reader task waits in weft_read() on a pipe that a plain thread
 *     writes one byte to every 20 ms, stamped with its clock: the read's
 *     latency is the time from the write to the read's return;
 *   - a sleeper task sleeps 1 ms in a loop: the overshoot is the measured
 *     sleep minus 1 ms.
 * Both are idle-time operations on a runtime whose workers never go
 * idle: they are served only when a busy worker looks at its ring and the
 * timers. Each window takes 100 reads (2 s). Reports, in microseconds, the
 * mean, 99th percentile and maximum of each:
 *   RESULT weft loaded_read_S <p99> us/p99 spinners=S avg_us= max_us=
 *   RESULT weft loaded_sleep_S <p99> us/p99 spinners=S avg_us= max_us=
 * No warm-up and no best-of (--reps is ignored): one 2 s window per
 * spinner count. The figure is the p99, which should stay near one slice
 * (1 ms) plus a poll interval.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"

#define SLICE_NS WEFT_NSEC_PER_MSEC
#define WRITE_EVERY_NS (20 * WEFT_NSEC_PER_MSEC)
#define READS 100
#define MAX_SAMPLES 4096

struct run {
	unsigned spinners;
	int p[2];
	atomic_int stop;
	unsigned reads_wanted;
	uint64_t read_lat[MAX_SAMPLES];
	unsigned nread;
	uint64_t sleep_over[MAX_SAMPLES];
	unsigned nsleep;
	int failed;
};

static void *spinner(void *arg)
{
	struct run *r = arg;

	bench_slices(&r->stop, SLICE_NS);
	return NULL;
}

static void *sleeper(void *arg)
{
	struct run *r = arg;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		uint64_t t0 = weft_now();
		int err = weft_sleep(WEFT_NSEC_PER_MSEC);
		uint64_t d = weft_now() - t0;

		if (err < 0 || d < WEFT_NSEC_PER_MSEC) {
			r->failed = 1;
			break;
		}
		if (r->nsleep < MAX_SAMPLES)
			r->sleep_over[r->nsleep++] = d - WEFT_NSEC_PER_MSEC;
	}
	return NULL;
}

/* A plain thread: one stamped byte every 20 ms. weft_now() is
 * CLOCK_MONOTONIC, as bench_now_ns(). */
static void *writer(void *arg)
{
	struct run *r = arg;
	uint64_t next = bench_now_ns();

	for (unsigned i = 0; i < r->reads_wanted; i++) {
		uint64_t t;
		next += WRITE_EVERY_NS;
		while ((t = bench_now_ns()) < next) {
			uint64_t left = next - t;
			struct timespec ts = { 0, (long)left };
			nanosleep(&ts, NULL);
		}
		t = bench_now_ns();
		if (write(r->p[1], &t, sizeof(t)) != sizeof(t)) {
			r->failed = 1;
			break;
		}
	}
	return NULL;
}

static void *amain(void *arg)
{
	struct run *r = arg;
	weft_task *sp[64], *sl;
	pthread_t th;

	for (unsigned i = 0; i < r->spinners; i++)
		sp[i] = weft_spawn(spinner, r);
	sl = weft_spawn(sleeper, r);
	if (pthread_create(&th, NULL, writer, r) != 0) {
		r->failed = 1;
	} else {
		for (unsigned i = 0; i < r->reads_wanted; i++) {
			uint64_t sent;
			ssize_t n = weft_read(r->p[0], &sent, sizeof(sent), -1);

			if (n != sizeof(sent)) {
				r->failed = 1;
				break;
			}
			if (r->nread < MAX_SAMPLES)
				r->read_lat[r->nread++] = weft_now() - sent;
		}
		pthread_join(th, NULL);
	}
	atomic_store(&r->stop, 1);
	for (unsigned i = 0; i < r->spinners; i++) {
		weft_await(sp[i], NULL);
		weft_task_release(sp[i]);
	}
	weft_await(sl, NULL);
	weft_task_release(sl);
	return NULL;
}

static void report(const char *what, unsigned spinners, uint64_t *v,
		   unsigned n)
{
	uint64_t sum = 0;
	size_t p99;

	qsort(v, n, sizeof(*v), bench_cmp_u64);
	for (unsigned i = 0; i < n; i++)
		sum += v[i];
	p99 = (size_t)(0.99 * (double)n);
	if (p99 >= n)
		p99 = n - 1;
	printf("RESULT weft loaded_%s_%u %.1f us/p99 spinners=%u samples=%u "
	       "avg_us=%.1f max_us=%.1f\n",
	       what, spinners, (double)v[p99] / 1e3, spinners, n,
	       (double)sum / n / 1e3, (double)v[n - 1] / 1e3);
}

/* One window with `spinners` spinners; 0 on success. */
static int run_one(const struct bench_args *a, unsigned spinners)
{
	struct weft_config cfg;
	struct run *r = calloc(1, sizeof(*r));
	int rc;

	if (!r || pipe2(r->p, O_CLOEXEC) < 0)
		return -1;
	r->spinners = spinners > 64 ? 64 : spinners;
	r->reads_wanted = READS;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = a->workers ? a->workers : 2;
	rc = weft_run(amain, r, &cfg, NULL);
	close(r->p[0]);
	close(r->p[1]);
	if (rc < 0 || r->failed || !r->nread || !r->nsleep) {
		fprintf(stderr, "loaded_latency: %u spinners: failed (weft_run "
				"%d, %u reads, %u sleeps)\n",
			spinners, rc, r->nread, r->nsleep);
		free(r);
		return -1;
	}
	report("read", r->spinners, r->read_lat, r->nread);
	report("sleep", r->spinners, r->sleep_over, r->nsleep);
	free(r);
	return 0;
}

/* --n S: S spinners only; default: 4, then 16. */
int main(int argc, char **argv)
{
	struct bench_args a;

	bench_parse(argc, argv, &a);
	if (a.n)
		return run_one(&a, (unsigned)a.n) ? 1 : 0;
	return run_one(&a, 4) || run_one(&a, 16) ? 1 : 0;
}
