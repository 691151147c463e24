/*
 * Tasks: spawn, await, gather, handles (retain, release, detach, stale),
 * names, weft_self(), weft_yield(), spawn options and error strings.
 */
#include <fenv.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "weft_test.h"

WT_SUITE(task, 90);

static void *ret_arg(void *arg)
{
	return arg;
}

static void *ret_double(void *arg)
{
	return (void *)((uintptr_t)arg * 2);
}

/* ---- spawn, await, gather ----------------------------------------------- */

static void *await_result_main(void *arg)
{
	void *r = NULL;
	weft_task *t = weft_spawn(ret_double, (void *)21);

	(void)arg;
	if (!WT_CHECK(t != NULL))
		return NULL;
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 42);
	/* A second await of an ended task gives the same result again. */
	r = NULL;
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 42);
	/* result may be NULL. */
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	return (void *)7;
}

Test(task, await_returns_the_result_of_the_spawned_task,
     .timeout = WT_TIMEOUT(10))
{
	void *r = wt_run(await_result_main, NULL, 2);

	cr_assert_eq(r, (void *)7, "weft_run must hand back main's result");
}

static void *run_result_main(void *arg)
{
	return arg;
}

Test(task, weft_run_hands_back_main_result_and_accepts_null_result,
     .timeout = WT_TIMEOUT(10))
{
	int x;
	void *r = NULL;

	cr_assert_eq(weft_run(run_result_main, &x, NULL, &r), 0);
	cr_assert_eq(r, &x);
	cr_assert_eq(weft_run(run_result_main, &x, NULL, NULL), 0);
	cr_assert_eq(weft_run(NULL, NULL, NULL, NULL), -EINVAL);
	WT_LEAK_ASSERT();
}

#define MANY_TASKS 100000

static void *many_main(void *arg)
{
	weft_task **ts = calloc(MANY_TASKS, sizeof(*ts));
	void **rs = calloc(MANY_TASKS, sizeof(*rs));
	uint64_t sum = 0;
	int rc;

	(void)arg;
	if (!WT_CHECK(ts && rs))
		goto out;
	for (uintptr_t i = 0; i < MANY_TASKS; i++) {
		ts[i] = weft_spawn(ret_double, (void *)i);
		if (!WT_CHECK(ts[i] != NULL))
			goto out;
	}
	rc = weft_gather(ts, MANY_TASKS, rs);
	WT_CHECK_EQ(rc, 0);
	for (size_t i = 0; i < MANY_TASKS; i++) {
		sum += (uintptr_t)rs[i];
		WT_CHECK_EQ(weft_task_release(ts[i]), 0);
	}
out:
	free(ts);
	free(rs);
	return (void *)(uintptr_t)sum;
}

Test(task, hundred_thousand_tasks_gathered_with_correct_sum,
     .timeout = WT_TIMEOUT(60))
{
	uint64_t want = (uint64_t)MANY_TASKS * (MANY_TASKS - 1); /* 2*sum i */
	void *r = wt_run(many_main, NULL, 0);

	cr_assert_eq((uint64_t)(uintptr_t)r, want, "sum %llu, want %llu",
		     (unsigned long long)(uintptr_t)r,
		     (unsigned long long)want);
}

/* Task i yields (N - i) * 3 times, so later tasks end first. */
#define ORDER_N 16

static void *yield_then_ret(void *arg)
{
	uintptr_t i = (uintptr_t)arg;

	for (uintptr_t k = 0; k < (ORDER_N - i) * 3; k++)
		WT_CHECK_EQ(weft_yield(), 0);
	return (void *)(i + 100);
}

static void *gather_order_main(void *arg)
{
	weft_task *ts[ORDER_N];
	void *rs[ORDER_N];

	(void)arg;
	for (uintptr_t i = 0; i < ORDER_N; i++) {
		ts[i] = weft_spawn(yield_then_ret, (void *)i);
		WT_CHECK(ts[i] != NULL);
		rs[i] = (void *)(uintptr_t)0xbad;
	}
	WT_CHECK_EQ(weft_gather(ts, ORDER_N, rs), 0);
	for (uintptr_t i = 0; i < ORDER_N; i++) {
		WT_CHECK_PTR_EQ(rs[i], i + 100);
		weft_task_release(ts[i]);
	}
	/* Gathering nothing is fine; results may be NULL. */
	WT_CHECK_EQ(weft_gather(NULL, 0, NULL), 0);
	WT_CHECK_EQ(weft_gather(NULL, 3, NULL), -EINVAL);
	return NULL;
}

Test(task, gather_stores_results_in_the_order_given,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(gather_order_main, NULL, 1);
	wt_run(gather_order_main, NULL, 3);
}

/* ---- many awaiters of one task ------------------------------------------ */

#define AWAITERS 64

struct many_awaiters {
	struct wt_gate gate;
	weft_task *target;
	atomic_long entered;
	atomic_long got;
};

static void *awaiter_fn(void *arg)
{
	struct many_awaiters *m = arg;
	void *r = NULL;
	int rc;

	atomic_fetch_add(&m->entered, 1);
	rc = weft_await(m->target, &r);
	WT_CHECK_EQ(rc, 0);
	WT_CHECK_PTR_EQ(r, 0x5eed);
	if (rc == 0 && r == (void *)0x5eed)
		atomic_fetch_add(&m->got, 1);
	return NULL;
}

static void *many_awaiters_main(void *arg)
{
	struct many_awaiters m = { .gate.value = (void *)0x5eed };
	weft_task *ws[AWAITERS];

	(void)arg;
	m.target = weft_spawn(wt_gate_fn, &m.gate);
	WT_CHECK(m.target != NULL);
	for (int i = 0; i < AWAITERS; i++)
		ws[i] = weft_spawn(awaiter_fn, &m);
	/* Let every awaiter reach its await before the target can end. */
	WT_CHECK(wt_yield_until_count(&m.entered, AWAITERS, 10000000));
	for (int i = 0; i < 20; i++)
		weft_yield();
	WT_CHECK_EQ(weft_task_done(m.target), 0);
	atomic_store(&m.gate.open, 1);
	WT_CHECK_EQ(weft_gather(ws, AWAITERS, NULL), 0);
	WT_CHECK_EQ(atomic_load(&m.got), AWAITERS);
	for (int i = 0; i < AWAITERS; i++)
		weft_task_release(ws[i]);
	weft_task_release(m.target);
	return NULL;
}

Test(task, many_tasks_awaiting_one_handle_all_get_its_result,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(many_awaiters_main, NULL, 1);
	wt_run(many_awaiters_main, NULL, 2);
	wt_run(many_awaiters_main, NULL, 4);
}

/* ---- calls outside task context ----------------------------------------- */

struct foreign_await {
	weft_task *t;
	int await_rc, gather_rc, yield_rc, self_null, shield_rc;
	atomic_int done;
};

static void *foreign_await_thread(void *arg)
{
	struct foreign_await *f = arg;
	void *r = (void *)1;

	f->await_rc = weft_await(f->t, &r);
	f->gather_rc = weft_gather(&f->t, 1, NULL);
	f->yield_rc = weft_yield();
	f->self_null = weft_self() == NULL;
	f->shield_rc = weft_shield_begin();
	WT_CHECK_PTR_EQ(r, 1); /* untouched */
	atomic_store(&f->done, 1);
	return NULL;
}

static void *foreign_await_main(void *arg)
{
	struct foreign_await *f = arg;
	struct wt_gate g = { .value = NULL };
	pthread_t th;

	f->t = weft_spawn(wt_gate_fn, &g);
	WT_CHECK_EQ(pthread_create(&th, NULL, foreign_await_thread, f), 0);
	/* Keep the handle's task alive while the thread uses it. */
	WT_CHECK(wt_yield_until(&f->done, 100000000));
	pthread_join(th, NULL);
	atomic_store(&g.open, 1);
	WT_CHECK_EQ(weft_await(f->t, NULL), 0);
	weft_task_release(f->t);
	return NULL;
}

