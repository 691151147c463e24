/*
 * Three tasks that each do some work and print "done", started together
 * and gathered: the first program of the README.
 *
 *   asyncio:                          weft:
 *     async def work(n): ...            void *work(void *arg) { ... }
 *     await asyncio.gather(a, b, c)     weft_gather(tasks, 3, results)
 */
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

static void *work(void *arg)
{
	uintptr_t n = (uintptr_t)arg;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < 1000000 * n; i++)
		sum += i;
	printf("task %lu done (sum %llu)\n", (unsigned long)n,
	       (unsigned long long)sum);
	return (void *)(n * 10);
}

static void *amain(void *arg)
{
	weft_task *t[3];
	void *r[3];

	(void)arg;
	for (uintptr_t i = 0; i < 3; i++)
		t[i] = weft_spawn(work, (void *)(i + 1));
	if (weft_gather(t, 3, r) < 0)
		return (void *)1;
	for (int i = 0; i < 3; i++) {
		printf("result %d: %lu\n", i, (unsigned long)(uintptr_t)r[i]);
		weft_task_release(t[i]);
	}
	return NULL;
}

int main(void)
{
	void *res;
	int err = weft_run(amain, NULL, NULL, &res);

	if (err < 0) {
		fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
		return 1;
	}
	return res == NULL ? 0 : 1;
}
