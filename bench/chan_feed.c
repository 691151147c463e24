/*
 * chan_feed: a channel fed from threads outside the runtime (issue 13).
 * Producers send n items (default 200,000) in all into one channel of
 * capacity `cap` (default 16); one receiver task per worker takes them
 * until the channel is closed and drained. Four workloads:
 *   chan_feed_task   one producer that is a task (the baseline);
 *   chan_feed_1      one producer on a blocking-pool thread
 *                    (weft_run_blocking), one channel message per item;
 *   chan_feed_4      four pool-thread producers at once (contention on
 *                    the channel's lock from four foreign threads);
 *   chan_feed_batch  one pool-thread producer that sends a batch of 64
 *                    items per channel message (docs/guide.md's way).
 * Each reports the best repetition's wall time per item, the CPU time the
 * whole process used per item over that repetition (getrusage, user +
 * system; workers that park idle use none), and the CPU time of the
 * producer threads alone per item (RUSAGE_THREAD, summed):
 *   RESULT weft chan_feed_1 <ns> ns/item items=N producers=P batch=B
 *          cap=K cpu_ns_per_item=C feeder_cpu_ns_per_item=F workers=W
 *
 * A small capacity makes most items a wake-up on one side or the other
 * (at 16 the foreign thread parks on a full channel about once per item;
 * --cap 256 lets it run ahead); --only NAME runs one workload (for perf).
 *
 *   chan_feed [--workers N] [--reps N] [--n ITEMS] [--cap C] [--only NAME]
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <errno.h>
#include <stdbool.h>
#include <sys/resource.h>

#include "bench.h"

static unsigned long cap = 16;
#define BATCH 64
#define MAX_PRODUCERS 4
#define MAX_CONSUMERS 64

struct feed {
	weft_chan *c;
	unsigned long items; /* this producer's share */
	unsigned long first; /* its first item's number (items are 1...) */
	unsigned batch;      /* items per message (1: one item each) */
	bool pool;           /* on a blocking-pool thread */
	uint64_t cpu_ns;     /* the producer thread's CPU time */
	int err;
};

/* A batch message: the items of one send. */
struct batch {
	unsigned n;
	uintptr_t v[BATCH];
};

static atomic_ulong received, sum;

static uint64_t cpu_ns(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
		       1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
		       1000u;
}

static void *produce(void *arg)
{
	struct feed *f = arg;
	uint64_t c0 = f->pool ? cpu_ns(RUSAGE_THREAD) : 0;
	unsigned long i = 0;

	while (i < f->items && !f->err) {
		if (f->batch == 1) {
			f->err = weft_chan_send(f->c,
						(void *)(f->first + i));
			i++;
			continue;
		}
		/* The receiver frees it. */
		struct batch *b = malloc(sizeof(*b));
		if (!b) {
			f->err = -ENOMEM;
			break;
		}
		for (b->n = 0; b->n < f->batch && i < f->items; i++)
			b->v[b->n++] = f->first + i;
		f->err = weft_chan_send(f->c, b);
	}
	if (f->pool)
		f->cpu_ns = cpu_ns(RUSAGE_THREAD) - c0;
	return NULL;
}

static void *pool_produce(void *arg)
{
	int err = weft_run_blocking(produce, arg, NULL);

	return err < 0 ? (void *)1 : NULL;
}

/* A receiver task: counts and sums what it takes, until the channel is
 * closed and drained. */
static void *consume(void *arg)
{
	struct feed *f = arg;
	unsigned long n = 0, s = 0;
	void *v;

	while (weft_chan_recv(f->c, &v) == 0) {
		if (f->batch == 1) {
			n++;
			s += (uintptr_t)v;
			continue;
		}
		struct batch *b = v;
		for (unsigned k = 0; k < b->n; k++)
			s += b->v[k];
		n += b->n;
		free(b);
	}
	atomic_fetch_add(&received, n);
	atomic_fetch_add(&sum, s);
	return NULL;
}

struct workload {
	const char *name;
	unsigned producers, batch;
	bool pool;
};

struct outcome {
	uint64_t ns, cpu_ns, feeder_cpu_ns;
};

static unsigned long n;