Test(task, await_from_a_thread_outside_the_runtime_returns_eperm,
     .timeout = WT_TIMEOUT(10))
{
	struct foreign_await f;

	memset(&f, 0, sizeof(f));
	wt_run(foreign_await_main, &f, 2);
	cr_assert_eq(f.await_rc, -EPERM);
	cr_assert_eq(f.gather_rc, -EPERM);
	cr_assert_eq(f.yield_rc, -EPERM);
	cr_assert_eq(f.shield_rc, -EPERM);
	cr_assert(f.self_null);

	/* And from the test's own thread, with no runtime at all. */
	cr_assert_eq(weft_await((weft_task *)&f, NULL), -EPERM);
	cr_assert_eq(weft_yield(), -EPERM);
	cr_assert_eq(weft_gather(NULL, 0, NULL), -EPERM);
	cr_assert_null(weft_self());
	cr_assert_null(weft_spawn(ret_arg, NULL));
	cr_assert_eq(weft_spawn_opts(NULL, ret_arg, NULL,
				     &(struct weft_spawn_opts){
					     .flags = WEFT_SPAWN_DETACHED }),
		     -EPERM);
}

/* ---- self, deadlock, NULL ----------------------------------------------- */

static void *self_await_fn(void *arg)
{
	weft_task *me = weft_self();
	weft_task *list[2];

	(void)arg;
	WT_CHECK(me != NULL);
	WT_CHECK_EQ(weft_await(me, NULL), -EDEADLK);
	list[0] = me;
	list[1] = me;
	WT_CHECK_EQ(weft_gather(list, 2, NULL), -EDEADLK);
	return (void *)1;
}

static void *self_await_main(void *arg)
{
	void *r = NULL;
	weft_task *t;

	(void)arg;
	WT_CHECK_EQ(weft_await(weft_self(), NULL), -EDEADLK);
	WT_CHECK_EQ(weft_await(NULL, NULL), -EINVAL);
	t = weft_spawn(self_await_fn, NULL);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 1);
	weft_task_release(t);
	return NULL;
}

Test(task, awaiting_yourself_returns_edeadlk, .timeout = WT_TIMEOUT(10))
{
	wt_run(self_await_main, NULL, 2);
}

/* ---- stale handles ------------------------------------------------------ */

static void *stale_main(void *arg)
{
	weft_task *t = weft_spawn(ret_arg, (void *)5), *more[8];
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 5);
	WT_CHECK_EQ(weft_task_release(t), 0);
	/* With one worker the task has fully left by the time our await
	 * returned: the release above dropped its last reference. */
	WT_CHECK_EQ(weft_task_done(t), -ESRCH);
	/* Recycle control blocks: the stale handle must not name them. */
	for (int i = 0; i < 8; i++)
		more[i] = weft_spawn(ret_arg, (void *)(uintptr_t)i);
	WT_CHECK_EQ(weft_gather(more, 8, NULL), 0);
	WT_CHECK_EQ(weft_await(t, &r), -ESRCH);
	WT_CHECK_EQ(weft_task_done(t), -ESRCH);
	WT_CHECK(weft_task_name(t) == NULL);
	WT_CHECK_EQ(weft_cancel(t), -ESRCH);
	WT_CHECK_EQ(weft_task_retain(t), -ESRCH);
	WT_CHECK_EQ(weft_task_release(t), -ESRCH);
	WT_CHECK_EQ(weft_detach(t), -ESRCH);
	weft_task *one[1] = { t };
	WT_CHECK_EQ(weft_gather(one, 1, NULL), -ESRCH);
	/* The recycled tasks are still fine. */
	for (int i = 0; i < 8; i++) {
		WT_CHECK_EQ(weft_task_done(more[i]), 1);
		WT_CHECK_EQ(weft_task_release(more[i]), 0);
	}
	return NULL;
}

Test(task, awaiting_a_stale_handle_returns_esrch, .timeout = WT_TIMEOUT(10))
{
	wt_run(stale_main, NULL, 1);
}

/* With several workers the ended task may still be leaving its stack when
 * our await returns; its own reference goes soon after. */
static void *stale_multi_main(void *arg)
{
	(void)arg;
	for (int round = 0; round < 200; round++) {
		weft_task *t = weft_spawn(ret_arg, NULL);
		int i;

		WT_CHECK_EQ(weft_await(t, NULL), 0);
		WT_CHECK_EQ(weft_task_release(t), 0);
		for (i = 0; i < 100000 && weft_task_done(t) != -ESRCH; i++)
			weft_yield();
		WT_CHECK_EQ(weft_task_done(t), -ESRCH);
		WT_CHECK_EQ(weft_await(t, NULL), -ESRCH);
	}
	return NULL;
}

Test(task, handle_goes_stale_after_last_release_with_several_workers,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(stale_multi_main, NULL, 3);
}

/* ---- references --------------------------------------------------------- */

static void *retain_main(void *arg)
{
	weft_task *t = weft_spawn(ret_arg, (void *)9);
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_task_retain(t), 0);
	WT_CHECK_EQ(weft_task_retain(t), 0);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	/* Three references now: two releases leave the handle valid. */
	WT_CHECK_EQ(weft_task_release(t), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	for (int i = 0; i < 10; i++)
		weft_yield();
	WT_CHECK_EQ(weft_task_done(t), 1);
	WT_CHECK(weft_task_name(t) != NULL);
	r = NULL;
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 9);
	WT_CHECK_EQ(weft_task_release(t), 0);
	WT_CHECK_EQ(weft_task_done(t), -ESRCH);

	WT_CHECK_EQ(weft_task_retain(NULL), -EINVAL);
	WT_CHECK_EQ(weft_task_release(NULL), -EINVAL);
	WT_CHECK_EQ(weft_detach(NULL), -EINVAL);
	WT_CHECK_EQ(weft_task_done(NULL), -EINVAL);
	WT_CHECK(weft_task_name(NULL) == NULL);
	return NULL;
}

Test(task, retain_and_release_count_references, .timeout = WT_TIMEOUT(10))
{
	wt_run(retain_main, NULL, 1);
}

/* Releasing the only handle while the task still runs does not stop it. */
struct release_running {
	struct wt_gate gate;
	atomic_int finished;
};

static void *finish_after_gate(void *arg)
{
	struct release_running *s = arg;

	while (!atomic_load(&s->gate.open))
		weft_yield();
	atomic_store(&s->finished, 1);
	return NULL;
}

static void *release_running_main(void *arg)
{
	struct release_running *s = arg;
	weft_task *t = weft_spawn(finish_after_gate, s);

	WT_CHECK_EQ(weft_yield(), 0);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	atomic_store(&s->gate.open, 1);
	WT_CHECK(wt_yield_until(&s->finished, 10000000));
	return NULL;
}

Test(task, releasing_the_last_handle_lets_the_task_run_on,
     .timeout = WT_TIMEOUT(10))
{
	struct release_running s;

	memset(&s, 0, sizeof(s));
	wt_run(release_running_main, &s, 2);
	cr_assert_eq(atomic_load(&s.finished), 1);
}

/*
 * A stale handle kept while its control block is reused over and over on
 * one worker (the block cache hands the same block back each time): it
 * must never name the task that now lives in the block. With a 16-bit
 * generation the 65,536th reuse matched again: weft_task_done() said 0 and
 * weft_cancel() cancelled the live task, which then never ran.
 */
static void *reuse_main(void *arg)
{
	weft_task *stale = weft_spawn(ret_arg, (void *)1);
	long *rounds = arg;

	WT_CHECK_EQ(weft_await(stale, NULL), 0);
	WT_CHECK_EQ(weft_task_release(stale), 0);
	for (long i = 1; i <= 2 * 65536 + 10; i++) {
		weft_task *t = weft_spawn(ret_arg, (void *)(uintptr_t)i);
		void *r = NULL;

		if (!WT_CHECK(t != NULL))
			break;
		if (!WT_CHECK_EQ(weft_task_done(stale), -ESRCH) ||
		    !WT_CHECK_EQ(weft_cancel(stale), -ESRCH) ||
		    !WT_CHECK_EQ(weft_task_retain(stale), -ESRCH) ||
		    !WT_CHECK_EQ(weft_await(t, &r), 0) ||
		    !WT_CHECK_PTR_EQ(r, (uintptr_t)i)) {
			cr_log_error("stale handle matched after %ld reuses",
				     i);
			weft_task_release(t);
			break;
		}
		weft_task_release(t);
		*rounds = i;
	}
	return NULL;
}

Test(task, a_stale_handle_never_names_a_reused_block,
     .timeout = WT_TIMEOUT(60))
{
	long rounds = 0;

	wt_run(reuse_main, &rounds, 1);
	cr_assert_eq(rounds, 2 * 65536 + 10);
}

/* Releasing a handle more times than it was retained is reported
 * (-ESRCH) and leaves the task alone: before, the extra release dropped
 * the task's own reference and its block went back to the pool while it
 * was still queued. */
