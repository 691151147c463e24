/*
 * Cancellation: weft_cancel() on parked, queued, never-started and ended
 * tasks, shields, weft_cancelled(), gather under cancellation, misuse.
 */
#include <pthread.h>
#include <signal.h>

#include "weft_test.h"

WT_SUITE(cancel, 60);

/* ---- a task parked in weft_await ---------------------------------------- */

struct parked {
	struct wt_gate gate;
	weft_task *target;
	atomic_int entered;
	int await_rc;
	void *await_res;
};

static void *await_target(void *arg)
{
	struct parked *p = arg;

	p->await_res = (void *)1;
	atomic_store(&p->entered, 1);
	p->await_rc = weft_await(p->target, &p->await_res);
	return (void *)0xa11;
}

static void *cancel_parked_main(void *arg)
{
	struct parked p = { .gate.value = (void *)0x9a7e };
	weft_task *a;
	void *r = NULL;

	(void)arg;
	p.target = weft_spawn(wt_gate_fn, &p.gate);
	a = weft_spawn(await_target, &p);
	WT_CHECK(wt_yield_until(&p.entered, 10000000));
	for (int i = 0; i < 10; i++)
		weft_yield();
	WT_CHECK_EQ(weft_task_done(a), 0);
	WT_CHECK_EQ(weft_cancel(a), 0);
	/* The canceller's await of it: cancelled before it returned. */
	WT_CHECK_EQ(weft_await(a, &r), -ECANCELED);
	/* ... and *result still gets what it returned. */
	WT_CHECK_PTR_EQ(r, 0xa11);
	WT_CHECK_EQ(p.await_rc, -ECANCELED);
	WT_CHECK_PTR_EQ(p.await_res, 1); /* nothing stored */
	/* The awaited task was not touched: it keeps running. */
	WT_CHECK_EQ(weft_task_done(p.target), 0);
	atomic_store(&p.gate.open, 1);
	r = NULL;
	WT_CHECK_EQ(weft_await(p.target, &r), 0);
	WT_CHECK_PTR_EQ(r, 0x9a7e);
	weft_task_release(a);
	weft_task_release(p.target);
	return NULL;
}

Test(cancel, cancelling_a_task_parked_in_await_returns_ecanceled_to_both,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(cancel_parked_main, NULL, 1);
	wt_run(cancel_parked_main, NULL, 2);
	wt_run(cancel_parked_main, NULL, 4);
}

/* Every awaiter of a cancelled task gets -ECANCELED and its result. */
struct cancelled_target {
	weft_task *victim;
	atomic_int started; /* the victim runs: cancelled while running */
	atomic_long entered;
	atomic_long ok;
};

static void *yield_until_cancelled(void *arg)
{
	if (arg)
		atomic_store((atomic_int *)arg, 1);
	while (weft_yield() != -ECANCELED)
		;
	return (void *)0xc0ffee;
}

static void *await_victim(void *arg)
{
	struct cancelled_target *c = arg;
	void *r = NULL;
	int rc;

	atomic_fetch_add(&c->entered, 1);
	rc = weft_await(c->victim, &r);
	if (WT_CHECK_EQ(rc, -ECANCELED) && WT_CHECK_PTR_EQ(r, 0xc0ffee))
		atomic_fetch_add(&c->ok, 1);
	return NULL;
}

static void *awaiters_of_cancelled_main(void *arg)
{
	struct cancelled_target c = { 0 };
	weft_task *ws[16];

	(void)arg;
	c.victim = weft_spawn(yield_until_cancelled, &c.started);
	for (int i = 0; i < 16; i++)
		ws[i] = weft_spawn(await_victim, &c);
	WT_CHECK(wt_yield_until_count(&c.entered, 16, 10000000));
	/* It must have started, or the cancel keeps it from running and its
	 * result is NULL (seen under the perturbation build, 3 workers). */
	WT_CHECK(wt_yield_until(&c.started, 10000000));
	weft_yield();
	WT_CHECK_EQ(weft_cancel(c.victim), 0);
	WT_CHECK_EQ(weft_gather(ws, 16, NULL), 0);
	WT_CHECK_EQ(atomic_load(&c.ok), 16);
	for (int i = 0; i < 16; i++)
		weft_task_release(ws[i]);
	WT_CHECK_EQ(weft_await(c.victim, NULL), -ECANCELED);
	weft_task_release(c.victim);
	return NULL;
}

