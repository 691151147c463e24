/*
 * ping_pong: `pairs` pairs of tasks (default 1,000) pass a token back and
 * forth `n` round trips (default 200) over two one-slot channels each
 * (weft_chan of capacity 1). All pairs run at once on every worker; the
 * figure is wall time divided by the round trips of all pairs (ns per round
 * trip, the throughput measure Tokio's sync benchmarks use). A round trip
 * is two sends, two receives and two task switches.
 *
 * The timed region is spawning the 2 * pairs tasks, the round trips and
 * gathering the tasks. The channels are made once, before the first
 * (warm-up) repetition, and reused by every repetition, so their creation
 * is outside the timed region; bench/tokio's ping_pong makes its channels
 * outside the timed region too (fresh ones per repetition, untimed, as a
 * Tokio channel's halves are moved into its tasks).
 *
 * --value BYTES passes a token of BYTES bytes by copy instead, over value
 * channels (weft_chan_create_sized), for the cost of the copy.
 *
 *   ping_pong [--workers N] [--reps N] [--n ROUND_TRIPS] [--pairs P]
 *             [--value BYTES]
 */
#include <errno.h>

#include "bench.h"

struct pair {
	weft_chan *a, *b; /* ping -> pong on a, pong -> ping on b */
	unsigned long trips;
};

static size_t value_size; /* --value: bytes of a token by copy; 0: pointer */

#define VALUE_MAX 4096

static void *pong(void *arg)
{
	struct pair *p = arg;
	unsigned char buf[VALUE_MAX];
	void *tok;

	for (unsigned long i = 0; i < p->trips; i++) {
		if (value_size ? weft_chan_recv_val(p->a, buf) < 0 ||
					 weft_chan_send_val(p->b, buf) < 0
			       : weft_chan_recv(p->a, &tok) < 0 ||
					 weft_chan_send(p->b, tok) < 0)
			return (void *)1;
	}
	return NULL;
}

static void *ping(void *arg)
{
	struct pair *p = arg;
	unsigned char buf[VALUE_MAX];
	void *tok = p;

	memset(buf, 0x5a, sizeof(buf));
	for (unsigned long i = 0; i < p->trips; i++) {
		if (value_size ? weft_chan_send_val(p->a, buf) < 0 ||
					 weft_chan_recv_val(p->b, buf) < 0
			       : weft_chan_send(p->a, tok) < 0 ||
					 weft_chan_recv(p->b, &tok) < 0 ||
					 tok != p)
			return (void *)1;
	}
	return NULL;
}

static unsigned long npairs = 1000, trips;
static struct pair *pairs;
static weft_task **tasks;
static void **results;

static uint64_t rep(void *ctx)
{
	uint64_t t0;
	unsigned long i;

	(void)ctx;
	t0 = bench_now_ns();
	for (i = 0; i < npairs; i++) {
		tasks[2 * i] = weft_spawn(pong, &pairs[i]);
		tasks[2 * i + 1] = weft_spawn(ping, &pairs[i]);
		if (!tasks[2 * i] || !tasks[2 * i + 1])
			return 0;
	}
	int err = weft_gather(tasks, 2 * npairs, results);
	uint64_t d = bench_now_ns() - t0;
	for (i = 0; i < 2 * npairs; i++) {
		weft_task_release(tasks[i]);
		if (results[i])
			err = -EPROTO;
	}
	return err ? 0 : d;
}

static struct bench_args args;

static int make_chan(weft_chan **c)
{
	return value_size ? weft_chan_create_sized(c, 1, value_size)
			  : weft_chan_create(c, 1);
}

static void *amain(void *p)
{
	uint64_t best;
	unsigned long i;

	(void)p;
	pairs = calloc(npairs, sizeof(*pairs));
	tasks = calloc(2 * npairs, sizeof(*tasks));
	results = calloc(2 * npairs, sizeof(*results));
	if (!pairs || !tasks || !results)
		return (void *)1;
	for (i = 0; i < npairs; i++) {
		pairs[i].trips = trips;
		if (make_chan(&pairs[i].a) < 0 || make_chan(&pairs[i].b) < 0)
			return (void *)1;
	}
	best = bench_best(rep, NULL, args.reps);
	for (i = 0; i < npairs; i++) {
		weft_chan_destroy(pairs[i].a);
		weft_chan_destroy(pairs[i].b);
	}
	free(pairs);
	free(tasks);
	free(results);
	if (!best)
		return (void *)1;
	printf("RESULT weft ping_pong %.1f ns/roundtrip pairs=%lu trips=%lu "
	       "workers=%u",
	       (double)best / ((double)npairs * trips), npairs, trips,
	       weft_worker_count());
	if (value_size)
		printf(" value=%zu", value_size);
	printf("\n");
	return NULL;
}

int main(int argc, char **argv)
{
	/* --pairs and --value are ours; the rest goes to bench_parse(). */
	char *rest[16];
	int nrest = 0;

	for (int i = 0; i < argc && nrest < 15; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--pairs")) {
			npairs = strtoul(argv[++i], NULL, 10);
			continue;
		}
		if (i + 1 < argc && !strcmp(argv[i], "--value")) {
			value_size = strtoul(argv[++i], NULL, 10);
			if (value_size > VALUE_MAX) {
				fprintf(stderr, "--value: at most %d\n",
					VALUE_MAX);
				return 2;
			}
			continue;
		}
		rest[nrest++] = argv[i];
	}
	rest[nrest] = NULL;
	bench_parse(nrest, rest, &args);
	trips = args.n ? args.n : 200;
	if (!npairs)
		npairs = 1;
	return bench_run(amain, NULL, &args);
}
