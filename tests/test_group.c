/*
 * Task groups (runtime/group.c), waiting on several tasks (weft_wait_any,
 * waitsets) and callbacks (weft_call_soon/later/at, the thread-safe
 * variant and weft_join) from runtime/task.c, against the contracts in
 * weft.h: a group's wait returns 0 or its first failure, cancels the rest
 * on a failure and when the waiter is cancelled or times out, refuses new
 * tasks once failed, and takes no cancelled member for a failure; waitsets yield tasks in the order they end; callbacks
 * never run early and not at all when cancelled first; foreign threads
 * reach a running runtime and wait for its tasks.
 *
 * Timing checks: never early (exact); "at once" (a timeout's end after
 * its timer, a cancel reaching a waiter) is QUICK_NS for the best of
 * WT_TRIES measurements (late_by), with PROMPT_NS on each as a hang
 * guard only; orders that depend on timing are built from sleeps far
 * apart.
 */
#include <pthread.h>
#include <sys/resource.h>

#include "weft_test.h"

WT_SUITE(group, 120);

static const unsigned worker_counts[] = { 1, 2, 4 };
#define N_COUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

#define V(i) ((void *)(uintptr_t)(i))

static void release_all(weft_task **ts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ts[i])
			weft_task_release(ts[i]);
}

/* For WT_BEST_OF: how late something due `want` ns after it began (a
 * timeout, a deadline) came; 0 when on time. Every try is checked never
 * to come early, and to come within PROMPT_NS past its time (a hang guard
 * only); the caller checks the best try against QUICK_NS, "at once" once
 * a timer has fired or a cancel was sent. */
static uint64_t late_by(uint64_t elapsed, uint64_t want)
{
	CHECK_NOT_EARLY(elapsed, want);
	CHECK_BELOW(elapsed, want + PROMPT_NS);
	return elapsed > want ? elapsed - want : 0;
}

/* ======================================================================
 * task group
 * ====================================================================== */

/* A member's record: how its sleep ended, whether it ran at all. */
struct member {
	uint64_t sleep_ns;
	void *ret;         /* returned after the sleep */
	atomic_int ran;
	atomic_int ended;
	int sleep_rc;
};

static void *member_fn(void *arg)
{
	struct member *m = arg;

	atomic_store(&m->ran, 1);
	m->sleep_rc = m->sleep_ns ? weft_sleep(m->sleep_ns) : 0;
	atomic_store(&m->ended, 1);
	return m->ret;
}

/* A member the group cancelled: it never ran (cancelled before it
 * started, which asyncio allows too), or its sleep was cut with
 * -ECANCELED and it ended. Never "ran and still running". */
static int member_cancelled(struct member *m)
{
	if (!atomic_load(&m->ran))
		return WT_CHECK_EQ(atomic_load(&m->ended), 0);
	return WT_CHECK_EQ(atomic_load(&m->ended), 1) &&
	       WT_CHECK_EQ(m->sleep_rc, -ECANCELED);
}

#define OK_N 100

static void *group_ok_main(void *arg)
{
	struct member *ms = arg;
	weft_group *g;
	weft_task *h[3];
	void *r;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	WT_CHECK_EQ(weft_group_size(g), 0);
	/* An empty group: wait returns at once. */
	WT_CHECK_EQ(weft_group_wait(g), 0);
	for (int i = 0; i < OK_N; i++) {
		ms[i].sleep_ns = (uint64_t)(i % 7) * MS;
		ms[i].ret = V(i + 1);
		WT_CHECK_EQ(weft_group_spawn(g, i < 3 ? &h[i] : NULL,
					     member_fn, &ms[i]),
			    0);
	}
	WT_CHECK(weft_group_size(g) > 0);
	WT_CHECK_EQ(weft_group_wait(g), 0);
	WT_CHECK_EQ(weft_group_size(g), 0);
	for (int i = 0; i < OK_N; i++) {
		WT_CHECK_EQ(atomic_load(&ms[i].ended), 1);
		WT_CHECK_EQ(ms[i].sleep_rc, 0);
	}
	/* Handles of their own. */
	for (int i = 0; i < 3; i++) {
		WT_CHECK_EQ(weft_task_done(h[i]), 1);
		WT_CHECK_EQ(weft_await(h[i], &r), 0);
		WT_CHECK_PTR_EQ(r, i + 1);
		weft_task_release(h[i]);
	}
	/* A group that succeeded takes new tasks. */
	WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[0]), 0);
	WT_CHECK_EQ(weft_group_wait(g), 0);
	weft_group_destroy(g);
	return NULL;
}

Test(group, wait_returns_zero_once_every_task_ran, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[OK_N];

		memset(ms, 0, sizeof(ms));
		wt_run(group_ok_main, ms, worker_counts[c]);
	}
}

/* ---- spawn options ------------------------------------------------------------ */

/* Recurses through about 700 KiB of stack: more than the 256 KiB default,
 * within a 1 MiB stack. */
static unsigned long deep(unsigned n)
{
	volatile char pad[4096];

	pad[0] = (char)n;
	if (!n)
		return (unsigned long)pad[0];
	return deep(n - 1) + 1;
}

struct opt_member {
	int first_worker;
	int stayed; /* 1: always on first_worker across its yields */
	unsigned long depth;
};

static void *pinned_member(void *arg)
{
	struct opt_member *m = arg;

	m->first_worker = weft_worker_index();
	m->stayed = 1;
	for (int i = 0; i < 200; i++) {
		weft_yield();
		if (weft_worker_index() != m->first_worker)
			m->stayed = 0;
	}
	return NULL;
}

static void *deep_member(void *arg)
{
	((struct opt_member *)arg)->depth = deep(170);
	return NULL;
}

static void *group_opts_main(void *arg)
{
	struct weft_spawn_opts o;
	struct opt_member pm = { 0 }, dm = { 0 }, spin[2];
	weft_group *g;
	weft_task *h = (weft_task *)&o, *plain = NULL;

	(void)arg;
	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	/* A name, a pinned task, a big stack. */
	memset(&o, 0, sizeof(o));
	o.name = "fetcher";
	o.flags = WEFT_SPAWN_PINNED;
	WT_CHECK_EQ(weft_group_spawn_opts(g, &h, pinned_member, &pm, &o), 0);
	if (WT_CHECK(h != NULL)) {
		WT_CHECK(strcmp(weft_task_name(h), "fetcher") == 0);
	}
	memset(&o, 0, sizeof(o));
	o.stack_size = 1u << 20;
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, deep_member, &dm, &o), 0);
	/* Default name, options or not. */
	memset(spin, 0, sizeof(spin));
	WT_CHECK_EQ(weft_group_spawn_opts(g, &plain, pinned_member, &spin[0],
					  NULL),
		    0);
	if (WT_CHECK(plain != NULL))
		WT_CHECK(strcmp(weft_task_name(plain), "group task") == 0);
	/* Detached on request: no handle, still a member. */
	memset(&o, 0, sizeof(o));
	o.flags = WEFT_SPAWN_DETACHED;
	{
		weft_task *none = (weft_task *)&o;

		WT_CHECK_EQ(weft_group_spawn_opts(g, &none, pinned_member,
						  &spin[1], &o),
			    0);
		WT_CHECK_PTR_EQ(none, NULL);
	}
	/* Refused: unknown flag, reserved field, a runtime, a huge stack. */
	memset(&o, 0, sizeof(o));
	o.flags = 0x80;
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, deep_member, &dm, &o),
		    -EINVAL);
	memset(&o, 0, sizeof(o));
	o.reserved[1] = 1;
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, deep_member, &dm, &o),
		    -EINVAL);
	memset(&o, 0, sizeof(o));
	o.runtime = weft_runtime_self();
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, deep_member, &dm, &o),
		    -EINVAL);
	memset(&o, 0, sizeof(o));
	o.stack_size = (size_t)1 << 41;
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, deep_member, &dm, &o),
		    -EINVAL);
	WT_CHECK_EQ(weft_group_spawn_opts(g, NULL, NULL, &dm, NULL), -EINVAL);
	WT_CHECK_EQ(weft_group_spawn_opts(NULL, NULL, deep_member, &dm, NULL),
		    -EINVAL);
	/* The group waits for all four. */
	WT_CHECK_EQ(weft_group_wait(g), 0);
	WT_CHECK_EQ(weft_group_size(g), 0);
	WT_CHECK_EQ(pm.stayed, 1);
	WT_CHECK_EQ(dm.depth, 170); /* it ran to the bottom and back */
	if (h) {
		WT_CHECK_EQ(weft_task_done(h), 1);
		weft_task_release(h);
	}
	if (plain) {
		WT_CHECK_EQ(weft_task_done(plain), 1);
		weft_task_release(plain);
	}
	weft_group_destroy(g);
	return NULL;
}

Test(group, spawn_opts_name_pin_and_size_members_and_refuse_bad_options,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(group_opts_main, NULL, 2);
}

#define FAIL_SLEEPERS 5