static void *double_release_main(void *arg)
{
	struct release_running *s = arg;
	weft_task *t = weft_spawn(finish_after_gate, s);

	WT_CHECK_EQ(weft_task_retain(t), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	/* Every handle reference is gone; the task still runs. */
	WT_CHECK_EQ(weft_task_release(t), -ESRCH);
	WT_CHECK_EQ(weft_detach(t), -ESRCH);
	/* A new reference may still be taken while the task lives (as
	 * from weft_self()'s handle), and given back once. */
	WT_CHECK_EQ(weft_task_retain(t), 0);
	WT_CHECK_EQ(weft_task_release(t), 0);
	WT_CHECK_EQ(weft_task_release(t), -ESRCH);
	/* Fresh tasks must not land in its block meanwhile. */
	for (int i = 0; i < 100; i++) {
		weft_task *o = weft_spawn(ret_arg, (void *)(uintptr_t)i);
		void *r = NULL;
		WT_CHECK_EQ(weft_await(o, &r), 0);
		WT_CHECK_PTR_EQ(r, i);
		WT_CHECK_EQ(weft_task_release(o), 0);
	}
	WT_CHECK_EQ(weft_task_done(t), 0);
	atomic_store(&s->gate.open, 1);
	WT_CHECK(wt_yield_until(&s->finished, 10000000));
	return NULL;
}

Test(task, releasing_a_handle_once_too_often_is_reported,
     .timeout = WT_TIMEOUT(10))
{
	struct release_running s;

	memset(&s, 0, sizeof(s));
	wt_run(double_release_main, &s, 1);
	cr_assert_eq(atomic_load(&s.finished), 1);
}

/* A handle of a runtime that has ended names nothing. */
static void *keep_handle_main(void *arg)
{
	weft_task **out = arg;

	*out = weft_spawn(ret_arg, (void *)5);
	WT_CHECK_EQ(weft_await(*out, NULL), 0);
	return NULL;
}

Test(task, a_handle_of_an_ended_runtime_is_stale, .timeout = WT_TIMEOUT(10))
{
	weft_task *h = NULL;

	wt_run(keep_handle_main, &h, 1);
	/* Its last reference was never released: the runtime dropped it. */
	cr_assert_eq(weft_task_done(h), -ESRCH);
	cr_assert_eq(weft_cancel(h), -ESRCH);
	wt_run(keep_handle_main, &(weft_task *){ NULL }, 1);
	cr_assert_eq(weft_task_done(h), -ESRCH);
}

/* ---- floating-point control state of new tasks ------------------------ */

/*
 * A new task starts with its spawner's floating-point control state (the
 * rounding mode here), taken at the spawn: not with that of whichever
 * task happened to be switching out when the new one got its stack. (A
 * task spawned by a round-to-nearest main used to start rounding upward
 * because another task that rounds upward ran just before it.)
 */
struct fpround {
	atomic_int upward_ready;
	atomic_int release;
	int child_of_main, child_of_upward;
};

static void *report_round(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)fegetround();
}

static void *round_upward(void *arg)
{
	struct fpround *s = arg;
	weft_task *t;
	void *r = NULL;

	fesetround(FE_UPWARD);
	t = weft_spawn(report_round, NULL);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	weft_task_release(t);
	s->child_of_upward = (int)(intptr_t)r;
	atomic_store(&s->upward_ready, 1);
	/* Keep switching with rounding upward while main spawns. */
	while (!atomic_load(&s->release))
		weft_yield();
	fesetround(FE_TONEAREST);
	return NULL;
}

static void *fpround_main(void *arg)
{
	struct fpround *s = arg;
	weft_task *up = weft_spawn(round_upward, s), *t;
	void *r = NULL;

	WT_CHECK(wt_yield_until(&s->upward_ready, 1000000));
	WT_CHECK_EQ(fegetround(), FE_TONEAREST);
	/* Several, so that some get their stacks while the other task
	 * switches out (it yields between them). */
	s->child_of_main = FE_TONEAREST;
	weft_task *kids[20];
	for (int i = 0; i < 20; i++)
		kids[i] = weft_spawn(report_round, NULL);
	for (int i = 0; i < 20; i++) {
		WT_CHECK_EQ(weft_await(kids[i], &r), 0);
		weft_task_release(kids[i]);
		if ((int)(intptr_t)r != FE_TONEAREST)
			s->child_of_main = (int)(intptr_t)r;
	}
	(void)t;
	atomic_store(&s->release, 1);
	WT_CHECK_EQ(weft_await(up, NULL), 0);
	weft_task_release(up);
	return NULL;
}

Test(task, a_new_task_starts_with_its_spawners_rounding_mode,
     .timeout = WT_TIMEOUT(10))
{
	struct fpround s;

	memset(&s, 0, sizeof(s));
	wt_run(fpround_main, &s, 1);
	cr_assert_eq(s.child_of_main, FE_TONEAREST,
		     "spawned by a round-to-nearest task, started with %d",
		     s.child_of_main);
	cr_assert_eq(s.child_of_upward, FE_UPWARD,
		     "spawned by a round-upward task, started with %d",
		     s.child_of_upward);
}

/* ---- detach ------------------------------------------------------------- */

#define DETACHED_N 500

static void *count_up(void *arg)
{
	atomic_fetch_add((atomic_long *)arg, 1);
	return NULL;
}

static void *detach_main(void *arg)
{
	atomic_long *count = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };
	weft_task *out = (weft_task *)1;

	for (int i = 0; i < DETACHED_N; i++) {
		weft_task *t = weft_spawn(count_up, count);
		WT_CHECK_EQ(weft_detach(t), 0);
	}
	for (int i = 0; i < DETACHED_N; i++)
		WT_CHECK_EQ(weft_spawn_opts(NULL, count_up, count, &o), 0);
	/* With out given, DETACHED stores NULL there. */
	WT_CHECK_EQ(weft_spawn_opts(&out, count_up, count, &o), 0);
	WT_CHECK(out == NULL);
	WT_CHECK(wt_yield_until_count(count, 2 * DETACHED_N + 1, 10000000));
	return NULL;
}

Test(task, detached_tasks_run_to_completion, .timeout = WT_TIMEOUT(10))
{
	atomic_long count = 0;

	wt_run(detach_main, &count, 2);
	cr_assert_eq(atomic_load(&count), 2 * DETACHED_N + 1);
}

/* ---- done, name, self, yield -------------------------------------------- */

struct self_probe {
	weft_task *seen_self;
	const char *seen_name;
	char name_copy[64];
};

static void *probe_self(void *arg)
{
	struct self_probe *p = arg;

	p->seen_self = weft_self();
	p->seen_name = weft_task_name(weft_self());
	if (p->seen_name)
		snprintf(p->name_copy, sizeof(p->name_copy), "%s",
			 p->seen_name);
	WT_CHECK_EQ(weft_task_done(weft_self()), 0);
	return NULL;
}

static void *done_name_self_main(void *arg)
{
	struct self_probe p = { 0 }, q = { 0 };
	struct weft_spawn_opts o = { .name = "worker-of-the-month" };
	struct weft_spawn_opts lo = {
		.name = "a-name-that-is-much-longer-than-thirty-one-bytes"
	};
	struct wt_gate g = { .value = NULL };
	weft_task *t, *u, *gt;
	char scratch[16];

	(void)arg;
	WT_CHECK(weft_self() != NULL);
	WT_CHECK(weft_task_name(weft_self()) != NULL &&
		 strcmp(weft_task_name(weft_self()), "main") == 0);
	WT_CHECK_EQ(weft_yield(), 0);

	/* done: 0 while running, 1 once ended. */
	gt = weft_spawn(wt_gate_fn, &g);
	WT_CHECK_EQ(weft_task_done(gt), 0);
	weft_yield();
	WT_CHECK_EQ(weft_task_done(gt), 0);
	atomic_store(&g.open, 1);
	WT_CHECK_EQ(weft_await(gt, NULL), 0);
	WT_CHECK_EQ(weft_task_done(gt), 1);
	weft_task_release(gt);

	/* Default name, and weft_self() inside is the spawner's handle. */
	t = weft_spawn(probe_self, &p);
	WT_CHECK(strcmp(weft_task_name(t), "task") == 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	WT_CHECK(p.seen_self == t);
	WT_CHECK(strcmp(p.name_copy, "task") == 0);
	WT_CHECK(strcmp(weft_task_name(t), "task") == 0);
	weft_task_release(t);

	/* Given name, copied (the caller's buffer may change). */
	snprintf(scratch, sizeof(scratch), "%s", "scratch-name");
	o.name = scratch;
	WT_CHECK_EQ(weft_spawn_opts(&u, probe_self, &q, &o), 0);
	memset(scratch, 'x', sizeof(scratch) - 1);
	WT_CHECK_EQ(weft_await(u, NULL), 0);
	WT_CHECK(strcmp(q.name_copy, "scratch-name") == 0);
	WT_CHECK(strcmp(weft_task_name(u), "scratch-name") == 0);
	weft_task_release(u);

	/* Long names are truncated to 31 bytes. */
	WT_CHECK_EQ(weft_spawn_opts(&u, ret_arg, NULL, &lo), 0);
	WT_CHECK_EQ(strlen(weft_task_name(u)), 31);
	WT_CHECK(strncmp(weft_task_name(u), lo.name, 31) == 0);
	WT_CHECK_EQ(weft_await(u, NULL), 0);
	weft_task_release(u);
	return NULL;
}

Test(task, done_name_and_self_report_the_task, .timeout = WT_TIMEOUT(10))
{
	wt_run(done_name_self_main, NULL, 2);
	cr_assert_null(weft_self());
	cr_assert_null(weft_task_name(NULL));
}

static void *yield_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++)
		if (!WT_CHECK_EQ(weft_yield(), 0))
			break;
	return (void *)3;
}

