/*
 * Channels, select and async generators (runtime/chan.c), against the
 * contracts in weft.h: FIFO order at every capacity (0 is a rendezvous),
 * many producers and consumers on several workers with every value
 * received exactly once, the non-waiting calls, close (drain, then
 * -EPIPE, waiters woken), timeouts, cancellation that moves no value,
 * threads outside the runtime, select (array order, closed channels,
 * NULL cases, polls, timeouts, cancellation, and racing selects that must
 * neither lose nor duplicate a value), generators, and threads and tasks
 * contending on one channel.
 *
 * Timing checks: never early (exact); "at once" is QUICK_NS for the best
 * of WT_TRIES measurements (late_by), PROMPT_NS on each a hang guard.
 *
 * "Parked" without a way to see it: as in test_sync.c, a waiter bumps a
 * counter just before its call and the test, once it sees the count,
 * sleeps SETTLE_NS more. No check here depends on the waiter having
 * parked by then except "has not returned yet", which holds either way.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "weft_test.h"

WT_SUITE(chan, 240);

static const unsigned worker_counts[] = { 1, 2, 4 };
#define N_COUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

#define V(i) ((void *)(uintptr_t)(i))
#define I(p) ((uintptr_t)(p))

static void sel_case(struct weft_sel *k, weft_chan *c, int op, void *v)
{
	k->chan = c;
	k->op = op;
	k->value = v;
	k->result = 0x7777;
}

/* Spins until *started is set (by a task another worker stole), yielding
 * after a while in case none does. */
static void wait_started(atomic_ullong *started)
{
	uint64_t b = weft_now();

	while (!atomic_load(started))
		if (weft_now() - b > WEFT_NSEC_PER_MSEC)
			weft_yield();
}

static void release_all(weft_task **ts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ts[i])
			weft_task_release(ts[i]);
}

/* For WT_BEST_OF: how late a wait due to end `want` ns after it began (a
 * timeout, a deadline; 0: at once) came back; 0 when on time. Every try
 * is checked never to end early, and to end within PROMPT_NS past its
 * time (a hang guard only); the caller checks the best try against
 * QUICK_NS. */
static uint64_t late_by(uint64_t elapsed, uint64_t want)
{
	CHECK_NOT_EARLY(elapsed, want);
	CHECK_BELOW(elapsed, want + PROMPT_NS);
	return elapsed > want ? elapsed - want : 0;
}

/* A value that cannot be mistaken for another: its number, a check word
 * and text derived from it. */
struct msg {
	uint64_t seq;
	uint64_t check;
	char text[24];
};

static void msg_make(struct msg *m, uint64_t seq)
{
	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->check = seq * 0x9e3779b97f4a7c15ull;
	snprintf(m->text, sizeof(m->text), "value %llu", (unsigned long long)seq);
}

static int msg_ok(const struct msg *m)
{
	struct msg want;

	msg_make(&want, m->seq);
	return !memcmp(m, &want, sizeof(want));
}

/* A value of `size` bytes (>= 8) that cannot be mistaken for another:
 * its number, then bytes derived from it. */
static void big_fill(unsigned char *p, size_t size, uint64_t seq)
{
	memcpy(p, &seq, sizeof(seq));
	for (size_t i = sizeof(seq); i < size; i++)
		p[i] = (unsigned char)(seq * 31 + i);
}

static int big_ok(const unsigned char *p, size_t size, uint64_t *seq)
{
	memcpy(seq, p, sizeof(*seq));
	for (size_t i = sizeof(*seq); i < size; i++)
		if (p[i] != (unsigned char)(*seq * 31 + i))
			return 0;
	return 1;
}

/* Number i sent on c: the pointer V(i), or on a value channel of up to
 * NUM_MAX bytes a value made by big_fill(). recv_num() gives the number
 * back; a value that arrived damaged reads 0. */
#define NUM_MAX 4096

static int send_num(weft_chan *c, uintptr_t i)
{
	size_t vsize = weft_chan_value_size(c);
	unsigned char buf[NUM_MAX];

	if (!vsize)
		return weft_chan_send(c, V(i));
	if (!WT_CHECK(vsize >= sizeof(uint64_t) && vsize <= NUM_MAX))
		return -EINVAL;
	big_fill(buf, vsize, i);
	return weft_chan_send_val(c, buf);
}

static int recv_num(weft_chan *c, uintptr_t *i)
{
	size_t vsize = weft_chan_value_size(c);
	unsigned char buf[NUM_MAX];
	uint64_t seq;
	void *v;
	int rc;

	if (!vsize) {
		rc = weft_chan_recv(c, &v);
		*i = I(v);
		return rc;
	}
	if (!WT_CHECK(vsize >= sizeof(uint64_t) && vsize <= NUM_MAX))
		return -EINVAL;
	rc = weft_chan_recv_val(c, buf);
	*i = rc == 0 && big_ok(buf, vsize, &seq) ? seq : 0;
	return rc;
}

/* Numbers received, counted and summed (by receivers on any worker). */
struct tally {
	atomic_long got, sum;
};

/* Receives numbers (recv_num) from c until it is closed and drained. */
static void tally_all(weft_chan *c, struct tally *t)
{
	uintptr_t v;
	int rc;

	while ((rc = recv_num(c, &v)) == 0) {
		atomic_fetch_add(&t->got, 1);
		atomic_fetch_add(&t->sum, (long)v);
	}
	WT_CHECK_EQ(rc, -EPIPE);
}

/* A pointer channel (vsize 0) or a value channel of vsize bytes. */
static int chan_make(weft_chan **c, size_t cap, size_t vsize)
{
	return vsize ? weft_chan_create_sized(c, cap, vsize)
		     : weft_chan_create(c, cap);
}

/* For a misuse that aborts (wt_assert_misuse_reported, in a child): runs
 * fn as the main task on one worker. */
static void run_on_one_worker(weft_fn fn)
{
	struct weft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 1;
	weft_run(fn, NULL, &cfg, NULL);
}

/* ======================================================================
 * FIFO order, one producer and one consumer
 * ====================================================================== */

#if defined(__SANITIZE_THREAD__)
#define FIFO_VALUES 20000
#else
#define FIFO_VALUES 100000
#endif

struct fifo {
	weft_chan *c;
	size_t cap, vsize;
	long received;
	long out_of_order;
	int send_rc, recv_rc;
};

static void *fifo_producer(void *arg)
{
	struct fifo *f = arg;

	for (uintptr_t i = 1; i <= FIFO_VALUES; i++) {
		int rc = send_num(f->c, i);

		if (rc) {
			f->send_rc = rc;
			break;
		}
	}
	WT_CHECK_EQ(weft_chan_close(f->c), 0);
	return NULL;
}

static void *fifo_consumer(void *arg)
{
	struct fifo *f = arg;
	uintptr_t want = 1, v;
	int rc;

	/* A damaged value (0) counts as out of order. */
	while ((rc = recv_num(f->c, &v)) == 0) {
		if (v != want)
			f->out_of_order++;
		want = v + 1;
		f->received++;
	}
	f->recv_rc = rc;
	return NULL;
}

static void *fifo_main(void *arg)
{
	struct fifo *f = arg;
	weft_task *ts[2];

	if (!WT_CHECK_EQ(chan_make(&f->c, f->cap, f->vsize), 0))
		return NULL;
	WT_CHECK_EQ(weft_chan_cap(f->c), f->cap);
	WT_CHECK_EQ(weft_chan_value_size(f->c), f->vsize);
	ts[0] = weft_spawn(fifo_consumer, f);
	ts[1] = weft_spawn(fifo_producer, f);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), 0);
	release_all(ts, 2);
	weft_chan_destroy(f->c);
	return NULL;
}

static void fifo_run(size_t vsize)
{
	static const size_t caps[] = { 1, 16, 0 };
	static const unsigned workers[] = { 1, 2 };

	for (unsigned w = 0; w < 2; w++)
		for (unsigned k = 0; k < 3; k++) {
			struct fifo f;

			memset(&f, 0, sizeof(f));
			f.cap = caps[k];
			f.vsize = vsize;
			wt_run(fifo_main, &f, workers[w]);
			cr_assert_eq(f.send_rc, 0, "cap %zu: send: %s", f.cap,
				     weft_strerror(f.send_rc));
			cr_assert_eq(f.recv_rc, -EPIPE, "cap %zu: end: %s",
				     f.cap, weft_strerror(f.recv_rc));
			cr_assert_eq(f.received, FIFO_VALUES, "cap %zu",
				     f.cap);
			cr_assert_eq(f.out_of_order, 0,
				     "cap %zu: %ld values out of order",
				     f.cap, f.out_of_order);
		}
}

Test(chan, one_producer_one_consumer_keep_fifo_order_at_every_capacity,
     .timeout = WT_TIMEOUT(120))
{
	fifo_run(0);
}

/* Copies, each made from a buffer the sender reuses for the next. */
Test(chan, value_channel_delivers_intact_copies_in_fifo_order_at_every_capacity,
     .timeout = WT_TIMEOUT(120))
{
	fifo_run(sizeof(struct msg));
}

/* ======================================================================
 * MPMC: every value received exactly once
 * ====================================================================== */

#define MP_PRODUCERS 4
#define MP_CONSUMERS 4
#define MP_PER 25000
#define MP_TOTAL (MP_PRODUCERS * MP_PER)

/* What receivers saw of values 1..total, sent by senders of `per` values
 * each (sender i: i * per + 1 ... (i + 1) * per). */
struct seen_tally {
	atomic_long received;
	atomic_long dups;
	atomic_long bad;
	/* Per sender: values of one sender arrive at one receiver in the
	 * order sent (FIFO per sender, seen by each receiver). */
	atomic_long reordered;
};

/* Counts value x, received by a receiver whose last[] holds the last
 * value it got from each sender; seen[] counts each value's arrivals. */
static void tally_add(struct seen_tally *t, atomic_uchar *seen, uintptr_t *last,
		      uintptr_t x, uintptr_t total, uintptr_t per)
{
	if (x < 1 || x > total) {
		atomic_fetch_add(&t->bad, 1);
		return;
	}
	if (atomic_fetch_add(&seen[x], 1) != 0)
		atomic_fetch_add(&t->dups, 1);
	if (x <= last[(x - 1) / per])
		atomic_fetch_add(&t->reordered, 1);
	last[(x - 1) / per] = x;
	atomic_fetch_add(&t->received, 1);
}

/* Every value of 1..total arrived exactly once, in order per sender. */
static void tally_assert(struct seen_tally *t, atomic_uchar *seen, long total,
			 size_t cap)
{
	long missing = 0;

	for (long x = 1; x <= total; x++)
		if (atomic_load(&seen[x]) == 0)
			missing++;
	cr_assert_eq(atomic_load(&t->bad), 0, "cap %zu: foreign values", cap);
	cr_assert_eq(atomic_load(&t->dups), 0, "cap %zu: %ld duplicates", cap,
		     atomic_load(&t->dups));
	cr_assert_eq(missing, 0, "cap %zu: %ld values lost", cap, missing);
	cr_assert_eq(atomic_load(&t->received), total);
	cr_assert_eq(atomic_load(&t->reordered), 0,
		     "cap %zu: a sender's values reordered", cap);
}

struct mpmc {
	weft_chan *c;
	atomic_uchar seen[MP_TOTAL + 1];
	struct seen_tally t;
};

struct mp_prod {
	struct mpmc *m;
	int p;
};

static void *mp_producer(void *arg)
{
	struct mp_prod *a = arg;

	for (int i = 0; i < MP_PER; i++)
		if (!WT_CHECK_EQ(weft_chan_send(a->m->c,
						V(a->p * MP_PER + i + 1)),
				 0))
			break;
	return NULL;
}

static void *mp_consumer(void *arg)
{
	struct mpmc *m = arg;
	uintptr_t last[MP_PRODUCERS] = { 0 };
	void *v;
	int rc;

	while ((rc = weft_chan_recv(m->c, &v)) == 0)
		tally_add(&m->t, m->seen, last, I(v), MP_TOTAL, MP_PER);
	WT_CHECK_EQ(rc, -EPIPE);
	return NULL;
}

static void *mpmc_main(void *arg)
{
	struct mpmc *m = arg;
	struct mp_prod pa[MP_PRODUCERS];
	weft_task *prod[MP_PRODUCERS], *cons[MP_CONSUMERS];

	for (int i = 0; i < MP_CONSUMERS; i++)
		cons[i] = weft_spawn(mp_consumer, m);
	for (int i = 0; i < MP_PRODUCERS; i++) {
		pa[i].m = m;
		pa[i].p = i;
		prod[i] = weft_spawn(mp_producer, &pa[i]);
	}
	WT_CHECK_EQ(weft_gather(prod, MP_PRODUCERS, NULL), 0);
	WT_CHECK_EQ(weft_chan_close(m->c), 0);
	WT_CHECK_EQ(weft_gather(cons, MP_CONSUMERS, NULL), 0);
	release_all(prod, MP_PRODUCERS);
	release_all(cons, MP_CONSUMERS);
	return NULL;
}

static void mpmc_run(size_t cap)
{
	struct mpmc *m = calloc(1, sizeof(*m));

	cr_assert(m);
	cr_assert_eq(weft_chan_create(&m->c, cap), 0);
	wt_run(mpmc_main, m, 4);
	tally_assert(&m->t, m->seen, MP_TOTAL, cap);
	weft_chan_destroy(m->c);
	free(m);
}

Test(chan, mpmc_four_by_four_receive_every_value_exactly_once,
     .timeout = WT_TIMEOUT(120))
{
	mpmc_run(16);
}

Test(chan, mpmc_rendezvous_receive_every_value_exactly_once,
     .timeout = WT_TIMEOUT(120))
{
	mpmc_run(0);
}

/* ======================================================================
 * non-waiting calls, close
 * ====================================================================== */

/* From the test's own thread: the non-waiting calls work anywhere. */
Test(chan, try_send_eagain_when_full_try_recv_eagain_when_empty)
{
	weft_chan *c;
	void *v = V(0x55);

	cr_assert_eq(weft_chan_create(NULL, 1), -EINVAL);
	cr_assert_eq(weft_chan_create(&c, 2), 0);
	cr_assert_eq(weft_chan_cap(c), 2);
	cr_assert_eq(weft_chan_len(c), 0);
	cr_assert_eq(weft_chan_try_recv(c, &v), -EAGAIN);
	cr_assert_eq(v, V(0x55), "try_recv stored on -EAGAIN");
	cr_assert_eq(weft_chan_try_send(c, V(1)), 0);
	cr_assert_eq(weft_chan_try_send(c, V(2)), 0);
	cr_assert_eq(weft_chan_len(c), 2);
	cr_assert_eq(weft_chan_try_send(c, V(3)), -EAGAIN);
	cr_assert_eq(weft_chan_len(c), 2);
	cr_assert_eq(weft_chan_try_recv(c, &v), 0);
	cr_assert_eq(v, V(1));
	cr_assert_eq(weft_chan_try_send(c, V(3)), 0);
	cr_assert_eq(weft_chan_try_recv(c, &v), 0);
	cr_assert_eq(v, V(2));
	cr_assert_eq(weft_chan_try_recv(c, NULL), 0); /* value dropped */
	cr_assert_eq(weft_chan_try_recv(c, &v), -EAGAIN);
	cr_assert_eq(weft_chan_len(c), 0);
	/* Closed: -EPIPE both ways once drained. */
	cr_assert_eq(weft_chan_try_send(c, V(4)), 0);
	cr_assert_eq(weft_chan_close(c), 0);
	cr_assert_eq(weft_chan_close(c), -EALREADY);
	cr_assert_eq(weft_chan_try_send(c, V(5)), -EPIPE);
	cr_assert_eq(weft_chan_try_recv(c, &v), 0);
	cr_assert_eq(v, V(4));
	cr_assert_eq(weft_chan_try_recv(c, &v), -EPIPE);
	weft_chan_destroy(c);

	/* Rendezvous: nobody waits on the other side. */
	cr_assert_eq(weft_chan_create(&c, 0), 0);
	cr_assert_eq(weft_chan_cap(c), 0);
	cr_assert_eq(weft_chan_try_send(c, V(1)), -EAGAIN);
	cr_assert_eq(weft_chan_try_recv(c, &v), -EAGAIN);
	cr_assert_eq(weft_chan_close(c), 0);
	cr_assert_eq(weft_chan_try_send(c, V(1)), -EPIPE);
	cr_assert_eq(weft_chan_try_recv(c, &v), -EPIPE);
	weft_chan_destroy(c);

	cr_assert_eq(weft_chan_try_send(NULL, V(1)), -EINVAL);
	cr_assert_eq(weft_chan_try_recv(NULL, &v), -EINVAL);
	cr_assert_eq(weft_chan_close(NULL), -EINVAL);
}

/* Receives from a closed, drained channel; returns how long they took. */
static uint64_t drained_recvs_try(weft_chan *c)
{
	void *v = V(0x77);
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_chan_recv(c, &v), -EPIPE);
	WT_CHECK_PTR_EQ(v, NULL);
	WT_CHECK_EQ(weft_chan_recv_timeout(c, &v, 10 * SEC), -EPIPE);
	WT_CHECK_EQ(weft_chan_recv(c, &v), -EPIPE); /* and stays so */
	return late_by(weft_now() - b, 0);
}

static void *close_drain_main(void *arg)
{
	weft_chan *c;
	void *v = V(0x77);
	uint64_t took;

	(void)arg;
	if (!WT_CHECK_EQ(weft_chan_create(&c, 4), 0))
		return NULL;
	for (uintptr_t i = 1; i <= 3; i++)
		WT_CHECK_EQ(weft_chan_send(c, V(i)), 0);
	WT_CHECK_EQ(weft_chan_close(c), 0);
	WT_CHECK_EQ(weft_chan_close(c), -EALREADY);
	WT_CHECK_EQ(weft_chan_send(c, V(9)), -EPIPE);
	WT_CHECK_EQ(weft_chan_send_timeout(c, V(9), 10 * MS), -EPIPE);
	WT_CHECK_EQ(weft_chan_len(c), 3);
	for (uintptr_t i = 1; i <= 3; i++) {
		WT_CHECK_EQ(weft_chan_recv(c, &v), 0);
		WT_CHECK_PTR_EQ(v, i);
	}
	/* Closed and drained: every receive fails at once. */
	took = WT_BEST_OF(WT_TRIES, QUICK_NS, drained_recvs_try(c));
	CHECK_BELOW(took, QUICK_NS);
	weft_chan_destroy(c);
	return NULL;
}

Test(chan, close_lets_receivers_drain_then_gives_epipe,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(close_drain_main, NULL, 2);
}

#define CW_N 3

struct close_wake {
	weft_chan *c;
	atomic_int entered;
	atomic_int returned;
	int rc[CW_N];
	void *v[CW_N];
};

struct cw_arg {
	struct close_wake *w;
	int i;
};

static void *cw_sender(void *arg)
{
	struct cw_arg *a = arg;

	atomic_fetch_add(&a->w->entered, 1);
	a->w->rc[a->i] = weft_chan_send(a->w->c, V(100 + a->i));
	atomic_fetch_add(&a->w->returned, 1);
	return NULL;
}

static void *cw_receiver(void *arg)
{
	struct cw_arg *a = arg;

	a->w->v[a->i] = V(0x1);
	atomic_fetch_add(&a->w->entered, 1);
	a->w->rc[a->i] = weft_chan_recv(a->w->c, &a->w->v[a->i]);
	atomic_fetch_add(&a->w->returned, 1);
	return NULL;
}

static void *close_wakes_main(void *arg)
{
	struct close_wake *w = arg;
	struct cw_arg args[CW_N];
	weft_task *ts[CW_N];
	void *v;

	/* Senders blocked on a full channel. */
	if (!WT_CHECK_EQ(weft_chan_create(&w->c, 1), 0))
		return NULL;
	WT_CHECK_EQ(weft_chan_send(w->c, V(7)), 0);
	for (int i = 0; i < CW_N; i++) {
		args[i].w = w;
		args[i].i = i;
		ts[i] = weft_spawn(cw_sender, &args[i]);
	}
	settle_count(&w->entered, CW_N);
	WT_CHECK_EQ(atomic_load(&w->returned), 0);
	WT_CHECK_EQ(weft_chan_close(w->c), 0);
	WT_CHECK_EQ(weft_gather(ts, CW_N, NULL), 0);
	for (int i = 0; i < CW_N; i++)
		WT_CHECK_EQ(w->rc[i], -EPIPE);
	release_all(ts, CW_N);
	/* The value buffered before the close is still there; theirs not. */
	WT_CHECK_EQ(weft_chan_recv(w->c, &v), 0);
	WT_CHECK_PTR_EQ(v, 7);
	WT_CHECK_EQ(weft_chan_recv(w->c, &v), -EPIPE);
	weft_chan_destroy(w->c);

	/* Receivers blocked on an empty channel, rendezvous and buffered. */
	for (size_t cap = 0; cap <= 2; cap += 2) {
		if (!WT_CHECK_EQ(weft_chan_create(&w->c, cap), 0))
			return NULL;
		atomic_store(&w->entered, 0);
		atomic_store(&w->returned, 0);
		for (int i = 0; i < CW_N; i++)
			ts[i] = weft_spawn(cw_receiver, &args[i]);
		settle_count(&w->entered, CW_N);
		WT_CHECK_EQ(atomic_load(&w->returned), 0);
		WT_CHECK_EQ(weft_chan_close(w->c), 0);
		WT_CHECK_EQ(weft_gather(ts, CW_N, NULL), 0);
		for (int i = 0; i < CW_N; i++) {
			WT_CHECK_EQ(w->rc[i], -EPIPE);
			WT_CHECK_PTR_EQ(w->v[i], NULL);
		}
		release_all(ts, CW_N);
		weft_chan_destroy(w->c);
	}
	return NULL;
}

Test(chan, close_wakes_waiting_senders_and_receivers_with_epipe,
     .timeout = WT_TIMEOUT(20))
{
	struct close_wake w;

	wt_run_each(close_wakes_main, &w, sizeof(w));
}

/* ======================================================================
 * timeouts and cancellation
 * ====================================================================== */

/* A 20 ms send (full channel) or receive (empty) that nobody answers;
 * returns how late it timed out. */