/* One group whose member fails after 10 ms; returns how long its wait
 * took past those 10 ms (the failure cancels the sleepers at once). */
static uint64_t group_fail_try(struct member *ms)
{
	struct member late;
	weft_group *g;
	weft_task *h;
	uint64_t b, took;

	memset(ms, 0, (FAIL_SLEEPERS + 1) * sizeof(*ms));
	memset(&late, 0, sizeof(late));
	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return 0;
	for (int i = 0; i < FAIL_SLEEPERS; i++) {
		ms[i].sleep_ns = 10 * SEC;
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[i]), 0);
	}
	ms[FAIL_SLEEPERS].sleep_ns = 10 * MS;
	ms[FAIL_SLEEPERS].ret = weft_err_ptr(-EIO);
	WT_CHECK_EQ(weft_group_spawn(g, &h, member_fn, &ms[FAIL_SLEEPERS]),
		    0);
	b = weft_now();
	WT_CHECK_EQ(weft_group_wait(g), -EIO);
	took = weft_now() - b;
	CHECK_BELOW(took, PROMPT_NS);
	WT_CHECK_EQ(weft_group_size(g), 0);
	for (int i = 0; i < FAIL_SLEEPERS; i++)
		member_cancelled(&ms[i]);
	/* The failed task itself returned normally (with an error). */
	WT_CHECK_EQ(weft_await(h, NULL), 0);
	weft_task_release(h);
	/* Failed: refuses new tasks, and the refused one never runs. */
	WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &late), -ECANCELED);
	h = V(0x1);
	WT_CHECK_EQ(weft_group_spawn(g, &h, member_fn, &late), -ECANCELED);
	WT_CHECK_PTR_EQ(h, NULL);
	WT_CHECK_EQ(weft_group_wait(g), -EIO); /* still the first failure */
	weft_group_destroy(g);
	weft_sleep(SETTLE_NS);
	WT_CHECK_EQ(atomic_load(&late.ran), 0);
	return took > 10 * MS ? took - 10 * MS : 0;
}

static void *group_fail_main(void *arg)
{
	uint64_t late = WT_BEST_OF(WT_TRIES, QUICK_NS, group_fail_try(arg));

	CHECK_BELOW(late, QUICK_NS);
	return NULL;
}

Test(group, failing_task_cancels_the_others_and_wait_returns_its_error,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[FAIL_SLEEPERS + 1];

		memset(ms, 0, sizeof(ms));
		wt_run(group_fail_main, ms, worker_counts[c]);
	}
}

/* The first failure is what wait returns; members cancelled because of
 * it are not failures, even when they return error pointers. */
static void *first_fail_main(void *arg)
{
	struct member *ms = arg; /* 3 */
	weft_group *g;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	ms[0].sleep_ns = 5 * MS;
	ms[0].ret = weft_err_ptr(-EPROTO);
	ms[1].sleep_ns = 10 * SEC;
	ms[1].ret = weft_err_ptr(-EIO); /* returned once cancelled */
	ms[2].ret = NULL;
	/* The failing one last: spawned first, it could fail before the
	 * others are spawned (the perturbation build is that slow), and
	 * the failed group would refuse them. */
	for (int i = 2; i >= 0; i--)
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[i]), 0);
	WT_CHECK_EQ(weft_group_wait(g), -EPROTO);
	member_cancelled(&ms[1]);
	weft_group_destroy(g);
	return NULL;
}

Test(group, wait_returns_the_first_failure, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[3];

		memset(ms, 0, sizeof(ms));
		wt_run(first_fail_main, ms, worker_counts[c]);
	}
}

static void *group_cancel_main(void *arg)
{
	struct member *ms = arg; /* 4 */
	weft_group *g;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	for (int i = 0; i < 4; i++) {
		ms[i].sleep_ns = 10 * SEC;
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[i]), 0);
	}
	weft_sleep(SETTLE_NS);
	weft_group_cancel(g);
	/* Cancelled members are not failures. */
	WT_CHECK_EQ(weft_group_wait(g), 0);
	for (int i = 0; i < 4; i++)
		member_cancelled(&ms[i]);
	WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[0]), -ECANCELED);
	weft_group_destroy(g);
	return NULL;
}

Test(group, cancel_cancels_every_member_and_refuses_new_ones,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[4];

		memset(ms, 0, sizeof(ms));
		wt_run(group_cancel_main, ms, worker_counts[c]);
	}
}

/*
 * "A task that ends cancelled is not a failure" (weft.h, task group), for
 * members cancelled one by one, not by the group: two cancelled from
 * outside with weft_cancel() while they sleep, one returning NULL and one
 * passing its -ECANCELED up as an error pointer (as code that returns its
 * errors does), and one that cancels itself and passes the -ECANCELED of
 * its next suspension point up the same way. The group's wait returns 0,
 * the group cancels none of the others because of them (they finish their
 * work) and still takes new members. Then the first real failure after
 * such a cancellation is what the wait returns.
 */
struct lone_cancel {
	struct member victim[2]; /* [1] returns its error pointer */
	struct member survivor[2];
	atomic_int self_ended;
	int self_yield_rc;
	int cancel_rc[2];     /* weft_cancel() of the victims */
	int victim_rc[2];     /* weft_await() on the victims' handles */
	int wait_rc;          /* the group's wait */
	int late_spawn_rc;    /* a member spawned after that wait */
	int late_wait_rc;     /* and the wait for it */
	int fail_wait_rc;     /* a later group: a cancelled member, then -EIO */
};

static void *passing_victim(void *arg)
{
	struct member *m = arg;
	int rc;

	atomic_store(&m->ran, 1);
	rc = m->sleep_rc = weft_sleep(m->sleep_ns);
	atomic_store(&m->ended, 1);
	return rc < 0 ? weft_err_ptr(rc) : NULL;
}

static void *self_cancelling(void *arg)
{
	struct lone_cancel *lc = arg;

	WT_CHECK_EQ(weft_cancel(weft_self()), 0);
	lc->self_yield_rc = weft_yield();
	atomic_store(&lc->self_ended, 1);
	return weft_err_ptr(lc->self_yield_rc);
}

/* Survivors outlive the cancelled ones: they sleep until those ended, so
 * a group that took a cancellation for a failure would cut their sleep. */
struct survivor_arg {
	struct lone_cancel *lc;
	int i;
};

static void *survivor_fn(void *arg)
{
	struct survivor_arg *a = arg;
	struct lone_cancel *lc = a->lc;
	struct member *m = &lc->survivor[a->i];

	atomic_store(&m->ran, 1);
	for (int i = 0; i < 10000 * WT_SLOW; i++) {
		if (atomic_load(&lc->victim[0].ended) &&
		    atomic_load(&lc->victim[1].ended) &&
		    atomic_load(&lc->self_ended))
			break;
		if ((m->sleep_rc = weft_sleep(MS)) != 0)
			break;
	}
	if (m->sleep_rc == 0)
		m->sleep_rc = weft_sleep(5 * MS);
	atomic_store(&m->ended, 1);
	return m->sleep_rc ? weft_err_ptr(m->sleep_rc) : V(1);
}

static void *lone_cancel_main(void *arg)
{
	struct lone_cancel *lc = arg;
	struct survivor_arg sa[2] = { { lc, 0 }, { lc, 1 } };
	struct member late, fail;
	weft_group *g;
	weft_task *h[2];

	memset(&late, 0, sizeof(late));
	memset(&fail, 0, sizeof(fail));
	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	for (int i = 0; i < 2; i++) {
		lc->victim[i].sleep_ns = 10 * SEC;
		WT_CHECK_EQ(weft_group_spawn(g, &h[i], i ? passing_victim
							 : member_fn,
					     &lc->victim[i]),
			    0);
	}
	WT_CHECK_EQ(weft_group_spawn(g, NULL, self_cancelling, lc), 0);
	for (int i = 0; i < 2; i++)
		WT_CHECK_EQ(weft_group_spawn(g, NULL, survivor_fn, &sa[i]), 0);
	/* Cancelled while they sleep, not before they started. */
	settle_count(&lc->victim[0].ran, 1);
	settle_count(&lc->victim[1].ran, 1);
	for (int i = 0; i < 2; i++)
		lc->cancel_rc[i] = weft_cancel(h[i]);
	lc->wait_rc = weft_group_wait(g);
	for (int i = 0; i < 2; i++) {
		lc->victim_rc[i] = weft_await(h[i], NULL);
		weft_task_release(h[i]);
	}
	/* Not failed, not cancelled: it takes new members. */
	lc->late_spawn_rc = weft_group_spawn(g, NULL, member_fn, &late);
	lc->late_wait_rc = weft_group_wait(g);
	weft_group_destroy(g);

	/* The first real failure after a cancelled member is the wait's. */
	memset(&lc->victim[1], 0, sizeof(lc->victim[1]));
	lc->victim[1].sleep_ns = 10 * SEC;
	fail.ret = weft_err_ptr(-EIO);
	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	WT_CHECK_EQ(weft_group_spawn(g, &h[0], passing_victim,
				     &lc->victim[1]),
		    0);
	settle_count(&lc->victim[1].ran, 1);
	WT_CHECK_EQ(weft_cancel(h[0]), 0);
	WT_CHECK_EQ(weft_await(h[0], NULL), -ECANCELED);
	weft_task_release(h[0]);
	/* A group that took the cancellation for a failure refuses this
	 * one (-ECANCELED) and its wait returns -ECANCELED, not -EIO. */
	weft_group_spawn(g, NULL, member_fn, &fail);
	lc->fail_wait_rc = weft_group_wait(g);
	weft_group_destroy(g);
	return NULL;
}