static void *yield_main(void *arg)
{
	weft_task *ts[4];

	(void)arg;
	for (int i = 0; i < 4; i++)
		ts[i] = weft_spawn(yield_many, NULL);
	WT_CHECK_EQ(weft_yield(), 0);
	WT_CHECK_EQ(weft_gather(ts, 4, NULL), 0);
	for (int i = 0; i < 4; i++)
		weft_task_release(ts[i]);
	return NULL;
}

Test(task, yield_returns_zero, .timeout = WT_TIMEOUT(20))
{
	wt_run(yield_main, NULL, 2);
}

/*
 * "Lets every other runnable task on this worker run, then continues (the
 * task goes to the back of its worker's queue)": on one worker, tasks that
 * do nothing but note their number and yield must take turns in a fixed
 * cycle, each once per turn. A yield that does not switch (or that puts
 * the task at the front) lets one task run many steps in a row.
 */
#define RR_TASKS 4
#define RR_STEPS 50

struct rr {
	int log[RR_TASKS * RR_STEPS];
	int n; /* one worker: no concurrent access */
	int rc_bad;
};

struct rr_arg {
	struct rr *rr;
	int id;
};

static void *rr_task(void *arg)
{
	struct rr_arg *a = arg;

	for (int i = 0; i < RR_STEPS; i++) {
		a->rr->log[a->rr->n++] = a->id;
		if (weft_yield() != 0)
			a->rr->rc_bad++;
	}
	return NULL;
}

static void *rr_main(void *arg)
{
	struct rr *rr = arg;
	struct rr_arg as[RR_TASKS];
	weft_task *ts[RR_TASKS];

	for (int i = 0; i < RR_TASKS; i++) {
		as[i].rr = rr;
		as[i].id = i;
		ts[i] = weft_spawn(rr_task, &as[i]);
		WT_CHECK(ts[i] != NULL);
	}
	WT_CHECK_EQ(weft_gather(ts, RR_TASKS, NULL), 0);
	for (int i = 0; i < RR_TASKS; i++)
		weft_task_release(ts[i]);
	return NULL;
}

Test(task, yielding_tasks_on_one_worker_take_turns_round_robin,
     .timeout = WT_TIMEOUT(20))
{
	struct rr rr;
	int seen = 0;

	/* The hazard mode (tests/run migrate) sends every yield through the
	 * shared inject queue, on purpose not in this order; the order is
	 * what this test checks. (Criterion runs each test in a process of
	 * its own.) */
	unsetenv("WEFT_DEBUG_MIGRATE");
	memset(&rr, 0, sizeof(rr));
	wt_run(rr_main, &rr, 1);
	cr_assert_eq(rr.n, RR_TASKS * RR_STEPS);
	cr_assert_eq(rr.rc_bad, 0, "%d yields did not return 0", rr.rc_bad);
	/* The first turn: every task once, in some order. */
	for (int i = 0; i < RR_TASKS; i++) {
		cr_assert(rr.log[i] >= 0 && rr.log[i] < RR_TASKS);
		cr_assert(!(seen & (1 << rr.log[i])),
			  "task %d ran twice in the first turn (steps %d, "
			  "%d, %d, %d): its yield let no other task run",
			  rr.log[i], rr.log[0], rr.log[1], rr.log[2],
			  rr.log[3]);
		seen |= 1 << rr.log[i];
	}
	/* Then the same order turn after turn. */
	for (int i = RR_TASKS; i < RR_TASKS * RR_STEPS; i++)
		cr_assert_eq(rr.log[i], rr.log[i - RR_TASKS],
			     "step %d ran task %d, but the turn before ran "
			     "task %d in that place: not round-robin",
			     i, rr.log[i], rr.log[i - RR_TASKS]);
}

/* ---- spawn options ------------------------------------------------------ */

/* Uses ~600 KiB of stack: only fits a stack larger than the default. */
static void *big_frame(void *arg)
{
	volatile char buf[600 * 1024];

	buf[0] = 1;
	buf[sizeof(buf) - 1] = 2;
	for (size_t i = 0; i < sizeof(buf); i += 4096)
		buf[i] = (char)i;
	return (void *)(uintptr_t)(buf[0] + buf[sizeof(buf) - 1] + 1 +
				   (uintptr_t)arg);
}

/*
 * The usable stack of a task, seen from inside: its top is page-aligned
 * (a stack is whole pages above its guard) and the task's first frame lies
 * in its highest page, so the lowest usable byte of a `want`-byte stack is
 * top - want, and nearly all of it lies below that first frame (an
 * unrounded stack would start up to a page lower). The bytes are probed
 * with write(2) from them into a pipe, which fails with EFAULT on a guard
 * (MADV_GUARD_INSTALL or PROT_NONE) instead of killing the test.
 */
struct stack_edge {
	size_t ps, want;
	size_t below_first_frame; /* bytes from the first frame down */
	int lowest_readable, lowest_written, below_faults;
};

static const size_t edge_sizes[] = { 100 * 1024 + 123, 64 * 1024 + 1,
				     128 * 1024 - 1 };

static int byte_readable(const volatile char *p)
{
	int fds[2], ok;
	char c;

	if (pipe(fds) < 0)
		return -1;
	ok = write(fds[1], (const void *)p, 1) == 1;
	if (ok && read(fds[0], &c, 1) != 1)
		ok = -1;
	close(fds[0]);
	close(fds[1]);
	return ok;
}

static void *stack_edge_task(void *arg)
{
	struct stack_edge *e = arg;
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	uintptr_t top = (here + e->ps - 1) & ~(uintptr_t)(e->ps - 1);
	volatile char *lowest = (volatile char *)(top - e->want);

	e->below_first_frame = here - (uintptr_t)lowest;
	e->lowest_readable = byte_readable(lowest) == 1;
	if (e->lowest_readable) {
		*lowest = 0x5a;
		e->lowest_written = *lowest == 0x5a;
	}
	e->below_faults = byte_readable(lowest - 1) == 0;
	return e;
}