static uint64_t chan_timeout_try(weft_chan *c, int send)
{
	void *v = V(0x1);
	uint64_t b = weft_now(), late;

	if (send)
		WT_CHECK_EQ(weft_chan_send_timeout(c, V(2), 20 * MS),
			    -ETIMEDOUT);
	else
		WT_CHECK_EQ(weft_chan_recv_timeout(c, &v, 20 * MS),
			    -ETIMEDOUT);
	late = late_by(weft_now() - b, 20 * MS);
	WT_CHECK_PTR_EQ(v, 0x1); /* nothing stored */
	return late;
}

/* A receive in a 20 ms deadline scope, then one with a long timeout of
 * its own inside the passed scope; returns how late both were done. */
static uint64_t chan_scope_try(weft_chan *c)
{
	void *v;
	uint64_t b = weft_now(), saved;

	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_chan_recv(c, &v), -ETIMEDOUT);
	/* A call's own timeout does not extend the scope. */
	WT_CHECK_EQ(weft_chan_recv_timeout(c, &v, 10 * SEC), -ETIMEDOUT);
	weft_timeout_end(saved);
	return late_by(weft_now() - b, 20 * MS);
}

static void *timeouts_main(void *arg)
{
	weft_chan *c, *r;
	void *v = V(0x1);
	uint64_t b, saved, late;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&c, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&r, 0), 0);

	/* Empty: recv times out, storing nothing. */
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, chan_timeout_try(c, 0));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_chan_recv_timeout(c, &v, 0), -ETIMEDOUT);

	/* Full: send times out, sending nothing. */
	WT_CHECK_EQ(weft_chan_send(c, V(1)), 0);
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, chan_timeout_try(c, 1));
	CHECK_BELOW(late, QUICK_NS);
	WT_CHECK_EQ(weft_chan_send_timeout(c, V(2), 0), -ETIMEDOUT);
	WT_CHECK_EQ(weft_chan_len(c), 1);

	/* The deadline scope cuts the untimed calls. */
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_chan_send(c, V(3)), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);
	WT_CHECK_EQ(weft_chan_recv(c, &v), 0);
	WT_CHECK_PTR_EQ(v, 1);
	WT_CHECK_EQ(weft_chan_try_recv(c, &v), -EAGAIN); /* 2, 3 not sent */
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, chan_scope_try(c));
	CHECK_BELOW(late, QUICK_NS);

	/* Rendezvous with nobody on the other side. */
	WT_CHECK_EQ(weft_chan_send_timeout(r, V(1), 10 * MS), -ETIMEDOUT);
	WT_CHECK_EQ(weft_chan_recv_timeout(r, &v, 10 * MS), -ETIMEDOUT);
	/* No stale node left behind: try_send finds no receiver. */
	WT_CHECK_EQ(weft_chan_try_send(r, V(1)), -EAGAIN);
	WT_CHECK_EQ(weft_chan_try_recv(r, &v), -EAGAIN);

	weft_chan_destroy(c);
	weft_chan_destroy(r);
	return NULL;
}

Test(chan, send_and_recv_time_out_and_honour_the_deadline_scope,
     .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(timeouts_main, NULL, worker_counts[c]);
}

struct ch_cancel {
	weft_chan *c;
	atomic_int entered;
	int rc;
	void *v;
};

static void *cc_sender(void *arg)
{
	struct ch_cancel *k = arg;

	atomic_store(&k->entered, 1);
	k->rc = weft_chan_send(k->c, V(0xbad));
	return NULL;
}

static void *cc_receiver(void *arg)
{
	struct ch_cancel *k = arg;

	k->v = V(0x1);
	atomic_store(&k->entered, 1);
	k->rc = weft_chan_recv(k->c, &k->v);
	return NULL;
}

static void cc_spawn_cancel(struct ch_cancel *k, weft_fn fn)
{
	weft_task *t;

	atomic_store(&k->entered, 0);
	k->rc = 1;
	t = weft_spawn(fn, k);
	settle_count(&k->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(k->rc, -ECANCELED);
	weft_task_release(t);
}

static void *cancel_main(void *arg)
{
	struct ch_cancel *k = arg;
	void *v;

	/* Sender blocked on a full channel: its value never arrives. */
	WT_CHECK_EQ(weft_chan_create(&k->c, 1), 0);
	WT_CHECK_EQ(weft_chan_send(k->c, V(1)), 0);
	cc_spawn_cancel(k, cc_sender);
	WT_CHECK_EQ(weft_chan_len(k->c), 1);
	WT_CHECK_EQ(weft_chan_recv(k->c, &v), 0);
	WT_CHECK_PTR_EQ(v, 1);
	WT_CHECK_EQ(weft_chan_try_recv(k->c, &v), -EAGAIN);
	weft_chan_destroy(k->c);

	/* Receiver blocked on an empty channel: takes nothing. */
	WT_CHECK_EQ(weft_chan_create(&k->c, 1), 0);
	cc_spawn_cancel(k, cc_receiver);
	WT_CHECK_PTR_EQ(k->v, 0x1);
	WT_CHECK_EQ(weft_chan_send(k->c, V(2)), 0);
	WT_CHECK_EQ(weft_chan_len(k->c), 1);
	WT_CHECK_EQ(weft_chan_recv(k->c, &v), 0);
	WT_CHECK_PTR_EQ(v, 2);
	weft_chan_destroy(k->c);

	/* Rendezvous, both ways: no stale partner is left. */
	WT_CHECK_EQ(weft_chan_create(&k->c, 0), 0);
	cc_spawn_cancel(k, cc_sender);
	WT_CHECK_EQ(weft_chan_try_recv(k->c, &v), -EAGAIN);
	cc_spawn_cancel(k, cc_receiver);
	WT_CHECK_EQ(weft_chan_try_send(k->c, V(3)), -EAGAIN);
	weft_chan_destroy(k->c);
	return NULL;
}

Test(chan, cancelled_sender_sends_nothing_cancelled_receiver_takes_nothing,
     .timeout = WT_TIMEOUT(20))
{
	struct ch_cancel k;

	wt_run_each(cancel_main, &k, sizeof(k));
}

/* Cancel racing a hand-over on a rendezvous channel: a value is either
 * received (and the sender reports 0) or not sent (sender -ECANCELED). */
#define CR_ROUNDS 300

struct cancel_race {
	weft_chan *c;
	long sent_ok, received;
	long mismatch;
};

static void *cr_sender(void *arg)
{
	struct cancel_race *r = arg;

	int rc = weft_chan_send(r->c, V(0x5e));

	/* 1: sent. NULL is what a task cancelled before it ran leaves. */
	return rc == 0 ? V(1) : (void *)(intptr_t)rc;
}

static void *cancel_race_main(void *arg)
{
	struct cancel_race *r = arg;

	WT_CHECK_EQ(weft_chan_create(&r->c, 0), 0);
	for (int i = 0; i < CR_ROUNDS; i++) {
		weft_task *t = weft_spawn(cr_sender, r);
		void *res = NULL, *v = NULL;
		int got;

		for (int k = 0; k < i % 4; k++)
			weft_yield();
		weft_cancel(t);
		got = weft_chan_recv_timeout(r->c, &v, (i % 3) * MS) == 0;
		weft_await(t, &res);
		weft_task_release(t);
		if (res == V(1))
			r->sent_ok++;
		else if (res)
			WT_CHECK_EQ((intptr_t)res, -ECANCELED);
		if (got) {
			WT_CHECK_PTR_EQ(v, 0x5e);
			r->received++;
		}
		if (got != (res == V(1)))
			r->mismatch++;
	}
	weft_chan_destroy(r->c);
	return NULL;
}

Test(chan, cancel_racing_a_rendezvous_never_loses_or_invents_a_value,
     .timeout = WT_TIMEOUT(30))
{
	struct cancel_race r;

	memset(&r, 0, sizeof(r));
	wt_run(cancel_race_main, &r, 4);
	cr_log_info("sent %ld, received %ld of %d", r.sent_ok, r.received,
		    CR_ROUNDS);
	cr_assert_eq(r.mismatch, 0,
		     "%ld rounds where send and recv disagree (sent %ld, "
		     "received %ld)",
		     r.mismatch, r.sent_ok, r.received);
}

/*
 * A give-up racing a hand-over, for each kind of waiter: a sender, a
 * select sending, a receiver, a select receiving, each with a timeout, on
 * a rendezvous channel; the test's task completes the other side with a
 * try_* call at about the moment the waiter gives up. The value must have
 * moved exactly when the waiter reports 0 (select: its case). The window
 * is a few instructions wide, so the moment adapts: a round where the
 * value moved aims the next one later, a round where it did not, earlier,
 * and the attempts settle on the give-up.
 */
#if defined(__SANITIZE_THREAD__)
#define GR_ROUNDS 800
#else
#define GR_ROUNDS 4000
#endif
#define GR_WAIT_NS (100 * US * WT_SLOW)
#define GR_STEP (1 * US)

enum { GR_SEND, GR_SEL_SEND, GR_RECV, GR_SEL_RECV, GR_MODES };

struct give_race {
	weft_chan *c, *idle;
	int mode;
	atomic_ullong started; /* by the party, just before its call */
	long moved[GR_MODES], kept[GR_MODES];
	long mismatch[GR_MODES];
};

/* Returns V(1): the value moved, V(2): timed out; anything else is a
 * wrong result. */
static void *gr_party(void *arg)
{
	struct give_race *r = arg;
	struct weft_sel k[2];
	void *v = NULL;
	int rc;

	atomic_store(&r->started, weft_now());
	switch (r->mode) {
	case GR_SEND:
		rc = weft_chan_send_timeout(r->c, V(0x5e), GR_WAIT_NS);
		break;
	case GR_SEL_SEND:
		sel_case(&k[0], r->c, WEFT_SEL_SEND, V(0x5e));
		sel_case(&k[1], r->idle, WEFT_SEL_RECV, NULL);
		rc = weft_select(k, 2, GR_WAIT_NS);
		if (rc >= 0 && !(WT_CHECK_EQ(rc, 0) &&
				 WT_CHECK_EQ(k[0].result, 0)))
			return V(3);
		break;
	case GR_RECV:
		rc = weft_chan_recv_timeout(r->c, &v, GR_WAIT_NS);
		if (rc == 0 && !WT_CHECK_PTR_EQ(v, 0x5e))
			return V(3);
		break;
	default:
		sel_case(&k[0], r->idle, WEFT_SEL_RECV, NULL);
		sel_case(&k[1], r->c, WEFT_SEL_RECV, NULL);
		rc = weft_select(k, 2, GR_WAIT_NS);
		if (rc >= 0) {
			if (!(WT_CHECK_EQ(rc, 1) &&
			      WT_CHECK_EQ(k[1].result, 0) &&
			      WT_CHECK_PTR_EQ(k[1].value, 0x5e)))
				return V(3);
			rc = 0;
		}
		break;
	}
	if (rc == 0)
		return V(1);
	return WT_CHECK_EQ(rc, -ETIMEDOUT) ? V(2) : V(3);
}

static void *give_race_main(void *arg)
{
	struct give_race *r = arg;
	uint64_t edge[GR_MODES];

	WT_CHECK_EQ(weft_chan_create(&r->c, 0), 0);
	WT_CHECK_EQ(weft_chan_create(&r->idle, 1), 0);
	for (int m = 0; m < GR_MODES; m++)
		edge[m] = GR_WAIT_NS;
	for (int i = 0; i < GR_ROUNDS; i++) {
		int m = r->mode = i % GR_MODES;
		uint64_t at;
		weft_task *t;
		void *res = NULL, *v = NULL;
		int moved;

		at = edge[m] + (uint64_t)((i * 37) % 41) * 100;
		at = at > 2 * US ? at - 2 * US : 0;
		atomic_store(&r->started, 0);
		t = weft_spawn(gr_party, r);
		/* Busy, so that the party runs on another worker; the aim
		 * counts from its call, not from its (slower) start. */
		wait_started(&r->started);
		while (weft_now() < atomic_load(&r->started) + at)
			;
		if (m == GR_SEND || m == GR_SEL_SEND) {
			moved = weft_chan_try_recv(r->c, &v) == 0;
			if (moved)
				WT_CHECK_PTR_EQ(v, 0x5e);
		} else {
			moved = weft_chan_try_send(r->c, V(0x5e)) == 0;
		}
		WT_CHECK_EQ(weft_await(t, &res), 0);
		weft_task_release(t);
		WT_CHECK(res == V(1) || res == V(2));
		if (moved != (res == V(1)))
			r->mismatch[m]++;
		if (moved) {
			r->moved[m]++;
			edge[m] += GR_STEP;
		} else {
			r->kept[m]++;
			if (edge[m] > GR_STEP)
				edge[m] -= GR_STEP;
		}
		/* Nothing left behind either way. */
		if (!WT_CHECK_EQ(weft_chan_try_recv(r->c, &v), -EAGAIN) ||
		    !WT_CHECK_EQ(weft_chan_try_send(r->c, V(1)), -EAGAIN))
			break;
	}
	weft_chan_destroy(r->c);
	weft_chan_destroy(r->idle);
	return NULL;
}

Test(chan, give_up_racing_a_hand_over_never_loses_or_invents_a_value,
     .timeout = WT_TIMEOUT(60))
{
	static const char *names[GR_MODES] = { "send", "select send", "recv",
					       "select recv" };
	struct give_race r;

	memset(&r, 0, sizeof(r));
	wt_run(give_race_main, &r, 4);
	for (int m = 0; m < GR_MODES; m++) {
		cr_log_info("%s: moved %ld, timed out %ld", names[m],
			    r.moved[m], r.kept[m]);
		cr_assert_eq(r.mismatch[m], 0,
			     "%s: %ld rounds where the waiter's result and "
			     "the other side disagree",
			     names[m], r.mismatch[m]);
	}
}

/* ======================================================================
 * rendezvous, foreign threads
 * ====================================================================== */

struct rdv {
	weft_chan *c;
	atomic_int entered;
	atomic_int returned;
	int rc;
	uint64_t returned_at;
};

static void *rdv_sender(void *arg)
{
	struct rdv *r = arg;

	atomic_store(&r->entered, 1);
	r->rc = weft_chan_send(r->c, V(0x42));
	r->returned_at = weft_now();
	atomic_store(&r->returned, 1);
	return NULL;
}

static void *rdv_main(void *arg)
{
	struct rdv *r = arg;
	weft_task *t;
	uint64_t b;
	void *v = NULL;

	WT_CHECK_EQ(weft_chan_create(&r->c, 0), 0);
	t = weft_spawn(rdv_sender, r);
	settle_count(&r->entered, 1);
	weft_sleep(20 * MS);
	/* No receiver yet: still blocked, nothing buffered. */
	WT_CHECK_EQ(atomic_load(&r->returned), 0);
	WT_CHECK_EQ(weft_chan_len(r->c), 0);
	b = weft_now();
	WT_CHECK_EQ(weft_chan_recv(r->c, &v), 0);
	WT_CHECK_PTR_EQ(v, 0x42);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	WT_CHECK_EQ(r->rc, 0);
	WT_CHECK(r->returned_at >= b);
	weft_task_release(t);
	weft_chan_destroy(r->c);
	return NULL;
}

Test(chan, rendezvous_send_blocks_until_a_receiver_comes,
     .timeout = WT_TIMEOUT(20))
{
	struct rdv r;

	wt_run_each(rdv_main, &r, sizeof(r));
}

/* Waiting senders are served in the order they queued (their values are
 * received in that order), and so are waiting receivers (the first value
 * goes to the first). Waiters are queued one at a time, pinned to the
 * test's worker, as in test_sync.c's lock FIFO test. */
#define WQ_N 6

struct wq_fifo {
	weft_chan *c;
	atomic_int queued[WQ_N];
	int got_rank[WQ_N]; /* receivers: which value (1..) each got */
	int rc[WQ_N];
};

struct wq_arg {
	struct wq_fifo *f;
	int i;
};

static void *wq_sender(void *arg)
{
	struct wq_arg *a = arg;

	atomic_store(&a->f->queued[a->i], 1);
	a->f->rc[a->i] = weft_chan_send(a->f->c, V(100 + a->i));
	return NULL;
}

static void *wq_receiver(void *arg)
{
	struct wq_arg *a = arg;
	void *v = NULL;

	atomic_store(&a->f->queued[a->i], 1);
	a->f->rc[a->i] = weft_chan_recv(a->f->c, &v);
	a->f->got_rank[a->i] = (int)I(v);
	return NULL;
}

static void wq_queue(struct wq_fifo *f, struct wq_arg *args, weft_task **ts,
		     weft_fn fn)
{
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };

	for (int i = 0; i < WQ_N; i++) {
		atomic_store(&f->queued[i], 0);
		args[i].f = f;
		args[i].i = i;
		if (!WT_CHECK_EQ(weft_spawn_opts(&ts[i], fn, &args[i], &o), 0))
			ts[i] = NULL;
		settle_count(&f->queued[i], 1);
	}
}

static void *wq_fifo_main(void *arg)
{
	struct wq_fifo *f = arg;
	struct wq_arg args[WQ_N];
	weft_task *ts[WQ_N];
	void *v;

	for (size_t cap = 0; cap <= 1; cap++) {
		if (!WT_CHECK_EQ(weft_chan_create(&f->c, cap), 0))
			return NULL;
		/* Senders: with cap 1 the buffer is full first. */
		if (cap)
			WT_CHECK_EQ(weft_chan_send(f->c, V(99)), 0);
		wq_queue(f, args, ts, wq_sender);
		if (cap) {
			WT_CHECK_EQ(weft_chan_recv(f->c, &v), 0);
			WT_CHECK_PTR_EQ(v, 99);
		}
		for (int i = 0; i < WQ_N; i++) {
			v = NULL;
			WT_CHECK_EQ(weft_chan_recv(f->c, &v), 0);
			WT_CHECK_PTR_EQ(v, 100 + i);
		}
		WT_CHECK_EQ(weft_gather(ts, WQ_N, NULL), 0);
		release_all(ts, WQ_N);
		for (int i = 0; i < WQ_N; i++)
			WT_CHECK_EQ(f->rc[i], 0);

		/* Receivers. */
		wq_queue(f, args, ts, wq_receiver);
		for (int i = 0; i < WQ_N; i++)
			WT_CHECK_EQ(weft_chan_send(f->c, V(i + 1)), 0);
		WT_CHECK_EQ(weft_gather(ts, WQ_N, NULL), 0);
		release_all(ts, WQ_N);
		for (int i = 0; i < WQ_N; i++) {
			WT_CHECK_EQ(f->rc[i], 0);
			WT_CHECK_EQ(f->got_rank[i], i + 1);
		}
		weft_chan_destroy(f->c);
	}
	return NULL;
}

/* One worker, so that the queue order is known exactly (see fifo_run()
 * in test_sync.c). */
Test(chan, waiting_senders_and_receivers_are_served_in_queue_order,
     .timeout = WT_TIMEOUT(30))
{
	for (unsigned c = 0; c < 1; c++) {
		struct wq_fifo f;

		memset(&f, 0, sizeof(f));
		wt_run(wq_fifo_main, &f, 1);
	}
}

/* A foreign thread sends (blocking) into a channel that tasks drain, and
 * receives (blocking) from one that tasks fill: pointer channels, then
 * value channels. */
#define FT_VALUES 5000
#define FT_TASKS 3

struct foreign {
	weft_chan *in, *out; /* thread -> tasks, tasks -> thread */
	size_t vsize;        /* chan_make() */
	int send_rc;
	long thread_got, thread_sum;
	int thread_end_rc;
	struct tally tasks;
};

static void *ft_thread(void *arg)
{
	struct foreign *f = arg;
	uintptr_t v;
	int rc;

	for (uintptr_t i = 1; i <= FT_VALUES; i++)
		if ((rc = send_num(f->in, i)) != 0) {
			f->send_rc = rc;
			break;
		}
	weft_chan_close(f->in);
	while ((rc = recv_num(f->out, &v)) == 0) {
		f->thread_got++;
		f->thread_sum += (long)v;
	}
	f->thread_end_rc = rc;
	return NULL;
}

static void *ft_task(void *arg)
{
	struct foreign *f = arg;

	tally_all(f->in, &f->tasks);
	return NULL;
}

static void *ft_producer(void *arg)
{
	struct foreign *f = arg;

	for (uintptr_t i = 1; i <= FT_VALUES; i++)
		if (!WT_CHECK_EQ(send_num(f->out, i), 0))
			break;
	return NULL;
}

static void *foreign_main(void *arg)
{
	struct foreign *f = arg;
	weft_task *ts[FT_TASKS];
	pthread_t th;

	WT_CHECK_EQ(chan_make(&f->in, 4, f->vsize), 0);
	WT_CHECK_EQ(chan_make(&f->out, 0, f->vsize), 0);
	for (int i = 0; i < FT_TASKS; i++)
		ts[i] = weft_spawn(ft_task, f);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, ft_thread, f), 0))
		return NULL;
	/* Phase 1: the thread sends, the tasks receive. */
	WT_CHECK_EQ(weft_gather(ts, FT_TASKS, NULL), 0);
	release_all(ts, FT_TASKS);
	/* Phase 2: a task sends, the thread receives (rendezvous). */
	ts[0] = weft_spawn(ft_producer, f);
	WT_CHECK_EQ(weft_await(ts[0], NULL), 0);
	weft_task_release(ts[0]);
	WT_CHECK_EQ(weft_chan_close(f->out), 0);
	/* The thread ends once it sees the close. */
	pthread_join(th, NULL);
	weft_chan_destroy(f->in);
	weft_chan_destroy(f->out);
	return NULL;
}

Test(chan, foreign_thread_sends_and_receives_blocking,
     .timeout = WT_TIMEOUT(60))
{
	static const size_t vsizes[] = { 0, sizeof(struct msg) };

	for (unsigned k = 0; k < 2; k++)
		for (unsigned c = 1; c < N_COUNTS; c++) {
			struct foreign f;
			long sum = (long)FT_VALUES * (FT_VALUES + 1) / 2;

			memset(&f, 0, sizeof(f));
			f.vsize = vsizes[k];
			wt_run(foreign_main, &f, worker_counts[c]);
			cr_assert_eq(f.send_rc, 0, "%s",
				     weft_strerror(f.send_rc));
			cr_assert_eq(atomic_load(&f.tasks.got), FT_VALUES);
			cr_assert_eq(atomic_load(&f.tasks.sum), sum);
			cr_assert_eq(f.thread_got, FT_VALUES);
			cr_assert_eq(f.thread_sum, sum);
			cr_assert_eq(f.thread_end_rc, -EPIPE);
		}
}