Test(group, a_member_cancelled_on_its_own_is_not_a_failure,
     .timeout = WT_TIMEOUT(30))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct lone_cancel lc;
		unsigned w = worker_counts[c];

		memset(&lc, 0, sizeof(lc));
		wt_run(lone_cancel_main, &lc, w);
		cr_assert_eq(lc.wait_rc, 0,
			     "workers=%u: weft_group_wait() = %d (%s) with "
			     "only cancelled members failing: a cancelled "
			     "member was taken for a failure", w, lc.wait_rc,
			     weft_strerror(lc.wait_rc));
		for (int i = 0; i < 2; i++) {
			cr_assert_eq(lc.cancel_rc[i], 0,
				     "workers=%u: weft_cancel(victim %d) = %d",
				     w, i, lc.cancel_rc[i]);
			cr_assert_eq(lc.victim[i].sleep_rc, -ECANCELED,
				     "workers=%u: victim %d's sleep: %d", w,
				     i, lc.victim[i].sleep_rc);
			cr_assert_eq(lc.victim_rc[i], -ECANCELED,
				     "workers=%u: await of victim %d: %d", w,
				     i, lc.victim_rc[i]);
		}
		cr_assert_eq(lc.self_yield_rc, -ECANCELED,
			     "workers=%u: the self-cancelled yield: %d", w,
			     lc.self_yield_rc);
		for (int i = 0; i < 2; i++)
			cr_assert(atomic_load(&lc.survivor[i].ended) &&
					  lc.survivor[i].sleep_rc == 0,
				  "workers=%u: survivor %d was cut short "
				  "(sleep %d): the group cancelled it", w, i,
				  lc.survivor[i].sleep_rc);
		cr_assert_eq(lc.late_spawn_rc, 0,
			     "workers=%u: the group refuses new members "
			     "(%d) after cancelled ones", w,
			     lc.late_spawn_rc);
		cr_assert_eq(lc.late_wait_rc, 0,
			     "workers=%u: wait for a member spawned after "
			     "the cancelled ones: %d", w, lc.late_wait_rc);
		cr_assert_eq(lc.fail_wait_rc, -EIO,
			     "workers=%u: a cancelled member, then one "
			     "failing with -EIO: wait %d (%s)", w,
			     lc.fail_wait_rc, weft_strerror(lc.fail_wait_rc));
	}
}

/* The task waiting on the group is cancelled: the members are cancelled
 * and awaited before its wait returns -ECANCELED. */
struct waiter_cancel {
	struct member ms[4];
	atomic_int waiting;
	int wait_rc;
	size_t size_after;
	int all_ended_after;
};

static void *wc_waiter(void *arg)
{
	struct waiter_cancel *w = arg;
	weft_group *g;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	for (int i = 0; i < 4; i++) {
		w->ms[i].sleep_ns = 10 * SEC;
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &w->ms[i]),
			    0);
	}
	atomic_store(&w->waiting, 1);
	w->wait_rc = weft_group_wait(g);
	w->size_after = weft_group_size(g);
	/* Every member that ran has ended by now. */
	w->all_ended_after = 1;
	for (int i = 0; i < 4; i++)
		if (atomic_load(&w->ms[i].ran) && !atomic_load(&w->ms[i].ended))
			w->all_ended_after = 0;
	weft_group_destroy(g);
	return NULL;
}

/* Returns how long the waiter took to end once cancelled (its members
 * are cancelled at once, and end at once). */
static uint64_t waiter_cancel_try(struct waiter_cancel *w)
{
	weft_task *t;
	uint64_t b, took;

	memset(w, 0, sizeof(*w));
	t = weft_spawn(wc_waiter, w);
	if (!WT_CHECK(t != NULL))
		return 0;
	settle_count(&w->waiting, 1);
	b = weft_now();
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	took = weft_now() - b;
	CHECK_BELOW(took, PROMPT_NS);
	WT_CHECK_EQ(w->wait_rc, -ECANCELED);
	WT_CHECK_EQ(w->size_after, 0);
	WT_CHECK_EQ(w->all_ended_after, 1);
	for (int i = 0; i < 4; i++)
		member_cancelled(&w->ms[i]);
	weft_task_release(t);
	return took;
}

static void *waiter_cancel_main(void *arg)
{
	uint64_t took = WT_BEST_OF(WT_TRIES, QUICK_NS, waiter_cancel_try(arg));

	CHECK_BELOW(took, QUICK_NS);
	return NULL;
}

Test(group, cancelled_waiter_cancels_and_awaits_the_members,
     .timeout = WT_TIMEOUT(20))
{
	struct waiter_cancel w;

	wt_run_each(waiter_cancel_main, &w, sizeof(w));
}

/* Returns how late the wait's 20 ms deadline ended it. */
static uint64_t group_deadline_try(struct member *ms)
{
	weft_group *g;
	uint64_t b, saved, late;
	int rc;

	memset(ms, 0, 3 * sizeof(*ms));
	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return 0;
	for (int i = 0; i < 3; i++) {
		ms[i].sleep_ns = 10 * SEC;
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[i]), 0);
	}
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	rc = weft_group_wait(g);
	weft_timeout_end(saved);
	late = late_by(weft_now() - b, 20 * MS);
	WT_CHECK_EQ(rc, -ETIMEDOUT);
	WT_CHECK_EQ(weft_group_size(g), 0);
	for (int i = 0; i < 3; i++)
		member_cancelled(&ms[i]);
	weft_group_destroy(g);
	return late;
}

static void *group_deadline_main(void *arg)
{
	uint64_t late = WT_BEST_OF(WT_TRIES, QUICK_NS,
				   group_deadline_try(arg));

	CHECK_BELOW(late, QUICK_NS);
	return NULL;
}

Test(group, deadline_scope_ends_wait_with_etimedout_and_cancels_members,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[3];

		memset(ms, 0, sizeof(ms));
		wt_run(group_deadline_main, ms, worker_counts[c]);
	}
}

/* weft_group_size counts members that have not ended, including members
 * spawned by members. */
struct size_state {
	weft_group *g;
	struct wt_gate gate;
	struct member child;
};

static void *gated_member(void *arg)
{
	struct size_state *s = arg;

	return wt_gate_fn(&s->gate);
}

static void *spawning_member(void *arg)
{
	struct size_state *s = arg;

	s->child.sleep_ns = 30 * MS;
	WT_CHECK_EQ(weft_group_spawn(s->g, NULL, member_fn, &s->child), 0);
	return NULL;
}

static void *group_size_main(void *arg)
{
	struct size_state *s = arg;

	if (!WT_CHECK_EQ(weft_group_create(&s->g), 0))
		return NULL;
	for (int i = 0; i < 3; i++)
		WT_CHECK_EQ(weft_group_spawn(s->g, NULL, gated_member, s), 0);
	WT_CHECK_EQ(weft_group_size(s->g), 3);
	weft_sleep(SETTLE_NS);
	WT_CHECK_EQ(weft_group_size(s->g), 3);
	atomic_store(&s->gate.open, 1);
	WT_CHECK_EQ(weft_group_wait(s->g), 0);
	WT_CHECK_EQ(weft_group_size(s->g), 0);

	/* A member that spawns into its own group: the wait covers both. */
	WT_CHECK_EQ(weft_group_spawn(s->g, NULL, spawning_member, s), 0);
	WT_CHECK_EQ(weft_group_wait(s->g), 0);
	WT_CHECK_EQ(atomic_load(&s->child.ended), 1);
	WT_CHECK_EQ(s->child.sleep_rc, 0);
	WT_CHECK_EQ(weft_group_size(s->g), 0);
	weft_group_destroy(s->g);
	return NULL;
}

Test(group, size_counts_members_not_ended, .timeout = WT_TIMEOUT(20))
{
	struct size_state s;

	wt_run_each(group_size_main, &s, sizeof(s));
}

/* TSan counts live tasks (fibers) against its thread limit. */
#if defined(__SANITIZE_THREAD__)
#define MANY_N 2000
#else
#define MANY_N 10000
#endif

static void *count_fn(void *arg)
{
	atomic_fetch_add((atomic_long *)arg, 1);
	return NULL;
}