static void *spawn_opts_main(void *arg)
{
	struct weft_spawn_opts o;
	weft_task *t = (weft_task *)1;
	void *r = NULL;

	(void)arg;
	/* stack_size */
	memset(&o, 0, sizeof(o));
	o.stack_size = 1024 * 1024;
	o.name = "big-frame";
	WT_CHECK_EQ(weft_spawn_opts(&t, big_frame, (void *)10, &o), 0);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK(r != NULL);
	weft_task_release(t);

	/* Stack size that is not a page multiple is rounded up: the whole
	 * rounded size is usable, down to its lowest byte, and the guard
	 * starts right under it. */
	for (size_t k = 0; k < sizeof(edge_sizes) / sizeof(edge_sizes[0]);
	     k++) {
		struct stack_edge e;

		memset(&e, 0, sizeof(e));
		e.ps = (size_t)sysconf(_SC_PAGESIZE);
		e.want = (edge_sizes[k] + e.ps - 1) & ~(e.ps - 1);
		o.stack_size = edge_sizes[k];
		o.name = NULL;
		WT_CHECK_EQ(weft_spawn_opts(&t, stack_edge_task, &e, &o), 0);
		WT_CHECK_EQ(weft_await(t, &r), 0);
		WT_CHECK_PTR_EQ(r, &e);
		WT_CHECK(strcmp(weft_task_name(t), "task") == 0);
		weft_task_release(t);
		if (!e.lowest_readable || !e.lowest_written) {
			char b[160];

			snprintf(b, sizeof(b),
				 "stack_size %zu: byte %zu below the top is not "
				 "usable: the stack is smaller than %zu (rounded "
				 "up to pages)",
				 edge_sizes[k], e.want, e.want);
			wt_fail_(__FILE__, __LINE__, b);
		}
		if (e.below_first_frame < e.want - 2048) {
			char b[160];

			snprintf(b, sizeof(b),
				 "stack_size %zu: the task starts %zu bytes "
				 "above the guard, less than the %zu promised "
				 "(rounded up to pages) minus 2 KiB",
				 edge_sizes[k], e.below_first_frame, e.want);
			wt_fail_(__FILE__, __LINE__, b);
		}
		if (!e.below_faults) {
			char b[160];

			snprintf(b, sizeof(b),
				 "stack_size %zu: byte %zu below the top is not "
				 "the guard: the stack is larger than %zu",
				 edge_sizes[k], e.want + 1, e.want);
			wt_fail_(__FILE__, __LINE__, b);
		}
	}

	/* NULL options mean defaults. */
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_double, (void *)5, NULL), 0);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 10);
	weft_task_release(t);

	/* Errors. */
	memset(&o, 0, sizeof(o));
	o.flags = 0x4;
	t = (weft_task *)1;
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_arg, NULL, &o), -EINVAL);
	o.flags = 0x80000000u | WEFT_SPAWN_PINNED;
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_arg, NULL, &o), -EINVAL);
	o.flags = 0;
	WT_CHECK_EQ(weft_spawn_opts(NULL, ret_arg, NULL, &o), -EINVAL);
	WT_CHECK_EQ(weft_spawn_opts(&t, NULL, NULL, &o), -EINVAL);
	o.stack_size = (size_t)1 << 41;
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_arg, NULL, &o), -EINVAL);
	/* Reserved words are for fields to come: zero, or refused. */
	o.stack_size = 0;
	o.reserved[0] = 1;
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_arg, NULL, &o), -EINVAL);
	o.reserved[0] = 0;
	o.reserved[1] = 1;
	WT_CHECK_EQ(weft_spawn_opts(&t, ret_arg, NULL, &o), -EINVAL);
	WT_CHECK_PTR_EQ(t, 1); /* untouched on error */
	WT_CHECK(weft_spawn(NULL, NULL) == NULL);
	return NULL;
}

Test(task, spawn_options_name_stack_size_and_bad_flags,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(spawn_opts_main, NULL, 2);
}

/* A task whose stack cannot be had ends with -ENOMEM: its awaiters see
 * it. The address space is limited so the mapping of a huge stack fails. */
static void *enomem_main(void *arg)
{
	struct weft_spawn_opts o = { .stack_size = (size_t)1 << 40 };
	atomic_long *ran = arg;
	weft_task *t;
	void *r = (void *)1;

	WT_CHECK_EQ(weft_spawn_opts(&t, (weft_fn)count_up, ran, &o), 0);
	WT_CHECK_EQ(weft_await(t, &r), -ENOMEM);
	WT_CHECK(r == NULL);
	WT_CHECK_EQ(weft_task_done(t), 1);
	weft_task_release(t);
	/* The runtime carries on. */
	t = weft_spawn(ret_arg, (void *)3);
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 3);
	weft_task_release(t);
	return NULL;
}

static size_t vm_size_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

Test(task, await_reports_enomem_when_no_stack_can_be_had,
     .timeout = WT_TIMEOUT(10))
{
	atomic_long ran = 0;
	size_t vm = vm_size_bytes();
	struct rlimit rl;

	cr_assert_gt(vm, 0);
	/* Room for the runtime's threads and rings, not for 1 TiB. This test
	 * runs in its own process (Criterion forks), so the limit stays
	 * here. */
	rl.rlim_cur = rl.rlim_max = vm + ((size_t)4 << 30);
	cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
	wt_run(enomem_main, &ran, 1);
	cr_assert_eq(atomic_load(&ran), 0, "the body of a task that got no "
					   "stack must not run");
}

/* ---- error strings and version ------------------------------------------ */

Test(task, strerror_names_every_error_code)
{
	static const struct {
		int err;
		const char *want;
	} known[] = {
		{ 0, "success" },
		{ -ECANCELED, "cancelled" },
		{ -ESRCH, "stale task handle" },
		{ -EDEADLK, "await itself" },
		{ -EPERM, "not in task context" },
		{ -EBUSY, "inside a runtime" },
		{ -EALREADY, "already ended" },
		{ -ENOMEM, "out of memory" },
		{ -EINVAL, "invalid argument" },
		{ -EAGAIN, "temporarily unavailable" },
		{ -ENOSYS, "io_uring" },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		const char *s = weft_strerror(known[i].err);
		cr_assert_not_null(s);
		cr_assert(strstr(s, known[i].want) != NULL,
			  "weft_strerror(%d) = \"%s\", want \"%s\" in it",
			  known[i].err, s, known[i].want);
	}
	/* Other errno values get the C library's text, the resolver's
	 * codes the resolver's (test_pool.c checks each). */
	cr_assert_str_eq(weft_strerror(-EIO), strerrordesc_np(EIO));
	cr_assert_str_eq(weft_strerror(WEFT_EAI_NONAME),
			 "Name or service not known");
	/* Never NULL, even for nonsense. */
	cr_assert_not_null(weft_strerror(12345));
	cr_assert_not_null(weft_strerror(-100000));
	cr_assert_str_eq(weft_strerror(-100000), "unknown error");
}

/* INT_MIN is a negative int like any other; negating it is undefined
 * behaviour, which the UBSan build turns into an abort. */
Test(task, strerror_of_int_min_is_defined)
{
	const char *s = weft_strerror(-2147483647 - 1);

	cr_assert_not_null(s);
	cr_assert_str_eq(s, "unknown error");
}

Test(task, version_matches_the_header)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", WEFT_VERSION_MAJOR,
		 WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
	cr_assert_str_eq(weft_version(), want);
	/* The number: the same version, ordered as versions are. */
	cr_assert_eq(weft_version_number(), (unsigned)WEFT_VERSION_NUMBER);
	cr_assert_eq(WEFT_VERSION_NUMBER,
		     WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 +
			     WEFT_VERSION_PATCH);
	cr_assert_lt(WEFT_VERSION_MINOR, 100);
	cr_assert_lt(WEFT_VERSION_PATCH, 100);
}

/* ---- floating-point exception flags of a new task --------------------------
 * weft.h: a new task starts "with no exception flags raised". The flags are
 * the thread's (the switch carries control state only), so a child could
 * start with whatever its spawner, or any task before it on that thread,
 * had raised: before the fix, a child of a task that had divided by zero
 * started with FE_DIVBYZERO raised (tests/PROMISES.md 1.11). */
static void *report_flags(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)fetestexcept(FE_ALL_EXCEPT);
}

static void *fpflags_main(void *arg)
{
	int *got = arg;
	void *r = NULL;

	for (int i = 0; i < 20; i++) {
		weft_task *t;

		WT_CHECK_EQ(feraiseexcept(FE_DIVBYZERO | FE_INEXACT), 0);
		WT_CHECK(fetestexcept(FE_DIVBYZERO) != 0); /* the spawner's */
		t = weft_spawn(report_flags, NULL);
		WT_CHECK_EQ(weft_await(t, &r), 0);
		weft_task_release(t);
		if ((int)(intptr_t)r != 0)
			*got = (int)(intptr_t)r;
	}
	feclearexcept(FE_ALL_EXCEPT);
	return NULL;
}

Test(task, a_new_task_starts_with_no_exception_flags_raised,
     .timeout = WT_TIMEOUT(10))
{
	int got = 0;

	wt_run(fpflags_main, &got, 1);
	cr_assert_eq(got, 0,
		     "a task spawned while its thread had FE_DIVBYZERO | "
		     "FE_INEXACT raised started with flags 0x%x raised", got);
}

/* ---- errors as results (weft_is_err, weft_ptr_err) ------------------------
 * weft.h: an error pointer is one of "the top 4095 addresses"; weft_ptr_err
 * gives its errno back, 0 for any other pointer. */