Test(cancel, awaiters_of_a_cancelled_task_get_ecanceled_and_its_result,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(awaiters_of_cancelled_main, NULL, 1);
	wt_run(awaiters_of_cancelled_main, NULL, 3);
}

/* ---- before start, after end -------------------------------------------- */

static void *set_flag(void *arg)
{
	atomic_fetch_add((atomic_int *)arg, 1);
	return (void *)0x1;
}

static void *before_start_main(void *arg)
{
	atomic_int *ran = arg;
	weft_task *ts[100];
	void *r = (void *)0x77;

	/* One worker, and we do not suspend between spawn and cancel: the
	 * tasks are still queued when cancelled. */
	for (int i = 0; i < 100; i++) {
		ts[i] = weft_spawn(set_flag, ran);
		WT_CHECK_EQ(weft_cancel(ts[i]), 0);
	}
	WT_CHECK_EQ(weft_await(ts[0], &r), -ECANCELED);
	WT_CHECK(r == NULL);
	WT_CHECK_EQ(weft_gather(ts, 100, NULL), -ECANCELED);
	for (int i = 0; i < 100; i++) {
		WT_CHECK_EQ(weft_task_done(ts[i]), 1);
		WT_CHECK_EQ(weft_await(ts[i], NULL), -ECANCELED);
		weft_task_release(ts[i]);
	}
	return NULL;
}

Test(cancel, task_cancelled_before_it_starts_never_runs_its_body,
     .timeout = WT_TIMEOUT(10))
{
	atomic_int ran = 0;

	wt_run(before_start_main, &ran, 1);
	cr_assert_eq(atomic_load(&ran), 0, "%d cancelled bodies ran",
		     atomic_load(&ran));
}

static void *ended_main(void *arg)
{
	atomic_int ran = 0;
	weft_task *t = weft_spawn(set_flag, &ran);
	void *r = NULL;

	(void)arg;
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_EQ(weft_cancel(t), -EALREADY);
	WT_CHECK_EQ(weft_cancel(t), -EALREADY);
	/* A late cancel does not change the outcome. */
	WT_CHECK_EQ(weft_await(t, &r), 0);
	WT_CHECK_PTR_EQ(r, 1);
	WT_CHECK_EQ(atomic_load(&ran), 1);
	weft_task_release(t);
	WT_CHECK_EQ(weft_cancel(NULL), -EINVAL);
	return NULL;
}

Test(cancel, cancel_of_an_ended_task_returns_ealready,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(ended_main, NULL, 1);
	wt_run(ended_main, NULL, 2);
}

/* ---- shields ------------------------------------------------------------ */

struct shielded {
	struct wt_gate gate;
	weft_task *target;
	atomic_int entered;
	int begin_rc, await_rc, cancelled_seen, yield_shielded_rc;
	int end_rc, yield_after_rc;
	void *await_res;
};

static void *shielded_awaiter(void *arg)
{
	struct shielded *s = arg;

	s->begin_rc = weft_shield_begin();
	atomic_store(&s->entered, 1);
	s->await_rc = weft_await(s->target, &s->await_res);
	s->cancelled_seen = weft_cancelled();
	s->yield_shielded_rc = weft_yield();
	s->end_rc = weft_shield_end();
	s->yield_after_rc = weft_yield();
	return (void *)0x5e1d;
}