static void *group_many_main(void *arg)
{
	atomic_long *n = arg;
	weft_group *g;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	for (int i = 0; i < MANY_N; i++)
		if (!WT_CHECK_EQ(weft_group_spawn(g, NULL, count_fn, n), 0))
			break;
	WT_CHECK_EQ(weft_group_wait(g), 0);
	WT_CHECK_EQ(atomic_load(n), MANY_N);
	WT_CHECK_EQ(weft_group_size(g), 0);
	weft_group_destroy(g);
	return NULL;
}

Test(group, ten_thousand_short_tasks, .timeout = WT_TIMEOUT(60))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		atomic_long n = 0;

		wt_run(group_many_main, &n, worker_counts[c]);
		cr_assert_eq(atomic_load(&n), MANY_N);
	}
}

static void *group_destroy_main(void *arg)
{
	struct member *ms = arg; /* 10 */
	weft_group *g;
	uint64_t b = weft_now();

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	for (int i = 0; i < 10; i++) {
		ms[i].sleep_ns = 30 * MS;
		WT_CHECK_EQ(weft_group_spawn(g, NULL, member_fn, &ms[i]), 0);
	}
	weft_group_destroy(g); /* waits */
	CHECK_NOT_EARLY(weft_now() - b, 30 * MS);
	for (int i = 0; i < 10; i++) {
		WT_CHECK_EQ(atomic_load(&ms[i].ended), 1);
		WT_CHECK_EQ(ms[i].sleep_rc, 0);
	}
	return NULL;
}

Test(group, destroy_waits_for_the_members, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct member ms[10];

		memset(ms, 0, sizeof(ms));
		wt_run(group_destroy_main, ms, worker_counts[c]);
	}
}

/*
 * Regression: weft_group_wait() returned while a member was still not
 * done (weft_task_done() 0 on its handle, weft_await_timeout(h, .., 0)
 * -ETIMEDOUT). A member reports its end to the group (and so releases the
 * waiter) in task_finish() before it publishes `done`; a waiter woken on
 * another worker can run in between. The window is a few instructions, so
 * this only catches it now and then (8 workers on a small machine make
 * preemption there likelier).
 */
#if defined(__SANITIZE_THREAD__)
#define ND_ROUNDS 1000
#else
#define ND_ROUNDS 10000
#endif
#define ND_MEMBERS 8

static void *nd_member(void *arg)
{
	weft_sleep(((uintptr_t)arg % 7) * 3 * US);
	return NULL;
}

static void *not_done_main(void *arg)
{
	long *not_done = arg;

	for (int r = 0; r < ND_ROUNDS; r++) {
		weft_task *h[ND_MEMBERS];
		weft_group *g;

		if (!WT_CHECK_EQ(weft_group_create(&g), 0))
			return NULL;
		for (int i = 0; i < ND_MEMBERS; i++)
			WT_CHECK_EQ(weft_group_spawn(g, &h[i], nd_member,
						     V(r + i)),
				    0);
		WT_CHECK_EQ(weft_group_wait(g), 0);
		for (int i = 0; i < ND_MEMBERS; i++)
			if (weft_task_done(h[i]) != 1)
				(*not_done)++;
		weft_group_destroy(g);
		release_all(h, ND_MEMBERS);
	}
	return NULL;
}

Test(group, members_not_done_after_wait, .timeout = WT_TIMEOUT(60))
{
	long not_done = 0;

	wt_run(not_done_main, &not_done, 8);
	cr_assert_eq(not_done, 0,
		     "%ld of %d members not done when weft_group_wait() "
		     "returned",
		     not_done, ND_ROUNDS * ND_MEMBERS);
}

/* Groups used from many tasks at once: many short groups, each with
 * members that end on other workers while the owner waits (TSan). */
static void *stress_owner(void *arg)
{
	atomic_long *n = arg;

	for (int r = 0; r < 50; r++) {
		weft_group *g;

		if (!WT_CHECK_EQ(weft_group_create(&g), 0))
			return NULL;
		for (int i = 0; i < 8; i++)
			WT_CHECK_EQ(weft_group_spawn(g, NULL, count_fn, n), 0);
		if (r % 2)
			WT_CHECK_EQ(weft_group_wait(g), 0);
		weft_group_destroy(g);
	}
	return NULL;
}

static void *group_stress_main(void *arg)
{
	weft_task *ts[8];

	for (int i = 0; i < 8; i++)
		ts[i] = weft_spawn(stress_owner, arg);
	WT_CHECK_EQ(weft_gather(ts, 8, NULL), 0);
	release_all(ts, 8);
	return NULL;
}

Test(group, many_groups_at_once_across_workers, .timeout = WT_TIMEOUT(60))
{
	atomic_long n = 0;

	wt_run(group_stress_main, &n, 4);
	cr_assert_eq(atomic_load(&n), 8 * 50 * 8);
}

/* ======================================================================
 * wait_any and waitsets
 * ====================================================================== */

static void *sleep_ms_fn(void *arg)
{
	uint64_t ms = (uint64_t)(uintptr_t)arg;

	WT_CHECK_EQ(weft_sleep(ms * MS), 0);
	return arg;
}

static void *ret_fn(void *arg)
{
	return arg;
}

/* Returns how late a 20 ms wait_any with nothing ending came back. */
static uint64_t wait_any_timeout_try(weft_task **g)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_wait_any(g, 2, 20 * MS), -ETIMEDOUT);
	return late_by(weft_now() - b, 20 * MS);
}

static void *wait_any_main(void *arg)
{
	static const uint64_t ms[3] = { 50, 10, 30 };
	struct wt_gate gate = { .value = NULL };
	weft_task *ts[3], *g[2];
	uint64_t late;

	(void)arg;
	for (int i = 0; i < 3; i++)
		ts[i] = weft_spawn(sleep_ms_fn, V(ms[i] * WT_SLOW));
	WT_CHECK_EQ(weft_wait_any(ts, 3, WEFT_NEVER), 1);
	WT_CHECK_EQ(weft_task_done(ts[1]), 1);
	WT_CHECK_EQ(weft_gather(ts, 3, NULL), 0);
	/* All ended: the first index. */
	WT_CHECK_EQ(weft_wait_any(ts, 3, 0), 0);
	release_all(ts, 3);

	/* Nothing ends in time. */
	g[0] = weft_spawn(wt_gate_fn, &gate);
	g[1] = weft_spawn(wt_gate_fn, &gate);
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, wait_any_timeout_try(g));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_wait_any(g, 2, 0), -ETIMEDOUT);
	/* An ended task among running ones is found at once. */
	ts[0] = g[0];
	ts[1] = weft_spawn(ret_fn, NULL);
	ts[2] = g[1];
	WT_CHECK_EQ(weft_await(ts[1], NULL), 0);
	WT_CHECK_EQ(weft_wait_any(ts, 3, WEFT_NEVER), 1);
	weft_task_release(ts[1]);
	atomic_store(&gate.open, 1);
	WT_CHECK_EQ(weft_gather(g, 2, NULL), 0);
	release_all(g, 2);

	WT_CHECK_EQ(weft_wait_any(ts, 0, WEFT_NEVER), -EINVAL);
	g[0] = NULL;
	WT_CHECK_EQ(weft_wait_any(g, 1, WEFT_NEVER), -EINVAL);
	/* A stale handle (ended and released), and the caller itself. */
	g[0] = weft_spawn(ret_fn, NULL);
	WT_CHECK_EQ(weft_await(g[0], NULL), 0);
	weft_task_release(g[0]);
	WT_CHECK_EQ(weft_wait_any(g, 1, WEFT_NEVER), -EINVAL);
	g[0] = weft_self();
	WT_CHECK_EQ(weft_wait_any(g, 1, 0), -EINVAL);
	return NULL;
}

Test(group, wait_any_returns_the_index_of_the_first_to_end,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(wait_any_main, NULL, worker_counts[c]);
}

struct wa_cancel {
	struct wt_gate gate;
	weft_task *g;
	atomic_int entered;
	int rc;
};

static void *wa_victim(void *arg)
{
	struct wa_cancel *w = arg;

	atomic_store(&w->entered, 1);
	w->rc = weft_wait_any(&w->g, 1, WEFT_NEVER);
	return NULL;
}

static void *wait_any_cancel_main(void *arg)
{
	struct wa_cancel *w = arg;
	weft_task *t;

	w->g = weft_spawn(wt_gate_fn, &w->gate);
	t = weft_spawn(wa_victim, w);
	settle_count(&w->entered, 1);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(w->rc, -ECANCELED);
	/* The awaited task keeps running. */
	WT_CHECK_EQ(weft_task_done(w->g), 0);
	atomic_store(&w->gate.open, 1);
	WT_CHECK_EQ(weft_await(w->g, NULL), 0);
	weft_task_release(t);
	weft_task_release(w->g);
	return NULL;
}

Test(group, wait_any_cancelled_returns_ecanceled, .timeout = WT_TIMEOUT(20))
{
	struct wa_cancel w;

	wt_run_each(wait_any_cancel_main, &w, sizeof(w));
}