Test(task, error_pointers_are_the_top_4095_addresses_only)
{
	int local;

	cr_assert(weft_is_err((void *)-1), "(void *)-1 is not an error");
	cr_assert(weft_is_err((void *)-4095),
		  "(void *)-4095 (-WEFT_MAX_ERRNO) is not an error");
	cr_assert(!weft_is_err((void *)-4096),
		  "(void *)-4096 is taken for an error");
	cr_assert(!weft_is_err(NULL), "NULL is taken for an error");
	cr_assert(!weft_is_err(&local), "a stack address is an error");
	cr_assert_eq(weft_ptr_err(weft_err_ptr(-EIO)), -EIO,
		     "weft_ptr_err(weft_err_ptr(-EIO)) = %d",
		     weft_ptr_err(weft_err_ptr(-EIO)));
	cr_assert_eq(weft_ptr_err(weft_err_ptr(-4095)), -4095,
		     "weft_ptr_err of the lowest error pointer = %d",
		     weft_ptr_err(weft_err_ptr(-4095)));
	cr_assert_eq(weft_ptr_err(&local), 0,
		     "weft_ptr_err of a real pointer = %d",
		     weft_ptr_err(&local));
	cr_assert_eq(weft_ptr_err(NULL), 0, "weft_ptr_err(NULL) = %d",
		     weft_ptr_err(NULL));
	cr_assert_eq(weft_ptr_err((void *)-4096), 0,
		     "weft_ptr_err((void *)-4096) = %d",
		     weft_ptr_err((void *)-4096));
}

/* ---- gather: the first error in list order ---------------------------------
 * weft.h: gather returns "the first error weft_await() would give for
 * them, in order". A task cancelled before it started gives -ECANCELED,
 * weft_self() gives -EDEADLK; whichever comes first in the list wins. */
static void *gather_first_error_main(void *arg)
{
	int *got = arg;
	weft_task *c = weft_spawn(ret_arg, NULL), *list[2];

	if (!WT_CHECK(c != NULL))
		return NULL;
	/* One worker and no suspension since the spawn: c has not started. */
	WT_CHECK_EQ(weft_cancel(c), 0);
	list[0] = c;
	list[1] = weft_self();
	got[0] = weft_gather(list, 2, NULL);
	list[0] = weft_self();
	list[1] = c;
	got[1] = weft_gather(list, 2, NULL);
	weft_task_release(c);
	return NULL;
}

Test(task, gather_returns_the_first_error_in_list_order,
     .timeout = WT_TIMEOUT(10))
{
	int got[2] = { 1, 1 };

	wt_run(gather_first_error_main, got, 1);
	cr_assert_eq(got[0], -ECANCELED,
		     "gather([cancelled, self]) = %d (%s), want -ECANCELED",
		     got[0], weft_strerror(got[0]));
	cr_assert_eq(got[1], -EDEADLK,
		     "gather([self, cancelled]) = %d (%s), want -EDEADLK",
		     got[1], weft_strerror(got[1]));
}

/* ---- a cancelled yield still yields ----------------------------------------
 * weft.h: weft_yield() returns -ECANCELED with a cancellation pending, "the
 * yield still happened": a partner on the same (only) worker runs during
 * each such yield. */
#define CYIELD_N 20

struct cyield {
	atomic_long count;
	atomic_int stop;
	int bad_rc, stalled;
};

static void *cyield_partner(void *arg)
{
	struct cyield *s = arg;

	while (!atomic_load(&s->stop)) {
		atomic_fetch_add(&s->count, 1);
		weft_yield();
	}
	return NULL;
}

static void *cyield_victim(void *arg)
{
	struct cyield *s = arg;

	WT_CHECK_EQ(weft_cancel(weft_self()), 0);
	for (int i = 0; i < CYIELD_N; i++) {
		long before = atomic_load(&s->count);
		int rc = weft_yield();

		if (rc != -ECANCELED)
			s->bad_rc = rc ? rc : 1;
		if (atomic_load(&s->count) == before)
			s->stalled++;
	}
	atomic_store(&s->stop, 1);
	return NULL;
}

static void *cyield_main(void *arg)
{
	struct cyield *s = arg;
	weft_task *p = weft_spawn(cyield_partner, s);
	weft_task *v = weft_spawn(cyield_victim, s);

	if (!WT_CHECK(p != NULL && v != NULL))
		return NULL;
	weft_await(v, NULL);
	atomic_store(&s->stop, 1);
	WT_CHECK_EQ(weft_await(p, NULL), 0);
	weft_task_release(p);
	weft_task_release(v);
	return NULL;
}

Test(task, a_yield_with_a_cancel_pending_still_lets_others_run,
     .timeout = WT_TIMEOUT(10))
{
	struct cyield s;

	memset(&s, 0, sizeof(s));
	wt_run(cyield_main, &s, 1);
	cr_assert_eq(s.bad_rc, 0,
		     "a yield with a cancel pending returned %d, want -ECANCELED",
		     s.bad_rc);
	cr_assert_eq(s.stalled, 0,
		     "%d of %d cancelled yields let no other task run", s.stalled,
		     CYIELD_N);
}

/* ---- the whole floating-point control state of a new task -----------------
 * weft.h: a new task starts with the control state "(rounding mode,
 * exception masks, x87 precision, flush-to-zero) its spawner had at the
 * spawn"; weft_run()'s main with that of the thread calling weft_run().
 * x86-64: MXCSR without its six flag bits (masks, DAZ, FTZ, rounding) and
 * the x87 control word; AArch64: FPCR. */
#if defined(__x86_64__)
static uint64_t fpstate_get(void)
{
	uint32_t mxcsr;
	uint16_t cw;

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	return (mxcsr & 0xffc0u) | (uint64_t)cw << 32;
}

static void fpstate_set(uint64_t s)
{
	uint32_t mxcsr;
	uint16_t cw = (uint16_t)(s >> 32);

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	mxcsr = (mxcsr & 0x3fu) | ((uint32_t)s & 0xffc0u);
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	__asm__ volatile("fldcw %0" : : "m"(cw));
}

/* FTZ (bit 15) and DAZ (bit 6) on, the denormal exception unmasked (DM,
 * bit 8, cleared), round up (RC 10); x87: 53-bit precision (PC 10), round
 * up, the denormal exception unmasked. */
static uint64_t fpstate_unusual(uint64_t dflt)
{
	uint32_t mxcsr = (uint32_t)dflt;
	uint16_t cw = (uint16_t)(dflt >> 32);

	mxcsr |= 0x8000u | 0x40u;
	mxcsr &= ~0x100u;
	mxcsr = (mxcsr & ~0x6000u) | 0x4000u;
	cw = (uint16_t)((cw & ~0x0300u) | 0x0200u);
	cw = (uint16_t)((cw & ~0x0c00u) | 0x0800u);
	cw &= (uint16_t)~0x0002u;
	return mxcsr | (uint64_t)cw << 32;
}
#elif defined(__aarch64__)
static uint64_t fpstate_get(void)
{
	uint64_t v;

	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	return v;
}

static void fpstate_set(uint64_t s)
{
	__asm__ volatile("msr fpcr, %0" : : "r"(s));
}

/* FZ (bit 24) on, round up (RMode 01, bits 22-23). */
static uint64_t fpstate_unusual(uint64_t dflt)
{
	return ((dflt | (UINT64_C(1) << 24)) & ~(UINT64_C(3) << 22)) |
	       (UINT64_C(1) << 22);
}
#endif

#if defined(__x86_64__) || defined(__aarch64__)
struct fpfull {
	uint64_t dflt, want;
	uint64_t child[20];
	uint64_t spawner_after, other;
	atomic_int stop;
	atomic_long switches;
};

static void *fpfull_report(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)fpstate_get();
}

/* Keeps switching on the same worker with the default state. */
static void *fpfull_other(void *arg)
{
	struct fpfull *s = arg;

	while (!atomic_load(&s->stop)) {
		atomic_fetch_add(&s->switches, 1);
		weft_yield();
	}
	return (void *)(uintptr_t)fpstate_get();
}

static void *fpfull_spawner(void *arg)
{
	struct fpfull *s = arg;
	uint64_t saved = fpstate_get();
	void *r = NULL;

	fpstate_set(s->want);
	for (int i = 0; i < 20; i++) {
		weft_task *t = weft_spawn(fpfull_report, NULL);

		if (!WT_CHECK(t != NULL))
			break;
		/* Let the other task run (and switch) before the child
		 * starts. */
		weft_yield();
		WT_CHECK_EQ(weft_await(t, &r), 0);
		weft_task_release(t);
		s->child[i] = (uint64_t)(uintptr_t)r;
	}
	s->spawner_after = fpstate_get();
	fpstate_set(saved);
	return NULL;
}