static void *shield_main(void *arg)
{
	struct shielded s = { .gate.value = (void *)0x600d };
	weft_task *t;
	void *r = NULL;

	(void)arg;
	s.target = weft_spawn(wt_gate_fn, &s.gate);
	t = weft_spawn(shielded_awaiter, &s);
	WT_CHECK(wt_yield_until(&s.entered, 10000000));
	for (int i = 0; i < 10; i++)
		weft_yield();
	WT_CHECK_EQ(weft_cancel(t), 0);
	/* The cancel wakes it; the shield sends it back to waiting. */
	for (int i = 0; i < 50; i++)
		weft_yield();
	WT_CHECK_EQ(weft_task_done(t), 0);
	atomic_store(&s.gate.open, 1);
	WT_CHECK_EQ(weft_await(t, &r), -ECANCELED);
	WT_CHECK_PTR_EQ(r, 0x5e1d);
	WT_CHECK_EQ(s.begin_rc, 0);
	WT_CHECK_EQ(s.await_rc, 0);
	WT_CHECK_PTR_EQ(s.await_res, 0x600d);
	WT_CHECK_EQ(s.cancelled_seen, 1);
	WT_CHECK_EQ(s.yield_shielded_rc, 0);
	WT_CHECK_EQ(s.end_rc, 0);
	WT_CHECK_EQ(s.yield_after_rc, -ECANCELED);
	weft_task_release(t);
	weft_task_release(s.target);
	return NULL;
}

Test(cancel, shielded_await_completes_and_next_yield_after_shield_reports_it,
     .timeout = WT_TIMEOUT(20))
{
	wt_run(shield_main, NULL, 1);
	wt_run(shield_main, NULL, 2);
	wt_run(shield_main, NULL, 4);
}

static void *nested_shield_fn(void *arg)
{
	int *rc = arg;

	rc[0] = weft_shield_begin();
	rc[1] = weft_shield_begin();
	rc[2] = weft_cancel(weft_self());
	rc[3] = weft_yield();		/* two shields up */
	rc[4] = weft_shield_end();
	rc[5] = weft_yield();		/* one still up */
	rc[6] = weft_cancelled();
	rc[7] = weft_shield_end();
	rc[8] = weft_yield();		/* none: reported */
	return NULL;
}

static void *nested_shield_main(void *arg)
{
	weft_task *t = weft_spawn(nested_shield_fn, arg);

	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	weft_task_release(t);
	return NULL;
}

Test(cancel, shields_nest, .timeout = WT_TIMEOUT(10))
{
	int rc[9];

	memset(rc, 0x55, sizeof(rc));
	wt_run(nested_shield_main, rc, 2);
	cr_assert_eq(rc[0], 0);
	cr_assert_eq(rc[1], 0);
	cr_assert_eq(rc[2], 0);
	cr_assert_eq(rc[3], 0, "yield with two shields up: %d", rc[3]);
	cr_assert_eq(rc[4], 0);
	cr_assert_eq(rc[5], 0, "yield with one shield up: %d", rc[5]);
	cr_assert_eq(rc[6], 1);
	cr_assert_eq(rc[7], 0);
	cr_assert_eq(rc[8], -ECANCELED);
}

static void *bad_shield_end(void *arg)
{
	(void)arg;
	weft_shield_end(); /* no begin: aborts */
	return NULL;
}

static void *bad_shield_main(void *arg)
{
	weft_task *t = weft_spawn(bad_shield_end, NULL);

	(void)arg;
	weft_await(t, NULL);
	weft_task_release(t);
	return NULL;
}

Test(cancel, shield_end_without_begin_aborts, .signal = SIGABRT,
     .timeout = WT_TIMEOUT(10))
{
	struct weft_config cfg = { .workers = 2 };

	weft_run(bad_shield_main, NULL, &cfg, NULL);
}

static void *shield_balance_main(void *arg)
{
	(void)arg;
	/* A begin/end pair leaves the task as it was: a second end aborts. */
	WT_CHECK_EQ(weft_shield_begin(), 0);
	WT_CHECK_EQ(weft_shield_end(), 0);
	weft_shield_end();
	return NULL;
}

Test(cancel, shield_end_after_balanced_pair_aborts, .signal = SIGABRT,
     .timeout = WT_TIMEOUT(10))
{
	struct weft_config cfg = { .workers = 1 };

	weft_run(shield_balance_main, NULL, &cfg, NULL);
}

Test(cancel, shield_outside_a_task_returns_eperm)
{
	cr_assert_eq(weft_shield_begin(), -EPERM);
	cr_assert_eq(weft_shield_end(), -EPERM);
	cr_assert_eq(weft_cancelled(), 0);
}

/* ---- weft_cancelled(), self-cancel -------------------------------------- */