/* Waitsets: completion order, -ENOENT at the end, ended tasks first. */
static void *waitset_order_main(void *arg)
{
	/* The order the tasks are let end in, not their index order. */
	static const int order[6] = { 3, 1, 5, 2, 0, 4 };
	struct wt_gate gates[6];
	weft_task *ts[6], *mix[4];
	weft_waitset *ws;
	void *r;

	(void)arg;
	for (int i = 0; i < 6; i++) {
		atomic_init(&gates[i].open, 0);
		gates[i].value = V(i + 1);
		ts[i] = weft_spawn(wt_gate_fn, &gates[i]);
	}
	if (!WT_CHECK_EQ(weft_waitset_create(&ws, ts, 6), 0))
		return NULL;
	WT_CHECK_EQ(weft_waitset_next(ws, 0), -ETIMEDOUT);
	/* One at a time, next waiting for each (it parks)... */
	for (int k = 0; k < 3; k++) {
		int i;

		atomic_store(&gates[order[k]].open, 1);
		i = weft_waitset_next(ws, WEFT_NEVER);
		if (!WT_CHECK_EQ(i, order[k]))
			break;
		WT_CHECK_EQ(weft_task_done(ts[i]), 1);
		WT_CHECK_EQ(weft_await(ts[i], &r), 0);
		WT_CHECK_PTR_EQ(r, i + 1);
	}
	/* ... then three that end, in turn, before next is called. */
	for (int k = 3; k < 6; k++) {
		atomic_store(&gates[order[k]].open, 1);
		WT_CHECK_EQ(weft_await(ts[order[k]], NULL), 0);
	}
	for (int k = 3; k < 6; k++)
		WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), order[k]);
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ENOENT);
	WT_CHECK_EQ(weft_waitset_next(ws, 0), -ENOENT);
	weft_waitset_destroy(ws);
	release_all(ts, 6);

	/* Tasks that ended before the set was made come first. */
	for (int i = 0; i < 2; i++) {
		atomic_store(&gates[i].open, 0);
		gates[i].value = NULL;
	}
	mix[0] = weft_spawn(wt_gate_fn, &gates[0]);
	mix[1] = weft_spawn(ret_fn, NULL);
	mix[2] = weft_spawn(wt_gate_fn, &gates[1]);
	mix[3] = weft_spawn(ret_fn, NULL);
	WT_CHECK_EQ(weft_await(mix[1], NULL), 0);
	WT_CHECK_EQ(weft_await(mix[3], NULL), 0);
	if (!WT_CHECK_EQ(weft_waitset_create(&ws, mix, 4), 0))
		return NULL;
	atomic_store(&gates[1].open, 1); /* mix[2] */
	WT_CHECK_EQ(weft_await(mix[2], NULL), 0);
	atomic_store(&gates[0].open, 1); /* mix[0] */
	{
		int a = weft_waitset_next(ws, WEFT_NEVER);
		int b = weft_waitset_next(ws, WEFT_NEVER);

		WT_CHECK((a == 1 && b == 3) || (a == 3 && b == 1));
		WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), 2);
		WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), 0);
		WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ENOENT);
	}
	weft_waitset_destroy(ws);
	release_all(mix, 4);

	/* An empty set ends at once. */
	WT_CHECK_EQ(weft_waitset_create(&ws, NULL, 0), 0);
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ENOENT);
	weft_waitset_destroy(ws);
	return NULL;
}

Test(group, waitset_yields_tasks_in_the_order_they_end,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(waitset_order_main, NULL, worker_counts[c]);
}

/* Returns how late a 20 ms waitset_next with nothing ending came back. */
static uint64_t waitset_timeout_try(weft_waitset *ws)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_waitset_next(ws, 20 * MS), -ETIMEDOUT);
	return late_by(weft_now() - b, 20 * MS);
}

static void *waitset_timeout_main(void *arg)
{
	struct wt_gate gate = { .value = NULL };
	weft_task *ts[2];
	weft_waitset *ws;
	uint64_t b, saved, late;

	(void)arg;
	ts[0] = weft_spawn(wt_gate_fn, &gate);
	ts[1] = weft_spawn(sleep_ms_fn, V(10));
	if (!WT_CHECK_EQ(weft_waitset_create(&ws, ts, 2), 0))
		return NULL;
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), 1);
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, waitset_timeout_try(ws));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_waitset_next(ws, 0), -ETIMEDOUT);
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);
	/* A timeout loses nothing: the next end is still reported. */
	atomic_store(&gate.open, 1);
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), 0);
	WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), -ENOENT);
	weft_waitset_destroy(ws);
	release_all(ts, 2);

	/* Destroyed while tasks still run: they end later, safely. */
	gate.open = 0;
	ts[0] = weft_spawn(wt_gate_fn, &gate);
	ts[1] = weft_spawn(sleep_ms_fn, V(5));
	if (!WT_CHECK_EQ(weft_waitset_create(&ws, ts, 2), 0))
		return NULL;
	weft_waitset_destroy(ws);
	atomic_store(&gate.open, 1);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), 0);
	release_all(ts, 2);
	return NULL;
}

Test(group, waitset_times_out_and_loses_nothing, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(waitset_timeout_main, NULL, worker_counts[c]);
}

/* Stress: tasks that end on other workers while their waiter sets up,
 * waits and tears down (TSan checks the hand-over). */
#define WA_ROUNDS 1000
#define WA_TASKS 3

static void *tiny_fn(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg;

	for (unsigned i = 0; i < k % 4; i++)
		weft_yield();
	return arg;
}

static void *wait_any_stress_main(void *arg)
{
	long *bad = arg;

	for (int r = 0; r < WA_ROUNDS; r++) {
		weft_task *ts[WA_TASKS];
		weft_waitset *ws;
		int seen = 0;
		int i;

		for (int k = 0; k < WA_TASKS; k++)
			ts[k] = weft_spawn(tiny_fn, V(r + k));
		i = weft_wait_any(ts, WA_TASKS, WEFT_NEVER);
		if (!WT_CHECK(i >= 0 && i < WA_TASKS) ||
		    !WT_CHECK_EQ(weft_task_done(ts[i]), 1))
			(*bad)++;
		/* And the rest through a waitset, each exactly once. */
		if (WT_CHECK_EQ(weft_waitset_create(&ws, ts, WA_TASKS), 0)) {
			while ((i = weft_waitset_next(ws, WEFT_NEVER)) >= 0) {
				if (!WT_CHECK(i < WA_TASKS) ||
				    !WT_CHECK(!(seen & (1 << i))) ||
				    !WT_CHECK_EQ(weft_task_done(ts[i]), 1))
					(*bad)++;
				seen |= 1 << i;
			}
			WT_CHECK_EQ(i, -ENOENT);
			WT_CHECK_EQ(seen, (1 << WA_TASKS) - 1);
			weft_waitset_destroy(ws);
		}
		release_all(ts, WA_TASKS);
	}
	return NULL;
}

Test(group, wait_any_and_waitsets_with_tasks_ending_on_other_workers,
     .timeout = WT_TIMEOUT(60))
{
	long bad = 0;

	wt_run(wait_any_stress_main, &bad, 4);
	cr_assert_eq(bad, 0);
}

/* ======================================================================
 * callbacks
 * ====================================================================== */

struct cb {
	atomic_int ran;
	uint64_t ran_at;
	int worker;
};

static void *cb_fn(void *arg)
{
	struct cb *c = arg;

	c->ran_at = weft_now();
	c->worker = weft_worker_index();
	atomic_store(&c->ran, 1);
	return V(0xcb);
}

static void *call_soon_main(void *arg)
{
	struct cb a, b;
	weft_task *h;
	void *r = NULL;

	(void)arg;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	WT_CHECK_EQ(weft_call_soon(&h, cb_fn, &a), 0);
	WT_CHECK_EQ(weft_await(h, &r), 0);
	WT_CHECK_PTR_EQ(r, 0xcb);
	WT_CHECK_EQ(atomic_load(&a.ran), 1);
	WT_CHECK(a.worker >= 0);
	weft_task_release(h);
	/* Without a handle. */
	WT_CHECK_EQ(weft_call_soon(NULL, cb_fn, &b), 0);
	settle_count(&b.ran, 1);
	WT_CHECK_EQ(weft_call_soon(&h, NULL, NULL), -EINVAL);
	return NULL;
}

Test(group, call_soon_runs_the_callback_as_a_task, .timeout = WT_TIMEOUT(10))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(call_soon_main, NULL, worker_counts[c]);
}

/* Three callbacks: in 30 ms, at now + 40 ms, at a time already past.
 * Returns how late the latest of them ran (0 when all on time). */