/*
 * Threads outside the runtime and tasks contending on one channel (issue
 * 13): plain threads and blocking-pool threads (weft_run_blocking) send
 * and receive alongside tasks, with more threads than CPUs, so that lock
 * holders are preempted and waiters sleep on the lock's futex and on
 * their nodes' (spin.h, wq.h). Some calls have a short timeout and try the
 * same value again when it passes: a timed-out send took nothing, a
 * timed-out receive got nothing. Every value must arrive exactly once,
 * and each receiver sees each sender's values in the order sent.
 */
#define CT_SENDERS 6   /* 2 threads, 2 pool threads, 2 tasks */
#define CT_RECEIVERS 4 /* 2 threads, 2 tasks */
#define CT_PER 4000
#define CT_TOTAL (CT_SENDERS * CT_PER)

struct contend {
	weft_chan *c;
	atomic_uchar seen[CT_TOTAL + 1];
	struct seen_tally t;
	atomic_long timeouts, errors;
};

struct ct_role {
	struct contend *k;
	int i; /* sender: its index; receiver: its index */
};

/* Sender i sends i * CT_PER + 1 ... (i + 1) * CT_PER; every third send
 * of odd senders with a 20 us timeout, repeated until it goes. */
static void *ct_send(void *arg)
{
	struct ct_role *r = arg;
	struct contend *k = r->k;

	for (uintptr_t n = 0; n < CT_PER; n++) {
		void *v = V((uintptr_t)r->i * CT_PER + n + 1);
		int rc;

		if ((r->i & 1) && n % 3 == 0) {
			while ((rc = weft_chan_send_timeout(
					k->c, v, 20 * WEFT_NSEC_PER_USEC)) ==
			       -ETIMEDOUT)
				atomic_fetch_add(&k->timeouts, 1);
		} else {
			rc = weft_chan_send(k->c, v);
		}
		if (rc != 0) {
			atomic_fetch_add(&k->errors, 1);
			break;
		}
	}
	return NULL;
}

/* From a task: sends on a blocking-pool thread. */
static void *ct_send_pooled(void *arg)
{
	WT_CHECK_EQ(weft_run_blocking(ct_send, arg, NULL), 0);
	return NULL;
}

/* Receives until the close; receiver 0 (a thread) and 2 (a task) with a
 * 20 us timeout on every other receive. */
static void *ct_recv(void *arg)
{
	struct ct_role *r = arg;
	struct contend *k = r->k;
	uintptr_t last[CT_SENDERS] = { 0 };
	unsigned long n = 0;
	void *v;
	int rc;

	for (;;) {
		if (!(r->i & 1) && (n++ & 1)) {
			rc = weft_chan_recv_timeout(k->c, &v,
						    20 * WEFT_NSEC_PER_USEC);
			if (rc == -ETIMEDOUT) {
				atomic_fetch_add(&k->timeouts, 1);
				continue;
			}
		} else {
			rc = weft_chan_recv(k->c, &v);
		}
		if (rc != 0)
			break;
		tally_add(&k->t, k->seen, last, I(v), CT_TOTAL, CT_PER);
	}
	if (rc != -EPIPE)
		atomic_fetch_add(&k->errors, 1);
	return NULL;
}

static void *ct_thread_send(void *arg)
{
	return ct_send(arg);
}

static void *ct_thread_recv(void *arg)
{
	return ct_recv(arg);
}

static void *contend_main(void *arg)
{
	struct contend *k = arg;
	struct ct_role snd[CT_SENDERS], rcv[CT_RECEIVERS];
	weft_task *st[4], *rt[2];
	pthread_t sth[2], rth[2];
	int i;

	for (i = 0; i < CT_SENDERS; i++)
		snd[i] = (struct ct_role){ k, i };
	for (i = 0; i < CT_RECEIVERS; i++)
		rcv[i] = (struct ct_role){ k, i };
	/* Receivers 0, 1 threads, 2, 3 tasks; senders 0, 1 threads, 2, 3 on
	 * the pool, 4, 5 tasks. */
	for (i = 0; i < 2; i++) {
		if (!WT_CHECK_EQ(pthread_create(&rth[i], NULL, ct_thread_recv,
						&rcv[i]),
				 0) ||
		    !WT_CHECK_EQ(pthread_create(&sth[i], NULL, ct_thread_send,
						&snd[i]),
				 0))
			return NULL;
		rt[i] = weft_spawn(ct_recv, &rcv[2 + i]);
		st[i] = weft_spawn(ct_send_pooled, &snd[2 + i]);
		st[2 + i] = weft_spawn(ct_send, &snd[4 + i]);
	}
	WT_CHECK_EQ(weft_gather(st, 4, NULL), 0);
	for (i = 0; i < 2; i++)
		pthread_join(sth[i], NULL);
	WT_CHECK_EQ(weft_chan_close(k->c), 0);
	WT_CHECK_EQ(weft_gather(rt, 2, NULL), 0);
	for (i = 0; i < 2; i++)
		pthread_join(rth[i], NULL);
	release_all(st, 4);
	release_all(rt, 2);
	return NULL;
}

Test(chan, threads_and_tasks_contending_on_one_channel_move_every_value_once,
     .timeout = WT_TIMEOUT(120))
{
	static const size_t caps[] = { 0, 2, 64 };

	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		struct contend *k = calloc(1, sizeof(*k));

		cr_assert(k);
		cr_assert_eq(weft_chan_create(&k->c, caps[c]), 0);
		wt_run(contend_main, k, 2);
		cr_assert_eq(atomic_load(&k->errors), 0, "cap %zu", caps[c]);
		tally_assert(&k->t, k->seen, CT_TOTAL, caps[c]);
		cr_log_info("cap %zu: %ld timeouts", caps[c],
			    atomic_load(&k->timeouts));
		weft_chan_destroy(k->c);
		free(k);
	}
}

/* ======================================================================
 * select
 * ====================================================================== */

static void *sel_order_main(void *arg)
{
	weft_chan *a, *b, *full, *room;
	struct weft_sel k[3];
	void *v;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&a, 4), 0);
	WT_CHECK_EQ(weft_chan_create(&b, 4), 0);
	WT_CHECK_EQ(weft_chan_create(&full, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&room, 1), 0);
	WT_CHECK_EQ(weft_chan_send(a, V(1)), 0);
	WT_CHECK_EQ(weft_chan_send(b, V(2)), 0);
	WT_CHECK_EQ(weft_chan_send(full, V(3)), 0);

	/* Both ready: the first in the array wins; only it is done. */
	sel_case(&k[0], a, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], b, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 0);
	WT_CHECK_PTR_EQ(k[0].value, 1);
	WT_CHECK_EQ(k[0].result, 0);
	WT_CHECK_EQ(weft_chan_len(a), 0);
	WT_CHECK_EQ(weft_chan_len(b), 1);
	WT_CHECK_EQ(weft_chan_send(a, V(1)), 0);
	sel_case(&k[0], b, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], a, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, 0), 0);
	WT_CHECK_PTR_EQ(k[0].value, 2);
	WT_CHECK_EQ(weft_chan_len(a), 1);
	WT_CHECK_EQ(weft_chan_len(b), 0);

	/* Sends: a full channel is not ready, the next is. */
	sel_case(&k[0], full, WEFT_SEL_SEND, V(10));
	sel_case(&k[1], room, WEFT_SEL_SEND, V(11));
	sel_case(&k[2], a, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 3, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, 0);
	WT_CHECK_EQ(weft_chan_len(full), 1);
	WT_CHECK_EQ(weft_chan_len(room), 1);
	WT_CHECK_EQ(weft_chan_len(a), 1); /* the recv case was not done */
	WT_CHECK_EQ(weft_chan_recv(room, &v), 0);
	WT_CHECK_PTR_EQ(v, 11);
	WT_CHECK_EQ(weft_chan_recv(full, &v), 0);
	WT_CHECK_PTR_EQ(v, 3);
	/* Now the send comes first and is ready. */
	sel_case(&k[0], full, WEFT_SEL_SEND, V(12));
	sel_case(&k[1], a, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 0);
	WT_CHECK_EQ(weft_chan_len(a), 1);
	WT_CHECK_EQ(weft_chan_recv(full, &v), 0);
	WT_CHECK_PTR_EQ(v, 12);
	WT_CHECK_EQ(weft_chan_recv(a, &v), 0);

	weft_chan_destroy(a);
	weft_chan_destroy(b);
	weft_chan_destroy(full);
	weft_chan_destroy(room);
	return NULL;
}

Test(chan, select_takes_the_first_ready_case_in_array_order,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(sel_order_main, NULL, 2);
}

/* Selects that are ready at once on closed channels; returns how long
 * they took. */
static uint64_t sel_closed_try(void)
{
	weft_chan *open, *closed, *buffered;
	struct weft_sel k[2];
	uint64_t b = weft_now(), took;

	WT_CHECK_EQ(weft_chan_create(&open, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&closed, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&buffered, 2), 0);
	WT_CHECK_EQ(weft_chan_close(closed), 0);

	/* A closed, drained channel's recv is ready with -EPIPE. */
	sel_case(&k[0], open, WEFT_SEL_RECV, V(0x1));
	sel_case(&k[1], closed, WEFT_SEL_RECV, V(0x1));
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, -EPIPE);
	WT_CHECK_PTR_EQ(k[1].value, NULL);
	/* A send to a closed channel too. */
	sel_case(&k[0], open, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], closed, WEFT_SEL_SEND, V(5));
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, -EPIPE);

	/* Closed but not drained: values first, then -EPIPE. */
	WT_CHECK_EQ(weft_chan_send(buffered, V(8)), 0);
	WT_CHECK_EQ(weft_chan_close(buffered), 0);
	sel_case(&k[0], open, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], buffered, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, 0);
	WT_CHECK_PTR_EQ(k[1].value, 8);
	sel_case(&k[1], buffered, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, -EPIPE);
	took = late_by(weft_now() - b, 0);
	weft_chan_destroy(open);
	weft_chan_destroy(closed);
	weft_chan_destroy(buffered);
	return took;
}

static void *sel_closed_main(void *arg)
{
	uint64_t took = WT_BEST_OF(WT_TRIES, QUICK_NS, sel_closed_try());

	(void)arg;
	CHECK_BELOW(took, QUICK_NS);
	return NULL;
}

Test(chan, select_on_a_closed_channel_is_ready_with_epipe,
     .timeout = WT_TIMEOUT(10))
{
	wt_run(sel_closed_main, NULL, 2);
}

static void *sel_null_main(void *arg)
{
	weft_chan *a;
	struct weft_sel k[3];

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&a, 1), 0);
	WT_CHECK_EQ(weft_chan_send(a, V(4)), 0);
	sel_case(&k[0], NULL, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], a, WEFT_SEL_RECV, NULL);
	sel_case(&k[2], NULL, 12345, NULL); /* bad op, but ignored */
	WT_CHECK_EQ(weft_select(k, 3, WEFT_NEVER), 1);
	WT_CHECK_PTR_EQ(k[1].value, 4);
	WT_CHECK_EQ(k[0].result, 0x7777); /* untouched */

	sel_case(&k[1], NULL, WEFT_SEL_SEND, NULL);
	sel_case(&k[2], NULL, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 3, WEFT_NEVER), -EINVAL);
	WT_CHECK_EQ(weft_select(k, 0, WEFT_NEVER), -EINVAL);
	WT_CHECK_EQ(weft_select(NULL, 0, WEFT_NEVER), -EINVAL);
	WT_CHECK_EQ(weft_select(NULL, 2, WEFT_NEVER), -EINVAL);
	sel_case(&k[0], a, 12345, NULL);
	WT_CHECK_EQ(weft_select(k, 1, WEFT_NEVER), -EINVAL);
	weft_chan_destroy(a);
	return NULL;
}

Test(chan, select_ignores_null_cases_and_rejects_none_usable,
     .timeout = WT_TIMEOUT(10))
{
	struct weft_sel k;
	weft_chan *a;

	wt_run(sel_null_main, NULL, 1);
	cr_assert_eq(weft_chan_create(&a, 1), 0);
	sel_case(&k, a, WEFT_SEL_RECV, NULL);
	cr_assert_eq(weft_select(&k, 1, 0), -EPERM);
	weft_chan_destroy(a);
}

/* 100 selects that poll (timeout 0); returns how long they took. */
static uint64_t sel_poll_try(struct weft_sel *k)
{
	uint64_t b = weft_now();

	for (int i = 0; i < 100; i++)
		WT_CHECK_EQ(weft_select(k, 2, 0), -ETIMEDOUT);
	return late_by(weft_now() - b, 0);
}

/* A 20 ms select that nothing completes; returns how late. */
static uint64_t sel_timeout_try(struct weft_sel *k)
{
	uint64_t b = weft_now();

	WT_CHECK_EQ(weft_select(k, 2, 20 * MS), -ETIMEDOUT);
	return late_by(weft_now() - b, 20 * MS);
}

static void *sel_timeout_main(void *arg)
{
	weft_chan *a, *r;
	struct weft_sel k[2];
	uint64_t b, saved, t;
	void *v;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&a, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&r, 0), 0);
	sel_case(&k[0], a, WEFT_SEL_RECV, V(0x1));
	sel_case(&k[1], r, WEFT_SEL_RECV, V(0x1));

	/* Timeout 0 polls: returns at once. */
	t = WT_BEST_OF(WT_TRIES, QUICK_NS, sel_poll_try(k));
	CHECK_BELOW(t, QUICK_NS);
	WT_CHECK_PTR_EQ(k[0].value, 0x1);
	WT_CHECK_PTR_EQ(k[1].value, 0x1);

	/* A timeout. */
	t = WT_BEST_OF(WT_TRIES, QUICK_NS, sel_timeout_try(k));
	CHECK_BELOW(t, QUICK_NS);

	/* The deadline scope. */
	b = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - b, 20 * MS);

	/* Nothing was left linked: a send to the rendezvous finds no
	 * receiver, and one to the buffered channel is buffered. */
	WT_CHECK_EQ(weft_chan_try_send(r, V(1)), -EAGAIN);
	WT_CHECK_EQ(weft_chan_try_send(a, V(2)), 0);
	WT_CHECK_EQ(weft_chan_len(a), 1);
	WT_CHECK_EQ(weft_chan_recv(a, &v), 0);
	WT_CHECK_PTR_EQ(v, 2);

	/* Send cases time out the same way. */
	WT_CHECK_EQ(weft_chan_send(a, V(3)), 0);
	sel_case(&k[0], a, WEFT_SEL_SEND, V(4));
	sel_case(&k[1], r, WEFT_SEL_SEND, V(5));
	WT_CHECK_EQ(weft_select(k, 2, 0), -ETIMEDOUT);
	WT_CHECK_EQ(weft_select(k, 2, 10 * MS), -ETIMEDOUT);
	WT_CHECK_EQ(weft_chan_len(a), 1);
	WT_CHECK_EQ(weft_chan_try_recv(r, &v), -EAGAIN);
	WT_CHECK_EQ(weft_chan_recv(a, &v), 0);
	WT_CHECK_PTR_EQ(v, 3);
	WT_CHECK_EQ(weft_chan_try_recv(a, &v), -EAGAIN);

	weft_chan_destroy(a);
	weft_chan_destroy(r);
	return NULL;
}

Test(chan, select_polls_with_zero_and_times_out, .timeout = WT_TIMEOUT(20))
{
	for (unsigned c = 0; c < N_COUNTS; c++)
		wt_run(sel_timeout_main, NULL, worker_counts[c]);
}

struct sel_cancel {
	weft_chan *a, *r;
	atomic_int entered;
	int rc;
	struct weft_sel k[2];
};

static void *sc_victim(void *arg)
{
	struct sel_cancel *s = arg;

	sel_case(&s->k[0], s->a, WEFT_SEL_RECV, V(0x1));
	sel_case(&s->k[1], s->r, WEFT_SEL_SEND, V(0xbad));
	atomic_store(&s->entered, 1);
	s->rc = weft_select(s->k, 2, WEFT_NEVER);
	return NULL;
}

