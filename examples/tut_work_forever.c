/*
 * Tutorial "Asyncio Event Loops Tutorial", the run_forever() program: one
 * coroutine prints "Task Executed" every second, forever; the loop runs
 * until Ctrl-C, and the program then says "Closing Loop" and ends.
 *
 *   asyncio:                                  weft:
 *     loop = asyncio.get_event_loop()           weft_runtime_create(&rt, &cfg)
 *     asyncio.ensure_future(work())             weft_call_soon_threadsafe()
 *     loop.run_forever()                        weft_runtime_run_forever(rt)
 *     except KeyboardInterrupt: pass            WEFT_RUN_STOP_ON_SIGNALS
 *     finally: print(...); loop.close()         printf(); weft_runtime_destroy()
 *
 * Output, the tutorial's lines (it shows none for this program; these are
 * what its code prints):
 *
 *   Task Executed
 *   Task Executed
 *   ^CClosing Loop
 *
 * asyncio turns Ctrl-C into KeyboardInterrupt, raised out of
 * run_forever(). Here SIGINT (or SIGTERM) calls weft_stop(), because the
 * runtime was made with WEFT_RUN_STOP_ON_SIGNALS, and run_forever()
 * returns normally: no handler to write. The runtime's workers are
 * threads of its own; the main thread only drives it, as the main script
 * drives asyncio's loop. Destroying the runtime cancels work() (its sleep
 * returns -ECANCELED) before freeing everything.
 *
 * Run:  tut_work_forever [-s SCALE] [-t SECONDS]
 * -s multiplies the 1 s period (-s 0.1 prints ten times as often); -t
 * stops the loop after SECONDS real seconds (not scaled), as if Ctrl-C
 * had been pressed; without it, only a signal ends the program.
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
 * work(): every second, one line, until cancelled.
 *
 * It keeps running on the runtime's thread after run_forever() has
 * returned, until weft_runtime_destroy() cancels it, so it could print
 * after "Closing Loop". In asyncio nothing runs once run_forever() has
 * returned; to keep that line the last, work() checks
 * weft_stop_requested() with stdout locked. weft_stop() has set it before
 * run_forever() returns, and main prints "Closing Loop" after that, under
 * the same stdio lock: if work() takes the lock after main's line, it
 * sees the stop and stays quiet; if before, its line came first.
 */
static void *work(void *arg)
{
	(void)arg;
	while (weft_sleep(scaled_ns(1)) == 0) {
		flockfile(stdout);
		if (!weft_stop_requested())
			puts("Task Executed");
		funlockfile(stdout);
	}
	return NULL;
}

/* -t: stops the loop the way a signal would. Cancelled (and returns
 * without stopping anything) if a signal stopped the loop first. */
static void *stopper(void *arg)
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
	err = weft_call_soon_threadsafe(rt, NULL, work, NULL);
	if (err == 0 && stop_after >= 0)
		err = weft_call_soon_threadsafe(rt, NULL, stopper, NULL);
	if (err == 0)
		err = weft_runtime_run_forever(rt); /* until SIGINT or -t */
	if (err < 0)
		fprintf(stderr, "tut_work_forever: %s\n", weft_strerror(err));
	printf("Closing Loop\n");
	weft_runtime_destroy(rt); /* cancels work(), frees everything */
	return err < 0 ? 1 : 0;
}