struct self_cancel {
	struct wt_gate gate;
	int before, cancel_rc, after, y1, y2, still, await_rc;
	weft_task *other;
};

static void *self_cancel_fn(void *arg)
{
	struct self_cancel *s = arg;

	s->before = weft_cancelled();
	s->cancel_rc = weft_cancel(weft_self());
	s->after = weft_cancelled();
	s->y1 = weft_yield();
	s->y2 = weft_yield();		/* not consumed by the first */
	s->still = weft_cancelled();
	/* A pending cancel makes a wait on an unfinished task give up. */
	s->await_rc = weft_await(s->other, NULL);
	return NULL;
}

static void *self_cancel_main(void *arg)
{
	struct self_cancel *s = arg;
	weft_task *t;

	s->other = weft_spawn(wt_gate_fn, &s->gate);
	t = weft_spawn(self_cancel_fn, s);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(weft_task_done(s->other), 0); /* kept running */
	WT_CHECK_EQ(weft_cancelled(), 0);	    /* main was not */
	atomic_store(&s->gate.open, 1);
	WT_CHECK_EQ(weft_await(s->other, NULL), 0);
	weft_task_release(s->other);
	weft_task_release(t);
	return NULL;
}

Test(cancel, cancelled_reports_a_pending_cancel_without_consuming_it,
     .timeout = WT_TIMEOUT(10))
{
	struct self_cancel s;

	memset(&s, 0, sizeof(s));
	wt_run(self_cancel_main, &s, 2);
	cr_assert_eq(s.before, 0);
	cr_assert_eq(s.cancel_rc, 0);
	cr_assert_eq(s.after, 1);
	cr_assert_eq(s.y1, -ECANCELED);
	cr_assert_eq(s.y2, -ECANCELED);
	cr_assert_eq(s.still, 1);
	cr_assert_eq(s.await_rc, -ECANCELED);
	cr_assert_eq(weft_cancelled(), 0);
}

/* A task looping on weft_yield() sees the cancel at its next yield. */
static void *yield_loop_main(void *arg)
{
	weft_task *t = weft_spawn(yield_until_cancelled, NULL);
	void *r = NULL;

	(void)arg;
	for (int i = 0; i < 20; i++)
		weft_yield();
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, &r), -ECANCELED);
	WT_CHECK_PTR_EQ(r, 0xc0ffee);
	weft_task_release(t);
	return NULL;
}

Test(cancel, yield_returns_ecanceled_to_a_cancelled_task,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(yield_loop_main, NULL, 1);
	wt_run(yield_loop_main, NULL, 2);
}

/* ---- cancel from a foreign thread --------------------------------------- */

struct foreign_cancel {
	struct parked p;
	weft_task *victim;
	int rc;
	atomic_int go;
};

static void *foreign_canceller(void *arg)
{
	struct foreign_cancel *f = arg;

	while (!atomic_load(&f->go))
		wt_sleep_ms(1);
	f->rc = weft_cancel(f->victim);
	return NULL;
}

static void *foreign_cancel_main(void *arg)
{
	struct foreign_cancel *f = arg;
	pthread_t th;
	void *r = NULL;

	f->p.gate.value = (void *)0x9a7e;
	f->p.target = weft_spawn(wt_gate_fn, &f->p.gate);
	f->victim = weft_spawn(await_target, &f->p);
	WT_CHECK_EQ(pthread_create(&th, NULL, foreign_canceller, f), 0);
	WT_CHECK(wt_yield_until(&f->p.entered, 10000000));
	atomic_store(&f->go, 1);
	WT_CHECK_EQ(weft_await(f->victim, &r), -ECANCELED);
	WT_CHECK_PTR_EQ(r, 0xa11);
	WT_CHECK_EQ(f->p.await_rc, -ECANCELED);
	pthread_join(th, NULL);
	WT_CHECK_EQ(f->rc, 0);
	atomic_store(&f->p.gate.open, 1);
	WT_CHECK_EQ(weft_await(f->p.target, NULL), 0);
	weft_task_release(f->victim);
	weft_task_release(f->p.target);
	return NULL;
}