static void *sel_cancel_main(void *arg)
{
	struct sel_cancel *s = arg;
	weft_task *t;
	void *v;

	WT_CHECK_EQ(weft_chan_create(&s->a, 1), 0);
	WT_CHECK_EQ(weft_chan_create(&s->r, 0), 0);
	t = weft_spawn(sc_victim, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(s->rc, -ECANCELED);
	WT_CHECK_PTR_EQ(s->k[0].value, 0x1);
	/* Nothing taken, nothing sent, nothing left linked. */
	WT_CHECK_EQ(weft_chan_try_recv(s->r, &v), -EAGAIN);
	WT_CHECK_EQ(weft_chan_send(s->a, V(7)), 0);
	WT_CHECK_EQ(weft_chan_len(s->a), 1);
	WT_CHECK_EQ(weft_chan_recv(s->a, &v), 0);
	WT_CHECK_PTR_EQ(v, 7);
	weft_task_release(t);
	weft_chan_destroy(s->a);
	weft_chan_destroy(s->r);
	return NULL;
}

Test(chan, select_cancelled_returns_ecanceled_and_moves_nothing,
     .timeout = WT_TIMEOUT(20))
{
	struct sel_cancel s;

	wt_run_each(sel_cancel_main, &s, sizeof(s));
}

/* A parked select with a send case and a recv case, completed by the
 * side that comes: once by a receiver (its send), once by a sender (its
 * recv). */
struct sel_mixed {
	weft_chan *out, *in;
	atomic_int entered;
	int rc;
	struct weft_sel k[2];
};

static void *sm_selector(void *arg)
{
	struct sel_mixed *s = arg;

	sel_case(&s->k[0], s->out, WEFT_SEL_SEND, V(0x0a));
	sel_case(&s->k[1], s->in, WEFT_SEL_RECV, NULL);
	atomic_store(&s->entered, 1);
	s->rc = weft_select(s->k, 2, WEFT_NEVER);
	return NULL;
}

static void *sel_mixed_main(void *arg)
{
	struct sel_mixed *s = arg;
	weft_task *t;
	void *v = NULL;

	WT_CHECK_EQ(weft_chan_create(&s->out, 0), 0);
	WT_CHECK_EQ(weft_chan_create(&s->in, 0), 0);

	/* A receiver on `out` completes the send case. */
	t = weft_spawn(sm_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_chan_recv(s->out, &v), 0);
	WT_CHECK_PTR_EQ(v, 0x0a);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(s->rc, 0);
	WT_CHECK_EQ(s->k[0].result, 0);
	/* The recv case left nothing behind. */
	WT_CHECK_EQ(weft_chan_try_send(s->in, V(1)), -EAGAIN);

	/* A sender on `in` completes the recv case. */
	atomic_store(&s->entered, 0);
	t = weft_spawn(sm_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_chan_send(s->in, V(0x0b)), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(s->rc, 1);
	WT_CHECK_EQ(s->k[1].result, 0);
	WT_CHECK_PTR_EQ(s->k[1].value, 0x0b);
	WT_CHECK_EQ(weft_chan_try_recv(s->out, &v), -EAGAIN);

	/* A close completes a parked select too. */
	atomic_store(&s->entered, 0);
	t = weft_spawn(sm_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_chan_close(s->in), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(s->rc, 1);
	WT_CHECK_EQ(s->k[1].result, -EPIPE);
	WT_CHECK_PTR_EQ(s->k[1].value, NULL);
	WT_CHECK_EQ(weft_chan_try_recv(s->out, &v), -EAGAIN);

	weft_chan_destroy(s->out);
	weft_chan_destroy(s->in);
	return NULL;
}

Test(chan, parked_select_with_send_and_recv_completes_the_case_that_comes,
     .timeout = WT_TIMEOUT(20))
{
	struct sel_mixed s;

	wt_run_each(sel_mixed_main, &s, sizeof(s));
}

/* More cases than fit the select's stack arrays, and channels named by
 * several cases (each locked once). */
#define MANY_CASES 12

struct sel_many {
	weft_chan *c[MANY_CASES];
	atomic_int entered;
	int rc;
	struct weft_sel k[MANY_CASES];
};

static void *smany_selector(void *arg)
{
	struct sel_many *s = arg;

	for (int i = 0; i < MANY_CASES; i++)
		sel_case(&s->k[i], s->c[i], WEFT_SEL_RECV, NULL);
	atomic_store(&s->entered, 1);
	s->rc = weft_select(s->k, MANY_CASES, WEFT_NEVER);
	return NULL;
}

static void *sel_many_main(void *arg)
{
	struct sel_many *s = arg;
	weft_chan *own[MANY_CASES];
	struct weft_sel k[MANY_CASES];
	weft_task *t;

	for (int i = 0; i < MANY_CASES; i++)
		WT_CHECK_EQ(weft_chan_create(&own[i], 0), 0);

	/* Twelve distinct channels: one ready at index 10. */
	WT_CHECK_EQ(weft_chan_close(own[10]), 0);
	for (int i = 0; i < MANY_CASES; i++)
		sel_case(&k[i], own[i], WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, MANY_CASES, WEFT_NEVER), 10);
	WT_CHECK_EQ(k[10].result, -EPIPE);
	WT_CHECK_EQ(weft_select(k, MANY_CASES, 5 * MS), 10);
	k[10].chan = NULL;
	WT_CHECK_EQ(weft_select(k, MANY_CASES, 5 * MS), -ETIMEDOUT);

	/* Parked on twelve, woken by a send on the eighth. */
	for (int i = 0; i < MANY_CASES; i++)
		s->c[i] = own[i == 10 ? 0 : i];
	t = weft_spawn(smany_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_chan_send(s->c[7], V(0x77)), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	WT_CHECK_EQ(s->rc, 7);
	WT_CHECK_PTR_EQ(s->k[7].value, 0x77);
	/* Every node was taken back. */
	for (int i = 0; i < MANY_CASES; i++)
		if (i != 10)
			WT_CHECK_EQ(weft_chan_try_send(own[i], V(1)), -EAGAIN);

	/* Three channels, each named by four cases. */
	atomic_store(&s->entered, 0);
	for (int i = 0; i < MANY_CASES; i++)
		s->c[i] = own[i % 3];
	t = weft_spawn(smany_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_chan_send(own[2], V(0x22)), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	/* The first case on that channel. */
	WT_CHECK_EQ(s->rc, 2);
	WT_CHECK_PTR_EQ(s->k[2].value, 0x22);
	for (int i = 0; i < 3; i++)
		WT_CHECK_EQ(weft_chan_try_send(own[i], V(1)), -EAGAIN);
	/* Ready at once with repeats: the first of them. */
	WT_CHECK_EQ(weft_chan_close(own[1]), 0);
	for (int i = 0; i < MANY_CASES; i++)
		sel_case(&k[i], own[i % 3], WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, MANY_CASES, WEFT_NEVER), 1);
	WT_CHECK_EQ(weft_select(k, 3, WEFT_NEVER), 1);
	for (int i = 0; i < MANY_CASES; i++)
		weft_chan_destroy(own[i]);
	return NULL;
}

Test(chan, select_with_many_cases_and_repeated_channels,
     .timeout = WT_TIMEOUT(20))
{
	struct sel_many s;

	wt_run_each(sel_many_main, &s, sizeof(s));
}

/* Racing selects: senders (plain and selecting) and receivers (selecting,
 * and one plain) on three channels of capacities 0, 1 and 4, on four
 * workers. Every value must be received exactly once: a select that
 * completed two cases, or a grant to a select that went another way,
 * shows as a duplicate or a loss. */
#define RS_CHANS 3
#define RS_PLAIN_SENDERS 2 /* per channel */
#define RS_SEL_SENDERS 3
#define RS_SEL_RECEIVERS 4
#define RS_SENDERS (RS_CHANS * RS_PLAIN_SENDERS + RS_SEL_SENDERS)

struct race {
	weft_chan *c[RS_CHANS];
	unsigned per; /* values per sender */
	atomic_uchar *seen;
	atomic_long received;
	atomic_long dups;
	atomic_long bad;
	atomic_long sel_sent[RS_CHANS];
};

struct rs_sender {
	struct race *r;
	int id;
	int chan; /* plain senders: their channel; -1: select */
};

static void rs_note(struct race *r, void *v)
{
	uintptr_t x = I(v);

	if (x < 1 || x > (uintptr_t)RS_SENDERS * r->per) {
		atomic_fetch_add(&r->bad, 1);
		return;
	}
	if (atomic_fetch_add(&r->seen[x], 1) != 0)
		atomic_fetch_add(&r->dups, 1);
	atomic_fetch_add(&r->received, 1);
}

static void *rs_send(void *arg)
{
	struct rs_sender *s = arg;
	struct race *r = s->r;

	for (unsigned i = 0; i < r->per; i++) {
		void *v = V((uintptr_t)s->id * r->per + i + 1);

		if (s->chan >= 0) {
			if (!WT_CHECK_EQ(weft_chan_send(r->c[s->chan], v), 0))
				return NULL;
		} else {
			struct weft_sel k[RS_CHANS];
			int won;

			/* Rotate the order so every channel gets some. */
			for (int j = 0; j < RS_CHANS; j++)
				sel_case(&k[j], r->c[(i + j) % RS_CHANS],
					 WEFT_SEL_SEND, v);
			won = weft_select(k, RS_CHANS, WEFT_NEVER);
			if (!WT_CHECK(won >= 0 && won < RS_CHANS))
				return NULL;
			WT_CHECK_EQ(k[won].result, 0);
			atomic_fetch_add(&r->sel_sent[(i + won) % RS_CHANS],
					 1);
		}
	}
	return NULL;
}

static void *rs_sel_recv(void *arg)
{
	struct race *r = arg;
	weft_chan *live[RS_CHANS];
	int nlive = RS_CHANS;
	unsigned round = 0;

	for (int j = 0; j < RS_CHANS; j++)
		live[j] = r->c[j];
	while (nlive) {
		struct weft_sel k[RS_CHANS];
		int won;

		for (int j = 0; j < RS_CHANS; j++)
			sel_case(&k[j], live[(round + j) % RS_CHANS],
				 WEFT_SEL_RECV, NULL);
		won = weft_select(k, RS_CHANS, WEFT_NEVER);
		if (!WT_CHECK(won >= 0 && won < RS_CHANS))
			return NULL;
		if (k[won].result == -EPIPE) {
			live[(round + won) % RS_CHANS] = NULL;
			nlive--;
			continue;
		}
		WT_CHECK_EQ(k[won].result, 0);
		rs_note(r, k[won].value);
		round++;
	}
	return NULL;
}

static void *rs_plain_recv(void *arg)
{
	struct race *r = arg;
	void *v;
	int rc;

	while ((rc = weft_chan_recv(r->c[1], &v)) == 0)
		rs_note(r, v);
	WT_CHECK_EQ(rc, -EPIPE);
	return NULL;
}

static void *race_main(void *arg)
{
	struct race *r = arg;
	struct rs_sender sa[RS_SENDERS];
	weft_task *snd[RS_SENDERS], *rcv[RS_SEL_RECEIVERS + 1];
	int n = 0;

	for (int j = 0; j < RS_SEL_RECEIVERS; j++)
		rcv[j] = weft_spawn(rs_sel_recv, r);
	rcv[RS_SEL_RECEIVERS] = weft_spawn(rs_plain_recv, r);
	for (int c = 0; c < RS_CHANS; c++)
		for (int j = 0; j < RS_PLAIN_SENDERS; j++, n++) {
			sa[n] = (struct rs_sender){ r, n, c };
			snd[n] = weft_spawn(rs_send, &sa[n]);
		}
	for (int j = 0; j < RS_SEL_SENDERS; j++, n++) {
		sa[n] = (struct rs_sender){ r, n, -1 };
		snd[n] = weft_spawn(rs_send, &sa[n]);
	}
	WT_CHECK_EQ(weft_gather(snd, RS_SENDERS, NULL), 0);
	for (int c = 0; c < RS_CHANS; c++)
		WT_CHECK_EQ(weft_chan_close(r->c[c]), 0);
	WT_CHECK_EQ(weft_gather(rcv, RS_SEL_RECEIVERS + 1, NULL), 0);
	release_all(snd, RS_SENDERS);
	release_all(rcv, RS_SEL_RECEIVERS + 1);
	return NULL;
}

Test(chan, racing_selects_neither_lose_nor_duplicate_a_value,
     .timeout = WT_TIMEOUT(120))
{
	static const size_t caps[RS_CHANS] = { 0, 1, 4 };
	struct race r;
	long total, missing = 0;

	memset(&r, 0, sizeof(r));
	r.per = 1000 * wt_scale();
	total = (long)RS_SENDERS * r.per;
	r.seen = calloc((size_t)total + 1, sizeof(*r.seen));
	cr_assert(r.seen);
	for (int c = 0; c < RS_CHANS; c++)
		cr_assert_eq(weft_chan_create(&r.c[c], caps[c]), 0);
	wt_run(race_main, &r, 4);
	for (long x = 1; x <= total; x++)
		if (atomic_load(&r.seen[x]) == 0)
			missing++;
	cr_log_info("%ld values; select senders sent %ld/%ld/%ld", total,
		    atomic_load(&r.sel_sent[0]), atomic_load(&r.sel_sent[1]),
		    atomic_load(&r.sel_sent[2]));
	cr_assert_eq(atomic_load(&r.bad), 0, "values never sent received");
	cr_assert_eq(atomic_load(&r.dups), 0, "%ld values received twice",
		     atomic_load(&r.dups));
	cr_assert_eq(missing, 0, "%ld values lost", missing);
	cr_assert_eq(atomic_load(&r.received), total);
	for (int c = 0; c < RS_CHANS; c++)
		weft_chan_destroy(r.c[c]);
	free(r.seen);
}

/* ======================================================================
 * select over descriptors and tasks
 * ====================================================================== */

static void sel_fd(struct weft_sel *k, int op, int fd)
{
	sel_case(k, NULL, op, NULL);
	k->fd = fd;
	k->task = NULL;
}

static void sel_task(struct weft_sel *k, weft_task *t)
{
	sel_case(k, NULL, WEFT_SEL_TASK, V(0x55));
	k->fd = -1;
	k->task = t;
}

struct sel_io {
	int sv[2];
	weft_chan *idle;
};

static void *sel_late_writer(void *arg)
{
	struct sel_io *s = arg;

	WT_CHECK_EQ(weft_sleep(20 * WEFT_NSEC_PER_MSEC), 0);
	WT_CHECK_EQ(weft_send(s->sv[1], "x", 1, 0), 1);
	return NULL;
}

static void *sel_readable_main(void *arg)
{
	struct sel_io *s = arg;
	struct weft_sel k[3];
	weft_task *t;
	char c = 0;
	uint64_t b;

	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->sv),
		    0);
	WT_CHECK_EQ(weft_chan_create(&s->idle, 0), 0);

	/* Nothing to read: a poll times out; a writable socket is ready at
	 * once, and comes first in array order only when it is first. */
	sel_case(&k[0], s->idle, WEFT_SEL_RECV, NULL);
	sel_fd(&k[1], WEFT_SEL_READABLE, s->sv[0]);
	WT_CHECK_EQ(weft_select(k, 2, 0), -ETIMEDOUT);
	WT_CHECK_EQ(weft_select(k, 2, 5 * WEFT_NSEC_PER_MSEC), -ETIMEDOUT);
	sel_fd(&k[2], WEFT_SEL_WRITABLE, s->sv[0]);
	WT_CHECK_EQ(weft_select(k, 3, WEFT_NEVER), 2);
	WT_CHECK(k[2].result > 0 && (k[2].result & POLLOUT));
	WT_CHECK_EQ(k[1].result, 0x7777); /* untouched */

	/* Parked on it: the byte wakes the select, which reads nothing. */
	t = weft_spawn(sel_late_writer, s);
	b = weft_now();
	WT_CHECK_EQ(weft_select(k, 2, 10 * WEFT_NSEC_PER_SEC), 1);
	WT_CHECK(weft_now() - b >= 20 * WEFT_NSEC_PER_MSEC);
	WT_CHECK(k[1].result > 0 && (k[1].result & POLLIN));
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);
	/* Still there: ready at once again, then read. */
	sel_fd(&k[1], WEFT_SEL_READABLE, s->sv[0]);
	WT_CHECK_EQ(weft_select(k, 2, 0), 1);
	WT_CHECK_EQ(weft_recv(s->sv[0], &c, 1, 0), 1);
	WT_CHECK_EQ(c, 'x');

	/* The peer gone: readable, with POLLHUP. */
	WT_CHECK_EQ(close(s->sv[1]), 0);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK(k[1].result & (POLLHUP | POLLIN));
	WT_CHECK_EQ(weft_recv(s->sv[0], &c, 1, 0), 0);
	WT_CHECK_EQ(close(s->sv[0]), 0);

	/* A descriptor that is not open: ready, -EBADF. A negative one is
	 * ignored, and with nothing else left the select is -EINVAL. */
	sel_fd(&k[1], WEFT_SEL_READABLE, s->sv[0]);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, -EBADF);
	sel_fd(&k[0], WEFT_SEL_READABLE, -1);
	sel_fd(&k[1], WEFT_SEL_WRITABLE, -5);
	WT_CHECK_EQ(weft_select(k, 2, 0), -EINVAL);
	weft_chan_destroy(s->idle);
	return NULL;
}

Test(chan, select_on_a_descriptor_wakes_when_it_is_ready_and_reads_nothing,
     .timeout = WT_TIMEOUT(20))
{
	struct sel_io s;

	wt_run_each(sel_readable_main, &s, sizeof(s));
}

/* A value sent while the select also watches a descriptor that becomes
 * ready at the same moment: whichever the select reports, the value is
 * received exactly once (by the select, or later by a plain receive),
 * and the byte is still there to read. Many rounds, several workers. */
#define SR_ROUNDS 2000

struct sel_race {
	int sv[2];
	weft_chan *c;
	atomic_int go;
	long by_select, by_recv, by_fd;
};

static void *sr_sender(void *arg)
{
	struct sel_race *r = arg;

	wt_yield_until(&r->go, 1000000);
	WT_CHECK_EQ(weft_chan_send(r->c, V(1)), 0);
	return NULL;
}

static void *sr_writer(void *arg)
{
	struct sel_race *r = arg;

	wt_yield_until(&r->go, 1000000);
	WT_CHECK_EQ(weft_send(r->sv[1], "y", 1, 0), 1);
	return NULL;
}

static void *sel_race_main(void *arg)
{
	struct sel_race *r = arg;
	struct weft_sel k[2];
	char c;
	void *v;

	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->sv),
		    0);
	WT_CHECK_EQ(weft_chan_create(&r->c, 0), 0);
	for (int i = 0; i < SR_ROUNDS; i++) {
		weft_task *t[2];
		int won;

		atomic_store(&r->go, 0);
		t[0] = weft_spawn(sr_sender, r);
		t[1] = weft_spawn(sr_writer, r);
		sel_case(&k[0], r->c, WEFT_SEL_RECV, NULL);
		sel_fd(&k[1], WEFT_SEL_READABLE, r->sv[0]);
		if (i & 1) { /* the other order too */
			struct weft_sel x = k[0];
			k[0] = k[1];
			k[1] = x;
		}
		atomic_store(&r->go, 1);
		won = weft_select(k, 2, 10 * WEFT_NSEC_PER_SEC);
		WT_CHECK(won == 0 || won == 1);
		if (won < 0)
			break;
		if (k[won].op == WEFT_SEL_RECV) {
			WT_CHECK_EQ(k[won].result, 0);
			WT_CHECK_PTR_EQ(k[won].value, 1);
			r->by_select++;
		} else {
			WT_CHECK(k[won].result & POLLIN);
			r->by_fd++;
			/* The value was not taken: it is still to come. */
			WT_CHECK_EQ(weft_chan_recv_timeout(r->c, &v,
							    5 * WEFT_NSEC_PER_SEC),
				    0);
			WT_CHECK_PTR_EQ(v, 1);
			r->by_recv++;
		}
		/* The byte is there (or coming), never consumed. */
		WT_CHECK_EQ(weft_recv(r->sv[0], &c, 1, 0), 1);
		WT_CHECK_EQ(weft_gather(t, 2, NULL), 0);
		release_all(t, 2);
		WT_CHECK_EQ(weft_chan_try_recv(r->c, &v), -EAGAIN);
	}
	close(r->sv[0]);
	close(r->sv[1]);
	weft_chan_destroy(r->c);
	return NULL;
}

Test(chan, select_racing_a_send_and_a_ready_descriptor_never_loses_the_value,
     .timeout = WT_TIMEOUT(60))
{
	for (size_t i = 1; i < N_COUNTS; i++) {
		struct sel_race r;

		memset(&r, 0, sizeof(r));
		wt_run(sel_race_main, &r, worker_counts[i]);
		cr_assert_eq(r.by_select + r.by_recv, SR_ROUNDS,
			     "%ld + %ld values of %d", r.by_select, r.by_recv,
			     SR_ROUNDS);
	}
}

static void *st_sleeper(void *arg)
{
	WT_CHECK_EQ(weft_sleep(20 * WEFT_NSEC_PER_MSEC), 0);
	return arg;
}

static void *st_stuck(void *arg)
{
	(void)arg;
	weft_sleep(WEFT_NEVER);
	return V(0xbad);
}

static void *sel_task_main(void *arg)
{
	struct weft_sel k[3];
	weft_chan *idle;
	weft_task *t, *stuck, *stale;

	(void)arg;
	WT_CHECK_EQ(weft_chan_create(&idle, 0), 0);
	t = weft_spawn(st_sleeper, V(7));
	stuck = weft_spawn(st_stuck, NULL);

	/* Parked until the task ends: its outcome and result come back,
	 * and the handle can still be awaited. */
	sel_case(&k[0], idle, WEFT_SEL_RECV, NULL);
	sel_task(&k[1], stuck);
	sel_task(&k[2], t);
	WT_CHECK_EQ(weft_select(k, 3, 10 * WEFT_NSEC_PER_SEC), 2);
	WT_CHECK_EQ(k[2].result, 0);
	WT_CHECK_PTR_EQ(k[2].value, 7);
	WT_CHECK_PTR_EQ(k[1].value, 0x55); /* untouched */
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	/* Ended already: ready at once, again and again. */
	sel_task(&k[2], t);
	WT_CHECK_EQ(weft_select(k, 3, 0), 2);
	WT_CHECK_PTR_EQ(k[2].value, 7);

	/* A cancelled task's outcome is -ECANCELED. */
	WT_CHECK_EQ(weft_cancel(stuck), 0);
	sel_task(&k[1], stuck);
	WT_CHECK_EQ(weft_select(k, 2, 10 * WEFT_NSEC_PER_SEC), 1);
	WT_CHECK_EQ(k[1].result, -ECANCELED);

	/* Misuse: the caller itself, a stale handle. */
	sel_task(&k[1], weft_self());
	WT_CHECK_EQ(weft_select(k, 2, 0), -EINVAL);
	stale = weft_spawn(st_sleeper, NULL);
	WT_CHECK_EQ(weft_await(stale, NULL), 0);
	weft_task_release(stale);
	sel_task(&k[1], stale);
	WT_CHECK_EQ(weft_select(k, 2, 0), -ESRCH);
	weft_task_release(t);
	weft_task_release(stuck);
	weft_chan_destroy(idle);
	return NULL;
}

Test(chan, select_on_a_task_reports_its_outcome_when_it_ends,
     .timeout = WT_TIMEOUT(20))
{
	int unused;

	wt_run_each(sel_task_main, &unused, sizeof(unused));
}

/* Watches left behind by a select that timed out, was cancelled or chose
 * another case must all be ended: the records are on the select's stack,
 * so a late completion would write into a frame reused since (ASan and
 * the canary below would see it). Many descriptors (more than the
 * on-stack 8), timeouts, cancellation, and a task case, in a loop. */
#define SW_FDS 10

struct sel_watch_state {
	int sv[SW_FDS][2];
	weft_chan *c;
	atomic_int parked;
	int cancelled;
};

static void *sw_canceller_victim(void *arg)
{
	struct sel_watch_state *s = arg;
	struct weft_sel k[SW_FDS];
	int rc;

	for (int i = 0; i < SW_FDS; i++)
		sel_fd(&k[i], WEFT_SEL_READABLE, s->sv[i][0]);
	atomic_store(&s->parked, 1);
	rc = weft_select(k, SW_FDS, WEFT_NEVER);
	s->cancelled = rc == -ECANCELED;
	return NULL;
}

static void *sel_watch_main(void *arg)
{
	struct sel_watch_state *s = arg;
	struct weft_sel k[SW_FDS + 2];
	volatile uint64_t canary[64];
	weft_task *t, *v;
	char c;

	for (int i = 0; i < SW_FDS; i++)
		WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       s->sv[i]),
			    0);
	WT_CHECK_EQ(weft_chan_create(&s->c, 1), 0);
	t = weft_spawn(st_stuck, NULL);
	for (int round = 0; round < 300; round++) {
		for (int i = 0; i < SW_FDS; i++)
			sel_fd(&k[i], WEFT_SEL_READABLE, s->sv[i][0]);
		sel_task(&k[SW_FDS], t);
		sel_case(&k[SW_FDS + 1], s->c, WEFT_SEL_RECV, NULL);
		switch (round % 3) {
		case 0: /* times out */
			WT_CHECK_EQ(weft_select(k, SW_FDS + 2,
						50 * WEFT_NSEC_PER_USEC),
				    -ETIMEDOUT);
			break;
		case 1: /* one descriptor out of ten */
			WT_CHECK_EQ(weft_send(s->sv[round % SW_FDS][1], "z",
					      1, 0),
				    1);
			WT_CHECK_EQ(weft_select(k, SW_FDS + 2, WEFT_NEVER),
				    round % SW_FDS);
			WT_CHECK_EQ(weft_recv(s->sv[round % SW_FDS][0], &c, 1, 0),
				    1);
			break;
		case 2: /* the channel, after the watches are armed */
			WT_CHECK_EQ(weft_chan_send(s->c, V(3)), 0);
			WT_CHECK_EQ(weft_select(k, SW_FDS + 2, WEFT_NEVER),
				    SW_FDS + 1);
			WT_CHECK_PTR_EQ(k[SW_FDS + 1].value, 3);
			break;
		}
		/* Whatever the watches left, it must not land here. */
		for (int i = 0; i < 64; i++)
			canary[i] = 0xfeedfacecafebeefull;
		WT_CHECK_EQ(weft_sleep(10 * WEFT_NSEC_PER_USEC), 0);
		for (int i = 0; i < 64; i++)
			WT_CHECK_EQ(canary[i], 0xfeedfacecafebeefull);
	}
	/* Cancelled while parked on ten descriptors. */
	v = weft_spawn(sw_canceller_victim, s);
	wt_yield_until(&s->parked, 1000000);
	WT_CHECK_EQ(weft_sleep(2 * WEFT_NSEC_PER_MSEC), 0);
	WT_CHECK_EQ(weft_cancel(v), 0);
	WT_CHECK_EQ(weft_await(v, NULL), -ECANCELED);
	WT_CHECK(s->cancelled);
	weft_task_release(v);
	weft_cancel(t);
	weft_await(t, NULL);
	weft_task_release(t);
	for (int i = 0; i < SW_FDS; i++) {
		close(s->sv[i][0]);
		close(s->sv[i][1]);
	}
	weft_chan_destroy(s->c);
	return NULL;
}

Test(chan, select_ends_every_watch_it_started_whatever_it_returns,
     .timeout = WT_TIMEOUT(60))
{
	struct sel_watch_state s;

	wt_run_each(sel_watch_main, &s, sizeof(s));
}

/*
 * A select whose worker is stuck in another task (as io::
 * a_read_completes_while_its_worker_is_stuck_in_another_task, for a read):
 * with one descriptor case, the readiness must reach the select while the
 * spinner still runs, and the select go on on the other worker. The
 * spinner is pinned to the select's worker; nothing waits on a clock but
 * the 10 s give-up.
 */