static void *fpfull_main(void *arg)
{
	struct fpfull *s = arg;
	weft_task *o = weft_spawn(fpfull_other, s), *sp;
	void *r = NULL;

	if (!WT_CHECK(o != NULL))
		return NULL;
	sp = weft_spawn(fpfull_spawner, s);
	if (WT_CHECK(sp != NULL)) {
		WT_CHECK_EQ(weft_await(sp, NULL), 0);
		weft_task_release(sp);
	}
	atomic_store(&s->stop, 1);
	WT_CHECK_EQ(weft_await(o, &r), 0);
	weft_task_release(o);
	s->other = (uint64_t)(uintptr_t)r;
	return NULL;
}

Test(task, a_new_task_starts_with_its_spawners_whole_fp_control_state,
     .timeout = WT_TIMEOUT(10))
{
	struct fpfull s;

	memset(&s, 0, sizeof(s));
	s.dflt = fpstate_get();
	s.want = fpstate_unusual(s.dflt);
	cr_assert_neq(s.want, s.dflt);
	wt_run(fpfull_main, &s, 1);
	fpstate_set(s.dflt);
	cr_assert_gt(atomic_load(&s.switches), 1,
		     "the other task did not keep switching");
	cr_assert_eq(s.spawner_after, s.want,
		     "the spawner's own state changed to %#llx from %#llx",
		     (unsigned long long)s.spawner_after,
		     (unsigned long long)s.want);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(s.child[i], s.want,
			     "child %d started with fp control %#llx, its "
			     "spawner had %#llx (default %#llx)",
			     i, (unsigned long long)s.child[i],
			     (unsigned long long)s.want,
			     (unsigned long long)s.dflt);
	cr_assert_eq(s.other, s.dflt,
		     "the other task, started with the default %#llx, ended "
		     "with %#llx",
		     (unsigned long long)s.dflt, (unsigned long long)s.other);
}

static void *fpmain_report(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)fpstate_get();
}

Test(task, weft_run_main_starts_with_the_calling_threads_fp_control_state,
     .timeout = WT_TIMEOUT(10))
{
	uint64_t dflt = fpstate_get(), want = fpstate_unusual(dflt);
	int round;
	void *r = NULL;

	fpstate_set(want);
	round = fegetround();
	r = wt_run(fpmain_report, NULL, 2);
	fpstate_set(dflt);
	cr_assert_eq(round, FE_UPWARD, "the test set no FE_UPWARD");
	cr_assert_eq((uint64_t)(uintptr_t)r, want,
		     "main started with fp control %#llx, the thread calling "
		     "weft_run() had %#llx (default %#llx)",
		     (unsigned long long)(uintptr_t)r,
		     (unsigned long long)want, (unsigned long long)dflt);
}
#endif

/* ---- spawning from outside a runtime that is shutting down -----------------
 * weft.h: weft_spawn_opts() from outside opts->runtime returns -ESHUTDOWN
 * once "main of weft_run() has returned, or weft_runtime_close() has begun
 * or ended". A shielded task holds the shutdown open (its drain, or the
 * close's) until a foreign thread, spawning all along, has seen
 * -ESHUTDOWN; it gives up after a hang guard, and waits for the thread to
 * stop calling before it lets the runtime go. */
struct shutspawn {
	weft_runtime *rt;
	atomic_int holder_started, shutting, seen, give_up, thread_done;
	atomic_long ok;
	int early, other;
};

static void *shutspawn_noop(void *arg)
{
	(void)arg;
	return NULL;
}

static void *shutspawn_thread(void *arg)
{
	struct shutspawn *s = arg;
	struct weft_spawn_opts o = { .runtime = s->rt,
				     .flags = WEFT_SPAWN_DETACHED };

	while (!atomic_load(&s->give_up)) {
		int shutting = atomic_load(&s->shutting);
		int rc = weft_spawn_opts(NULL, shutspawn_noop, NULL, &o);

		if (rc == 0) {
			atomic_fetch_add(&s->ok, 1);
		} else if (rc == -ESHUTDOWN) {
			if (!shutting && !atomic_load(&s->shutting))
				s->early = 1;
			atomic_store(&s->seen, 1);
			break;
		} else {
			s->other = rc;
			break;
		}
		wt_sleep_ms(1);
	}
	atomic_store(&s->thread_done, 1);
	return NULL;
}

static void *shutspawn_holder(void *arg)
{
	struct shutspawn *s = arg;
	uint64_t until = weft_now() + PROMPT_NS;

	WT_CHECK_EQ(weft_shield_begin(), 0);
	atomic_store(&s->holder_started, 1);
	while (!atomic_load(&s->seen) && !atomic_load(&s->thread_done) &&
	       weft_now() < until)
		weft_sleep(MS);
	atomic_store(&s->give_up, 1);
	while (!atomic_load(&s->thread_done))
		weft_sleep(MS);
	WT_CHECK_EQ(weft_shield_end(), 0);
	return NULL;
}

static void *shutspawn_main(void *arg)
{
	struct shutspawn *s = arg;
	pthread_t th;
	weft_task *h = weft_spawn(shutspawn_holder, s);

	s->rt = weft_runtime_self();
	if (!WT_CHECK(h != NULL))
		return NULL;
	weft_task_release(h);
	if (!WT_CHECK(wt_yield_until(&s->holder_started, 10000000)))
		return NULL;
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, shutspawn_thread, s), 0))
		return NULL;
	pthread_detach(th); /* thread_done says when it stopped */
	while (atomic_load(&s->ok) < 3 && !atomic_load(&s->thread_done))
		weft_sleep(MS);
	atomic_store(&s->shutting, 1);
	return NULL;
}

static void assert_shutspawn(const struct shutspawn *s, const char *when)
{
	cr_assert_eq(s->other, 0, "a spawn from outside returned %d (%s)",
		     s->other, weft_strerror(s->other));
	cr_assert_eq(s->early, 0, "-ESHUTDOWN before the shutdown began");
	cr_assert_geq(atomic_load(&s->ok), 3,
		      "spawns from outside failed before the shutdown");
	cr_assert(atomic_load(&s->seen),
		  "spawns from outside went on succeeding while %s (%ld "
		  "succeeded); want -ESHUTDOWN",
		  when, atomic_load(&s->ok));
}

Test(task, spawn_from_outside_during_the_shutdown_drain_returns_eshutdown,
     .timeout = WT_TIMEOUT(20))
{
	struct shutspawn s;
	struct weft_config cfg;

	memset(&s, 0, sizeof(s));
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	cfg.shutdown_grace_ms = 60000;
	wt_run_cfg(shutspawn_main, &s, &cfg);
	cr_assert(atomic_load(&s.thread_done), "the spawning thread runs on");
	assert_shutspawn(&s, "main had returned and a shielded task kept "
			 "the drain going");
}

Test(task, spawn_from_outside_during_a_close_returns_eshutdown,
     .timeout = WT_TIMEOUT(20))
{
	struct shutspawn s;
	struct weft_config cfg;
	weft_runtime *rt;
	pthread_t th;
	int rc;

	memset(&s, 0, sizeof(s));
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	cfg.shutdown_grace_ms = 60000;
	rc = weft_runtime_create(&rt, &cfg);
	if (rc == -EPERM || rc == -ENOSYS)
		cr_skip_test("io_uring refused by the kernel");
	cr_assert_eq(rc, 0, "weft_runtime_create() = %d", rc);
	s.rt = rt;
	cr_assert_eq(weft_call_soon_threadsafe(rt, NULL, shutspawn_holder, &s),
		     0);
	for (int i = 0; i < 10000 && !atomic_load(&s.holder_started); i++)
		wt_sleep_ms(1);
	cr_assert(atomic_load(&s.holder_started), "the holder never started");
	cr_assert_eq(pthread_create(&th, NULL, shutspawn_thread, &s), 0);
	for (int i = 0; i < 10000 && atomic_load(&s.ok) < 3 &&
			!atomic_load(&s.thread_done); i++)
		wt_sleep_ms(1);
	atomic_store(&s.shutting, 1);
	rc = weft_runtime_close(rt);
	cr_assert_eq(pthread_join(th, NULL), 0);
	weft_runtime_destroy(rt);
	cr_assert_eq(rc, 0, "weft_runtime_close() = %d", rc);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	assert_shutspawn(&s, "a close was in progress");
}

