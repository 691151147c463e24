/*
 * Tutorial "Asyncio Event Loops Tutorial", last program: an event loop
 * that runs until it is told to stop. Two workers each print a line
 * every second, forever; Ctrl-C (SIGINT) ends the loop, and the program
 * says "Closing Loop" and exits cleanly.
 *
 * The asyncio program: two coroutines that loop forever, sleeping 1 s and
 * printing "First Worker Executed" or "Second Worker Executed"; the main
 * script gets a loop, schedules both with ensure_future, calls
 * loop.run_forever() inside a try whose KeyboardInterrupt handler does
 * nothing, and in the finally clause prints "Closing Loop" and closes the
 * loop. tut_work_forever.c is the same with one coroutine.
 *
 *   asyncio:                                  weft:
 *     loop = asyncio.new_event_loop()           weft_runtime_create(&rt, &cfg)
 *     asyncio.ensure_future(first_worker())     weft_call_soon_threadsafe()
 *     loop.run_forever()                        weft_runtime_run_forever(rt)
 *     except KeyboardInterrupt                  WEFT_RUN_STOP_ON_SIGNALS
 *     loop.close()                              weft_runtime_destroy(rt)
 *
 * Here the runtime's workers are threads of its own, and the main thread
 * only drives it: weft_runtime_run_forever() blocks until weft_stop(),
 * which SIGINT or SIGTERM calls (config.flags = WEFT_RUN_STOP_ON_SIGNALS),
 * and so does the -t timer. Destroying the runtime cancels the two workers
 * (their sleep returns -ECANCELED, and they return) before freeing it.
 *
 * Run:  tut_forever [-s SCALE] [-t SECONDS]
 * -s multiplies the 1 s period (-s 0.01 prints 100 times as often); -t
 * stops the loop after SECONDS real seconds (not scaled), as if Ctrl-C had
 * been pressed; without it, only a signal ends the program.
 *
 * Output, the tutorial's lines:
 *
 *   First Worker Executed
 *   Second Worker Executed
 *   First Worker Executed
 *   Second Worker Executed
 *   ^CClosing Loop
 *
 * except that within a second either worker may print first: their two
 * 1 s sleeps end microseconds apart, and here they run in parallel on two
 * workers. (With one worker it would be no different: weft's timers
 * count in 16 us ticks and keep no order among the timers of one tick.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;
static double stop_after = -1; /* -t: seconds, or < 0 for never */

static uint64_t scaled_ns(double seconds)
{
	return (uint64_t)(seconds * scale * (double)WEFT_NSEC_PER_SEC);
}

/*
 * A worker: every period, one line, until cancelled.
 *
 * The workers keep running on their threads after run_forever() has
 * returned, until weft_runtime_destroy() cancels them, so one could print
 * after "Closing Loop". To keep that line the last, as in asyncio (where
 * nothing runs once run_forever has returned), a worker checks
 * weft_stop_requested() with stdout locked. weft_stop() has set it before
 * run_forever() returns, and main prints "Closing Loop" after that, under
 * the same stdio lock: a worker that takes the lock after main's line sees
 * the stop request and stays quiet; one that took it before printed
 * before that line.
 */
static void *worker_main(void *arg)
{
	const char *line = arg;

	while (weft_sleep(scaled_ns(1)) == 0) {
		flockfile(stdout);
		if (!weft_stop_requested())
			puts(line);
		funlockfile(stdout);
	}
	return NULL;
}

/* -t: stops the loop the way a signal would. Cancelled (and returns
 * without stopping anything) if a signal stopped the loop first. */
static void *stopper_main(void *arg)
{
	(void)arg;
	if (weft_sleep((uint64_t)(stop_after * (double)WEFT_NSEC_PER_SEC)) == 0)
		weft_stop(NULL); /* NULL: the caller's runtime */
	return NULL;
}

int main(int argc, char **argv)
{
	struct weft_config cfg = { .flags = WEFT_RUN_STOP_ON_SIGNALS };
	weft_runtime *rt;
	char *end;
	int opt, err;

	while ((opt = getopt(argc, argv, "s:t:h")) != -1) {
		switch (opt) {
		case 's':
			scale = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && scale > 0 &&
			    scale <= 1000)
				continue;
			break;
		case 't':
			stop_after = strtod(optarg, &end);
			if (end != optarg && *end == '\0' && stop_after >= 0 &&
			    stop_after < 1e6)
				continue;
			break;
		}
		fprintf(stderr, "usage: %s [-s SCALE] [-t SECONDS]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* lines show at once in a pipe */

	err = weft_runtime_create(&rt, &cfg);
	if (err < 0) {
		fprintf(stderr, "weft_runtime_create: %s\n", weft_strerror(err));
		return 1;
	}
	err = weft_call_soon_threadsafe(rt, NULL, worker_main,
					"First Worker Executed");
	if (err == 0)
		err = weft_call_soon_threadsafe(rt, NULL, worker_main,
						"Second Worker Executed");
	if (err == 0 && stop_after >= 0)
		err = weft_call_soon_threadsafe(rt, NULL, stopper_main, NULL);
	if (err == 0)
		err = weft_runtime_run_forever(rt); /* until SIGINT or -t */
	if (err < 0)
		fprintf(stderr, "tut_forever: %s\n", weft_strerror(err));
	printf("Closing Loop\n");
	weft_runtime_destroy(rt); /* cancels the workers, frees everything */
	return err < 0 ? 1 : 0;
}