struct sel_stuck {
	int sv[2];
	weft_chan *idle;
	atomic_int spinning, got, spinner_saw_got;
	int sel_worker, spinner_worker, sel_after, won;
};

static void *ss_spinner(void *arg)
{
	struct sel_stuck *s = arg;
	uint64_t until = wt_now_ns() + 10 * WEFT_NSEC_PER_SEC * WT_SLOW;

	s->spinner_worker = weft_worker_index();
	atomic_store(&s->spinning, 1);
	while (!atomic_load(&s->got) && wt_now_ns() < until)
		;
	atomic_store(&s->spinner_saw_got, atomic_load(&s->got));
	return NULL;
}

static void *ss_selector(void *arg)
{
	struct sel_stuck *s = arg;
	struct weft_spawn_opts o = {
		.flags = WEFT_SPAWN_PINNED | WEFT_SPAWN_DETACHED
	};
	struct weft_sel k[2];

	sel_case(&k[0], s->idle, WEFT_SEL_RECV, NULL);
	sel_fd(&k[1], WEFT_SEL_READABLE, s->sv[0]);
	s->sel_worker = weft_worker_index();
	WT_CHECK_EQ(weft_spawn_opts(NULL, ss_spinner, s, &o), 0);
	s->won = weft_select(k, 2, WEFT_NEVER);
	s->sel_after = weft_worker_index();
	atomic_store(&s->got, 1);
	return NULL;
}

static void *sel_stuck_main(void *arg)
{
	struct sel_stuck *s = arg;
	weft_task *r;

	if (!WT_CHECK((r = weft_spawn(ss_selector, s)) != NULL))
		return NULL;
	WT_CHECK(wt_yield_until(&s->spinning, 100000000L));
	WT_CHECK_EQ(write(s->sv[1], "x", 1), 1);
	WT_CHECK_EQ(weft_await(r, NULL), 0);
	weft_task_release(r);
	while (!atomic_load(&s->spinner_saw_got) &&
	       atomic_load(&s->spinning) == 1 && !atomic_load(&s->got))
		weft_yield();
	return NULL;
}

Test(chan, a_select_on_one_descriptor_goes_on_while_its_worker_is_stuck,
     .timeout = WT_TIMEOUT(60))
{
	struct sel_stuck s;

	memset(&s, 0, sizeof(s));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sv),
		     0);
	cr_assert_eq(weft_chan_create(&s.idle, 0), 0);
	wt_run(sel_stuck_main, &s, 2);
	cr_assert_eq(s.won, 1, "the select returned %d", s.won);
	cr_assert_eq(s.spinner_worker, s.sel_worker,
		     "the spinner runs on the select's worker");
	cr_assert(atomic_load(&s.spinner_saw_got),
		  "the select returned only after the task that kept its "
		  "worker busy gave up (10 s)");
	cr_assert_neq(s.sel_after, s.sel_worker,
		      "the select went on on the other worker");
	weft_chan_destroy(s.idle);
	close(s.sv[0]);
	close(s.sv[1]);
}

/* Selects still parked when the runtime stops, shielded so that they are
 * dropped, not cancelled: more than 8 cases (memory of their own), with
 * descriptors, a task and channels. The drop must free it all (the ASan
 * build's leak check after the run) and touch nothing freed. */
struct sel_drop {
	int sv[2];
	weft_chan *c;
	weft_task *stuck;
	atomic_int parked, returned;
};

static void *sd_selector(void *arg)
{
	struct sel_drop *d = arg;
	struct weft_sel k[12];

	weft_shield_begin();
	for (int i = 0; i < 12; i++)
		switch (i % 4) {
		case 0:
			sel_fd(&k[i], WEFT_SEL_READABLE, d->sv[0]);
			break;
		case 1:
			sel_task(&k[i], d->stuck);
			break;
		default:
			sel_case(&k[i], d->c, WEFT_SEL_RECV, NULL);
		}
	atomic_fetch_add(&d->parked, 1);
	weft_select(k, 12, WEFT_NEVER);
	atomic_fetch_add(&d->returned, 1); /* never: dropped */
	weft_shield_end();
	return NULL;
}

/* Never ends before the drop either. */
static void *sd_stuck(void *arg)
{
	(void)arg;
	weft_shield_begin();
	weft_sleep(WEFT_NEVER);
	weft_shield_end();
	return NULL;
}

static void *sel_drop_main(void *arg)
{
	struct sel_drop *d = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_DETACHED };

	d->stuck = weft_spawn(sd_stuck, NULL);
	for (int i = 0; i < 4; i++)
		WT_CHECK_EQ(weft_spawn_opts(NULL, sd_selector, d, &o), 0);
	while (atomic_load(&d->parked) < 4)
		weft_yield();
	WT_CHECK_EQ(weft_sleep(5 * WEFT_NSEC_PER_MSEC), 0);
	weft_task_release(d->stuck); /* its end comes with the drop */
	return NULL;
}

Test(chan, selects_dropped_at_shutdown_free_what_they_hold,
     .timeout = WT_TIMEOUT(30))
{
	struct weft_config cfg;
	struct sel_drop d;

	memset(&d, 0, sizeof(d));
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	cfg.shutdown_grace_ms = 20;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d.sv),
		     0);
	cr_assert_eq(weft_chan_create(&d.c, 1), 0);
	wt_run_cfg(sel_drop_main, &d, &cfg);
	cr_assert_eq(atomic_load(&d.returned), 0,
		     "%d selects returned: not dropped",
		     atomic_load(&d.returned));
	weft_chan_destroy(d.c);
	close(d.sv[0]);
	close(d.sv[1]);
}

/* A value channel beside a descriptor: the buffer is filled only when the
 * channel's case is chosen, at once or after parking. */
struct sel_vfd {
	int sv[2];
	weft_chan *vc;
};

static void *svf_sender(void *arg)
{
	struct sel_vfd *m = arg;
	char v[16] = "late value";

	WT_CHECK_EQ(weft_sleep(10 * WEFT_NSEC_PER_MSEC), 0);
	WT_CHECK_EQ(weft_chan_send_val(m->vc, v), 0);
	return NULL;
}

static void *sel_vfd_main(void *arg)
{
	struct sel_vfd *m = arg;
	char v[16] = "first value", got[16];
	struct weft_sel k[2];
	weft_task *t;

	WT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m->sv),
		    0);
	WT_CHECK_EQ(weft_chan_create_sized(&m->vc, 1, sizeof(v)), 0);
	WT_CHECK_EQ(weft_chan_send_val(m->vc, v), 0);
	memset(got, 0, sizeof(got));
	sel_fd(&k[0], WEFT_SEL_READABLE, m->sv[0]);
	sel_case(&k[1], m->vc, WEFT_SEL_RECV, got);
	WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1);
	WT_CHECK_EQ(k[1].result, 0);
	WT_CHECK_PTR_EQ(k[1].value, (uintptr_t)got); /* not changed */
	WT_CHECK_EQ(strcmp(got, "first value"), 0);

	/* Parked: the value comes first, the descriptor never. */
	memset(got, 0, sizeof(got));
	t = weft_spawn(svf_sender, m);
	sel_fd(&k[0], WEFT_SEL_READABLE, m->sv[0]);
	sel_case(&k[1], m->vc, WEFT_SEL_RECV, got);
	WT_CHECK_EQ(weft_select(k, 2, 10 * WEFT_NSEC_PER_SEC), 1);
	WT_CHECK_EQ(strcmp(got, "late value"), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	weft_task_release(t);

	/* Parked: the descriptor comes first; the buffer stays untouched. */
	memset(got, 'u', sizeof(got));
	WT_CHECK_EQ(write(m->sv[1], "d", 1), 1);
	WT_CHECK_EQ(weft_select(k, 2, 10 * WEFT_NSEC_PER_SEC), 0);
	WT_CHECK_EQ(got[0], 'u');
	weft_chan_destroy(m->vc);
	close(m->sv[0]);
	close(m->sv[1]);
	return NULL;
}

Test(chan, select_with_a_value_channel_and_a_descriptor_fills_only_the_chosen,
     .timeout = WT_TIMEOUT(20))
{
	struct sel_vfd m;

	wt_run_each(sel_vfd_main, &m, sizeof(m));
}

/* ======================================================================
 * value channels: fixed-size values by copy
 * ====================================================================== */

/* Large values, many producers and consumers: every value arrives once,
 * whole (a value is its number followed by bytes derived from it). */
#if defined(__SANITIZE_THREAD__)
#define BIG_PER_PRODUCER 40
#else
#define BIG_PER_PRODUCER 200
#endif
#define BIG_PRODUCERS 3
#define BIG_CONSUMERS 3

struct big {
	weft_chan *c;
	size_t size;
	atomic_int producers_left;
	atomic_long received, corrupt, sum;
};

struct big_producer {
	struct big *b;
	uint64_t first;
};

static void *big_produce(void *arg)
{
	struct big_producer *p = arg;
	struct big *b = p->b;
	unsigned char *buf = malloc(b->size);

	if (!WT_CHECK(buf))
		return NULL;
	for (uint64_t i = 0; i < BIG_PER_PRODUCER; i++) {
		big_fill(buf, b->size, p->first + i);
		if (!WT_CHECK_EQ(weft_chan_send_val(b->c, buf), 0))
			break;
	}
	free(buf);
	if (atomic_fetch_sub(&b->producers_left, 1) == 1)
		WT_CHECK_EQ(weft_chan_close(b->c), 0);
	return NULL;
}

static void *big_consume(void *arg)
{
	struct big *b = arg;
	unsigned char *buf = malloc(b->size);
	uint64_t seq;
	int rc;

	if (!WT_CHECK(buf))
		return NULL;
	while ((rc = weft_chan_recv_val(b->c, buf)) == 0) {
		if (!big_ok(buf, b->size, &seq))
			atomic_fetch_add(&b->corrupt, 1);
		atomic_fetch_add(&b->received, 1);
		atomic_fetch_add(&b->sum, (long)seq);
	}
	WT_CHECK_EQ(rc, -EPIPE);
	free(buf);
	return NULL;
}

static void *big_main(void *arg)
{
	struct big *b = arg;
	struct big_producer ps[BIG_PRODUCERS];
	weft_task *ts[BIG_PRODUCERS + BIG_CONSUMERS];
	int n = 0;

	for (int i = 0; i < BIG_CONSUMERS; i++)
		ts[n++] = weft_spawn(big_consume, b);
	for (int i = 0; i < BIG_PRODUCERS; i++) {
		ps[i].b = b;
		ps[i].first = 1 + (uint64_t)i * BIG_PER_PRODUCER;
		ts[n++] = weft_spawn(big_produce, &ps[i]);
	}
	WT_CHECK_EQ(weft_gather(ts, (size_t)n, NULL), 0);
	release_all(ts, (size_t)n);
	return NULL;
}

Test(chan, value_channel_carries_large_values_whole_between_many_tasks,
     .timeout = WT_TIMEOUT(120))
{
	static const size_t sizes[] = { 4096, WEFT_CHAN_VALUE_MAX };
	static const size_t caps[] = { 0, 2 };
	const long total = BIG_PRODUCERS * BIG_PER_PRODUCER;
	weft_chan *c;

	cr_assert_eq(weft_chan_create_sized(&c, 1, 0), -EINVAL);
	cr_assert_eq(weft_chan_create_sized(&c, 1, WEFT_CHAN_VALUE_MAX + 1),
		     -EINVAL);
	cr_assert_eq(weft_chan_create_sized(NULL, 1, 8), -EINVAL);
	cr_assert_eq(weft_chan_create_sized(&c, ((size_t)1 << 32) + 1, 8),
		     -EINVAL);
	for (size_t s = 0; s < 2; s++)
		for (size_t k = 0; k < 2; k++) {
			struct big b;

			memset(&b, 0, sizeof(b));
			b.size = sizes[s];
			atomic_init(&b.producers_left, BIG_PRODUCERS);
			cr_assert_eq(weft_chan_create_sized(&b.c, caps[k],
							    b.size), 0);
			wt_run(big_main, &b, 4);
			weft_chan_destroy(b.c);
			cr_assert_eq(atomic_load(&b.corrupt), 0, "size %zu",
				     b.size);
			cr_assert_eq(atomic_load(&b.received), total);
			cr_assert_eq(atomic_load(&b.sum),
				     total * (total + 1) / 2);
		}
}

Test(chan, pointer_calls_on_a_value_channel_and_value_calls_on_a_pointer_channel_are_einval)
{
	weft_chan *vc, *pc;
	uint64_t x = 7, y = 0x5555;
	void *v = V(0x55);

	cr_assert_eq(weft_chan_create_sized(&vc, 2, sizeof(x)), 0);
	cr_assert_eq(weft_chan_create(&pc, 2), 0);
	cr_assert_eq(weft_chan_value_size(vc), sizeof(x));
	cr_assert_eq(weft_chan_value_size(pc), 0);
	cr_assert_eq(weft_chan_value_size(NULL), 0);
	cr_assert_eq(weft_chan_try_send_val(vc, &x), 0);
	cr_assert_eq(weft_chan_try_send(pc, V(1)), 0);

	/* Pointer calls on the value channel: nothing moves. */
	cr_assert_eq(weft_chan_send(vc, V(1)), -EINVAL);
	cr_assert_eq(weft_chan_send_timeout(vc, V(1), 0), -EINVAL);
	cr_assert_eq(weft_chan_try_send(vc, V(1)), -EINVAL);
	cr_assert_eq(weft_chan_recv(vc, &v), -EINVAL);
	cr_assert_eq(weft_chan_recv_timeout(vc, &v, 0), -EINVAL);
	cr_assert_eq(weft_chan_try_recv(vc, &v), -EINVAL);
	cr_assert_eq(v, V(0x55));
	cr_assert_eq(weft_chan_len(vc), 1);
	/* Value calls on the pointer channel: nothing moves. */
	cr_assert_eq(weft_chan_send_val(pc, &x), -EINVAL);
	cr_assert_eq(weft_chan_send_val_timeout(pc, &x, 0), -EINVAL);
	cr_assert_eq(weft_chan_try_send_val(pc, &x), -EINVAL);
	cr_assert_eq(weft_chan_recv_val(pc, &y), -EINVAL);
	cr_assert_eq(weft_chan_recv_val_timeout(pc, &y, 0), -EINVAL);
	cr_assert_eq(weft_chan_try_recv_val(pc, &y), -EINVAL);
	cr_assert_eq(y, 0x5555);
	cr_assert_eq(weft_chan_len(pc), 1);
	/* NULL channel, NULL source. */
	cr_assert_eq(weft_chan_send_val(NULL, &x), -EINVAL);
	cr_assert_eq(weft_chan_try_recv_val(NULL, &y), -EINVAL);
	cr_assert_eq(weft_chan_try_send_val(vc, NULL), -EINVAL);
	cr_assert_eq(weft_chan_send_val(vc, NULL), -EINVAL);
	cr_assert_eq(weft_chan_len(vc), 1);

	/* Both still work the right way. */
	cr_assert_eq(weft_chan_try_recv_val(vc, &y), 0);
	cr_assert_eq(y, 7);
	cr_assert_eq(weft_chan_try_recv(pc, &v), 0);
	cr_assert_eq(v, V(1));
	weft_chan_destroy(vc);
	weft_chan_destroy(pc);
}

Test(chan, value_channel_try_calls_drop_and_close_leave_the_destination_alone)
{
	weft_chan *c;
	uint64_t x, y = 0x5555;

	cr_assert_eq(weft_chan_create_sized(&c, 2, sizeof(x)), 0);
	cr_assert_eq(weft_chan_try_recv_val(c, &y), -EAGAIN);
	cr_assert_eq(y, 0x5555, "written on -EAGAIN");
	x = 1;
	cr_assert_eq(weft_chan_try_send_val(c, &x), 0);
	x = 2;
	cr_assert_eq(weft_chan_try_send_val(c, &x), 0);
	x = 3;
	cr_assert_eq(weft_chan_try_send_val(c, &x), -EAGAIN);
	cr_assert_eq(weft_chan_len(c), 2);
	cr_assert_eq(weft_chan_try_recv_val(c, NULL), 0); /* 1, dropped */
	cr_assert_eq(weft_chan_try_send_val(c, &x), 0);
	cr_assert_eq(weft_chan_close(c), 0);
	cr_assert_eq(weft_chan_try_send_val(c, &x), -EPIPE);
	cr_assert_eq(weft_chan_try_recv_val(c, &y), 0);
	cr_assert_eq(y, 2);
	cr_assert_eq(weft_chan_recv_val(c, &y), 0);
	cr_assert_eq(y, 3);
	y = 0x5555;
	cr_assert_eq(weft_chan_try_recv_val(c, &y), -EPIPE);
	cr_assert_eq(weft_chan_recv_val(c, &y), -EPIPE);
	cr_assert_eq(y, 0x5555, "written at the end");
	weft_chan_destroy(c);
}

/* Waiting value calls: a timeout and a cancel move nothing and leave the
 * destination alone; a close wakes a waiting receiver with -EPIPE, and a
 * waiting receiver gets the bytes a sender hands over. */
struct val_wait {
	weft_chan *c;
	atomic_int entered;
	int rc;
	struct msg m;
};

static void *vw_receiver(void *arg)
{
	struct val_wait *k = arg;

	memset(&k->m, 0x5a, sizeof(k->m));
	atomic_store(&k->entered, 1);
	k->rc = weft_chan_recv_val(k->c, &k->m);
	return NULL;
}

static void *vw_sender(void *arg)
{
	struct val_wait *k = arg;
	struct msg m;

	msg_make(&m, 99);
	atomic_store(&k->entered, 1);
	k->rc = weft_chan_send_val(k->c, &m);
	return NULL;
}

static int all_bytes(const void *p, int byte, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)p)[i] != byte)
			return 0;
	return 1;
}

