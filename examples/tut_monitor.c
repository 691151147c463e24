/*
 * Tutorial "Asyncio Event Loop in Action", second program: a status
 * monitor. Three jobs, "cleaning" (3 s), "reading" (7 s) and "writing"
 * (14 s), record their state in a shared table (the tutorial's LOGGER
 * dict) and a shared count of running jobs (RUNNING); a fourth task
 * prints the uptime, the table and the count every 2 seconds, and stops
 * once no job runs.
 *
 *   asyncio:                                   weft:
 *     loop = asyncio.new_event_loop()            weft_runtime_create()
 *     loop.run_until_complete(gather(...))       weft_runtime_run(rt, amain)
 *     loop.close()                               weft_runtime_destroy(rt)
 *     LOGGER.update({name: 'ONGOING'})           logger[logged++] = job
 *     await asleep(2)                            weft_sleep(2 s)
 *
 * Output, the tutorial's lines (the uptimes as measured):
 *
 *   uptime: 0.00
 *   Events in the loop: {'cleaning': 'ONGOING', 'reading': 'ONGOING', 'writing': 'ONGOING'}
 *   Still running: 3
 *
 *   uptime: 2.00
 *   ...
 *   uptime: 14.00
 *   Events in the loop: {'cleaning': 'duration: 3.00', 'reading': 'duration: 7.00', 'writing': 'duration: 14.00'}
 *   Still running: 0
 *
 * Each report ends with one empty line, as the tutorial's
 * print(f'Still running: {RUNNING}\n') makes; the page shows two, an
 * artefact of how it was pasted. Its later uptimes read 8.01, 10.01...:
 * each asleep(2) starts after the previous report was printed, so the
 * reports drift by that much every round. They drift the same way here,
 * by tens of microseconds a round, which shows in the last digit only
 * when -s magnifies it (at -s 0.1 the later ones may read 10.01 too).
 *
 * One worker, as asyncio has one thread (weft_config.workers = 1). That
 * gives the program asyncio's two guarantees, which the output relies
 * on: a task runs undisturbed until it waits, so the table needs no lock
 * (with several workers, guard it with a weft_lock); and the job and the
 * monitor that wake near 14 s run in deadline order, so the 14 s report
 * already sees "writing" done, as in the tutorial.
 *
 * Run:  tut_monitor [-s SCALE]
 * -s multiplies every wait (-s 0.1 runs ten times faster); times are
 * printed in nominal seconds (real ones divided by SCALE).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define NJOBS 3

struct job {
	const char *name;
	double seconds; /* nominal duration, before scaling */
	int done;       /* 0: ONGOING */
	double took;    /* measured duration, nominal seconds, once done */
};

static double scale = 1.0;
static struct job jobs[NJOBS] = {
	{ "cleaning", 3 }, { "reading", 7 }, { "writing", 14 },
};
/* The LOGGER dict: jobs in the order they first reported. */
static struct job *logger[NJOBS];
static unsigned logged;
static unsigned running; /* RUNNING */

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

/* Real time since t in nominal seconds (divided by the scale). */
static double nominal_since(uint64_t t)
{
	return (double)(weft_now() - t) / (double)WEFT_NSEC_PER_SEC / scale;
}

static void *some_work(void *arg)
{
	struct job *j = arg;
	uint64_t start = weft_now();

	logger[logged++] = j;
	running++;
	if (weft_sleep(scaled_ns(j->seconds)) < 0)
		return (void *)1;
	j->done = 1;
	j->took = nominal_since(start);
	running--;
	return NULL;
}

/* print(f'Events in the loop: {LOGGER}'), as Python shows a dict. */
static void print_logger(void)
{
	printf("Events in the loop: {");
	for (unsigned i = 0; i < logged; i++) {
		printf("%s'%s': ", i ? ", " : "", logger[i]->name);
		if (logger[i]->done)
			printf("'duration: %.2f'", logger[i]->took);
		else
			printf("'ONGOING'");
	}
	printf("}\n");
}

static void *read_statuses(void *arg)
{
	uint64_t start = weft_now();

	(void)arg;
	for (;;) {
		printf("uptime: %.2f\n", nominal_since(start));
		print_logger();
		printf("Still running: %u\n\n", running);
		if (!running) /* the jobs have all returned */
			return NULL;
		if (weft_sleep(scaled_ns(2)) < 0)
			return (void *)1;
	}
}

/*
 * asyncio.gather() starts its tasks in the order given, each running up
 * to its first await before the next begins: that is what fills LOGGER
 * before the monitor's first report. weft runs the task spawned last
 * first (it takes the worker's next slot), so each spawn is followed by
 * a yield, which lets the new task run up to its first wait now.
 */
static weft_task *start(weft_fn fn, void *arg)
{
	weft_task *t = weft_spawn(fn, arg);

	if (t)
		weft_yield();
	return t;
}

static void *amain(void *arg)
{
	weft_task *t[NJOBS + 1];
	void *res[NJOBS + 1];
	size_t n = 0;
	int err = 0;

	(void)arg;
	for (; n < NJOBS; n++)
		if (!(t[n] = start(some_work, &jobs[n])))
			break;
	if (n == NJOBS && (t[n] = start(read_statuses, NULL)))
		n++;
	if (n < NJOBS + 1) {
		fprintf(stderr, "weft_spawn failed\n");
		for (size_t i = 0; i < n; i++)
			weft_cancel(t[i]);
		err = -1;
	}
	if (weft_gather(t, n, res) < 0)
		err = -1;
	for (size_t i = 0; i < n; i++) {
		if (res[i] != NULL)
			err = -1;
		weft_task_release(t[i]);
	}
	return err < 0 ? (void *)1 : NULL;
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .workers = 1 }; /* asyncio's one thread */
	weft_runtime *rt;
	void *res = NULL;
	char *end;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:h")) != -1) {
		if (opt == 's') {
			scale = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && scale > 0 &&
			    scale <= 1000)
				continue;
		}
		fprintf(stderr, "usage: %s [-s SCALE]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines show at once in a pipe */
	err = weft_runtime_create(&rt, &cfg);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_create: %s\n", weft_strerror(err));
		return 1;
	}
	err = weft_runtime_run(rt, amain, NULL, &res);
	weft_runtime_destroy(rt);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