static uint64_t call_later_try(void)
{
	struct cb a, b, c;
	weft_task *h[3];
	uint64_t t0, at, late, l;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	t0 = weft_now();
	WT_CHECK_EQ(weft_call_later(&h[0], 30 * MS, cb_fn, &a), 0);
	at = weft_now() + 40 * MS;
	WT_CHECK_EQ(weft_call_at(&h[1], at, cb_fn, &b), 0);
	/* A deadline already past: at once. */
	WT_CHECK_EQ(weft_call_at(&h[2], weft_now() - MS, cb_fn, &c), 0);
	/* Nothing runs early: if it has run, its time has come. */
	{
		int ran = atomic_load(&a.ran);

		WT_CHECK(!ran || weft_now() - t0 >= 30 * MS);
	}
	WT_CHECK_EQ(weft_gather(h, 3, NULL), 0);
	WT_CHECK_EQ(atomic_load(&c.ran), 1);
	late = late_by(a.ran_at - t0, 30 * MS);
	CHECK_NOT_EARLY(b.ran_at, at);
	l = late_by(b.ran_at - (at - 40 * MS), 40 * MS);
	late = l > late ? l : late;
	l = late_by(c.ran_at - t0, 0);
	late = l > late ? l : late;
	release_all(h, 3);
	return late;
}

static void *call_later_main(void *arg)
{
	uint64_t late = WT_BEST_OF(WT_TRIES, QUICK_NS, call_later_try());

	(void)arg;
	CHECK_BELOW(late, QUICK_NS);
	return NULL;
}

Test(group, call_later_and_call_at_never_run_early,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(call_later_main, NULL, worker_counts[c]);
}

static void *call_later_cancel_main(void *arg)
{
	struct cb a, b;
	weft_task *h[2];
	void *r = V(0x1);
	uint64_t b0;

	(void)arg;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	/* Due long after the cancel, however loaded the machine. */
	b0 = weft_now();
	WT_CHECK_EQ(weft_call_later(&h[0], 2 * SEC * WT_SLOW, cb_fn, &a), 0);
	WT_CHECK_EQ(weft_call_at(&h[1], weft_now() + 2 * SEC * WT_SLOW, cb_fn,
				 &b),
		    0);
	weft_sleep(5 * MS);
	WT_CHECK_EQ(weft_cancel(h[0]), 0);
	WT_CHECK_EQ(weft_cancel(h[1]), 0);
	/* Ends promptly (its wait for the start is cut), and never ran:
	 * once ended it never will. */
	WT_CHECK_EQ(weft_await(h[0], &r), -ECANCELED);
	WT_CHECK_PTR_EQ(r, NULL);
	WT_CHECK_EQ(weft_await(h[1], NULL), -ECANCELED);
	CHECK_BELOW(weft_now() - b0, 2 * SEC * WT_SLOW);
	WT_CHECK_EQ(atomic_load(&a.ran), 0);
	WT_CHECK_EQ(atomic_load(&b.ran), 0);
	release_all(h, 2);
	return NULL;
}

Test(group, cancelled_call_later_never_runs, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(call_later_cancel_main, NULL, worker_counts[c]);
}

/* call_soon_threadsafe and weft_join from a thread outside the runtime,
 * while weft_run() is going. */
struct foreign {
	weft_runtime *rt;
	struct cb a, b;
	struct wt_gate gate;
	weft_task *main_made; /* a task of main's for the thread to join */
	weft_task *victim;    /* one main cancels while the thread joins */
	atomic_int joining_victim;
	int rc_call, rc_join, rc_call_detached, rc_join2, rc_bad, rc_join3;
	void *res, *res2;
	int joined_after_open;
	atomic_int done;
};

static void *slow_cb(void *arg)
{
	struct cb *c = arg;

	weft_sleep(20 * MS);
	return cb_fn(c);
}

static void *foreign_thread(void *arg)
{
	struct foreign *f = arg;
	weft_task *h = NULL;

	f->rc_call = weft_call_soon_threadsafe(f->rt, &h, slow_cb, &f->a);
	if (f->rc_call == 0) {
		f->rc_join = weft_join(h, &f->res);
		weft_task_release(h);
	}
	f->rc_call_detached =
		weft_call_soon_threadsafe(f->rt, NULL, cb_fn, &f->b);
	f->rc_bad = weft_call_soon_threadsafe(NULL, &h, cb_fn, &f->b);
	/* A task main spawned: blocks until main opens its gate. */
	f->rc_join2 = weft_join(f->main_made, &f->res2);
	f->joined_after_open = atomic_load(&f->gate.open);
	/* One that main cancels: what weft_await would say. */
	atomic_store(&f->joining_victim, 1);
	f->rc_join3 = weft_join(f->victim, NULL);
	atomic_store(&f->done, 1);
	return NULL;
}

static void *foreign_main(void *arg)
{
	struct foreign *f = arg;
	pthread_t th;

	f->rt = weft_runtime_self();
	if (!WT_CHECK(f->rt != NULL))
		return NULL;
	f->gate.value = V(0x6a7e);
	f->main_made = weft_spawn(wt_gate_fn, &f->gate);
	f->victim = weft_spawn(wt_forever_fn, NULL);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, foreign_thread, f), 0))
		return NULL;
	settle_count(&f->b.ran, 1);
	weft_sleep(10 * MS);
	WT_CHECK_EQ(atomic_load(&f->done), 0); /* still in its join */
	atomic_store(&f->gate.open, 1);
	settle_count(&f->joining_victim, 1);
	WT_CHECK_EQ(atomic_load(&f->done), 0);
	WT_CHECK_EQ(weft_cancel(f->victim), 0);
	settle_count(&f->done, 1);
	pthread_join(th, NULL);
	weft_task_release(f->main_made);
	weft_task_release(f->victim);
	return NULL;
}

Test(group, call_soon_threadsafe_and_join_from_a_foreign_thread,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct foreign f;

		memset(&f, 0, sizeof(f));
		wt_run(foreign_main, &f, worker_counts[c]);
		cr_assert_eq(f.rc_call, 0, "%s", weft_strerror(f.rc_call));
		cr_assert_eq(f.rc_join, 0, "%s", weft_strerror(f.rc_join));
		cr_assert_eq(f.res, V(0xcb));
		cr_assert_eq(atomic_load(&f.a.ran), 1);
		cr_assert_geq(f.a.worker, 0);
		cr_assert_eq(f.rc_call_detached, 0);
		cr_assert_eq(atomic_load(&f.b.ran), 1);
		cr_assert_eq(f.rc_bad, -EINVAL);
		cr_assert_eq(f.rc_join2, 0, "%s", weft_strerror(f.rc_join2));
		cr_assert_eq(f.res2, V(0x6a7e));
		cr_assert_eq(f.joined_after_open, 1);
		cr_assert_eq(f.rc_join3, -ECANCELED, "%s",
			     weft_strerror(f.rc_join3));
	}
}

static void *join_on_worker_main(void *arg)
{
	weft_task *t = weft_spawn(ret_fn, V(1));
	void *r = V(0x1);

	(void)arg;
	WT_CHECK_EQ(weft_join(t, &r), -EDEADLK);
	WT_CHECK_PTR_EQ(r, 0x1);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	/* Ended, still: a worker must not block. */
	WT_CHECK_EQ(weft_join(t, NULL), -EDEADLK);
	weft_task_release(t);
	return NULL;
}

Test(group, join_on_a_worker_is_edeadlk, .timeout = WT_TIMEOUT(10))
{
	wt_run(join_on_worker_main, NULL, 2);
	cr_assert_eq(weft_join(NULL, NULL), -EINVAL);
}

/* Outside any runtime: spawning calls say -EPERM and start nothing. */
Test(group, spawning_calls_outside_a_runtime_are_eperm)
{
	weft_group *g;
	weft_task *h = V(0x1);
	struct cb c;

	memset(&c, 0, sizeof(c));
	cr_assert_eq(weft_group_create(&g), 0);
	cr_assert_eq(weft_group_spawn(g, &h, cb_fn, &c), -EPERM);
	cr_assert_eq(weft_group_size(g), 0);
	weft_group_destroy(g);
	cr_assert_eq(weft_call_soon(&h, cb_fn, &c), -EPERM);
	cr_assert_eq(weft_call_later(&h, MS, cb_fn, &c), -EPERM);
	cr_assert_eq(weft_call_at(NULL, weft_now(), cb_fn, &c), -EPERM);
	cr_assert_eq(atomic_load(&c.ran), 0);
	cr_assert_eq(weft_group_create(NULL), -EINVAL);
}

/* ======================================================================
 * Issue 15: lifetimes, waitset order
 * ====================================================================== */

/* Two tasks wait on a group; the last member's end releases both, and
 * the first to return destroys the group (weft.h: once the call that
 * granted a waiter has returned, the object may go). The other read the
 * group's first failure back from it after its grant: heap-use-after-free
 * under ASan. One worker: the second resumes after the destroy. */
struct grp_pair {
	weft_group *g;
	atomic_int go, entered, returned;
	int rc[2];
	struct grp_pair_arg {
		struct grp_pair *p;
		int i;
	} args[2];
};

static void *grp_pair_member(void *arg)
{
	struct grp_pair *p = arg;

	while (!atomic_load(&p->go))
		weft_yield();
	return weft_err_ptr(-EIO);
}