static weft_task *vw_spawn(struct val_wait *k, weft_fn fn)
{
	weft_task *t;

	atomic_store(&k->entered, 0);
	k->rc = 1;
	t = weft_spawn(fn, k);
	settle_count(&k->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	return t;
}

static void vw_end(weft_task *t, int want)
{
	WT_CHECK_EQ(weft_await(t, NULL), want);
	weft_task_release(t);
}

static void *val_wait_main(void *arg)
{
	struct val_wait *k = arg;
	struct msg m;
	weft_task *t;

	WT_CHECK_EQ(weft_chan_create_sized(&k->c, 1, sizeof(struct msg)), 0);
	/* Timeouts. */
	memset(&m, 0x5a, sizeof(m));
	WT_CHECK_EQ(weft_chan_recv_val_timeout(k->c, &m, 2 * MS), -ETIMEDOUT);
	WT_CHECK(all_bytes(&m, 0x5a, sizeof(m)));
	msg_make(&m, 1);
	WT_CHECK_EQ(weft_chan_send_val(k->c, &m), 0);
	msg_make(&m, 2);
	WT_CHECK_EQ(weft_chan_send_val_timeout(k->c, &m, 2 * MS), -ETIMEDOUT);
	WT_CHECK_EQ(weft_chan_len(k->c), 1);
	/* A cancelled sender sends nothing. */
	t = vw_spawn(k, vw_sender);
	WT_CHECK_EQ(weft_cancel(t), 0);
	vw_end(t, -ECANCELED);
	WT_CHECK_EQ(k->rc, -ECANCELED);
	WT_CHECK_EQ(weft_chan_recv_val(k->c, &m), 0);
	WT_CHECK_EQ(m.seq, 1);
	WT_CHECK_EQ(weft_chan_try_recv_val(k->c, &m), -EAGAIN);
	/* A cancelled receiver takes nothing. */
	t = vw_spawn(k, vw_receiver);
	WT_CHECK_EQ(weft_cancel(t), 0);
	vw_end(t, -ECANCELED);
	WT_CHECK_EQ(k->rc, -ECANCELED);
	WT_CHECK(all_bytes(&k->m, 0x5a, sizeof(k->m)));
	/* A waiting receiver gets the sender's bytes. */
	t = vw_spawn(k, vw_receiver);
	msg_make(&m, 5);
	WT_CHECK_EQ(weft_chan_send_val(k->c, &m), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(k->rc, 0);
	WT_CHECK(msg_ok(&k->m) && k->m.seq == 5);
	/* A waiting sender's bytes reach a receiver (the channel is full). */
	WT_CHECK_EQ(weft_chan_send_val(k->c, &m), 0);
	t = vw_spawn(k, vw_sender);
	WT_CHECK_EQ(weft_chan_recv_val(k->c, &m), 0);
	WT_CHECK_EQ(m.seq, 5);
	vw_end(t, 0);
	WT_CHECK_EQ(k->rc, 0);
	WT_CHECK_EQ(weft_chan_recv_val(k->c, &m), 0);
	WT_CHECK(msg_ok(&m) && m.seq == 99);
	/* A close wakes a waiting receiver; its buffer stays as it was. */
	t = vw_spawn(k, vw_receiver);
	WT_CHECK_EQ(weft_chan_close(k->c), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(k->rc, -EPIPE);
	WT_CHECK(all_bytes(&k->m, 0x5a, sizeof(k->m)));
	weft_chan_destroy(k->c);
	return NULL;
}

Test(chan, value_waits_time_out_are_cancelled_and_closed_without_moving_bytes,
     .timeout = WT_TIMEOUT(20))
{
	struct val_wait k;

	wt_run_each(val_wait_main, &k, sizeof(k));
}

/* Select over value channels: a case's value points to the bytes to send
 * or to the buffer to fill, ready at once or parked, and only the chosen
 * case's buffer is written. */
struct val_sel {
	weft_chan *vin, *vout, *pin;
	atomic_int entered;
	int rc;
	struct msg in_buf, out_msg;
	struct weft_sel k[3];
};

static void *vs_selector(void *arg)
{
	struct val_sel *s = arg;

	memset(&s->in_buf, 0x5a, sizeof(s->in_buf));
	msg_make(&s->out_msg, 42);
	sel_case(&s->k[0], s->vin, WEFT_SEL_RECV, &s->in_buf);
	sel_case(&s->k[1], s->vout, WEFT_SEL_SEND, &s->out_msg);
	sel_case(&s->k[2], s->pin, WEFT_SEL_RECV, NULL);
	atomic_store(&s->entered, 1);
	s->rc = weft_select(s->k, 3, WEFT_NEVER);
	return NULL;
}

static weft_task *vs_spawn(struct val_sel *s)
{
	atomic_store(&s->entered, 0);
	s->rc = 0x7777;
	weft_task *t = weft_spawn(vs_selector, s);
	settle_count(&s->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	return t;
}

static void *val_sel_main(void *arg)
{
	struct val_sel *s = arg;
	struct weft_sel k[2];
	struct msg m, got;
	weft_task *t;
	void *v;

	WT_CHECK_EQ(weft_chan_create_sized(&s->vin, 1, sizeof(struct msg)), 0);
	WT_CHECK_EQ(weft_chan_create_sized(&s->vout, 0, sizeof(struct msg)), 0);
	WT_CHECK_EQ(weft_chan_create(&s->pin, 0), 0);

	/* Ready at once: a buffered value into the case's buffer. */
	msg_make(&m, 7);
	WT_CHECK_EQ(weft_chan_send_val(s->vin, &m), 0);
	memset(&got, 0x5a, sizeof(got));
	sel_case(&k[0], s->vin, WEFT_SEL_RECV, &got);
	sel_case(&k[1], s->pin, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 2, 0), 0);
	WT_CHECK_EQ(k[0].result, 0);
	WT_CHECK_PTR_EQ(k[0].value, &got); /* not changed */
	WT_CHECK(msg_ok(&got) && got.seq == 7);
	/* Ready at once: a send into a buffered value channel. */
	msg_make(&m, 8);
	sel_case(&k[0], s->pin, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], s->vin, WEFT_SEL_SEND, &m);
	WT_CHECK_EQ(weft_select(k, 2, 0), 1);
	memset(&m, 0, sizeof(m));
	WT_CHECK_EQ(weft_chan_recv_val(s->vin, &got), 0);
	WT_CHECK(msg_ok(&got) && got.seq == 8);
	/* A send with no bytes is refused. */
	sel_case(&k[0], s->vin, WEFT_SEL_SEND, NULL);
	WT_CHECK_EQ(weft_select(k, 1, 0), -EINVAL);
	/* A receive with no buffer drops the value. */
	WT_CHECK_EQ(weft_chan_send_val(s->vin, &got), 0);
	sel_case(&k[0], s->vin, WEFT_SEL_RECV, NULL);
	WT_CHECK_EQ(weft_select(k, 1, 0), 0);
	WT_CHECK_EQ(weft_chan_len(s->vin), 0);

	/* Parked: a sender on vin fills the receive case's buffer. */
	t = vs_spawn(s);
	msg_make(&m, 9);
	WT_CHECK_EQ(weft_chan_send_val(s->vin, &m), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(s->rc, 0);
	WT_CHECK_EQ(s->k[0].result, 0);
	WT_CHECK(msg_ok(&s->in_buf) && s->in_buf.seq == 9);
	/* Parked: a receiver on vout takes the send case's bytes; the
	 * receive case's buffer is left alone. */
	t = vs_spawn(s);
	memset(&got, 0, sizeof(got));
	WT_CHECK_EQ(weft_chan_recv_val(s->vout, &got), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(s->rc, 1);
	WT_CHECK(msg_ok(&got) && got.seq == 42);
	WT_CHECK(all_bytes(&s->in_buf, 0x5a, sizeof(s->in_buf)));
	/* Parked: a pointer channel's case wins; no buffer is written. */
	t = vs_spawn(s);
	WT_CHECK_EQ(weft_chan_send(s->pin, V(0x0c)), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(s->rc, 2);
	WT_CHECK_PTR_EQ(s->k[2].value, 0x0c);
	WT_CHECK(all_bytes(&s->in_buf, 0x5a, sizeof(s->in_buf)));
	WT_CHECK_EQ(weft_chan_try_recv_val(s->vin, &got), -EAGAIN);
	/* Parked: a close of vin ends it with -EPIPE, buffer untouched. */
	t = vs_spawn(s);
	WT_CHECK_EQ(weft_chan_close(s->vin), 0);
	vw_end(t, 0);
	WT_CHECK_EQ(s->rc, 0);
	WT_CHECK_EQ(s->k[0].result, -EPIPE);
	WT_CHECK_PTR_EQ(s->k[0].value, &s->in_buf);
	WT_CHECK(all_bytes(&s->in_buf, 0x5a, sizeof(s->in_buf)));
	/* Closed and ready at once: the same. */
	memset(&got, 0x5a, sizeof(got));
	sel_case(&k[0], s->vin, WEFT_SEL_RECV, &got);
	WT_CHECK_EQ(weft_select(k, 1, 0), 0);
	WT_CHECK_EQ(k[0].result, -EPIPE);
	WT_CHECK(all_bytes(&got, 0x5a, sizeof(got)));
	WT_CHECK_EQ(weft_chan_try_recv(s->pin, &v), -EAGAIN);

	weft_chan_destroy(s->vin);
	weft_chan_destroy(s->vout);
	weft_chan_destroy(s->pin);
	return NULL;
}

Test(chan, select_sends_and_receives_values_by_copy_ready_and_parked,
     .timeout = WT_TIMEOUT(30))
{
	struct val_sel s;

	wt_run_each(val_sel_main, &s, sizeof(s));
}

/* ======================================================================
 * unbounded channels, join and task_done
 * ====================================================================== */

/* Heap bytes in use, and how many percent more than the values' bytes an
 * unbounded channel may take (the sanitizers' allocators round a chunk up
 * to a size class: a fifth more under ThreadSanitizer). One allocation
 * per pointer would take 200% or more. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
size_t __sanitizer_get_current_allocated_bytes(void);
#define heap_in_use() __sanitizer_get_current_allocated_bytes()
#define HEAP_SLACK_PCT 150
#else
#include <malloc.h>
#define heap_in_use() mallinfo2().uordblks
#define HEAP_SLACK_PCT 105
#endif

#define UNB_VALUES 100000

/* Sends UNB_VALUES numbers without a runtime (an unbounded channel's
 * sends never wait), then receives them: FIFO, and the memory comes and
 * goes a chunk at a time. */
static void unbounded_fill_and_drain(size_t vsize)
{
	size_t slot = vsize ? vsize : sizeof(void *);
	/* Two chunks (the last, the spare) of at most 4 KiB or 4 values,
	 * and the channel. */
	size_t kept = (2 * (4096 + 4 * slot) + 512) * HEAP_SLACK_PCT / 100;
	size_t base = heap_in_use(), full, after;
	uintptr_t v;
	weft_chan *c;

	cr_assert_eq(chan_make(&c, WEFT_CHAN_UNBOUNDED, vsize), 0);
	cr_assert_eq(weft_chan_cap(c), WEFT_CHAN_UNBOUNDED);
	for (int round = 0; round < 2; round++) {
		for (uintptr_t i = 1; i <= UNB_VALUES; i++)
			cr_assert_eq(send_num(c, i), 0);
		cr_assert_eq(weft_chan_len(c), UNB_VALUES);
		full = heap_in_use();
		/* In chunks: the values' bytes and a few percent more (one
		 * allocation per value would add its header to each). */
		cr_assert_geq(full - base, UNB_VALUES * slot);
		cr_assert_lt(full - base,
			     UNB_VALUES * slot / 100 * HEAP_SLACK_PCT + kept,
			     "%zu bytes for %d values of %zu", full - base,
			     UNB_VALUES, slot);
		for (uintptr_t i = 1; i <= UNB_VALUES; i++) {
			cr_assert_eq(recv_num(c, &v), 0);
			cr_assert_eq(v, i, "out of order");
		}
		cr_assert_eq(weft_chan_len(c), 0);
		/* Drained: all but two chunks given back. */
		after = heap_in_use();
		cr_assert_lt(after - base, kept, "%zu bytes kept after draining",
			     after - base);
	}
	weft_chan_destroy(c);
}

Test(chan, unbounded_channel_takes_1e5_values_grows_in_chunks_and_shrinks_back,
     .timeout = WT_TIMEOUT(60))
{
	unbounded_fill_and_drain(0);
	unbounded_fill_and_drain(sizeof(struct msg));
	unbounded_fill_and_drain(4096);
}

/* Sends and receives interleaved so that the oldest and newest values
 * cross chunk boundaries at every offset. */
Test(chan, unbounded_channel_keeps_fifo_order_while_reading_behind_writing)
{
	static const size_t vsizes[] = { 0, sizeof(struct msg) };

	for (size_t k = 0; k < 2; k++) {
		uintptr_t next_in = 1, next_out = 1, v;
		weft_chan *c;

		cr_assert_eq(chan_make(&c, WEFT_CHAN_UNBOUNDED, vsizes[k]), 0);
		for (unsigned round = 1; round <= 300; round++) {
			unsigned in = (round * 37) % 700, out = (round * 53) % 690;

			for (unsigned i = 0; i < in; i++)
				cr_assert_eq(send_num(c, next_in++), 0);
			for (unsigned i = 0; i < out && next_out < next_in;
			     i++) {
				cr_assert_eq(recv_num(c, &v), 0);
				cr_assert_eq(v, next_out++);
			}
			cr_assert_eq(weft_chan_len(c), next_in - next_out);
		}
		cr_assert_eq(weft_chan_close(c), 0);
		cr_assert_eq(send_num(c, 1), -EPIPE);
		while (next_out < next_in) {
			cr_assert_eq(recv_num(c, &v), 0);
			cr_assert_eq(v, next_out++);
		}
		cr_assert_eq(recv_num(c, &v), -EPIPE);
		weft_chan_destroy(c); /* with chunks still held: no leak */
	}
	/* Destroyed holding values. */
	weft_chan *c;
	cr_assert_eq(weft_chan_create(&c, WEFT_CHAN_UNBOUNDED), 0);
	for (uintptr_t i = 1; i <= 5000; i++)
		cr_assert_eq(weft_chan_try_send(c, V(i)), 0);
	weft_chan_destroy(c);
	cr_assert_eq(weft_chan_create(&c, ((size_t)1 << 32) + 1), -EINVAL);
}

/* Many producers and consumers on several workers through an unbounded
 * channel, receivers waiting (a send hands over) and not: every value
 * once; and a select sends to it (always ready) and receives from it. */
#define UM_PRODUCERS 4
#define UM_CONSUMERS 4
#if defined(__SANITIZE_THREAD__)
#define UM_PER 5000
#else
#define UM_PER 25000
#endif

struct unb_mpmc {
	weft_chan *c;
	size_t vsize;
	atomic_int producers_left;
	struct tally received;
};

static void *um_produce(void *arg)
{
	struct unb_mpmc *u = arg;
	static atomic_uint next_id;
	uintptr_t base = (uintptr_t)(atomic_fetch_add(&next_id, 1) %
				     UM_PRODUCERS) * UM_PER;

	for (uintptr_t i = 1; i <= UM_PER; i++) {
		if (!WT_CHECK_EQ(send_num(u->c, base + i), 0))
			break;
		if (i % 1000 == 0)
			weft_yield();
	}
	if (atomic_fetch_sub(&u->producers_left, 1) == 1)
		WT_CHECK_EQ(weft_chan_close(u->c), 0);
	return NULL;
}

static void *um_consume(void *arg)
{
	struct unb_mpmc *u = arg;

	tally_all(u->c, &u->received);
	return NULL;
}

static void *unb_mpmc_main(void *arg)
{
	struct unb_mpmc *u = arg;
	weft_task *ts[UM_PRODUCERS + UM_CONSUMERS];
	struct weft_sel k[2];
	weft_chan *other;
	void *v;
	int n = 0;

	if (!WT_CHECK_EQ(chan_make(&u->c, WEFT_CHAN_UNBOUNDED, u->vsize), 0))
		return NULL;
	atomic_store(&u->producers_left, UM_PRODUCERS);
	for (int i = 0; i < UM_CONSUMERS; i++)
		ts[n++] = weft_spawn(um_consume, u);
	for (int i = 0; i < UM_PRODUCERS; i++)
		ts[n++] = weft_spawn(um_produce, u);
	WT_CHECK_EQ(weft_gather(ts, (size_t)n, NULL), 0);
	release_all(ts, (size_t)n);
	weft_chan_destroy(u->c);

	/* select: a send to an unbounded channel is always ready, here
	 * 5000 times (it grows on the way), before a full channel's. */
	WT_CHECK_EQ(weft_chan_create(&u->c, WEFT_CHAN_UNBOUNDED), 0);
	WT_CHECK_EQ(weft_chan_create(&other, 0), 0);
	for (uintptr_t i = 1; i <= 5000; i++) {
		sel_case(&k[0], other, WEFT_SEL_SEND, V(1));
		sel_case(&k[1], u->c, WEFT_SEL_SEND, V(i));
		if (!WT_CHECK_EQ(weft_select(k, 2, 0), 1))
			break;
	}
	WT_CHECK_EQ(weft_chan_len(u->c), 5000);
	for (uintptr_t i = 1; i <= 5000; i++) {
		sel_case(&k[0], other, WEFT_SEL_RECV, NULL);
		sel_case(&k[1], u->c, WEFT_SEL_RECV, NULL);
		if (!WT_CHECK_EQ(weft_select(k, 2, WEFT_NEVER), 1) ||
		    !WT_CHECK_PTR_EQ(k[1].value, i))
			break;
	}
	WT_CHECK_EQ(weft_chan_try_recv(u->c, &v), -EAGAIN);
	weft_chan_destroy(u->c);
	weft_chan_destroy(other);
	return NULL;
}

Test(chan, unbounded_channel_delivers_every_value_once_between_many_tasks,
     .timeout = WT_TIMEOUT(120))
{
	static const size_t vsizes[] = { 0, sizeof(struct msg) };
	const long total = (long)UM_PRODUCERS * UM_PER;

	for (size_t k = 0; k < 2; k++)
		for (unsigned c = 0; c < N_COUNTS; c++) {
			struct unb_mpmc u;

			memset(&u, 0, sizeof(u));
			u.vsize = vsizes[k];
			wt_run(unb_mpmc_main, &u, worker_counts[c]);
			cr_assert_eq(atomic_load(&u.received.got), total);
			cr_assert_eq(atomic_load(&u.received.sum),
				     total * (total + 1) / 2);
		}
}

/* join/task_done counting, without waiting (any thread). */
Test(chan, task_done_counts_down_what_was_sent_and_eoverflows_past_zero)
{
	weft_chan *c;
	void *v;

	cr_assert_eq(weft_chan_task_done(NULL), -EINVAL);
	cr_assert_eq(weft_chan_join(NULL), -EINVAL);
	cr_assert_eq(weft_chan_join_timeout(NULL, 0), -EINVAL);
	cr_assert_eq(weft_chan_create(&c, WEFT_CHAN_UNBOUNDED), 0);
	cr_assert_eq(weft_chan_join(c), 0); /* nothing sent: at once */
	cr_assert_eq(weft_chan_task_done(c), -EOVERFLOW);
	for (uintptr_t i = 1; i <= 3; i++)
		cr_assert_eq(weft_chan_try_send(c, V(i)), 0);
	cr_assert_eq(weft_chan_join_timeout(c, 0), -ETIMEDOUT);
	/* Received is not done: the count is of task_done() calls. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(weft_chan_try_recv(c, &v), 0);
	cr_assert_eq(weft_chan_join_timeout(c, 0), -ETIMEDOUT);
	cr_assert_eq(weft_chan_task_done(c), 0);
	cr_assert_eq(weft_chan_task_done(c), 0);
	cr_assert_eq(weft_chan_join_timeout(c, 0), -ETIMEDOUT);
	cr_assert_eq(weft_chan_task_done(c), 0);
	cr_assert_eq(weft_chan_join_timeout(c, 0), 0);
	cr_assert_eq(weft_chan_task_done(c), -EOVERFLOW);
	cr_assert_eq(weft_chan_join(c), 0);
	/* A close changes nothing; a send refused is not counted. */
	cr_assert_eq(weft_chan_try_send(c, V(4)), 0);
	cr_assert_eq(weft_chan_close(c), 0);
	cr_assert_eq(weft_chan_try_send(c, V(5)), -EPIPE);
	cr_assert_eq(weft_chan_join_timeout(c, 0), -ETIMEDOUT);
	cr_assert_eq(weft_chan_task_done(c), 0);
	cr_assert_eq(weft_chan_task_done(c), -EOVERFLOW);
	weft_chan_destroy(c);
	/* Bounded channels count too; a full one's refused send does not. */
	cr_assert_eq(weft_chan_create(&c, 1), 0);
	cr_assert_eq(weft_chan_try_send(c, V(1)), 0);
	cr_assert_eq(weft_chan_try_send(c, V(2)), -EAGAIN);
	cr_assert_eq(weft_chan_task_done(c), 0);
	cr_assert_eq(weft_chan_task_done(c), -EOVERFLOW);
	weft_chan_destroy(c);
}

/* asyncio's worker pattern: tasks on every worker take items and call
 * task_done() after "processing" each; join() (from a task, from a thread
 * outside the runtime, from several at once) returns only once every
 * item was processed. */
#define JW_WORKERS 4
#define JW_ITEMS 20000
#define JW_JOINERS 3

struct join_work {
	weft_chan *q;
	size_t vsize;
	atomic_long processed;
	long seen_by_task[JW_JOINERS];
	long seen_by_thread;
	int thread_rc;
};

static void *jw_worker(void *arg)
{
	struct join_work *j = arg;
	uintptr_t v;

	while (recv_num(j->q, &v) == 0) {
		if (v % 64 == 0)
			weft_yield(); /* processing takes a while */
		atomic_fetch_add(&j->processed, 1);
		WT_CHECK_EQ(weft_chan_task_done(j->q), 0);
	}
	return NULL;
}

static void *jw_joiner(void *arg)
{
	struct join_work *j = arg;
	static atomic_int slot;
	int me = atomic_fetch_add(&slot, 1) % JW_JOINERS;

	WT_CHECK_EQ(weft_chan_join(j->q), 0);
	j->seen_by_task[me] = atomic_load(&j->processed);
	return NULL;
}

static void *jw_thread(void *arg)
{
	struct join_work *j = arg;

	j->thread_rc = weft_chan_join(j->q);
	j->seen_by_thread = atomic_load(&j->processed);
	return NULL;
}

static void *join_work_main(void *arg)
{
	struct join_work *j = arg;
	weft_task *ws[JW_WORKERS], *js[JW_JOINERS];
	pthread_t th;

	if (!WT_CHECK_EQ(chan_make(&j->q, WEFT_CHAN_UNBOUNDED, j->vsize), 0))
		return NULL;
	for (uintptr_t i = 1; i <= JW_ITEMS; i++)
		WT_CHECK_EQ(send_num(j->q, i), 0);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, jw_thread, j), 0))
		return NULL;
	for (int i = 0; i < JW_JOINERS; i++)
		js[i] = weft_spawn(jw_joiner, j);
	for (int i = 0; i < JW_WORKERS; i++)
		ws[i] = weft_spawn(jw_worker, j);
	WT_CHECK_EQ(weft_chan_join(j->q), 0);
	WT_CHECK_EQ(atomic_load(&j->processed), JW_ITEMS);
	WT_CHECK_EQ(weft_gather(js, JW_JOINERS, NULL), 0);
	pthread_join(th, NULL);
	WT_CHECK_EQ(weft_chan_close(j->q), 0);
	WT_CHECK_EQ(weft_gather(ws, JW_WORKERS, NULL), 0);
	release_all(ws, JW_WORKERS);
	release_all(js, JW_JOINERS);
	weft_chan_destroy(j->q);
	return NULL;
}

Test(chan, join_returns_once_every_item_was_task_done_in_tasks_and_a_thread,
     .timeout = WT_TIMEOUT(60))
{
	static const size_t vsizes[] = { 0, sizeof(struct msg) };

	for (size_t k = 0; k < 2; k++)
		for (unsigned c = 0; c < N_COUNTS; c++) {
			struct join_work j;

			memset(&j, 0, sizeof(j));
			j.vsize = vsizes[k];
			wt_run(join_work_main, &j, worker_counts[c]);
			for (int i = 0; i < JW_JOINERS; i++)
				cr_assert_eq(j.seen_by_task[i], JW_ITEMS);
			cr_assert_eq(j.thread_rc, 0);
			cr_assert_eq(j.seen_by_thread, JW_ITEMS);
		}
}

/* A join that waits is cancelled, times out and honours the deadline
 * scope like every wait, and a thread's join times out. */
struct join_giveup {
	weft_chan *q;
	atomic_int entered;
	int rc;
	uint64_t took;
};

static void *jg_joiner(void *arg)
{
	struct join_giveup *g = arg;

	atomic_store(&g->entered, 1);
	g->rc = weft_chan_join(g->q);
	return NULL;
}

static void *jg_sender(void *arg)
{
	struct join_giveup *g = arg;

	WT_CHECK_EQ(weft_chan_send(g->q, V(2)), 0);
	return NULL;
}

/* Gives t, spawned to send on a full or rendezvous channel, SETTLE_NS to
 * block in its send, and checks that it has not returned. */
static void wait_blocked_sender(weft_task *t)
{
	weft_sleep(SETTLE_NS);
	WT_CHECK_EQ(weft_task_done(t), 0);
}

static void *jg_thread(void *arg)
{
	struct join_giveup *g = arg;
	uint64_t t0 = weft_now();

	g->rc = weft_chan_join_timeout(g->q, 20 * MS);
	g->took = weft_now() - t0;
	return NULL;
}

static void *join_giveup_main(void *arg)
{
	struct join_giveup *g = arg;
	uint64_t t0, saved;
	weft_task *t;
	pthread_t th;

	WT_CHECK_EQ(weft_chan_create(&g->q, WEFT_CHAN_UNBOUNDED), 0);
	WT_CHECK_EQ(weft_chan_send(g->q, V(1)), 0);
	/* Cancelled while waiting. */
	t = weft_spawn(jg_joiner, g);
	settle_count(&g->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(g->rc, -ECANCELED);
	weft_task_release(t);
	/* Its own timeout, and the deadline scope: never early. */
	t0 = weft_now();
	WT_CHECK_EQ(weft_chan_join_timeout(g->q, 20 * MS), -ETIMEDOUT);
	CHECK_NOT_EARLY(weft_now() - t0, 20 * MS);
	t0 = weft_now();
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_chan_join(g->q), -ETIMEDOUT);
	weft_timeout_end(saved);
	CHECK_NOT_EARLY(weft_now() - t0, 20 * MS);
	/* A thread outside the runtime. */
	if (WT_CHECK_EQ(pthread_create(&th, NULL, jg_thread, g), 0))
		pthread_join(th, NULL);
	WT_CHECK_EQ(g->rc, -ETIMEDOUT);
	CHECK_NOT_EARLY(g->took, 20 * MS);
	/* Nothing was lost on the way: a task_done ends the next join. */
	atomic_store(&g->entered, 0);
	t = weft_spawn(jg_joiner, g);
	settle_count(&g->entered, 1);
	WT_CHECK_EQ(weft_task_done(t), 0);
	WT_CHECK_EQ(weft_chan_task_done(g->q), 0);
	WT_CHECK_EQ(weft_await(t, NULL), 0);
	WT_CHECK_EQ(g->rc, 0);
	weft_task_release(t);
	weft_chan_destroy(g->q); /* may: the join was granted */

	/* A waiting sender's value counts once its send completes: taken
	 * directly (rendezvous) or moved into the buffer (full channel). */
	for (size_t cap = 0; cap < 2; cap++) {
		WT_CHECK_EQ(weft_chan_create(&g->q, cap), 0);
		if (cap)
			WT_CHECK_EQ(weft_chan_send(g->q, V(1)), 0);
		t = weft_spawn(jg_sender, g);
		wait_blocked_sender(t);
		WT_CHECK_EQ(weft_chan_recv(g->q, NULL), 0);
		WT_CHECK_EQ(weft_await(t, NULL), 0);
		weft_task_release(t);
		for (size_t i = 0; i <= cap; i++)
			WT_CHECK_EQ(weft_chan_task_done(g->q), 0);
		WT_CHECK_EQ(weft_chan_join_timeout(g->q, 0), 0);
		WT_CHECK_EQ(weft_chan_task_done(g->q), -EOVERFLOW);
		weft_chan_destroy(g->q);
	}
	return NULL;
}

Test(chan, join_is_cancelled_times_out_and_honours_the_deadline_scope,
     .timeout = WT_TIMEOUT(20))
{
	struct join_giveup g;

	wt_run_each(join_giveup_main, &g, sizeof(g));
}

/* ======================================================================
 * broadcast channels
 * ====================================================================== */

/* Lags, counts and the calls that do not wait (any thread). Value number
 * n (from 0) is V(n + 1). */
Test(chan, broadcast_receiver_that_lags_gets_eoverflow_once_then_the_oldest_held)
{
	weft_bcast *b;
	weft_bcast_rx *r1, *r2, *r3;
	void *v = V(0x55);

	cr_assert_eq(weft_bcast_create(&b, 0), -EINVAL);
	cr_assert_eq(weft_bcast_create(&b, ((size_t)1 << 32) + 1), -EINVAL);
	cr_assert_eq(weft_bcast_create(NULL, 4), -EINVAL);
	cr_assert_eq(weft_bcast_create(&b, 4), 0);
	cr_assert_eq(weft_bcast_subscribe(NULL, &r1), -EINVAL);
	cr_assert_eq(weft_bcast_subscribe(b, NULL), -EINVAL);
	cr_assert_eq(weft_bcast_send(b, V(0x99)), 0); /* nobody subscribed */
	cr_assert_eq(weft_bcast_subscribe(b, &r1), 0);
	cr_assert_eq(weft_bcast_subscribe(b, &r2), 0);
	cr_assert_eq(weft_bcast_try_recv(r1, &v), -EAGAIN);
	cr_assert_eq(v, V(0x55), "try_recv stored on -EAGAIN");
	/* Sent before subscribing: not seen. */
	for (uintptr_t i = 1; i <= 3; i++)
		cr_assert_eq(weft_bcast_send(b, V(i)), 2);
	cr_assert_eq(weft_bcast_try_recv(r2, &v), 0);
	cr_assert_eq(v, V(1));
	cr_assert_eq(weft_bcast_try_recv(r2, &v), 0);
	cr_assert_eq(v, V(2));
	for (uintptr_t i = 4; i <= 10; i++)
		cr_assert_eq(weft_bcast_send(b, V(i)), 2);
	/* 10 sent, 4 held (7..10): r1 missed 1..6, r2 missed 3..6. */
	cr_assert_eq(weft_bcast_missed(r1), 0);
	cr_assert_eq(weft_bcast_try_recv(r1, &v), -EOVERFLOW);
	cr_assert_eq(v, NULL);
	cr_assert_eq(weft_bcast_missed(r1), 6);
	cr_assert_eq(weft_bcast_recv(r2, &v), -EOVERFLOW);
	cr_assert_eq(weft_bcast_missed(r2), 4);
	/* Once: then the oldest value held, and on in order. */
	for (uintptr_t i = 7; i <= 10; i++) {
		cr_assert_eq(weft_bcast_try_recv(r1, &v), 0);
		cr_assert_eq(v, V(i));
		cr_assert_eq(weft_bcast_recv_timeout(r2, &v, 0), 0);
		cr_assert_eq(v, V(i));
	}
	cr_assert_eq(weft_bcast_try_recv(r1, &v), -EAGAIN);
	cr_assert_eq(weft_bcast_recv_timeout(r2, &v, 0), -ETIMEDOUT);
	/* A second lag adds to the count. */
	for (uintptr_t i = 11; i <= 16; i++)
		cr_assert_eq(weft_bcast_send(b, V(i)), 2);
	cr_assert_eq(weft_bcast_try_recv(r1, &v), -EOVERFLOW);
	cr_assert_eq(weft_bcast_missed(r1), 8);
	cr_assert_eq(weft_bcast_try_recv(r1, NULL), 0); /* 13, dropped */
	/* A late receiver sees what comes after it. */
	cr_assert_eq(weft_bcast_subscribe(b, &r3), 0);
	cr_assert_eq(weft_bcast_try_recv(r3, &v), -EAGAIN);
	cr_assert_eq(weft_bcast_send(b, V(17)), 3);
	cr_assert_eq(weft_bcast_try_recv(r3, &v), 0);
	cr_assert_eq(v, V(17));
	/* Close: each reads the rest, a lag included, then -EPIPE. */
	cr_assert_eq(weft_bcast_close(b), 0);
	cr_assert_eq(weft_bcast_close(b), -EALREADY);
	cr_assert_eq(weft_bcast_send(b, V(18)), -EPIPE);
	cr_assert_eq(weft_bcast_try_recv(r3, &v), -EPIPE);
	cr_assert_eq(v, NULL);
	for (uintptr_t i = 14; i <= 17; i++) {
		cr_assert_eq(weft_bcast_try_recv(r1, &v), 0);
		cr_assert_eq(v, V(i));
	}
	cr_assert_eq(weft_bcast_recv(r1, &v), -EPIPE);
	cr_assert_eq(weft_bcast_recv(r2, &v), -EOVERFLOW);
	cr_assert_eq(weft_bcast_missed(r2), 4 + 3);
	for (uintptr_t i = 14; i <= 17; i++) {
		cr_assert_eq(weft_bcast_recv(r2, &v), 0);
		cr_assert_eq(v, V(i));
	}
	cr_assert_eq(weft_bcast_recv(r2, &v), -EPIPE);
	cr_assert_eq(weft_bcast_recv(r2, &v), -EPIPE); /* and stays so */
	weft_bcast_unsubscribe(r3);
	cr_assert_eq(weft_bcast_subscribe(b, &r3), 0); /* after the close */
	cr_assert_eq(weft_bcast_recv(r3, &v), -EPIPE);
	weft_bcast_unsubscribe(r1);
	weft_bcast_unsubscribe(r2);
	weft_bcast_unsubscribe(r3);
	weft_bcast_unsubscribe(NULL);
	cr_assert_eq(weft_bcast_send(NULL, V(1)), -EINVAL);
	cr_assert_eq(weft_bcast_close(NULL), -EINVAL);
	cr_assert_eq(weft_bcast_recv(NULL, &v), -EINVAL);
	cr_assert_eq(weft_bcast_try_recv(NULL, &v), -EINVAL);
	cr_assert_eq(weft_bcast_missed(NULL), 0);
	weft_bcast_destroy(b);
	weft_bcast_destroy(NULL);
}

/* Receivers in tasks on every worker and in a thread outside the runtime,
 * one sender: each receiver sees the values in order, and received plus
 * missed is every value. With room for all of them none is missed. */
#define BC_RECEIVERS 6
#if defined(__SANITIZE_THREAD__)
#define BC_VALUES 4000
#else
#define BC_VALUES 20000
#endif
#define BC_MAX_WORKERS 4

struct bc_rx {
	weft_bcast_rx *rx;
	long got, out_of_order, lags, end_rc;
	uint64_t missed;
	unsigned workers_seen; /* bit per worker index */
};

struct bc_fan {
	weft_bcast *b;
	size_t cap;
	struct bc_rx r[BC_RECEIVERS + 1]; /* the last: the thread */
	weft_task *ts[BC_RECEIVERS];
	unsigned placers;
	atomic_uint running;
	atomic_uint next_placer;
};

/* Receives until the end, checking the order. */
static void bc_receive(struct bc_rx *r)
{
	uintptr_t last = 0;
	void *v;
	int rc;

	while ((rc = weft_bcast_recv(r->rx, &v)) != -EPIPE) {
		int w = weft_worker_index();

		if (w >= 0 && w < BC_MAX_WORKERS)
			r->workers_seen |= 1u << w;
		if (rc == -EOVERFLOW) {
			r->lags++;
			continue;
		}
		if (!WT_CHECK_EQ(rc, 0))
			break;
		if (I(v) <= last)
			r->out_of_order++;
		last = I(v);
		r->got++;
	}
	r->end_rc = rc;
	r->missed = weft_bcast_missed(r->rx);
	if (last != BC_VALUES) /* the last value is always held */
		r->out_of_order++;
}

static void *bc_task(void *arg)
{
	bc_receive(arg);
	return NULL;
}

/* Places the receiving tasks on every worker: one placer per worker
 * busy-waits (without yielding) until all placers run at once, which
 * only other workers stealing them allows, then spawns its share of the
 * receivers pinned to its worker. Gives up waiting after a second (a
 * loaded machine): the check of the workers seen then tells. */
static void *bc_placer(void *arg)
{
	struct bc_fan *f = arg;
	struct weft_spawn_opts o = { .flags = WEFT_SPAWN_PINNED };
	unsigned me = atomic_fetch_add(&f->next_placer, 1);
	uint64_t until = weft_now() + SEC * WT_SLOW;

	atomic_fetch_add(&f->running, 1);
	while (atomic_load(&f->running) < f->placers && weft_now() < until)
		;
	for (unsigned i = me; i < BC_RECEIVERS; i += f->placers)
		WT_CHECK_EQ(weft_spawn_opts(&f->ts[i], bc_task, &f->r[i], &o),
			    0);
	return NULL;
}

static void *bc_fan_main(void *arg)
{
	struct bc_fan *f = arg;
	weft_task *ps[BC_MAX_WORKERS];
	pthread_t th;
	int i;

	if (!WT_CHECK_EQ(weft_bcast_create(&f->b, f->cap), 0))
		return NULL;
	for (i = 0; i <= BC_RECEIVERS; i++)
		WT_CHECK_EQ(weft_bcast_subscribe(f->b, &f->r[i].rx), 0);
	f->placers = weft_worker_count();
	for (i = 0; i < (int)f->placers; i++)
		ps[i] = weft_spawn(bc_placer, f);
	WT_CHECK_EQ(weft_gather(ps, f->placers, NULL), 0);
	release_all(ps, f->placers);
	if (!WT_CHECK_EQ(pthread_create(&th, NULL, bc_task,
					&f->r[BC_RECEIVERS]),
			 0))
		return NULL;
	for (uintptr_t v = 1; v <= BC_VALUES; v++) {
		if (!WT_CHECK_EQ(weft_bcast_send(f->b, V(v)),
				 BC_RECEIVERS + 1))
			break;
		if (v % 256 == 0)
			weft_yield(); /* let receivers keep up, mostly */
	}
	WT_CHECK_EQ(weft_bcast_close(f->b), 0);
	WT_CHECK_EQ(weft_gather(f->ts, BC_RECEIVERS, NULL), 0);
	release_all(f->ts, BC_RECEIVERS);
	pthread_join(th, NULL);
	for (i = 0; i <= BC_RECEIVERS; i++)
		weft_bcast_unsubscribe(f->r[i].rx);
	weft_bcast_destroy(f->b);
	return NULL;
}

Test(chan, broadcast_receivers_on_every_worker_each_see_every_value_in_order,
     .timeout = WT_TIMEOUT(120))
{
	static const size_t caps[] = { BC_VALUES, 16 };

	for (size_t k = 0; k < 2; k++)
		for (unsigned c = 0; c < N_COUNTS; c++) {
			struct bc_fan f;
			unsigned seen = 0;

			memset(&f, 0, sizeof(f));
			f.cap = caps[k];
			wt_run(bc_fan_main, &f, worker_counts[c]);
			for (int i = 0; i <= BC_RECEIVERS; i++) {
				struct bc_rx *r = &f.r[i];

				cr_assert_eq(r->end_rc, -EPIPE);
				cr_assert_eq(r->out_of_order, 0,
					     "receiver %d: out of order", i);
				cr_assert_eq(r->got + (long)r->missed,
					     BC_VALUES,
					     "receiver %d: %ld + %llu missed", i,
					     r->got,
					     (unsigned long long)r->missed);
				cr_assert_eq(r->missed > 0, r->lags > 0);
				if (f.cap == BC_VALUES)
					cr_assert_eq(r->missed, 0);
				if (i < BC_RECEIVERS)
					seen |= r->workers_seen;
			}
			/* The receiving tasks received on every worker. */
			cr_assert_eq(seen, (1u << worker_counts[c]) - 1,
				     "workers %u: receives on workers %#x",
				     worker_counts[c], seen);
		}
}

/* Waiting receivers: woken by each value and by the close; a timeout or
 * a cancel takes nothing, and the value sent after stays for them. */
struct bc_wait {
	weft_bcast *b;
	weft_bcast_rx *rx[3];
	atomic_int entered;
	int rc[3];
	void *v[3];
	uint64_t thread_timeout;
	atomic_int thread_in;
};

static void *bcw_receiver(void *arg)
{
	struct bc_wait *w = arg;
	int me = atomic_fetch_add(&w->entered, 1);

	w->v[me] = V(0x55);
	w->rc[me] = weft_bcast_recv(w->rx[me], &w->v[me]);
	return NULL;
}

static void *bcw_thread(void *arg)
{
	struct bc_wait *w = arg;
	uint64_t t0 = weft_now();

	atomic_store(&w->thread_in, 1);
	w->rc[2] = weft_bcast_recv_timeout(w->rx[2], &w->v[2],
					   w->thread_timeout);
	if (w->rc[2] == -ETIMEDOUT)
		CHECK_NOT_EARLY(weft_now() - t0, w->thread_timeout);
	return NULL;
}

static void bcw_spawn_two(struct bc_wait *w, weft_task **ts)
{
	atomic_store(&w->entered, 0);
	ts[0] = weft_spawn(bcw_receiver, w);
	ts[1] = weft_spawn(bcw_receiver, w);
	settle_count(&w->entered, 2);
	WT_CHECK_EQ(weft_task_done(ts[0]) + weft_task_done(ts[1]), 0);
}

static void *bc_wait_main(void *arg)
{
	struct bc_wait *w = arg;
	weft_task *ts[2];
	uint64_t t0, saved;
	pthread_t th;
	void *v;

	WT_CHECK_EQ(weft_bcast_create(&w->b, 2), 0);
	for (int i = 0; i < 3; i++)
		WT_CHECK_EQ(weft_bcast_subscribe(w->b, &w->rx[i]), 0);
	/* Two waiting tasks get the value sent. */
	bcw_spawn_two(w, ts);
	WT_CHECK_EQ(weft_bcast_send(w->b, V(1)), 3);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), 0);
	release_all(ts, 2);
	WT_CHECK(w->rc[0] == 0 && w->rc[1] == 0);
	WT_CHECK_PTR_EQ(w->v[0], 1);
	WT_CHECK_PTR_EQ(w->v[1], 1);
	/* A thread's wait: the value waiting for it, then a timeout. */
	w->thread_timeout = 20 * MS;
	if (WT_CHECK_EQ(pthread_create(&th, NULL, bcw_thread, w), 0))
		pthread_join(th, NULL);
	WT_CHECK_EQ(w->rc[2], 0);
	WT_CHECK_PTR_EQ(w->v[2], 1);
	if (WT_CHECK_EQ(pthread_create(&th, NULL, bcw_thread, w), 0))
		pthread_join(th, NULL);
	WT_CHECK_EQ(w->rc[2], -ETIMEDOUT);
	/* A timeout, the deadline scope and a cancel take nothing: the
	 * value sent after them is still there. */
	t0 = weft_now();
	WT_CHECK_EQ(weft_bcast_recv_timeout(w->rx[0], &v, 20 * MS), -ETIMEDOUT);
	CHECK_NOT_EARLY(weft_now() - t0, 20 * MS);
	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_bcast_recv(w->rx[0], &v), -ETIMEDOUT);
	weft_timeout_end(saved);
	bcw_spawn_two(w, ts);
	WT_CHECK_EQ(weft_cancel(ts[0]), 0);
	WT_CHECK_EQ(weft_cancel(ts[1]), 0);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), -ECANCELED);
	release_all(ts, 2);
	WT_CHECK(w->rc[0] == -ECANCELED && w->rc[1] == -ECANCELED);
	WT_CHECK_EQ(weft_bcast_send(w->b, V(2)), 3);
	for (int i = 0; i < 3; i++) {
		WT_CHECK_EQ(weft_bcast_try_recv(w->rx[i], &v), 0);
		WT_CHECK_PTR_EQ(v, 2);
	}
	/* A thread that waits is woken by a send. */
	w->thread_timeout = 10 * SEC;
	if (WT_CHECK_EQ(pthread_create(&th, NULL, bcw_thread, w), 0)) {
		settle_count(&w->thread_in, 1);
		WT_CHECK_EQ(weft_bcast_send(w->b, V(3)), 3);
		pthread_join(th, NULL);
	}
	WT_CHECK_EQ(w->rc[2], 0);
	WT_CHECK_PTR_EQ(w->v[2], 3);
	for (int i = 0; i < 2; i++) {
		WT_CHECK_EQ(weft_bcast_try_recv(w->rx[i], &v), 0);
		WT_CHECK_PTR_EQ(v, 3);
	}
	/* The close wakes the waiters with -EPIPE. */
	bcw_spawn_two(w, ts);
	WT_CHECK_EQ(weft_bcast_close(w->b), 0);
	WT_CHECK_EQ(weft_gather(ts, 2, NULL), 0);
	release_all(ts, 2);
	WT_CHECK(w->rc[0] == -EPIPE && w->rc[1] == -EPIPE);
	WT_CHECK(w->v[0] == NULL && w->v[1] == NULL);
	for (int i = 0; i < 3; i++)
		weft_bcast_unsubscribe(w->rx[i]);
	weft_bcast_destroy(w->b);
	return NULL;
}