/* ---- PINNED from outside the runtime ---------------------------------------
 * weft.h: WEFT_SPAWN_PINNED is "Ignored (no worker to pin to) when spawning
 * from outside the runtime". Such a task must move like any other: each
 * round it starts a non-yielding hog pinned to its current worker and
 * yields behind it; the other (idle) worker steals it meanwhile. A pinned
 * task would wait for the hog on its own worker instead. */
#define PIN_ROUNDS 5

struct outpin {
	int moves, rounds;
};

static void *outpin_hog(void *arg)
{
	(void)arg;
	wt_spin_us(100 * 1000 * WT_SLOW);
	return NULL;
}

static void *outpin_task(void *arg)
{
	struct outpin *s = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };

	for (int i = 0; i < PIN_ROUNDS; i++) {
		int before = weft_worker_index();
		weft_task *h;

		if (!WT_CHECK_EQ(weft_spawn_opts(&h, outpin_hog, NULL, &o), 0))
			break;
		weft_yield();
		if (weft_worker_index() != before)
			s->moves++;
		s->rounds++;
		WT_CHECK_EQ(weft_await(h, NULL), 0);
		weft_task_release(h);
	}
	return NULL;
}

Test(task, pinned_is_ignored_when_spawning_from_outside_the_runtime,
     .timeout = WT_TIMEOUT(20))
{
	struct weft_config cfg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };
	struct outpin s;
	weft_runtime *rt;
	weft_task *h = NULL;
	int rc;

	memset(&s, 0, sizeof(s));
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	rc = weft_runtime_create(&rt, &cfg);
	if (rc == -EPERM || rc == -ENOSYS)
		cr_skip_test("io_uring refused by the kernel");
	cr_assert_eq(rc, 0, "weft_runtime_create() = %d", rc);
	o.runtime = rt;
	cr_assert_eq(weft_spawn_opts(&h, outpin_task, &s, &o), 0,
		     "PINNED from outside refused");
	cr_assert_eq(weft_join(h, NULL), 0);
	weft_task_release(h);
	weft_runtime_destroy(rt);
	wt_assert_no_failures();
	WT_LEAK_ASSERT();
	cr_assert_eq(s.rounds, PIN_ROUNDS);
	cr_assert_geq(s.moves, 2,
		      "a task spawned PINNED from outside moved off a busy "
		      "worker in %d of %d rounds: it was pinned", s.moves,
		      PIN_ROUNDS);
}

/* ---- a released handle of an ended task is stale at once -----------------
 * weft.h: "A handle whose task has ended and whose last reference was
 * released is stale". The block stays alive until the ended task, still
 * on its way out on its worker, drops its own reference; before that was
 * checked, a call in that window found the task (weft_task_done() gave 1,
 * weft_wait_any() an index instead of -EINVAL: the perturbation build
 * caught it in group::wait_any_returns_the_index_of_the_first_to_end). */
static void *end_at_once(void *arg)
{
	return arg;
}

static void *stale_at_once_main(void *arg)
{
	long *found = arg;

	for (int i = 0; i < 20000; i++) {
		weft_task *t = weft_spawn(end_at_once, NULL);
		int d;

		WT_CHECK_EQ(weft_await(t, NULL), 0);
		WT_CHECK_EQ(weft_task_release(t), 0);
		d = weft_task_done(t);
		if (d != -ESRCH) {
			WT_CHECK_EQ(d, 1); /* never another task's answer */
			(*found)++;
		}
	}
	return NULL;
}

Test(task, a_released_handle_of_an_ended_task_is_stale_at_once,
     .timeout = WT_TIMEOUT(30))
{
	long found = 0;

	wt_run(stale_at_once_main, &found, 2);
	cr_assert_eq(found, 0,
		     "%ld of 20000 released handles of ended tasks still "
		     "named their task (weft_task_done() = 1, not -ESRCH)",
		     found);
}

/* ---- control blocks go back to the kernel -------------------------------- */

/*
 * Issue 17: control blocks were never freed before the runtime ended (a
 * million tasks then a steady hundred kept 200 MB). A burst of tasks
 * spawned faster than two busy workers run them (every one of them alive
 * at once, queued), ends; their handles are released in a shuffled order,
 * so that the worker's cache of free blocks holds blocks of many slabs.
 * With both workers kept busy by spinners (no worker ever idles), the
 * pages of the blocks must go back to the kernel within seconds: at most a
 * tenth of the pages that held them stays resident (the hot tops of the
 * worker caches and the few all-free slabs kept on purpose). mincore()
 * asks the kernel, so the test sees what the process holds, not what the
 * pool believes. Before: every page stayed resident.
 */
void *weft__task_debug_block(weft_task *h);

#define CB_BURST 100000

struct cb_burst {
	atomic_int stop;
	atomic_long ended;
	weft_task **task;
	uintptr_t *page;
	unsigned npages;
};

static void *cb_spinner(void *arg)
{
	struct cb_burst *b = arg;

	while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
		wt_spin_us(1000);
		weft_yield();
	}
	return NULL;
}

static void *cb_noop(void *arg)
{
	struct cb_burst *b = arg;

	atomic_fetch_add_explicit(&b->ended, 1, memory_order_relaxed);
	return NULL;
}

static int cmp_uptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

	return x < y ? -1 : x > y;
}

static unsigned cb_resident(const struct cb_burst *b)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned i, n = 0;

	for (i = 0; i < b->npages; i++) {
		unsigned char vec = 0;

		if (mincore((void *)b->page[i], ps, &vec) == 0 && (vec & 1))
			n++;
	}
	return n;
}

static void *cb_burst_main(void *arg)
{
	struct cb_burst *b = arg;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	weft_task *spin[2];
	unsigned i, n = 0, before, after = 0, seed = 17;
	uint64_t deadline;

	for (i = 0; i < 2; i++)
		WT_CHECK((spin[i] = weft_spawn(cb_spinner, b)) != NULL);
	b->page = calloc(CB_BURST, sizeof(*b->page));
	b->task = calloc(CB_BURST, sizeof(*b->task));
	if (!WT_CHECK(b->page != NULL && b->task != NULL))
		return NULL;
	/* No suspension in the loop: the tasks queue faster than the
	 * other worker, busy with a spinner, takes them. */
	for (i = 0; i < CB_BURST; i++) {
		void *blk;

		if (!WT_CHECK((b->task[i] = weft_spawn(cb_noop, b)) != NULL))
			break;
		blk = weft__task_debug_block(b->task[i]);
		if (blk)
			b->page[n++] = (uintptr_t)blk & ~(uintptr_t)(ps - 1);
	}
	WT_CHECK(wt_yield_until_count(&b->ended, CB_BURST, 100000000L));
	/* Released in a shuffled order: each block returns to this
	 * worker's cache, which keeps blocks of slabs all over. */
	for (i = CB_BURST - 1; i > 0; i--) {
		unsigned j = (unsigned)rand_r(&seed) % (i + 1);
		weft_task *t = b->task[i];

		b->task[i] = b->task[j];
		b->task[j] = t;
	}
	for (i = 0; i < CB_BURST; i++)
		if (b->task[i])
			WT_CHECK_EQ(weft_task_release(b->task[i]), 0);
	qsort(b->page, n, sizeof(*b->page), cmp_uptr);
	for (i = 0; i < n; i++)
		if (!b->npages || b->page[b->npages - 1] != b->page[i])
			b->page[b->npages++] = b->page[i];
	before = cb_resident(b);
	/* The slabs of 100,000 blocks: at least 4 MB of pages. */
	WT_CHECK(b->npages * ps >= (size_t)4 << 20);
	deadline = wt_now_ns() + 10 * SEC * WT_SLOW;
	while (wt_now_ns() < deadline) {
		after = cb_resident(b);
		if (after <= b->npages / 10)
			break;
		weft_sleep(20 * MS);
	}
	if (!WT_CHECK(after <= b->npages / 10))
		fprintf(stderr, "control block pages resident: %u of %u after "
				"the burst, %u after 10 s under load\n",
			before, b->npages, after);
	atomic_store_explicit(&b->stop, 1, memory_order_relaxed);
	for (i = 0; i < 2; i++) {
		WT_CHECK_EQ(weft_await(spin[i], NULL), 0);
		weft_task_release(spin[i]);
	}
	free(b->page);
	free(b->task);
	return NULL;
}

Test(task, control_blocks_of_a_burst_go_back_to_the_kernel_under_load,
     .timeout = WT_TIMEOUT(60))
{
	struct cb_burst b = {0};

	wt_run(cb_burst_main, &b, 2);
	wt_assert_no_failures();
}
