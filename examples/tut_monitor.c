/*
 * Tutorial 3: a status monitor. Three jobs, "cleaning" (3 s), "reading"
 * (7 s) and "writing" (14 s), run at once and record in a shared table
 * when they finish and how long they took; a fourth task wakes every 2
 * seconds and prints the uptime, every job's state and how many are still
 * running, and stops once none is.
 *
 * The asyncio program it answers: a dict of job states, all "ONGOING" at
 * first, and a counter of running jobs; job coroutines that sleep, then
 * write their duration into the dict and decrement the counter; a monitor
 * coroutine that loops on asyncio.sleep(2), prints the uptime and the
 * dict, and returns when the counter reaches zero; a main that gathers
 * the jobs and the monitor.
 *
 *   asyncio:                                  weft:
 *     status = {...}; running = 3               struct job table, running
 *     (one thread: no lock needed)              weft_lock around them
 *     await asyncio.gather(*jobs, monitor())    weft_gather(t, 4, NULL)
 *
 * In asyncio the table needs no lock: one thread runs every coroutine, and
 * none of them awaits while it updates the table. weft runs the four tasks
 * in parallel on several workers, so a job's update and the monitor's
 * read can really happen at the same time. A weft_lock (asyncio.Lock)
 * makes each update and each read of the whole table one step: the
 * monitor never sees a job marked done whose counter decrement is still
 * to come, so "running" always equals the number of ONGOING jobs it
 * prints. Waiting for the lock parks only the task, never its worker.
 *
 * Run:  tut_monitor [-s SCALE]
 * -s multiplies every duration (-s 0.01 runs 100 times faster). Times
 * are real seconds since the start; durations are measured:
 *
 *   uptime 0.00 s | cleaning ONGOING | reading ONGOING | writing ONGOING | running 3
 *   uptime 2.00 s | cleaning ONGOING | reading ONGOING | writing ONGOING | running 3
 *   cleaning finished after 3.00 s
 *   uptime 4.00 s | cleaning 3.00 | reading ONGOING | writing ONGOING | running 2
 *   ...
 *   writing finished after 14.00 s
 *   uptime 16.00 s | cleaning 3.00 | reading 7.00 | writing 14.00 | running 0
 *
 * (At 14 s the monitor and "writing" wake together: that line may show
 * writing ONGOING or done, and the last line comes at 14 or 16 s.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#define NJOBS 3
#define TICK_SECONDS 2.0

/* One row of the status table. name and seconds are set before any task
 * starts and never change; done and took are written by the job and read
 * by the monitor, both with the table lock held. */
struct job {
	const char *name;
	double seconds; /* nominal duration, before scaling */
	int done;       /* 0: ONGOING */
	double took;    /* measured duration in seconds, once done */
};

static double scale = 1.0;
static uint64_t start;          /* weft_now() when the jobs were started */
static weft_lock *table_lock;   /* guards jobs[].done/took and running */
static struct job jobs[NJOBS] = {
	{ "cleaning", 3 }, { "reading", 7 }, { "writing", 14 },
};
static unsigned running = NJOBS; /* jobs not done yet */

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

static double seconds_since(uint64_t t)
{
	return (double)(weft_now() - t) / (double)WEFT_NSEC_PER_SEC;
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	uint64_t begin = weft_now();
	double took;
	int err;

	err = weft_sleep(scaled_ns(j->seconds)); /* the work */
	if (err < 0)
		return (void *)(intptr_t)err;
	took = seconds_since(begin);
	err = weft_lock_acquire(table_lock);
	if (err < 0)
		return (void *)(intptr_t)err;
	j->done = 1;
	j->took = took;
	running--;
	weft_lock_release(table_lock);
	printf("%s finished after %.2f s\n", j->name, took);
	return NULL;
}

static void *monitor_main(void *arg)
{
	struct job snap[NJOBS];
	unsigned left;
	int err;

	(void)arg;
	for (uint64_t tick = 0;; tick++) {
		/* Ticks at fixed times from the start, so the uptimes do
		 * not drift by a wake-up delay per round. */
		err = weft_sleep_until(start + tick * scaled_ns(TICK_SECONDS));
		if (err < 0)
			return (void *)(intptr_t)err;
		/* Copy the table in one step; print outside the lock. */
		err = weft_lock_acquire(table_lock);
		if (err < 0)
			return (void *)(intptr_t)err;
		for (int i = 0; i < NJOBS; i++)
			snap[i] = jobs[i];
		left = running;
		weft_lock_release(table_lock);

		/* One printf per line: stdio's lock keeps a job's
		 * "finished" line from landing inside it. */
		char line[256];
		int n = snprintf(line, sizeof line, "uptime %.2f s",
				 seconds_since(start));
		for (int i = 0; i < NJOBS; i++) {
			if (snap[i].done)
				n += snprintf(line + n, sizeof line - (size_t)n,
					      " | %s %.2f", snap[i].name,
					      snap[i].took);
			else
				n += snprintf(line + n, sizeof line - (size_t)n,
					      " | %s ONGOING", snap[i].name);
		}
		printf("%s | running %u\n", line, left);
		if (left == 0)
			return NULL;
	}
}

static void *amain(void *arg)
{
	weft_task *t[NJOBS + 1];
	size_t n = 0;
	int err;

	(void)arg;
	err = weft_lock_create(&table_lock);
	if (err < 0) {
		fprintf(stderr, "weft_lock_create: %s\n", weft_strerror(err));
		return (void *)1;
	}
	start = weft_now();
	for (; n < NJOBS; n++)
		if (!(t[n] = weft_spawn(job_main, &jobs[n])))
			break;
	if (n == NJOBS && (t[n] = weft_spawn(monitor_main, NULL)))
		n++;
	if (n < NJOBS + 1) {
		fprintf(stderr, "weft_spawn failed\n");
		for (size_t i = 0; i < n; i++)
			weft_cancel(t[i]);
		err = -1;
	}
	void *res[NJOBS + 1];
	if (weft_gather(t, n, res) < 0)
		err = -1;
	for (size_t i = 0; i < n; i++) {
		if (res[i] != NULL)
			err = -1;
		weft_task_release(t[i]);
	}
	weft_lock_destroy(table_lock);
	return err < 0 ? (void *)1 : NULL;
}

int main(int argc, char **argv)
{
	void *res;
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
	err = weft_run(amain, NULL, NULL, &res);
	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