Test(chan, broadcast_waiters_wake_for_each_value_and_the_close_and_give_up_losing_nothing,
     .timeout = WT_TIMEOUT(30))
{
	struct bc_wait w;

	wt_run_each(bc_wait_main, &w, sizeof(w));
}

static void bcast_destroy_subscribed(void)
{
	weft_bcast *b;
	weft_bcast_rx *rx;

	if (weft_bcast_create(&b, 1) || weft_bcast_subscribe(b, &rx))
		return;
	weft_bcast_destroy(b);
}

static void bcast_unsubscribe_twice(void)
{
	weft_bcast *b, *other;
	weft_bcast_rx *rx, *rx2;

	if (weft_bcast_create(&b, 1) || weft_bcast_create(&other, 1) ||
	    weft_bcast_subscribe(b, &rx) || weft_bcast_subscribe(other, &rx2))
		return;
	weft_bcast_unsubscribe(rx2);
	weft_bcast_unsubscribe(rx);
	weft_bcast_unsubscribe(rx);
}

/* One worker: the receiver waits, then the main task unsubscribes it. */
static void *bcast_waited_on(void *arg)
{
	weft_bcast_recv(arg, NULL);
	return NULL;
}

static void *bcast_unsub_waiting_main(void *arg)
{
	weft_bcast *b;
	weft_bcast_rx *rx;
	weft_task *t;

	(void)arg;
	if (weft_bcast_create(&b, 1) || weft_bcast_subscribe(b, &rx))
		return NULL;
	t = weft_spawn(bcast_waited_on, rx);
	for (int i = 0; i < 100; i++)
		weft_yield();
	weft_bcast_unsubscribe(rx);
	/* Not reported: end the receive (without a grant that would write
	 * to rx), so that the child exits and the test fails at once. */
	weft_bcast_close(b);
	weft_await(t, NULL);
	return NULL;
}

static void bcast_unsubscribe_waiting(void)
{
	run_on_one_worker(bcast_unsub_waiting_main);
}

/* The same with a thread outside the runtime waiting, asleep by then on
 * its node's futex (its state carries the SLEEPER bit). */
static void *bcast_thread_waits(void *arg)
{
	weft_bcast_recv(arg, NULL);
	return NULL;
}

static void bcast_unsubscribe_thread_waiting(void)
{
	weft_bcast *b;
	weft_bcast_rx *rx;
	pthread_t th;

	if (weft_bcast_create(&b, 1) || weft_bcast_subscribe(b, &rx) ||
	    pthread_create(&th, NULL, bcast_thread_waits, rx))
		return;
	wt_sleep_ms(50); /* long past its spin: asleep */
	weft_bcast_unsubscribe(rx);
	/* Not reported: end the receive, so that the child exits. */
	weft_bcast_close(b);
	pthread_join(th, NULL);
}