static void *grp_pair_waiter(void *arg)
{
	struct grp_pair_arg *a = arg;
	struct grp_pair *p = a->p;

	atomic_fetch_add(&p->entered, 1);
	p->rc[a->i] = weft_group_wait(p->g);
	if (atomic_fetch_add(&p->returned, 1) == 0)
		weft_group_destroy(p->g);
	return NULL;
}

static void *grp_pair_main(void *arg)
{
	struct grp_pair *p = arg;
	weft_task *ts[2];

	if (!WT_CHECK_EQ(weft_group_create(&p->g), 0))
		return NULL;
	WT_CHECK_EQ(weft_group_spawn(p->g, NULL, grp_pair_member, p), 0);
	for (int i = 0; i < 2; i++) {
		p->args[i] = (struct grp_pair_arg){ p, i };
		ts[i] = weft_spawn(grp_pair_waiter, &p->args[i]);
	}
	/* One worker: both have parked once they entered. */
	while (atomic_load(&p->entered) < 2)
		weft_yield();
	atomic_store(&p->go, 1);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), 0);
	release_all(ts, 2);
	WT_CHECK_EQ(p->rc[0], -EIO);
	WT_CHECK_EQ(p->rc[1], -EIO);
	return NULL;
}

Test(group, waiters_released_together_read_nothing_after_one_destroys_the_group,
     .timeout = WT_TIMEOUT(10))
{
	struct grp_pair p;

	memset(&p, 0, sizeof(p));
	wt_run(grp_pair_main, &p, 1);
}

/* Issue 15: tasks that had ended when the waitset was made come first, in
 * index order, also when another task ends while the set is being made.
 * That one appended its index to the ready ring at once, ahead of the
 * ended tasks the creating loop had not reached yet (1 .. k, 0, k+1 ..).
 * Task 0 runs on the other worker and ends a little after the creation
 * began, later each round; WS_ENDED ended tasks make the creation last
 * long enough for some of those moments to fall inside it. */
#define WS_ENDED 2000
#define WS_ROUNDS 50

struct ws_mid {
	atomic_int creating;
	atomic_ullong started;
	weft_task *ts[WS_ENDED + 1];
	int order[WS_ENDED + 1];
	unsigned delay_us; /* task 0 ends this long after the creation began */
	int mid;           /* rounds where task 0 came last */
};

static void *ws_mid_runner(void *arg)
{
	struct ws_mid *m = arg;

	atomic_store(&m->started, 1);
	while (!atomic_load(&m->creating))
		weft_yield();
	/* At a different point of the creation each round. */
	wt_spin_us(m->delay_us);
	return NULL;
}

static void *ws_quick(void *arg)
{
	return arg;
}

static void *ws_mid_main(void *arg)
{
	struct ws_mid *m = arg;
	int mid = 0;

	for (int round = 0; round < WS_ROUNDS; round++) {
		weft_waitset *ws;
		uint64_t b;
		int n = 0, pos;

		atomic_store(&m->creating, 0);
		atomic_store(&m->started, 0);
		m->delay_us = (unsigned)(round % 25) * 6 * WT_SLOW;
		m->ts[0] = weft_spawn(ws_mid_runner, m);
		for (int i = 1; i <= WS_ENDED; i++)
			m->ts[i] = weft_spawn(ws_quick, NULL);
		WT_CHECK_EQ(weft_gather(m->ts + 1, WS_ENDED, NULL), 0);
		/* Busy, so that the runner is on the other worker. */
		b = weft_now();
		while (!atomic_load(&m->started))
			if (weft_now() - b > MS)
				weft_yield();
		atomic_store(&m->creating, 1);
		if (!WT_CHECK_EQ(weft_waitset_create(&ws, m->ts, WS_ENDED + 1),
				 0))
			break;
		for (int i; (i = weft_waitset_next(ws, WEFT_NEVER)) >= 0;)
			m->order[n++] = i;
		weft_waitset_destroy(ws);
		release_all(m->ts, WS_ENDED + 1);
		if (!WT_CHECK_EQ(n, WS_ENDED + 1))
			break;
		/* 0 ended before the creation (first) or during it (last);
		 * 1 .. WS_ENDED come in index order either way. */
		for (pos = 0; pos < n && m->order[pos] != 0; pos++)
			;
		if (!WT_CHECK(pos == 0 || pos == WS_ENDED)) {
			fprintf(stderr, "waitset: task 0, which ended during "
					"the creation, came out %d-th of %d\n",
				pos + 1, n);
			break;
		}
		for (int k = 0, want = 1; k < n; k++) {
			if (k == pos)
				continue;
			if (!WT_CHECK_EQ(m->order[k], want++))
				break;
		}
		mid += pos == WS_ENDED;
	}
	m->mid = mid;
	return NULL;
}

Test(group, waitset_reports_tasks_ended_before_its_creation_first_in_index_order,
     .timeout = WT_TIMEOUT(60))
{
	static struct ws_mid m;

	wt_run(ws_mid_main, &m, 2);
	cr_log_info("task 0 came last in %d of %d rounds", m.mid,
		    WS_ROUNDS);
}

/* ======================================================================
 * Issue 18: promises of weft.h that had no test
 * ====================================================================== */

/* weft.h, weft_group_wait(): "From a thread outside the runtime it blocks
 * that thread." A foreign thread waits on a group whose members are held
 * by a gate; it must still be waiting while they are held, and return 0
 * only once all three have ended. */
#define GWF_N 3

struct gw_foreign {
	weft_group *g;
	atomic_int open;             /* the members' gate */
	atomic_int ended;            /* members that have ended */
	atomic_int started, returned;
	int ended_at_return;         /* `ended` when the wait returned */
	int rc;
};

static void *gw_gated_member(void *arg)
{
	struct gw_foreign *f = arg;

	while (!atomic_load(&f->open))
		weft_sleep(MS);
	atomic_fetch_add(&f->ended, 1);
	return NULL;
}

static void *gw_foreign_thread(void *arg)
{
	struct gw_foreign *f = arg;

	atomic_store(&f->started, 1);
	f->rc = weft_group_wait(f->g);
	f->ended_at_return = atomic_load(&f->ended);
	atomic_store(&f->returned, 1);
	return NULL;
}

static void *gw_foreign_main(void *arg)
{
	struct gw_foreign *f = arg;
	pthread_t th;

	if (!WT_CHECK_EQ(weft_group_create(&f->g), 0))
		return NULL;
	for (int i = 0; i < GWF_N; i++)
		WT_CHECK_EQ(weft_group_spawn(f->g, NULL, gw_gated_member, f),
			    0);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, gw_foreign_thread, f),
			 0)) {
		atomic_store(&f->open, 1);
		weft_group_destroy(f->g);
		return NULL;
	}
	settle_count(&f->started, 1);
	/* Time for a wait that does not block to have returned. */
	weft_sleep(20 * MS * WT_SLOW);
	if (atomic_load(&f->returned))
		wt_fail_(__FILE__, __LINE__,
			 "weft_group_wait() from a foreign thread returned "
			 "while every member was still running");
	WT_CHECK_EQ(weft_group_size(f->g), GWF_N);
	atomic_store(&f->open, 1);
	settle_count(&f->returned, 1);
	pthread_join(th, NULL);
	if (f->ended_at_return != GWF_N) {
		char b[128];

		snprintf(b, sizeof(b),
			 "the foreign wait returned when %d of %d members "
			 "had ended", f->ended_at_return, GWF_N);
		wt_fail_(__FILE__, __LINE__, b);
	}
	WT_CHECK_EQ(f->rc, 0);
	WT_CHECK_EQ(weft_group_size(f->g), 0);
	weft_group_destroy(f->g);
	return NULL;
}

Test(group, wait_from_a_foreign_thread_blocks_until_every_member_ended,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct gw_foreign f;

		memset(&f, 0, sizeof(f));
		wt_run(gw_foreign_main, &f, worker_counts[c]);
	}
}

/* weft.h, waiting on several tasks: "Both also return -EPERM outside
 * task context." A thread outside the runtime calls weft_wait_any() on a
 * task that has ended and weft_waitset_next() on a set whose task has
 * ended: from a task both would return index 0 at once; from there both
 * must refuse with -EPERM, and the set must still hold the index for its
 * owner afterwards. */
struct eperm_foreign {
	weft_task *t;
	weft_waitset *ws;
	atomic_int done;
	int rc_any, rc_next;
};

static void *eperm_foreign_thread(void *arg)
{
	struct eperm_foreign *e = arg;

	e->rc_any = weft_wait_any(&e->t, 1, 0);
	e->rc_next = weft_waitset_next(e->ws, 0);
	atomic_store(&e->done, 1);
	return NULL;
}