/* One repetition; false on a failure. */
static bool rep(const struct workload *wl, struct outcome *o)
{
	struct feed f[MAX_PRODUCERS], cf;
	weft_task *prod[MAX_PRODUCERS], *cons[MAX_CONSUMERS];
	unsigned nc = weft_worker_count(), i;
	unsigned long share = n / wl->producers;
	uint64_t t0, c0;
	bool ok = true;

	if (nc > MAX_CONSUMERS)
		nc = MAX_CONSUMERS;
	if (weft_chan_create(&cf.c, cap) < 0)
		return false;
	cf.batch = wl->batch;
	atomic_store(&received, 0);
	atomic_store(&sum, 0);
	c0 = cpu_ns(RUSAGE_SELF);
	t0 = bench_now_ns();
	for (i = 0; i < nc; i++)
		if (!(cons[i] = weft_spawn(consume, &cf)))
			return false;
	for (i = 0; i < wl->producers; i++) {
		f[i] = (struct feed){ .c = cf.c, .items = share,
				      .first = 1 + i * share,
				      .batch = wl->batch, .pool = wl->pool };
		if (!(prod[i] = weft_spawn(wl->pool ? pool_produce : produce,
					   &f[i])))
			return false;
	}
	weft_gather(prod, wl->producers, NULL);
	weft_chan_close(cf.c);
	weft_gather(cons, nc, NULL);
	o->ns = bench_now_ns() - t0;
	o->cpu_ns = cpu_ns(RUSAGE_SELF) - c0;
	o->feeder_cpu_ns = 0;
	for (i = 0; i < wl->producers; i++) {
		ok &= f[i].err == 0;
		o->feeder_cpu_ns += f[i].cpu_ns;
		weft_task_release(prod[i]);
	}
	for (i = 0; i < nc; i++)
		weft_task_release(cons[i]);
	weft_chan_destroy(cf.c);
	unsigned long m = share * wl->producers;
	if (atomic_load(&received) != m ||
	    atomic_load(&sum) != m * (m + 1) / 2) {
		fprintf(stderr, "chan_feed: %s: %lu of %lu items arrived\n",
			wl->name, atomic_load(&received), m);
		return false;
	}
	return ok;
}

static struct bench_args args;
static const char *only;

static void *amain(void *p)
{
	static const struct workload wls[] = {
		{ "chan_feed_task", 1, 1, false },
		{ "chan_feed_1", 1, 1, true },
		{ "chan_feed_4", 4, 1, true },
		{ "chan_feed_batch", 1, BATCH, true },
	};

	(void)p;
	for (size_t k = 0; k < sizeof(wls) / sizeof(wls[0]); k++) {
		const struct workload *wl = &wls[k];
		struct outcome best = { UINT64_MAX, 0, 0 }, o;
		unsigned long m = n / wl->producers * wl->producers;

		if (only && strcmp(only, wl->name))
			continue;

		/* A warm-up, then the fastest of reps. */
		for (unsigned r = 0; r <= args.reps; r++) {
			if (!rep(wl, &o))
				return (void *)1;
			if (r && o.ns < best.ns)
				best = o;
		}
		printf("RESULT weft %s %.1f ns/item items=%lu producers=%u "
		       "batch=%u cap=%lu cpu_ns_per_item=%.1f "
		       "feeder_cpu_ns_per_item=%.1f workers=%u\n",
		       wl->name, (double)best.ns / m, m, wl->producers,
		       wl->batch, cap, (double)best.cpu_ns / m,
		       wl->pool ? (double)best.feeder_cpu_ns / m : 0.0,
		       weft_worker_count());
		fflush(stdout);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	/* --cap and --only are ours; the rest goes to bench_parse(). */
	char *rest[16];
	int nrest = 0;

	for (int i = 0; i < argc && nrest < 15; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--cap"))
			cap = strtoul(argv[++i], NULL, 10);
		else if (i + 1 < argc && !strcmp(argv[i], "--only"))
			only = argv[++i];
		else
			rest[nrest++] = argv[i];
	}
	rest[nrest] = NULL;
	bench_parse(nrest, rest, &args);
	n = args.n ? args.n : 200000;
	if (n < MAX_PRODUCERS * BATCH)
		n = MAX_PRODUCERS * BATCH;
	return bench_run(amain, NULL, &args);
}