Test(cancel, cancel_from_a_foreign_thread_wakes_the_parked_task,
     .timeout = WT_TIMEOUT(10))
{
	struct foreign_cancel f;

	memset(&f, 0, sizeof(f));
	wt_run(foreign_cancel_main, &f, 2);
	memset(&f, 0, sizeof(f));
	wt_run(foreign_cancel_main, &f, 1);
}

/* ---- gather ------------------------------------------------------------- */

#define GN 3

struct gatherer {
	struct wt_gate gate;
	weft_task *ts[GN];
	void *rs[GN];
	atomic_int entered;
	int rc;
};

static void *gather_fn(void *arg)
{
	struct gatherer *g = arg;

	atomic_store(&g->entered, 1);
	g->rc = weft_gather(g->ts, GN, g->rs);
	return NULL;
}

static void gather_cancelled_run(struct gatherer *g)
{
	weft_task *t;

	memset(g, 0, sizeof(*g));
	g->gate.value = (void *)0x9a7e;
	for (int i = 0; i < GN; i++) {
		g->ts[i] = weft_spawn(wt_gate_fn, &g->gate);
		g->rs[i] = (void *)(uintptr_t)0xdead;
	}
	t = weft_spawn(gather_fn, g);
	WT_CHECK(wt_yield_until(&g->entered, 10000000));
	for (int i = 0; i < 10; i++)
		weft_yield();
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	/* The gathered tasks keep running. */
	for (int i = 0; i < GN; i++)
		WT_CHECK_EQ(weft_task_done(g->ts[i]), 0);
	atomic_store(&g->gate.open, 1);
	WT_CHECK_EQ(weft_gather(g->ts, GN, NULL), 0);
	for (int i = 0; i < GN; i++)
		weft_task_release(g->ts[i]);
	weft_task_release(t);
}

static void *gather_cancelled_main(void *arg)
{
	gather_cancelled_run(arg);
	return NULL;
}

Test(cancel, gather_returns_ecanceled_when_the_gatherer_is_cancelled,
     .timeout = WT_TIMEOUT(10))
{
	struct gatherer g;

	wt_run(gather_cancelled_main, &g, 1);
	cr_assert_eq(g.rc, -ECANCELED);
	wt_run(gather_cancelled_main, &g, 3);
	cr_assert_eq(g.rc, -ECANCELED);
}

/* weft.h: "results of tasks not yet awaited are then NULL". The caller's
 * array is filled with a marker first; none may survive. */
Test(cancel, cancelled_gather_leaves_results_of_unawaited_tasks_null,
     .timeout = WT_TIMEOUT(10))
{
	struct gatherer g;

	wt_run(gather_cancelled_main, &g, 1);
	cr_assert_eq(g.rc, -ECANCELED);
	for (int i = 0; i < GN; i++)
		cr_assert_null(g.rs[i], "results[%d] = %p after a cancelled "
					"gather, want NULL", i, g.rs[i]);
}

static void *ret_after_yields(void *arg)
{
	for (int i = 0; i < 5; i++)
		weft_yield();
	return arg;
}

static void *gather_some_cancelled_main(void *arg)
{
	atomic_int ran = 0;
	weft_task *ts[3];
	void *rs[3] = { (void *)1, (void *)1, (void *)1 };

	(void)arg;
	ts[0] = weft_spawn(ret_after_yields, (void *)10);
	ts[1] = weft_spawn(set_flag, &ran);
	ts[2] = weft_spawn(ret_after_yields, (void *)30);
	WT_CHECK_EQ(weft_cancel(ts[1]), 0); /* before it starts */
	WT_CHECK_EQ(weft_gather(ts, 3, rs), -ECANCELED);
	/* It waited for all of them. */
	for (int i = 0; i < 3; i++)
		WT_CHECK_EQ(weft_task_done(ts[i]), 1);
	WT_CHECK_PTR_EQ(rs[0], 10);
	WT_CHECK(rs[1] == NULL);
	WT_CHECK_PTR_EQ(rs[2], 30);
	WT_CHECK_EQ(atomic_load(&ran), 0);
	for (int i = 0; i < 3; i++)
		weft_task_release(ts[i]);
	return NULL;
}

Test(cancel, gather_waits_for_all_when_some_were_cancelled,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(gather_some_cancelled_main, NULL, 1);
}