Test(chan, broadcast_destroy_subscribed_unsubscribe_twice_or_while_waited_on_abort,
     .timeout = WT_TIMEOUT(20))
{
	wt_assert_misuse_reported(bcast_destroy_subscribed,
				  "weft_bcast_destroy() with receivers "
				  "subscribed");
	wt_assert_misuse_reported(bcast_unsubscribe_twice,
				  "weft_bcast_unsubscribe(): not a subscribed "
				  "receiver");
	wt_assert_misuse_reported(bcast_unsubscribe_waiting,
				  "weft_bcast_unsubscribe() while a receive "
				  "waits");
#if !defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer kills a fork child that starts a thread (as for
	 * the runtime suite's fork tests); the other builds check it. */
	wt_assert_misuse_reported(bcast_unsubscribe_thread_waiting,
				  "weft_bcast_unsubscribe() while a receive "
				  "waits");
#else
	(void)bcast_unsubscribe_thread_waiting;
#endif
}

/* ======================================================================
 * async generator
 * ====================================================================== */

struct gen_state {
	int count;        /* values to yield; < 0: for ever */
	int ret;          /* returned after the values */
	int last_yield_rc;
	int yields;
	int cleaned_up;
	uint64_t sleep_after; /* > 0: sleep this long after the first */
	int sleep_rc;
};

static int gen_body(weft_gen *g, void *arg)
{
	struct gen_state *s = arg;

	for (int i = 1; s->count < 0 || i <= s->count; i++) {
		s->last_yield_rc = weft_gen_yield(g, V(i));
		if (s->last_yield_rc)
			break;
		s->yields++;
		if (s->sleep_after) {
			s->sleep_rc = weft_sleep(s->sleep_after);
			if (s->sleep_rc)
				break;
		}
	}
	s->cleaned_up = 1;
	return s->last_yield_rc ? s->last_yield_rc : s->ret;
}

static void *gen_order_main(void *arg)
{
	struct gen_state *s = arg;
	weft_gen *g;
	void *v;

	s->count = 10;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return NULL;
	for (uintptr_t i = 1; i <= 10; i++) {
		v = NULL;
		WT_CHECK_EQ(weft_gen_next(g, &v), 1);
		WT_CHECK_PTR_EQ(v, i);
	}
	WT_CHECK_EQ(weft_gen_next(g, &v), 0);
	WT_CHECK_EQ(weft_gen_next(g, &v), 0); /* and stays at the end */
	weft_gen_destroy(g);
	WT_CHECK_EQ(s->yields, 10);
	WT_CHECK_EQ(s->cleaned_up, 1);
	return NULL;
}

Test(chan, generator_yields_values_in_order_then_zero,
     .timeout = WT_TIMEOUT(10))
{
	struct gen_state s;

	wt_run_each(gen_order_main, &s, sizeof(s));
}

static void *gen_error_main(void *arg)
{
	struct gen_state *s = arg;
	weft_gen *g;
	void *v;

	s->count = 2;
	s->ret = -EIO;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return NULL;
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	WT_CHECK_PTR_EQ(v, 1);
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	WT_CHECK_PTR_EQ(v, 2);
	WT_CHECK_EQ(weft_gen_next(g, &v), -EIO);
	weft_gen_destroy(g);

	/* An error before any value. */
	memset(s, 0, sizeof(*s));
	s->count = 0;
	s->ret = -ENOENT;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return NULL;
	WT_CHECK_EQ(weft_gen_next(g, &v), -ENOENT);
	weft_gen_destroy(g);
	return NULL;
}

Test(chan, generator_body_error_is_returned_by_next,
     .timeout = WT_TIMEOUT(10))
{
	struct gen_state s;

	wt_run_each(gen_error_main, &s, sizeof(s));
}

/* A generator destroyed while its body waits in a yield; returns how
 * long the destroy took (it cancels the body and waits for it). */
static uint64_t gen_destroy_in_yield_try(struct gen_state *s)
{
	weft_gen *g;
	void *v;
	uint64_t b, took;

	memset(s, 0, sizeof(*s));
	s->count = -1;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return 0;
	for (uintptr_t i = 1; i <= 3; i++) {
		WT_CHECK_EQ(weft_gen_next(g, &v), 1);
		WT_CHECK_PTR_EQ(v, i);
	}
	b = weft_now();
	weft_gen_destroy(g);
	took = late_by(weft_now() - b, 0);
	WT_CHECK_EQ(s->last_yield_rc, -ECANCELED);
	WT_CHECK_EQ(s->cleaned_up, 1);
	/* A yield returns only once its value was taken. */
	WT_CHECK_EQ(s->yields, 3);
	return took;
}

/* The same with the body in a long sleep: cancelled there. */
static uint64_t gen_destroy_in_sleep_try(struct gen_state *s)
{
	weft_gen *g;
	void *v;
	uint64_t b, took;

	memset(s, 0, sizeof(*s));
	s->count = -1;
	s->sleep_after = 10 * SEC;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return 0;
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	WT_CHECK_PTR_EQ(v, 1);
	weft_sleep(SETTLE_NS);
	b = weft_now();
	weft_gen_destroy(g);
	took = late_by(weft_now() - b, 0);
	WT_CHECK_EQ(s->sleep_rc, -ECANCELED);
	WT_CHECK_EQ(s->cleaned_up, 1);
	return took;
}

static void *gen_destroy_main(void *arg)
{
	struct gen_state *s = arg;
	weft_gen *g;
	uint64_t took;

	took = WT_BEST_OF(WT_TRIES, QUICK_NS, gen_destroy_in_yield_try(s));
	CHECK_BELOW(took, QUICK_NS);
	took = WT_BEST_OF(WT_TRIES, QUICK_NS, gen_destroy_in_sleep_try(s));
	CHECK_BELOW(took, QUICK_NS);

	/* Destroyed before anything was asked for. */
	memset(s, 0, sizeof(*s));
	s->count = -1;
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_body, s), 0))
		return NULL;
	weft_gen_destroy(g);
	WT_CHECK_EQ(s->yields, 0);
	return NULL;
}

Test(chan, generator_destroy_mid_stream_cancels_the_body,
     .timeout = WT_TIMEOUT(20))
{
	struct gen_state s;

	wt_run_each(gen_destroy_main, &s, sizeof(s));
}

/* The consumer's wait for the next value times out (scope) or is
 * cancelled like any wait; the generator stays usable. */
struct gen_wait {
	struct gen_state s;
	weft_gen *g;
	atomic_int entered;
	int rc;
};

static int slow_body(weft_gen *g, void *arg)
{
	struct gen_state *s = arg;

	s->sleep_rc = weft_sleep(s->sleep_after);
	s->last_yield_rc = weft_gen_yield(g, V(1));
	s->cleaned_up = 1;
	return 0;
}

static void *gen_next_victim(void *arg)
{
	struct gen_wait *w = arg;
	void *v;

	atomic_store(&w->entered, 1);
	w->rc = weft_gen_next(w->g, &v);
	return NULL;
}

/* A next in a 20 ms deadline scope while the body sleeps; returns how
 * late it timed out. */
static uint64_t gen_next_timeout_try(weft_gen *g)
{
	void *v = V(0x1);
	uint64_t b = weft_now(), saved, late;

	saved = weft_timeout_begin(20 * MS);
	WT_CHECK_EQ(weft_gen_next(g, &v), -ETIMEDOUT);
	weft_timeout_end(saved);
	late = late_by(weft_now() - b, 20 * MS);
	WT_CHECK_PTR_EQ(v, 0x1);
	return late;
}

static void *gen_wait_main(void *arg)
{
	struct gen_wait *w = arg;
	uint64_t late;
	weft_task *t;

	w->s.sleep_after = 10 * SEC;
	if (!WT_CHECK_EQ(weft_gen_create(&w->g, slow_body, &w->s), 0))
		return NULL;
	late = WT_BEST_OF(WT_TRIES, QUICK_NS, gen_next_timeout_try(w->g));
	CHECK_BELOW(late, QUICK_NS);
	t = weft_spawn(gen_next_victim, w);
	settle_count(&w->entered, 1);
	WT_CHECK_EQ(weft_cancel(t), 0);
	WT_CHECK_EQ(weft_await(t, NULL), -ECANCELED);
	WT_CHECK_EQ(w->rc, -ECANCELED);
	weft_task_release(t);
	/* The body is untouched by either. */
	WT_CHECK_EQ(w->s.cleaned_up, 0);
	weft_gen_destroy(w->g);
	WT_CHECK_EQ(w->s.sleep_rc, -ECANCELED);
	WT_CHECK_EQ(w->s.cleaned_up, 1);
	return NULL;
}

Test(chan, generator_next_times_out_and_is_cancelled_like_any_wait,
     .timeout = WT_TIMEOUT(20))
{
	struct gen_wait w;

	wt_run_each(gen_wait_main, &w, sizeof(w));
}

Test(chan, generator_create_needs_a_runtime_and_a_body)
{
	weft_gen *g;

	cr_assert_eq(weft_gen_create(&g, gen_body, NULL), -EPERM);
	cr_assert_eq(weft_gen_create(&g, NULL, NULL), -EINVAL);
	cr_assert_eq(weft_gen_create(NULL, gen_body, NULL), -EINVAL);
}

/* A second destroy is reported (abort with a message), never a spin on
 * a lock byte the allocator reused nor a double free. */
static void chan_destroy_twice(void)
{
	weft_chan *c, *other;

	if (weft_chan_create(&c, 4) || weft_chan_create(&other, 4))
		return;
	/* With another block of its size freed first, the allocator's
	 * free-list link lands in c. */
	weft_chan_destroy(other);
	weft_chan_destroy(c);
	weft_chan_destroy(c);
}

Test(chan, destroying_a_channel_twice_aborts_with_a_message,
     .timeout = WT_TIMEOUT(10))
{
	wt_assert_misuse_reported(chan_destroy_twice,
				  "weft_chan_destroy(): not a live channel");
}

/* ======================================================================
 * Issue 15: lifetimes, the budget
 * ====================================================================== */

/* weft_gen_destroy() waited for the body with weft_await, which the
 * consumer's deadline scope ends (a shield blocks cancellation only): in
 * an expired scope it returned at once and freed the generator, and the
 * body then wrote its status and closed its channel in freed memory. From
 * a thread outside the runtime the await failed with -EPERM and the same
 * free followed. Either way the body must have returned when destroy
 * does. */
static int gen_slow_cleanup_body(weft_gen *g, void *arg)
{
	struct gen_state *s = arg;

	for (int i = 1;; i++) {
		s->last_yield_rc = weft_gen_yield(g, V(i));
		if (s->last_yield_rc)
			break;
		s->yields++;
	}
	/* Cleanup that takes a while and must not be cut short. */
	weft_shield_begin();
	s->sleep_rc = weft_sleep(2 * MS);
	weft_shield_end();
	s->cleaned_up = 1;
	return 0;
}

static void *gen_destroy_blocking(void *arg)
{
	weft_gen_destroy(arg);
	return NULL;
}

static void *gen_destroy_waits_main(void *arg)
{
	struct gen_state *s = arg;
	uint64_t saved;
	weft_gen *g;
	void *v;

	/* The guide's count(): an expired scope around the destroy. */
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_slow_cleanup_body, s), 0))
		return NULL;
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	saved = weft_timeout_begin(0);
	weft_gen_destroy(g);
	weft_timeout_end(saved);
	WT_CHECK_EQ(s->cleaned_up, 1);
	WT_CHECK_EQ(s->last_yield_rc, -ECANCELED);
	WT_CHECK_EQ(s->sleep_rc, 0);
	/* The caller's scope is back in force. */
	WT_CHECK_EQ(weft_deadline(), WEFT_NEVER);
	saved = weft_timeout_begin(10 * SEC);
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_slow_cleanup_body, s), 0))
		return NULL;
	weft_gen_destroy(g);
	WT_CHECK(weft_deadline() != WEFT_NEVER);
	weft_timeout_end(saved);

	/* From a thread outside the runtime (the blocking pool's). */
	memset(s, 0, sizeof(*s));
	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_slow_cleanup_body, s), 0))
		return NULL;
	WT_CHECK_EQ(weft_gen_next(g, &v), 1);
	WT_CHECK_EQ(weft_run_blocking(gen_destroy_blocking, g, NULL), 0);
	WT_CHECK_EQ(s->cleaned_up, 1);
	WT_CHECK_EQ(s->last_yield_rc, -ECANCELED);
	return NULL;
}

Test(chan, generator_destroy_waits_for_the_body_despite_an_expired_deadline_scope_and_from_a_thread,
     .timeout = WT_TIMEOUT(20))
{
	struct gen_state s;

	wt_run_each(gen_destroy_waits_main, &s, sizeof(s));
}

/* A parked select that a rendezvous send completes: the sender's call
 * returns 0 and it destroys the channel at once (a one-shot reply
 * channel). The select relocked every channel of its cases to unlink its
 * nodes, the completed one too, in freed memory (ASan: heap-use-after-free
 * in weft__spin_lock <- lock_all <- sel_unlink). With the channel in two
 * cases, the second node must be gone from it as well. One worker: the
 * select runs only after the destroy. */
struct sel_reply {
	weft_chan *reply, *other;
	int twice; /* reply in cases 0 and 2 */
	atomic_int entered;
	int won;
	void *value;
};

static void *sel_reply_waiter(void *arg)
{
	struct sel_reply *r = arg;
	struct weft_sel k[3];
	size_t n = r->twice ? 3 : 2;

	sel_case(&k[0], r->reply, WEFT_SEL_RECV, NULL);
	sel_case(&k[1], r->other, WEFT_SEL_RECV, NULL);
	sel_case(&k[2], r->reply, WEFT_SEL_RECV, NULL);
	atomic_store(&r->entered, 1);
	r->won = weft_select(k, n, WEFT_NEVER);
	if (r->won >= 0)
		r->value = k[r->won].value;
	return NULL;
}

static void *sel_reply_main(void *arg)
{
	struct sel_reply *r = arg;

	for (int twice = 0; twice < 2; twice++) {
		weft_task *t;

		r->twice = twice;
		atomic_store(&r->entered, 0);
		if (!WT_CHECK_EQ(weft_chan_create(&r->reply, 0), 0) ||
		    !WT_CHECK_EQ(weft_chan_create(&r->other, 0), 0))
			return NULL;
		t = weft_spawn(sel_reply_waiter, r);
		/* One worker: once it has entered, it is parked. */
		while (!atomic_load(&r->entered))
			weft_yield();
		WT_CHECK_EQ(weft_chan_send(r->reply, V(0x77)), 0);
		weft_chan_destroy(r->reply);
		WT_CHECK_EQ(weft_await(t, NULL), 0);
		weft_task_release(t);
		WT_CHECK(r->won == 0 || r->won == 2);
		WT_CHECK_PTR_EQ(r->value, 0x77);
		weft_chan_destroy(r->other);
	}
	return NULL;
}

Test(chan, select_completed_by_a_send_never_touches_that_channel_again,
     .timeout = WT_TIMEOUT(10))
{
	struct sel_reply r;

	memset(&r, 0, sizeof(r));
	wt_run(sel_reply_main, &r, 1);
}

/* The other side of that rule: a select granted by one channel still has
 * nodes in its other channels until it returns, and destroying one of
 * those meanwhile is a misuse, now reported. weft_chan_destroy() skipped
 * such stale select nodes and freed the channel, which the select then
 * locked to unlink its node. One worker: the select is granted on `a` and
 * has not run yet when `b` is destroyed. */
static void *sel_stale_waiter(void *arg)
{
	weft_chan **cs = arg;
	struct weft_sel k[2];

	sel_case(&k[0], cs[0], WEFT_SEL_RECV, NULL);
	sel_case(&k[1], cs[1], WEFT_SEL_RECV, NULL);
	weft_select(k, 2, WEFT_NEVER);
	return NULL;
}

static void *sel_stale_main(void *arg)
{
	weft_chan *cs[2];
	weft_task *t;

	(void)arg;
	if (weft_chan_create(&cs[0], 0) || weft_chan_create(&cs[1], 0))
		return NULL;
	t = weft_spawn(sel_stale_waiter, cs);
	for (int i = 0; i < 100; i++)
		weft_yield();
	weft_chan_send(cs[0], V(1));
	weft_chan_destroy(cs[1]); /* the select has not unlinked from b */
	weft_await(t, NULL);
	weft_task_release(t);
	weft_chan_destroy(cs[0]);
	return NULL;
}

static void sel_stale_destroy(void)
{
	run_on_one_worker(sel_stale_main);
}

Test(chan, destroying_a_channel_a_select_is_still_leaving_aborts_with_a_message,
     .timeout = WT_TIMEOUT(10))
{
	wt_assert_misuse_reported(sel_stale_destroy,
				  "weft_chan_destroy() with waiters");
}

/* Issue 15 #7: a select that completes at once counts against the
 * cooperative budget like a send or receive that does. 200,000 ready
 * selects on one worker let a ticker run 0 times (1,562 for as many
 * weft_chan_send calls: one yield per 128). */
#define COOP_SELECTS 200000

struct sel_coop {
	atomic_int stop;
	long ticks;
	bool bcast; /* broadcast sends, in place of the selects */
};

static void *sel_coop_ticker(void *arg)
{
	struct sel_coop *s = arg;

	while (!atomic_load(&s->stop)) {
		s->ticks++;
		weft_yield();
	}
	return NULL;
}

static void *sel_coop_main(void *arg)
{
	struct sel_coop *s = arg;
	struct weft_sel k;
	weft_chan *c;
	weft_task *t;

	weft_bcast *b;

	if (!WT_CHECK_EQ(weft_chan_create(&c, 1), 0) ||
	    !WT_CHECK_EQ(weft_bcast_create(&b, 1), 0))
		return NULL;
	t = weft_spawn(sel_coop_ticker, s);
	weft_yield(); /* the ticker has started */
	s->ticks = 0;
	for (long i = 0; i < COOP_SELECTS; i++) {
		sel_case(&k, c, (i & 1) ? WEFT_SEL_RECV : WEFT_SEL_SEND, V(1));
		if (!WT_CHECK_EQ(s->bcast ? weft_bcast_send(b, V(1))
					  : weft_select(&k, 1, WEFT_NEVER),
				 0))
			break;
	}
	long ticks = s->ticks;
	atomic_store(&s->stop, 1);
	weft_await(t, NULL);
	weft_task_release(t);
	weft_chan_destroy(c);
	weft_bcast_destroy(b);
	/* 1,562 expected; well above 0 is the point. */
	if (!WT_CHECK(ticks >= COOP_SELECTS / 128 / 2))
		fprintf(stderr, "ticker ran %ld times during %d selects\n",
			ticks, COOP_SELECTS);
	return NULL;
}

Test(chan, ready_selects_count_against_the_budget_so_others_still_run,
     .timeout = WT_TIMEOUT(30))
{
	struct sel_coop s;

	memset(&s, 0, sizeof(s));
	wt_run(sel_coop_main, &s, 1);
}

/* Broadcast sends never wait: they count against it too. */
Test(chan, broadcast_sends_count_against_the_budget_so_others_still_run,
     .timeout = WT_TIMEOUT(30))
{
	struct sel_coop s;

	memset(&s, 0, sizeof(s));
	s.bcast = true;
	wt_run(sel_coop_main, &s, 1);
}

/* ---- generator: the body's own deadline scope, destroy from the body ---- */

/* A body that yields inside a 20 ms deadline scope while nobody asks for
 * a value: weft_gen_yield() returns -ETIMEDOUT (weft.h), not early, and
 * the body goes on to return normally. */
struct gen_scope {
	atomic_int done;
	int yield_rc;
	uint64_t took;
};

static int gen_scope_body(weft_gen *g, void *arg)
{
	struct gen_scope *s = arg;
	uint64_t t0 = weft_now(), saved;

	saved = weft_timeout_begin(20 * MS);
	s->yield_rc = weft_gen_yield(g, V(1));
	s->took = weft_now() - t0;
	weft_timeout_end(saved);
	atomic_store(&s->done, 1);
	return 0;
}

static void *gen_scope_main(void *arg)
{
	struct gen_scope *s = arg;
	weft_gen *g;

	if (!WT_CHECK_EQ(weft_gen_create(&g, gen_scope_body, s), 0))
		return NULL;
	/* No weft_gen_next(): nobody asks. */
	for (uint64_t t0 = weft_now();
	     !atomic_load(&s->done) && weft_now() - t0 < PROMPT_NS;)
		weft_sleep(MS);
	WT_CHECK(atomic_load(&s->done));
	weft_gen_destroy(g);
	return NULL;
}

Test(chan, generator_yield_past_the_bodys_deadline_scope_returns_etimedout,
     .timeout = WT_TIMEOUT(10))
{
	static const unsigned counts[] = { 1, 2 };

	for (int i = 0; i < 2; i++) {
		struct gen_scope s;

		memset(&s, 0, sizeof(s));
		wt_run(gen_scope_main, &s, counts[i]);
		cr_assert_eq(s.yield_rc, -ETIMEDOUT,
			     "gen_yield in a 20 ms scope, nobody asking: %d (%s)",
			     s.yield_rc, weft_strerror(s.yield_rc));
		cr_assert_geq(s.took, 20 * MS,
			      "gen_yield timed out early: %llu ns",
			      (unsigned long long)s.took);
	}
}

/* weft_gen_destroy() from the body's own task aborts (its wait for the
 * body could never end), with a message naming the call. Runs in a child
 * process (wt_assert_misuse_reported). */
static int gen_self_destroy_body(weft_gen *g, void *arg)
{
	(void)arg;
	weft_gen_destroy(g);
	return 0;
}

static void *gen_self_destroy_main(void *arg)
{
	weft_gen *g;
	void *v;

	(void)arg;
	if (weft_gen_create(&g, gen_self_destroy_body, NULL))
		return NULL;
	weft_gen_next(g, &v);
	return NULL;
}

static void gen_self_destroy(void)
{
	run_on_one_worker(gen_self_destroy_main);
}

Test(chan, generator_destroy_from_its_own_body_aborts_with_a_message,
     .timeout = WT_TIMEOUT(10))
{
	wt_assert_misuse_reported(gen_self_destroy,
				  "weft_gen_destroy() from the generator's "
				  "own body");
}
