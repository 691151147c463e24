/*
 * Tutorial "Python: AsyncIO", the first create_task program: main makes
 * foo() a task and waits for it to finish before it goes on.
 *
 *   asyncio:                                  weft:
 *     my_task = asyncio.create_task(foo())      weft_spawn(foo, NULL)
 *     await my_task                             weft_await(my_task, NULL)
 *
 * Output, the tutorial's lines (it shows none for this program; these are
 * what its code prints), the second 2 seconds after the first:
 *
 *   This goes first!
 *   This goes second, after waiting!
 *
 * The order needs no help here: main prints nothing until foo has ended.
 *
 * Run:  tut_await_task [-s SCALE]
 * -s multiplies the 2 s wait (-s 0.1 runs ten times faster).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static double scale = 1.0;

static void *foo(void *arg)
{
	(void)arg;
	printf("This goes first!\n");
	if (weft_sleep((uint64_t)(2 * scale * (double)WEFT_NSEC_PER_SEC)) < 0)
		return (void *)1;
	return NULL;
}

static void *amain(void *arg)
{
	weft_task *my_task;
	void *res = NULL;
	int err;

	(void)arg;
	my_task = weft_spawn(foo, NULL); /* make foo() a task */
	if (!my_task)
		return (void *)1;
	err = weft_await(my_task, &res); /* let it finish */
	weft_task_release(my_task);
	if (err < 0 || res) {
		fprintf(stderr, "await: %s\n", weft_strerror(err));
		return (void *)1;
	}
	printf("This goes second, after waiting!\n");
	return NULL;
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