static void *eperm_foreign_main(void *arg)
{
	struct eperm_foreign *e = arg;
	pthread_t th;

	e->t = weft_spawn(ret_fn, V(7));
	if (!WT_CHECK(e->t != NULL))
		return NULL;
	WT_CHECK_EQ(weft_await(e->t, NULL), 0);
	if (!WT_CHECK_EQ(weft_waitset_create(&e->ws, &e->t, 1), 0)) {
		weft_task_release(e->t);
		return NULL;
	}
	if (WT_CHECK_EQ(pthread_create(&th, NULL, eperm_foreign_thread, e),
			0)) {
		settle_count(&e->done, 1);
		pthread_join(th, NULL);
		WT_CHECK_EQ(e->rc_any, -EPERM);
		WT_CHECK_EQ(e->rc_next, -EPERM);
	}
	/* Nothing was taken from the set by the refused call. */
	WT_CHECK_EQ(weft_waitset_next(e->ws, 0), 0);
	WT_CHECK_EQ(weft_waitset_next(e->ws, 0), -ENOENT);
	weft_waitset_destroy(e->ws);
	weft_task_release(e->t);
	return NULL;
}

Test(group, wait_any_and_waitset_next_outside_a_task_are_eperm,
     .timeout = WT_TIMEOUT(10))
{
	for (unsigned c = 0; c < N_COUNTS; c++) {
		struct eperm_foreign e;

		memset(&e, 0, sizeof(e));
		wt_run(eperm_foreign_main, &e, worker_counts[c]);
	}
}

/* weft.h: a waitset's "-EINVAL (n is 0, a stale or NULL handle) ...
 * -EINVAL covers the caller's own handle too". weft_waitset_create()
 * itself, with a running task beside the bad handle: the caller's own
 * (a set that could never yield it), NULL, and a handle ended and
 * released. Then a good set works, and the running task, which the
 * refused sets had touched, ends normally. */
static void *ws_create_einval_main(void *arg)
{
	struct wt_gate gate = { .value = V(5) };
	weft_task *hs[2], *stale;
	weft_waitset *ws = NULL;
	void *r = NULL;
	int rc;
	struct {
		weft_task *bad;
		const char *what;
	} cases[] = {
		{ weft_self(), "the caller's own handle" },
		{ NULL, "a NULL handle" },
		{ NULL, "a stale handle" }, /* set below */
	};

	(void)arg;
	hs[0] = weft_spawn(wt_gate_fn, &gate);
	stale = weft_spawn(ret_fn, NULL);
	if (!WT_CHECK(hs[0] != NULL) || !WT_CHECK(stale != NULL))
		return NULL;
	WT_CHECK_EQ(weft_await(stale, NULL), 0);
	weft_task_release(stale);
	cases[2].bad = stale;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hs[1] = cases[i].bad;
		ws = NULL;
		rc = weft_waitset_create(&ws, hs, 2);
		if (rc != -EINVAL) {
			char b[128];

			snprintf(b, sizeof(b),
				 "weft_waitset_create() with %s = %d, not "
				 "-EINVAL", cases[i].what, rc);
			wt_fail_(__FILE__, __LINE__, b);
			if (rc == 0)
				weft_waitset_destroy(ws);
		}
	}
	/* The good handle alone. */
	if (WT_CHECK_EQ(weft_waitset_create(&ws, hs, 1), 0)) {
		WT_CHECK_EQ(weft_waitset_next(ws, 0), -ETIMEDOUT);
		atomic_store(&gate.open, 1);
		WT_CHECK_EQ(weft_waitset_next(ws, WEFT_NEVER), 0);
		weft_waitset_destroy(ws);
	}
	atomic_store(&gate.open, 1);
	WT_CHECK_EQ(weft_await(hs[0], &r), 0);
	WT_CHECK_PTR_EQ(r, 5);
	weft_task_release(hs[0]);
	return NULL;
}

Test(group, waitset_create_refuses_the_callers_own_a_null_or_a_stale_handle,
     .timeout = WT_TIMEOUT(10))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(ws_create_einval_main, NULL, worker_counts[c]);
}

/* weft.h, callbacks: "Returns 0, -ENOMEM, -EPERM, -EINVAL (fn NULL)" for
 * weft_call_later() and weft_call_at() as for weft_call_soon(). Far
 * deadlines, so that a NULL fn wrongly accepted is cancelled (and
 * reported) before it could run. */
static void *call_null_fn_main(void *arg)
{
	weft_task *h;
	int rc;

	(void)arg;
	h = NULL;
	rc = weft_call_later(&h, 10 * SEC, NULL, NULL);
	if (!WT_CHECK_EQ(rc, -EINVAL) && rc == 0 && h) {
		weft_cancel(h);
		weft_task_release(h);
	}
	h = NULL;
	rc = weft_call_at(&h, weft_now() + 10 * SEC, NULL, NULL);
	if (!WT_CHECK_EQ(rc, -EINVAL) && rc == 0 && h) {
		weft_cancel(h);
		weft_task_release(h);
	}
	/* Without a handle too (a detached callback). */
	WT_CHECK_EQ(weft_call_later(NULL, 10 * SEC, NULL, NULL), -EINVAL);
	WT_CHECK_EQ(weft_call_at(NULL, weft_now() + 10 * SEC, NULL, NULL),
		    -EINVAL);
	return NULL;
}

Test(group, call_later_and_call_at_with_a_null_fn_are_einval,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(call_null_fn_main, NULL, 1);
}

/*
 * weft.h, task groups: "When a task of the group fails (returns an error
 * pointer, or cannot start), the group cancels the others". A member
 * cannot start when no stack can be had. Stacks of the runtime's size
 * come from slabs of 32 mapped at once; with 32 MiB stacks a new slab
 * needs about 1 GiB of address space, which RLIMIT_AS, lowered to what
 * the process uses plus 256 MiB, refuses. Forty members that would sleep
 * 10 s: the first slab starts the first ones, a later one fails to start
 * with -ENOMEM, and the group must cancel the rest: the wait returns
 * -ENOMEM at once, every member that ran had its sleep cut. Nothing else
 * maps memory meanwhile (the members only sleep).
 */
#define NOSTACK_N 40
#define NOSTACK_STACK ((size_t)32 << 20)

struct nostack {
	struct member ms[NOSTACK_N];
	int rc, limited;
	uint64_t took;
};

/* The process's address space in bytes (VmSize), or 0. */
static uint64_t vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

static void *nostack_main(void *arg)
{
	struct nostack *n = arg;
	struct rlimit old, low;
	weft_group *g;
	uint64_t vm, t0;

	if (!WT_CHECK_EQ(weft_group_create(&g), 0))
		return NULL;
	vm = vm_size();
	if (!WT_CHECK(vm > 0) || !WT_CHECK_EQ(getrlimit(RLIMIT_AS, &old), 0))
		return NULL;
	low = old;
	low.rlim_cur = vm + ((uint64_t)256 << 20);
	if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < low.rlim_cur)
		low.rlim_cur = old.rlim_cur;
	if (!WT_CHECK_EQ(setrlimit(RLIMIT_AS, &low), 0))
		return NULL;
	n->limited = 1;
	t0 = weft_now();
	for (int i = 0; i < NOSTACK_N; i++) {
		n->ms[i].sleep_ns = 10 * SEC;
		/* Refused once the group has failed: fine. */
		int rc = weft_group_spawn(g, NULL, member_fn, &n->ms[i]);
		if (rc != 0 && !WT_CHECK_EQ(rc, -ECANCELED))
			break;
	}
	n->rc = weft_group_wait(g);
	n->took = weft_now() - t0;
	WT_CHECK_EQ(setrlimit(RLIMIT_AS, &old), 0);
	weft_group_destroy(g);
	return NULL;
}

Test(group, a_member_that_cannot_get_a_stack_fails_the_group_with_enomem,
     .timeout = WT_TIMEOUT(20))
{
	static const unsigned counts[] = { 1, 2 };
	struct weft_config cfg;

	for (unsigned c = 0; c < 2; c++) {
		static struct nostack n;
		int ran = 0;

		memset(&n, 0, sizeof(n));
		memset(&cfg, 0, sizeof(cfg));
		cfg.workers = counts[c];
		cfg.stack_size = NOSTACK_STACK;
		wt_run_cfg(nostack_main, &n, &cfg);
		cr_assert(n.limited, "RLIMIT_AS could not be lowered");
		cr_assert_eq(n.rc, -ENOMEM,
			     "%u worker(s): wait = %d (%s), not -ENOMEM from a "
			     "member that could not start",
			     counts[c], n.rc, weft_strerror(n.rc));
		cr_assert_lt(n.took, PROMPT_NS,
			     "the wait took %llu ns: the members were not "
			     "cancelled", (unsigned long long)n.took);
		for (int i = 0; i < NOSTACK_N; i++) {
			struct member *m = &n.ms[i];

			if (!atomic_load(&m->ran))
				continue;
			ran++;
			cr_assert_eq(atomic_load(&m->ended), 1);
			cr_assert_eq(m->sleep_rc, -ECANCELED,
				     "member %d ran and was not cancelled "
				     "(sleep = %d)", i, m->sleep_rc);
		}
		cr_assert(ran > 0 && ran < NOSTACK_N,
			  "%d of %d members ran: expected the first slab's "
			  "worth", ran, NOSTACK_N);
		cr_log_info("%u worker(s): %d members ran", counts[c], ran);
	}
}
