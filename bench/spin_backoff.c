/*
 * Spin-wait back-off under contention, with and without more threads than
 * cores: the runtime's spinlock loop (runtime/spin.h: pauses doubling
 * to 64, then sched_yield) against a bare pause loop (what weft had) and
 * Concurrency Kit's ck_backoff_eb (exponential compiler-barrier loop, no
 * pause, no yield). Each of T threads takes the lock, does a short critical
 * section, releases it, for a fixed time. Reports acquisitions per second
 * and CPU time per acquisition (getrusage), which is what a preempted
 * holder costs the others.
 *
 *   bench/spin_backoff [seconds] [threads...]   (default 1 s; 2, 8, 16)
 *
 * Standalone: the lock variants are written out here (the runtime's is an
 * inline in an internal header); no weft runtime is started.
 */
#define _GNU_SOURCE
#define CK_USE_CC_BUILTINS 1
#include <ck_backoff.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline void relax(void)
{
#if defined(__x86_64__)
	__asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

enum { BARE, CK_EB, WEFT };
static const char *names[] = { "bare_pause", "ck_backoff_eb", "weft_backoff" };

static atomic_bool held;
static atomic_int stop;
static unsigned long counter; /* under the lock */
static int variant;

static void lock(void)
{
	unsigned n = 0;
	ck_backoff_t ck = CK_BACKOFF_INITIALIZER;

	for (;;) {
		if (!atomic_exchange_explicit(&held, true, memory_order_acquire))
			return;
		while (atomic_load_explicit(&held, memory_order_relaxed)) {
			switch (variant) {
			case BARE:
				relax();
				break;
			case CK_EB:
				ck_backoff_eb(&ck);
				break;
			default:
				if (n < 7) {
					for (unsigned i = 1u << n; i; i--)
						relax();
					n++;
				} else {
					sched_yield();
				}
			}
		}
	}
}

static void unlock(void)
{
	atomic_store_explicit(&held, false, memory_order_release);
}

static void *worker(void *arg)
{
	unsigned long *mine = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		lock();
		counter++;
		for (int i = 0; i < 20; i++) /* a short critical section */
			__asm__ volatile("" ::: "memory");
		unlock();
		++*mine;
	}
	return NULL;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	int counts[8] = { 2, 8, 16 }, ncounts = 3;

	if (argc > 2) {
		ncounts = 0;
		for (int i = 2; i < argc && ncounts < 8; i++)
			counts[ncounts++] = atoi(argv[i]);
	}
	for (int c = 0; c < ncounts; c++) {
		for (variant = 0; variant < 3; variant++) {
			int n = counts[c];
			pthread_t th[256];
			unsigned long per[256];
			struct timespec ts = { (time_t)secs,
					       (long)((secs - (time_t)secs) * 1e9) };
			double c0 = cpu_s(), c1;
			unsigned long total = 0, minv = ~0ul;

			if (n > 256)
				n = 256;
			memset(per, 0, sizeof(per));
			atomic_store(&stop, 0);
			for (int i = 0; i < n; i++)
				pthread_create(&th[i], NULL, worker, &per[i]);
			nanosleep(&ts, NULL);
			atomic_store(&stop, 1);
			for (int i = 0; i < n; i++) {
				pthread_join(th[i], NULL);
				total += per[i];
				if (per[i] < minv)
					minv = per[i];
			}
			c1 = cpu_s();
			printf("RESULT bench=spin_backoff variant=%s threads=%d "
			       "acq_per_s=%.0f cpu_ns_per_acq=%.1f "
			       "min_thread_share=%.3f\n",
			       names[variant], n, total / secs,
			       (c1 - c0) * 1e9 / (total ? total : 1),
			       total ? (double)minv * n / total : 0.0);
		}
	}
	return 0;
}
