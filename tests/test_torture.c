/*
 * Randomized torture of the whole runtime (issue 9).
 *
 * Runtimes of 1 to 6 workers (mostly 3 to 6: more than this machine's
 * cores) run rounds of a seeded random mix of everything the public API
 * offers: spawn (plain, pinned, call_soon, call_later, detached), await,
 * await_timeout (with and without WEFT_TIMEOUT_CANCEL), gather, wait_any,
 * waitsets, task groups, cancellation at every point, shields, deadline
 * scopes, channels (rendezvous and buffered), select (send and receive
 * cases, polling, timed, unbounded), locks, semaphores, conditions,
 * futures, events, and byte streams over AF_UNIX socketpairs (weft_send,
 * weft_recv, weft_read, weft_write, weft_readv, weft_writev).
 *
 * A round: the controller (each run's main task) makes a fresh set of
 * objects and spawns actors, which do random operations on them, spawn
 * children that do the same, and cancel one another. After a random
 * while the controller sets `stopping`; actors stop after their current
 * operation, and the controller makes every wait end (closes the
 * channels, sets events and futures, raises the conditions' stop flag,
 * shuts the sockets of ended peers down) until every task has ended.
 * Some runs end with an abandoned round instead: main returns with tasks
 * still running, and the shutdown cancels them (asyncio.run's clean-up).
 *
 * Invariants checked (WT_CHECK through TT_CHECK; each failure is printed
 * with the seed, the run, the round and the task):
 *   - every value sent on a channel (a unique id; sends that report
 *     success are marked) is received exactly once: by a receiver, a
 *     select, or the controller's drain of what is still buffered; a send
 *     that failed (-EPIPE, -ECANCELED, -ETIMEDOUT, a select case not
 *     chosen) is never received;
 *   - every task ends exactly once: its body starts at most once and
 *     returns once, its task-local destructor runs once after that, and
 *     its handle reports done; a task whose body never ran reports
 *     -ECANCELED, and only if someone cancelled it; await's -ECANCELED
 *     only for a task someone cancelled (or when the awaiter was);
 *   - a task cancelled before it started never runs. Sound cases only: a
 *     pinned task cancelled by its spawner before the spawner suspended
 *     (it cannot have been picked up: its worker is busy running the
 *     spawner), and a weft_call_later() callback whose cancel returned
 *     well before its start moment. The canceller raises the record's
 *     `cbs` flag before weft_cancel(); a body that finds it up fails;
 *   - a wait that returns -ECANCELED does so only with a cancellation
 *     pending and no shield up; -ETIMEDOUT never before the timeout or the
 *     deadline scope's deadline; deadline scopes nest (earliest wins) and
 *     restore the outer deadline;
 *   - cancelled while waiting on each kind of object (a private object
 *     that never becomes ready), the wait returns -ECANCELED and takes
 *     nothing: a channel's value stays, a rendezvous peer is not matched,
 *     a lock or permit is not held, a condition waiter leaves the queue,
 *     a socket's bytes are neither consumed nor written;
 *   - lock mutual exclusion (holders never exceed 1; a plain counter
 *     under the lock matches the grants, which TSan also checks),
 *     semaphore bound, conditions return with the lock held, futures
 *     succeed once and every awaiter sees the winner's value;
 *   - bytes over each socketpair arrive complete and in order (a
 *     position-keyed pattern; at end of file the count equals what the
 *     writer's calls reported written);
 *   - nothing stays parked: every operation of every task is recorded
 *     (task, operation, object, start time), and a watchdog thread outside
 *     the runtime aborts the test with a dump of every operation in flight
 *     once one has lasted longer than STUCK_NS (5 s, times WT_SLOW). No
 *     round waits that long when the runtime is correct: rounds are short
 *     and the controller ends every wait at the round's end.
 *
 * Duration: randomized_mix runs for DEFAULT_SECONDS (10 s) in every build;
 * sanitizer builds do fewer operations per round (WT_SLOW), not longer
 * runs. WEFT_TORTURE_SECONDS=n runs the `soak` test for n seconds
 * (tests/run soak MINUTES). WEFT_TORTURE_SEED=0x... replays a seed: the
 * same runs (worker counts, wake modes, stack sizes, abandoned or not)
 * and rounds (objects, sizes, lengths); a task's choices follow from its
 * record number, so they repeat as far as the interleaving does. The
 * seed is printed at the start and with every failure.
 * WEFT_TORTURE_GDB=1 adds the worker threads' stacks (from gdb) to the
 * watchdog's report.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "weft_test.h"

WT_SUITE(torture, 240);

/* ---- sizes -------------------------------------------------------------- */

#define DEFAULT_SECONDS 10
#define MAX_RECS 2048	       /* task records per round */
#define MAX_IDS (1u << 16)     /* channel values per round */
#define NCHAN 6
#define NLOCK 3
#define NSEM 2
#define NCOND 2
#define NFUT 6
#define NEVT 3
#define MAX_PAIRS 24
#define MAX_KIDS 5
/* An operation in flight longer than this is a task left parked. */
#define STUCK_NS ((uint64_t)5 * SEC * WT_SLOW)
/* Shutdown grace of each run: longer than STUCK_NS, so that a task that
 * would be dropped is reported by the watchdog first, with a dump. */
#define GRACE_MS (10000 * WT_SLOW)

/* ---- random numbers ------------------------------------------------------ */

static inline uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) (0 for n == 0), from a splitmix64 stream. */
static inline uint32_t rnd_(uint64_t *s, uint32_t n)
{
	*s += 0x9e3779b97f4a7c15ull;
	return n ? (uint32_t)(mix64(*s) % n) : 0;
}

/* ---- records ------------------------------------------------------------- */

enum kind { K_ACTOR, K_LEAF, K_FAILER, K_VICTIM, K_GATE, K_WRITER, K_READER };

struct round;

/* A victim's last_rc before its wait returned: no error code, no count. */
#define NOT_REACHED 0x7eadbeef

/*
 * One per task of the round (recs[0] is the controller). The spawner
 * fills the plain fields before the spawn, which publishes them to the
 * task; everything else is atomic, read by the controller, other tasks and
 * the watchdog at any time.
 */
struct rec {
	struct round *r;
	enum kind kind;
	unsigned depth; /* spawn depth: actors spawn only below the limit */
	unsigned nops;	/* actors: operations to do */
	void *arg;	/* kind's argument */
	uint64_t seed;

	atomic_uint id;
	_Atomic(const char *) role;
	/* The operation in flight: name, object (OBJ()), start (0: none). */
	_Atomic(const char *) op;
	atomic_uint obj;
	_Atomic uint64_t t0;

	/* The registry's reference (pub 1), or pub 2: never spawned. */
	_Atomic(weft_task *) h;
	atomic_int pub;
	atomic_int cancel_req; /* someone called weft_cancel() on it */
	atomic_int cbs;	       /* cancelled before it could start */
	atomic_int in_group;   /* a group may cancel it */
	atomic_int started, ended, dtor, tls_ok, failed;
	atomic_int reached, last_rc; /* victims: last_rc NOT_REACHED or
				       * what their wait returned */
};

/* Objects named in op records (the watchdog prints them). */
enum { O_NONE, O_CHAN, O_LOCK, O_SEM, O_COND, O_FUT, O_EVT, O_TASK,
       O_PAIR, O_GROUP, O_PRIVATE };
#define OBJ(t, i) (((unsigned)(t) << 24) | ((unsigned)(i) & 0xffffffu))
static const char *const obj_names[] = { "-",	   "chan",  "lock",
					 "sem",	   "cond",  "future",
					 "event",  "task",  "socketpair",
					 "group",  "private object" };

struct chan_s {
	weft_chan *c;
	size_t cap;
};
struct lock_s {
	weft_lock *l;
	atomic_int inside;
	atomic_long grants;
	long plain; /* under l */
};
struct sem_s {
	weft_sem *s;
	unsigned value;
	atomic_int inside;
};
struct cond_s {
	weft_cond *c;
	weft_lock *l;
	atomic_int inside;
	/* Under l. */
	long tokens, produced, consumed;
	bool stop;
};
#define FUT_FAILED ((uintptr_t)1)
struct fut_s {
	weft_future *f;
	atomic_uintptr_t winner; /* the successful set's value, FUT_FAILED */
	atomic_uintptr_t seen;	 /* what awaiters got */
};
struct pair {
	int fd[2];		/* [0]: the writer's end, [1]: the reader's */
	struct rec *wr, *rd;	/* NULL: not spawned */
	uint64_t pat;
	atomic_long written;	/* bytes the writer's calls reported */
	atomic_int eof;		/* the reader saw end of file */
	bool shut_w, shut_r;	/* controller's shutdowns */
};

struct round {
	unsigned no;
	uint64_t seed;
	atomic_int stopping;
	bool abandon;
	unsigned max_depth, max_recs, actor_ops;
	atomic_uint nrecs;

	unsigned nchan;
	struct chan_s chan[NCHAN];
	struct lock_s lock[NLOCK];
	struct sem_s sem[NSEM];
	struct cond_s cond[NCOND];
	struct fut_s fut[NFUT];
	weft_event *evt[NEVT];
	struct pair pair[MAX_PAIRS];
	atomic_int pair_ready[MAX_PAIRS];
	atomic_uint npairs;

	atomic_uint next_id; /* channel values: 1..next_id-1 */
	atomic_uchar sent[MAX_IDS], recvd[MAX_IDS], idchan[MAX_IDS];
};

/* ---- the operation catalogue --------------------------------------------- */

/* name, weight. The ones before SPAWN_AWAIT are "simple": a shield or a
 * deadline scope wraps one of them. */
#define OPS(X)                                                             \
	X(SLEEP, 3) X(YIELD, 2) X(CHAN_SEND, 7) X(CHAN_RECV, 7)            \
	X(SELECT, 5) X(LOCK, 4) X(SEM, 3) X(COND_PRODUCE, 3)               \
	X(COND_CONSUME, 3) X(FUT_SET, 2) X(FUT_AWAIT, 3) X(EVT_SET, 2)     \
	X(EVT_CLEAR, 1) X(EVT_WAIT, 2) X(SPAWN_AWAIT, 3) X(GATHER, 2)      \
	X(WAIT_ANY, 2) X(WAITSET, 2) X(GROUP, 2) X(AWAIT_OTHER, 2)         \
	X(DETACH, 1) X(CANCEL_RANDOM, 2) X(CANCEL_WAITING, 4)              \
	X(CANCEL_BEFORE_START, 2) X(IO_PAIR, 1) X(DEADLINE, 3) X(SHIELD, 3)

#define X_ENUM(n, w) OP_##n,
enum op { OPS(X_ENUM) OP__N };
#define X_W(n, w) w,
static const unsigned op_weight[] = { OPS(X_W) };
#define X_NAME(n, w) #n,
static const char *const op_name[] = { OPS(X_NAME) };
#define OP__SIMPLE OP_SPAWN_AWAIT

/* Kinds of wait a victim is cancelled in. */
#define VICTIMS(X)                                                         \
	X(RUNNING) X(SLEEP) X(CHAN_RECV) X(CHAN_SEND) X(CHAN_SEND_FULL)    \
	X(SELECT) X(LOCK) X(SEM) X(COND) X(FUTURE) X(EVENT) X(AWAIT)       \
	X(AWAIT_TIMEOUT) X(GATHER) X(WAIT_ANY) X(WAITSET) X(GROUP)         \
	X(IO_RECV) X(IO_SEND) X(SHIELD) X(DEADLINE)
#define X_VENUM(n) V_##n,
enum vkind { VICTIMS(X_VENUM) V__N };
#define X_VNAME(n) "victim:" #n,
static const char *const victim_name[] = { VICTIMS(X_VNAME) };

/* ---- global state -------------------------------------------------------- */

static struct {
	uint64_t seed;
	uint64_t start, end; /* weft_now() */
	weft_tls_key key;
	struct rec recs[MAX_RECS];
	struct rec shut; /* the test thread while weft_run() shuts down */
	atomic_int run_no, round_no, workers;
	atomic_int quit;
	pthread_t dog;
	atomic_int printed;

	atomic_long ops[OP__N], self_cancelled[OP__N];
	atomic_long tasks, rounds, runs, abandoned, values, bytes;
	atomic_long victims[V__N], victims_hit[V__N];
	atomic_long cbs_pinned, cbs_later, cbs_unpinned;
	atomic_long timeouts, cancels;
	atomic_long ns_active, ns_stop, ns_check; /* summed over rounds */
} tt;

static struct round the_round;

struct ctx {
	struct rec *me;
	struct round *r;
	uint64_t rng;
	int shield;	  /* our shield depth (mirrors the runtime's) */
	int wrap;	  /* nesting of shield/deadline wrappers */
	uint64_t op_start;
};

static inline uint32_t rnd(struct ctx *x, uint32_t n)
{
	return rnd_(&x->rng, n);
}

static inline bool stopping(struct ctx *x)
{
	return atomic_load(&x->r->stopping) != 0;
}

/* ---- failures ------------------------------------------------------------ */

static void tt_fail(const char *file, int line, struct ctx *x,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void tt_fail(const char *file, int line, struct ctx *x,
		    const char *fmt, ...)
{
	char msg[320], full[480];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full),
		 "%s [seed %#llx run %d (%d workers) round %d task #%u %s]",
		 msg, (unsigned long long)tt.seed, atomic_load(&tt.run_no),
		 atomic_load(&tt.workers), atomic_load(&tt.round_no),
		 x ? atomic_load(&x->me->id) : 0u,
		 x ? atomic_load(&x->me->role) : "round's end checks");
	wt_fail_(file, line, full);
	if (atomic_fetch_add(&tt.printed, 1) < 30)
		fprintf(stderr, "torture: FAIL %s:%d: %s\n", file, line, full);
}

#define TT_FAIL(x, ...) tt_fail(__FILE__, __LINE__, x, __VA_ARGS__)
#define TT_CHECK(x, c, ...) ((c) ? 1 : (TT_FAIL(x, __VA_ARGS__), 0))

/* ---- operation records --------------------------------------------------- */

#define OPF_SELF 0x1u /* -ECANCELED can only be the caller's own */

static inline void op_begin_at(struct ctx *x, const char *op, unsigned obj,
			       uint64_t t0)
{
	atomic_store_explicit(&x->me->op, op, memory_order_relaxed);
	atomic_store_explicit(&x->me->obj, obj, memory_order_relaxed);
	/* Release: the watchdog that reads t0 (acquire) sees op and obj. */
	atomic_store_explicit(&x->me->t0, t0 ? t0 : 1, memory_order_release);
	x->op_start = t0;
}

static inline void op_begin(struct ctx *x, const char *op, unsigned obj)
{
	op_begin_at(x, op, obj, weft_now());
}

/* An abandoned round after its main returned: the shutdown cancels the
 * tasks one by one, so a task may see another's cancellation before its
 * own. */
static inline bool in_shutdown(struct ctx *x)
{
	return x->r->abandon && atomic_load(&x->r->stopping);
}

/*
 * Ends the record and checks what every wait promises: -ECANCELED (when
 * it can only be ours) with a cancellation pending and no shield up;
 * -ETIMEDOUT not before the call's own timeout `to` nor before the scope's
 * deadline.
 */
static int op_end(struct ctx *x, int rc, unsigned flags, uint64_t to)
{
	const char *name = atomic_load_explicit(&x->me->op,
						memory_order_relaxed);

	atomic_store_explicit(&x->me->t0, 0, memory_order_relaxed);
	if (rc == -ECANCELED && (flags & OPF_SELF)) {
		TT_CHECK(x, x->shield == 0,
			 "%s returned -ECANCELED under a shield", name);
		TT_CHECK(x, weft_cancelled() == 1,
			 "%s returned -ECANCELED with no cancellation pending",
			 name);
	}
	if (rc == -ETIMEDOUT) {
		uint64_t now = weft_now(), dl = weft_deadline();
		bool own = to != WEFT_NEVER && now - x->op_start >= to;
		bool scope = dl != WEFT_NEVER && now >= dl;

		atomic_fetch_add(&tt.timeouts, 1);
		TT_CHECK(x, own || scope,
			 "%s returned -ETIMEDOUT early: %llu ns after it began, "
			 "timeout %lld ns, deadline %lld ns away",
			 name, (unsigned long long)(now - x->op_start),
			 to == WEFT_NEVER ? -1LL : (long long)to,
			 dl == WEFT_NEVER ? -1LL : (long long)(dl - now));
	}
	return rc;
}

/* A timeout for a waiting call: WEFT_NEVER (wait), 0 (poll) or up to
 * 1 ms. Under a shield always finite: a shielded wait must end by itself
 * (an abandoned round's shutdown cannot cancel it). */
static uint64_t tmode(struct ctx *x)
{
	uint32_t m = rnd(x, 20);

	if (m < 7 && x->shield == 0)
		return WEFT_NEVER;
	if (m < 11)
		return 0;
	return (uint64_t)(1 + rnd(x, 1000)) * US;
}

/* ---- channel values ------------------------------------------------------ */

#define ID2PTR(id) ((void *)(((uintptr_t)(id) << 4) | 0x8))

/* A fresh value for chan ci, 0 when the round has used them all. */
static unsigned new_id(struct round *r, unsigned ci)
{
	unsigned id = atomic_fetch_add(&r->next_id, 1);

	if (id >= MAX_IDS)
		return 0;
	atomic_store_explicit(&r->idchan[id], (unsigned char)(ci + 1),
			      memory_order_relaxed);
	return id;
}

static void mark_sent(struct ctx *x, unsigned id)
{
	TT_CHECK(x, atomic_fetch_add(&x->r->sent[id], 1) == 0,
		 "value %u marked sent twice", id);
	atomic_fetch_add(&tt.values, 1);
}

/* x is NULL for the controller's drain after the run. */
static void note_recv(struct ctx *x, struct round *r, void *v,
		      const char *where)
{
	uintptr_t p = (uintptr_t)v;
	unsigned id = (unsigned)(p >> 4);

	if (!TT_CHECK(x, (p & 0xf) == 0x8 && id >= 1 &&
			     id < atomic_load(&r->next_id) && id < MAX_IDS,
		      "%s received %p, which no task sent", where, v))
		return;
	TT_CHECK(x, atomic_fetch_add(&r->recvd[id], 1) == 0,
		 "%s received value %u (chan %d) a second time", where, id,
		 (int)atomic_load(&r->idchan[id]) - 1);
}

/* ---- spawning ------------------------------------------------------------ */

#define RESULT(c) ((void *)(uintptr_t)(0x7e570000u + atomic_load(&(c)->id)))

static void *expected_result(struct rec *c)
{
	return atomic_load(&c->failed) ? weft_err_ptr(-EIO) : RESULT(c);
}

static void *tt_body(void *arg);

/*
 * Reserves a record, or NULL (the round's records are used up, or it is
 * stopping). The seq_cst RMW on nrecs, then the load of stopping, pairs
 * with the controller's store of stopping, then its load of nrecs
 * (store buffering: both seq_cst): either we see stopping, or the
 * controller sees our record and waits for its pub.
 */
static struct rec *rec_new(struct ctx *x, enum kind k, const char *role,
			   void *arg)
{
	struct round *r = x->r;
	unsigned i = atomic_fetch_add(&r->nrecs, 1);
	struct rec *c;

	if (i >= r->max_recs)
		return NULL;
	c = &tt.recs[i];
	if (atomic_load(&r->stopping)) {
		atomic_store(&c->pub, 2);
		return NULL;
	}
	c->r = r;
	c->kind = k;
	c->arg = arg;
	c->depth = x->me->depth + 1;
	c->nops = 1 + rnd(x, r->actor_ops / (c->depth + 1) + 1);
	c->seed = mix64(r->seed ^ ((uint64_t)i << 20) ^ rnd(x, 1u << 30));
	atomic_store(&c->last_rc, NOT_REACHED);
	atomic_store(&c->role, role);
	atomic_store(&c->id, i);
	return c;
}

/* Registers h (adds the registry's reference). Never suspends. */
static void rec_publish(struct ctx *x, struct rec *c, weft_task *h)
{
	TT_CHECK(x, weft_task_retain(h) == 0, "retain of a new handle failed");
	atomic_store(&c->h, h);
	atomic_store(&c->pub, 1);
	atomic_fetch_add(&tt.tasks, 1);
}

/* Spawns c; returns the caller's handle, NULL on failure (c then
 * unused). how: 0 weft_spawn_opts, 1 weft_spawn, 2 weft_call_soon.
 * Never suspends. */
static weft_task *spawn_rec(struct ctx *x, struct rec *c, unsigned flags,
			    int how)
{
	struct weft_spawn_opts o;
	weft_task *h = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.name = atomic_load(&c->role);
	o.flags = flags;
	if (how == 1 && !flags) {
		h = weft_spawn(tt_body, c);
		rc = h ? 0 : -ENOMEM;
	} else if (how == 2 && !flags) {
		rc = weft_call_soon(&h, tt_body, c);
	} else {
		rc = weft_spawn_opts(&h, tt_body, c, &o);
	}
	if (rc < 0 || !h) {
		TT_CHECK(x, rc == -ENOMEM, "spawn failed: %d", rc);
		atomic_store(&c->pub, 2);
		return NULL;
	}
	rec_publish(x, c, h);
	return h;
}

static weft_task *spawn_kind(struct ctx *x, enum kind k, const char *role,
			     void *arg, struct rec **out)
{
	struct rec *c = rec_new(x, k, role, arg);
	weft_task *h;

	*out = NULL;
	if (!c)
		return NULL;
	h = spawn_rec(x, c, 0, (int)rnd(x, 3));
	if (h)
		*out = c;
	return h;
}

/* A child of a random kind: an actor while the depth allows, or a leaf. */
static weft_task *spawn_child(struct ctx *x, struct rec **out)
{
	if (x->me->depth < x->r->max_depth && rnd(x, 2))
		return spawn_kind(x, K_ACTOR, "actor", NULL, out);
	return spawn_kind(x, K_LEAF, "leaf", NULL, out);
}

/*
 * What an await of c may return: its result; -ECANCELED only if someone
 * cancelled it (or it is a group's, or we were); never 0 for a task
 * cancelled before it started.
 */
static void check_await(struct ctx *x, struct rec *c, int rc, void *res,
			const char *what)
{
	unsigned id = atomic_load(&c->id);

	switch (rc) {
	case 0:
		TT_CHECK(x, !atomic_load(&c->cbs),
			 "%s of task #%u cancelled before it started returned "
			 "0", what, id);
		TT_CHECK(x, res == expected_result(c),
			 "%s of task #%u: result %p, want %p", what, id, res,
			 expected_result(c));
		break;
	case -ECANCELED:
		TT_CHECK(x, atomic_load(&c->cancel_req) ||
				    atomic_load(&c->in_group) ||
				    weft_cancelled() || in_shutdown(x),
			 "%s of task #%u returned -ECANCELED, but nobody "
			 "cancelled it (nor the awaiter)", what, id);
		break;
	case -ETIMEDOUT:
	case -ENOMEM:
		break;
	default:
		TT_FAIL(x, "%s of task #%u: unexpected %d", what, id, rc);
	}
}

/* Awaits each handle (kids[i] its record, NULL: skip) and releases it. */
static void collect(struct ctx *x, weft_task **hs, struct rec **kids,
		    unsigned k)
{
	for (unsigned i = 0; i < k; i++) {
		void *res = NULL;
		int rc;

		if (!hs[i])
			continue;
		if (rnd(x, 4) == 0) {
			/* asyncio.wait_for, with or without cancelling. */
			unsigned fl = rnd(x, 2) ? WEFT_TIMEOUT_CANCEL : 0;
			uint64_t to = (uint64_t)rnd(x, 2000) * US;

			if (fl)
				atomic_store(&kids[i]->cancel_req, 1);
			op_begin(x, "await_timeout", OBJ(O_TASK,
				 atomic_load(&kids[i]->id)));
			rc = op_end(x, weft_await_timeout(hs[i], &res, to, fl),
				    0, to);
			if (rc == -ETIMEDOUT && fl)
				TT_CHECK(x, weft_task_done(hs[i]) == 1,
					 "await_timeout(CANCEL) timed out and "
					 "returned before task #%u ended",
					 atomic_load(&kids[i]->id));
			check_await(x, kids[i], rc, res, "await_timeout");
			if (rc != -ETIMEDOUT || fl)
				goto release;
		}
		op_begin(x, "await", OBJ(O_TASK, atomic_load(&kids[i]->id)));
		rc = op_end(x, weft_await(hs[i], &res), 0, WEFT_NEVER);
		check_await(x, kids[i], rc, res, "await");
release:
		TT_CHECK(x, weft_task_release(hs[i]) == 0, "release failed");
		hs[i] = NULL;
	}
}

/* ---- simple operations --------------------------------------------------- */

static int op_sleep(struct ctx *x)
{
	uint64_t ns = (uint64_t)rnd(x, 1000) * US;

	op_begin(x, "sleep", OBJ(O_NONE, 0));
	return op_end(x, weft_sleep(ns), OPF_SELF, WEFT_NEVER);
}

static int op_yield(struct ctx *x)
{
	op_begin(x, "yield", OBJ(O_NONE, 0));
	return op_end(x, weft_yield(), OPF_SELF, WEFT_NEVER);
}

static int op_chan_send(struct ctx *x)
{
	struct round *r = x->r;
	unsigned ci = rnd(x, r->nchan), id = new_id(r, ci);
	weft_chan *c = r->chan[ci].c;
	uint64_t to = tmode(x);
	bool try = false;
	int rc;

	if (!id)
		return 0;
	op_begin(x, "chan_send", OBJ(O_CHAN, ci));
	if (to == WEFT_NEVER && rnd(x, 2))
		rc = weft_chan_send(c, ID2PTR(id));
	else if (to == 0 && rnd(x, 2))
		try = true, rc = weft_chan_try_send(c, ID2PTR(id));
	else
		rc = weft_chan_send_timeout(c, ID2PTR(id), to);
	op_end(x, rc, OPF_SELF, to);
	if (rc == 0)
		mark_sent(x, id);
	else
		TT_CHECK(x, rc == -EPIPE || rc == -ECANCELED ||
				    rc == -ETIMEDOUT || (try && rc == -EAGAIN),
			 "chan_send: unexpected %d", rc);
	return rc;
}

static int op_chan_recv(struct ctx *x)
{
	struct round *r = x->r;
	unsigned ci = rnd(x, r->nchan);
	weft_chan *c = r->chan[ci].c;
	uint64_t to = tmode(x);
	void *v = NULL;
	bool try = false;
	int rc;

	op_begin(x, "chan_recv", OBJ(O_CHAN, ci));
	if (to == WEFT_NEVER && rnd(x, 2))
		rc = weft_chan_recv(c, &v);
	else if (to == 0 && rnd(x, 2))
		try = true, rc = weft_chan_try_recv(c, &v);
	else
		rc = weft_chan_recv_timeout(c, &v, to);
	op_end(x, rc, OPF_SELF, to);
	if (rc == 0)
		note_recv(x, r, v, "chan_recv");
	else
		TT_CHECK(x, rc == -EPIPE || rc == -ECANCELED ||
				    rc == -ETIMEDOUT || (try && rc == -EAGAIN),
			 "chan_recv: unexpected %d", rc);
	return rc;
}

static int op_select(struct ctx *x)
{
	struct round *r = x->r;
	struct weft_sel cs[4];
	unsigned ids[4], ci[4], used = 0;
	unsigned n = 1 + rnd(x, r->nchan < 4 ? r->nchan : 4);
	uint64_t to;
	int rc;

	memset(cs, 0, sizeof(cs));
	for (unsigned i = 0; i < n; i++) {
		unsigned c;

		do
			c = rnd(x, r->nchan);
		while (used & (1u << c));
		used |= 1u << c;
		ci[i] = c;
		cs[i].chan = r->chan[c].c;
		ids[i] = 0;
		if (rnd(x, 2)) {
			ids[i] = new_id(r, c);
			if (!ids[i])
				return 0;
			cs[i].op = WEFT_SEL_SEND;
			cs[i].value = ID2PTR(ids[i]);
		} else {
			cs[i].op = WEFT_SEL_RECV;
		}
		cs[i].result = 12345;
	}
	to = tmode(x);
	op_begin(x, "select", OBJ(O_CHAN, ci[0]));
	rc = op_end(x, weft_select(cs, n, to), OPF_SELF, to);
	for (unsigned i = 0; i < n; i++) {
		if ((int)i != rc) {
			TT_CHECK(x, cs[i].op != WEFT_SEL_RECV ||
					    cs[i].value == NULL,
				 "select: case %u not chosen (%d was) but "
				 "received %p", i, rc, cs[i].value);
			continue;
		}
		TT_CHECK(x, cs[i].result == 0 || cs[i].result == -EPIPE,
			 "select: chosen case %u has result %d", i,
			 cs[i].result);
		if (cs[i].result != 0)
			continue;
		if (cs[i].op == WEFT_SEL_SEND)
			mark_sent(x, ids[i]);
		else
			note_recv(x, r, cs[i].value, "select");
	}
	TT_CHECK(x, (rc >= 0 && rc < (int)n) || rc == -ETIMEDOUT ||
			    rc == -ECANCELED,
		 "select: returned %d (%u cases)", rc, n);
	return rc;
}

/* Inside a critical section of bound holders: checks the bound, stays a
 * random while (which may be cut short by a cancellation), leaves. */
static int hold(struct ctx *x, atomic_int *inside, int bound,
		const char *what, unsigned idx)
{
	int n = atomic_fetch_add(inside, 1) + 1, rc = 0;

	TT_CHECK(x, n <= bound, "%s %u: %d holders at once (bound %d)", what,
		 idx, n, bound);
	switch (rnd(x, 5)) {
	case 0:
		break;
	case 1:
		op_begin(x, "yield (holding)", OBJ(O_NONE, 0));
		rc = op_end(x, weft_yield(), OPF_SELF, WEFT_NEVER);
		break;
	case 2:
		wt_spin_us(rnd(x, 20));
		break;
	default:
		op_begin(x, "sleep (holding)", OBJ(O_NONE, 0));
		rc = op_end(x, weft_sleep((uint64_t)rnd(x, 200) * US),
			    OPF_SELF, WEFT_NEVER);
		break;
	}
	n = atomic_load(inside);
	TT_CHECK(x, n <= bound, "%s %u: %d holders at once (bound %d)", what,
		 idx, n, bound);
	atomic_fetch_sub(inside, 1);
	return rc;
}

static int op_lock(struct ctx *x)
{
	unsigned li = rnd(x, NLOCK);
	struct lock_s *L = &x->r->lock[li];
	uint64_t to = tmode(x);
	bool try = false;
	int rc;

	op_begin(x, "lock_acquire", OBJ(O_LOCK, li));
	if (to == 0 && rnd(x, 2))
		try = true, rc = weft_lock_try_acquire(L->l);
	else if (to == WEFT_NEVER && rnd(x, 2))
		rc = weft_lock_acquire(L->l);
	else
		rc = weft_lock_acquire_timeout(L->l, to);
	op_end(x, rc, OPF_SELF, to);
	if (rc) {
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT ||
				    (try && rc == -EBUSY),
			 "lock_acquire: unexpected %d", rc);
		return rc;
	}
	TT_CHECK(x, weft_lock_locked(L->l) == 1, "lock %u acquired but not "
		 "locked", li);
	L->plain++;
	atomic_fetch_add(&L->grants, 1);
	rc = hold(x, &L->inside, 1, "lock", li);
	TT_CHECK(x, weft_lock_release(L->l) == 0, "lock %u: release failed",
		 li);
	return rc;
}

static int op_sem(struct ctx *x)
{
	unsigned si = rnd(x, NSEM);
	struct sem_s *S = &x->r->sem[si];
	uint64_t to = tmode(x);
	bool try = false;
	int rc;

	op_begin(x, "sem_acquire", OBJ(O_SEM, si));
	if (to == 0 && rnd(x, 2))
		try = true, rc = weft_sem_try_acquire(S->s);
	else if (to == WEFT_NEVER && rnd(x, 2))
		rc = weft_sem_acquire(S->s);
	else
		rc = weft_sem_acquire_timeout(S->s, to);
	op_end(x, rc, OPF_SELF, to);
	if (rc) {
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT ||
				    (try && rc == -EAGAIN),
			 "sem_acquire: unexpected %d", rc);
		return rc;
	}
	rc = hold(x, &S->inside, (int)S->value, "sem", si);
	TT_CHECK(x, weft_sem_release(S->s) == 0, "sem %u: release failed", si);
	return rc;
}

/* Takes cond ci's lock; returns 0 with it held. */
static int cond_lock(struct ctx *x, unsigned ci)
{
	struct cond_s *C = &x->r->cond[ci];
	uint64_t to = tmode(x);
	int rc;

	op_begin(x, "lock_acquire (cond)", OBJ(O_COND, ci));
	rc = to == WEFT_NEVER ? weft_lock_acquire(C->l)
			      : weft_lock_acquire_timeout(C->l, to);
	op_end(x, rc, OPF_SELF, to);
	if (rc == 0)
		TT_CHECK(x, atomic_fetch_add(&C->inside, 1) == 0,
			 "cond %u: two holders of its lock", ci);
	else
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT,
			 "cond lock: unexpected %d", rc);
	return rc;
}

static void cond_unlock(struct ctx *x, unsigned ci)
{
	struct cond_s *C = &x->r->cond[ci];

	atomic_fetch_sub(&C->inside, 1);
	TT_CHECK(x, weft_lock_release(C->l) == 0, "cond %u: release failed",
		 ci);
}

static int op_cond_produce(struct ctx *x)
{
	unsigned ci = rnd(x, NCOND);
	struct cond_s *C = &x->r->cond[ci];
	int rc = cond_lock(x, ci);

	if (rc)
		return rc;
	C->tokens++;
	C->produced++;
	if (rnd(x, 4))
		weft_cond_notify(C->c, 1);
	else
		weft_cond_notify_all(C->c);
	cond_unlock(x, ci);
	return 0;
}

static int op_cond_consume(struct ctx *x)
{
	unsigned ci = rnd(x, NCOND);
	struct cond_s *C = &x->r->cond[ci];
	int rc = cond_lock(x, ci);

	if (rc)
		return rc;
	while (C->tokens == 0 && !C->stop) {
		uint64_t to = tmode(x);

		atomic_fetch_sub(&C->inside, 1);
		op_begin(x, "cond_wait", OBJ(O_COND, ci));
		rc = to == WEFT_NEVER ? weft_cond_wait(C->c, C->l)
				      : weft_cond_wait_timeout(C->c, C->l, to);
		op_end(x, rc, OPF_SELF, to);
		/* Whatever it returned, the lock is ours again. */
		TT_CHECK(x, atomic_fetch_add(&C->inside, 1) == 0,
			 "cond_wait (%d) returned while another held the lock",
			 rc);
		TT_CHECK(x, weft_lock_locked(C->l) == 1,
			 "cond_wait (%d) returned without the lock", rc);
		if (rc) {
			TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT,
				 "cond_wait: unexpected %d", rc);
			break;
		}
	}
	if (C->tokens > 0) {
		C->tokens--;
		C->consumed++;
	}
	cond_unlock(x, ci);
	return rc;
}

#define FUTV(fi, id)                                                       \
	((void *)(((uintptr_t)0xf00d << 32) | ((uintptr_t)(fi) << 16) | (id)))

/* Sets or fails future fi (x NULL: the controller at the round's end). */
static void fut_complete(struct ctx *x, struct round *r, unsigned fi,
			 bool fail, unsigned id)
{
	struct fut_s *F = &r->fut[fi];
	uintptr_t v = (uintptr_t)FUTV(fi, id), exp = 0;
	int rc = fail ? weft_future_fail(F->f, -EIO)
		      : weft_future_set(F->f, (void *)v);

	if (rc == 0)
		TT_CHECK(x, atomic_compare_exchange_strong(
				    &F->winner, &exp, fail ? FUT_FAILED : v),
			 "future %u: a second set/fail succeeded", fi);
	else
		TT_CHECK(x, rc == -EALREADY, "future set: unexpected %d", rc);
	TT_CHECK(x, weft_future_done(F->f) == 1,
		 "future %u not done after a set", fi);
}

static int op_fut_set(struct ctx *x)
{
	fut_complete(x, x->r, rnd(x, NFUT), rnd(x, 4) == 0,
		     atomic_load(&x->me->id));
	return 0;
}

static int op_fut_await(struct ctx *x)
{
	unsigned fi = rnd(x, NFUT);
	struct fut_s *F = &x->r->fut[fi];
	uint64_t to = tmode(x);
	uintptr_t got = 0, exp = 0;
	void *v = NULL;
	int rc;

	op_begin(x, "future_await", OBJ(O_FUT, fi));
	rc = to == WEFT_NEVER ? weft_future_await(F->f, &v)
			      : weft_future_await_timeout(F->f, &v, to);
	op_end(x, rc, OPF_SELF, to);
	if (rc == 0) {
		TT_CHECK(x, ((uintptr_t)v >> 32) == 0xf00d &&
				    (((uintptr_t)v >> 16) & 0xffff) == fi,
			 "future %u: awaited value %p is not one of its own",
			 fi, v);
		got = (uintptr_t)v;
	} else if (rc == -EIO) {
		got = FUT_FAILED;
	} else {
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT,
			 "future_await: unexpected %d", rc);
		return rc;
	}
	if (!atomic_compare_exchange_strong(&F->seen, &exp, got))
		TT_CHECK(x, exp == got,
			 "future %u: awaiters got different results (%#lx, "
			 "%#lx)", fi, (unsigned long)exp, (unsigned long)got);
	return rc;
}

static int op_evt_set(struct ctx *x)
{
	weft_event_set(x->r->evt[rnd(x, NEVT)]);
	return 0;
}

static int op_evt_clear(struct ctx *x)
{
	weft_event_clear(x->r->evt[rnd(x, NEVT)]);
	return 0;
}

static int op_evt_wait(struct ctx *x)
{
	unsigned ei = rnd(x, NEVT);
	uint64_t to = tmode(x);
	int rc;

	op_begin(x, "event_wait", OBJ(O_EVT, ei));
	rc = to == WEFT_NEVER ? weft_event_wait(x->r->evt[ei])
			      : weft_event_wait_timeout(x->r->evt[ei], to);
	op_end(x, rc, OPF_SELF, to);
	TT_CHECK(x, rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT,
		 "event_wait: unexpected %d", rc);
	return rc;
}

static int do_op(struct ctx *x, enum op op);

/* A random simple operation, or (nesting permitting) another wrapper. */
static int simple_op(struct ctx *x)
{
	enum op op;

	if (x->wrap < 3 && rnd(x, 6) == 0)
		op = rnd(x, 2) ? OP_SHIELD : OP_DEADLINE;
	else
		op = (enum op)rnd(x, OP__SIMPLE);
	return do_op(x, op);
}

static int op_deadline(struct ctx *x)
{
	uint64_t outer = weft_deadline(), d, saved, dl, now;
	int rc;

	now = weft_now();
	d = (uint64_t)(20 + rnd(x, 3000)) * US;
	saved = rnd(x, 2) ? weft_timeout_begin(d)
			  : weft_deadline_begin(now + d);
	dl = weft_deadline();
	TT_CHECK(x, saved == outer, "timeout_begin returned %llu, the "
		 "deadline in force was %llu", (unsigned long long)saved,
		 (unsigned long long)outer);
	/* The earliest wins: the outer one, or ours (now + d, taken a
	 * little later by timeout_begin). */
	TT_CHECK(x, dl <= outer &&
			    (dl == outer ||
			     (dl >= now + d && dl <= weft_now() + d)),
		 "scope deadline %llu: outer %llu, asked %llu + %llu",
		 (unsigned long long)dl, (unsigned long long)outer,
		 (unsigned long long)now, (unsigned long long)d);
	x->wrap++;
	rc = simple_op(x);
	x->wrap--;
	TT_CHECK(x, weft_deadline() == dl, "the deadline changed inside a "
		 "scope");
	weft_timeout_end(saved);
	TT_CHECK(x, weft_deadline() == outer,
		 "timeout_end did not restore the outer deadline");
	return rc;
}

static int op_shield(struct ctx *x)
{
	int rc;

	TT_CHECK(x, weft_shield_begin() == 0, "shield_begin failed");
	x->shield++;
	x->wrap++;
	rc = simple_op(x);
	x->wrap--;
	x->shield--;
	TT_CHECK(x, weft_shield_end() == 0, "shield_end failed");
	if (x->shield == 0 && weft_cancelled()) {
		/* The cancellation held back by the shield is reported by the
		 * first suspension after it drops. */
		op_begin(x, "yield (after shield)", OBJ(O_NONE, 0));
		rc = op_end(x, weft_yield(), OPF_SELF, WEFT_NEVER);
		TT_CHECK(x, rc == -ECANCELED, "first yield after a shield with "
			 "a cancellation pending returned %d", rc);
	}
	return rc;
}

/* ---- tasks awaiting tasks ------------------------------------------------ */

static unsigned spawn_kids(struct ctx *x, weft_task **hs, struct rec **kids,
			   unsigned k)
{
	unsigned n = 0;

	for (unsigned i = 0; i < k; i++) {
		hs[n] = spawn_child(x, &kids[n]);
		if (hs[n])
			n++;
	}
	/* Sometimes cancel one right away, or after a moment. */
	if (n && rnd(x, 4) == 0) {
		unsigned i = rnd(x, n);

		if (rnd(x, 2))
			weft_yield();
		atomic_store(&kids[i]->cancel_req, 1);
		TT_CHECK(x, weft_cancel(hs[i]) == 0 ||
				    weft_task_done(hs[i]) == 1,
			 "cancel of a live child failed");
	}
	return n;
}

static int op_spawn_await(struct ctx *x)
{
	weft_task *hs[MAX_KIDS];
	struct rec *kids[MAX_KIDS];
	unsigned n = spawn_kids(x, hs, kids, 1 + rnd(x, MAX_KIDS));

	collect(x, hs, kids, n);
	return 0;
}

static int op_gather(struct ctx *x)
{
	weft_task *hs[MAX_KIDS];
	struct rec *kids[MAX_KIDS];
	void *res[MAX_KIDS];
	unsigned n = spawn_kids(x, hs, kids, 1 + rnd(x, MAX_KIDS));
	bool any_cancel = false, want = rnd(x, 4) != 0;
	int rc;

	if (!n)
		return 0;
	op_begin(x, "gather", OBJ(O_TASK, atomic_load(&kids[0]->id)));
	rc = op_end(x, weft_gather(hs, n, want ? res : NULL), 0, WEFT_NEVER);
	for (unsigned i = 0; i < n; i++)
		any_cancel |= atomic_load(&kids[i]->cancel_req) != 0;
	if (rc == 0 && want) {
		for (unsigned i = 0; i < n; i++)
			check_await(x, kids[i], 0, res[i], "gather");
	} else if (rc) {
		TT_CHECK(x, (rc == -ECANCELED &&
			     (any_cancel || weft_cancelled() ||
			      in_shutdown(x))) ||
				    rc == -ETIMEDOUT || rc == -ENOMEM,
			 "gather: unexpected %d", rc);
	}
	collect(x, hs, kids, n);
	return rc;
}

static int op_wait_any(struct ctx *x)
{
	weft_task *hs[MAX_KIDS];
	struct rec *kids[MAX_KIDS];
	unsigned n = spawn_kids(x, hs, kids, 1 + rnd(x, MAX_KIDS));
	uint64_t to = tmode(x);
	int rc;

	if (!n)
		return 0;
	op_begin(x, "wait_any", OBJ(O_TASK, atomic_load(&kids[0]->id)));
	rc = op_end(x, weft_wait_any(hs, n, to), OPF_SELF, to);
	if (rc >= 0)
		TT_CHECK(x, rc < (int)n && weft_task_done(hs[rc]) == 1,
			 "wait_any returned %d, which has not ended", rc);
	else
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT,
			 "wait_any: unexpected %d", rc);
	collect(x, hs, kids, n);
	return rc;
}

static int op_waitset(struct ctx *x)
{
	weft_task *hs[MAX_KIDS];
	struct rec *kids[MAX_KIDS];
	unsigned n = spawn_kids(x, hs, kids, 1 + rnd(x, MAX_KIDS)), got = 0,
		 seen = 0;
	weft_waitset *ws;
	int rc = 0;

	if (!n)
		return 0;
	if (!TT_CHECK(x, weft_waitset_create(&ws, hs, n) == 0,
		      "waitset_create failed")) {
		collect(x, hs, kids, n);
		return 0;
	}
	for (unsigned tries = 0; tries < 4 * n + 4; tries++) {
		uint64_t to = tmode(x);

		op_begin(x, "waitset_next", OBJ(O_TASK,
			 atomic_load(&kids[0]->id)));
		rc = op_end(x, weft_waitset_next(ws, to), OPF_SELF, to);
		if (rc >= 0) {
			if (TT_CHECK(x, rc < (int)n && !(seen & (1u << rc)),
				     "waitset_next returned %d twice or out "
				     "of range", rc)) {
				seen |= 1u << rc;
				got++;
				TT_CHECK(x, weft_task_done(hs[rc]) == 1,
					 "waitset_next returned %d, which has "
					 "not ended", rc);
			}
			continue;
		}
		if (rc == -ENOENT) {
			TT_CHECK(x, got == n, "waitset: -ENOENT after %u of %u",
				 got, n);
			break;
		}
		TT_CHECK(x, rc == -ECANCELED || rc == -ETIMEDOUT,
			 "waitset_next: unexpected %d", rc);
		if (rc == -ECANCELED)
			break;
	}
	weft_waitset_destroy(ws);
	collect(x, hs, kids, n);
	return rc;
}

static int op_group(struct ctx *x)
{
	weft_task *hs[MAX_KIDS];
	struct rec *kids[MAX_KIDS];
	unsigned k = 1 + rnd(x, MAX_KIDS), n = 0;
	bool failer = false;
	weft_group *g;
	uint64_t saved = 0;
	bool scoped = rnd(x, 5) == 0;
	int rc;

	if (!TT_CHECK(x, weft_group_create(&g) == 0, "group_create failed"))
		return 0;
	for (unsigned i = 0; i < k; i++) {
		enum kind kd = rnd(x, 6) == 0 ? K_FAILER
			       : (x->me->depth < x->r->max_depth && rnd(x, 2))
				       ? K_ACTOR
				       : K_LEAF;
		struct rec *c = rec_new(x, kd, kd == K_FAILER ? "failer"
					       : kd == K_ACTOR ? "group actor"
							       : "group leaf",
					NULL);
		weft_task *h = NULL;

		if (!c)
			break;
		atomic_store(&c->in_group, 1);
		rc = weft_group_spawn(g, &h, tt_body, c);
		if (rc < 0) {
			atomic_store(&c->pub, 2);
			TT_CHECK(x, rc == -ECANCELED || rc == -ENOMEM,
				 "group_spawn: unexpected %d", rc);
			continue;
		}
		/* Ours (released after the checks) and the registry's. */
		rec_publish(x, c, h);
		hs[n] = h;
		kids[n++] = c;
		failer |= kd == K_FAILER;
		if (rnd(x, 8) == 0)
			weft_group_cancel(g);
	}
	if (n && rnd(x, 6) == 0) {
		unsigned i = rnd(x, n);

		atomic_store(&kids[i]->cancel_req, 1);
		weft_cancel(hs[i]);
	}
	if (scoped)
		saved = weft_timeout_begin((uint64_t)rnd(x, 2000) * US);
	op_begin(x, "group_wait", OBJ(O_GROUP, 0));
	rc = op_end(x, weft_group_wait(g), OPF_SELF, WEFT_NEVER);
	if (scoped)
		weft_timeout_end(saved);
	TT_CHECK(x, rc == 0 || (rc == -EIO && failer) || rc == -ECANCELED ||
			    rc == -ETIMEDOUT || rc == -ENOMEM,
		 "group_wait: unexpected %d (failing member: %d)", rc,
		 (int)failer);
	TT_CHECK(x, weft_group_size(g) == 0,
		 "group_wait returned %d with %zu members left", rc,
		 weft_group_size(g));
	for (unsigned i = 0; i < n; i++) {
		int d = weft_task_done(hs[i]);

		TT_CHECK(x, d == 1,
			 "group_wait returned %d before member #%u ended "
			 "(done %d; its body started %d, returned %d; %u "
			 "members, waiter cancelled %d, scoped %d)", rc,
			 atomic_load(&kids[i]->id), d,
			 atomic_load(&kids[i]->started),
			 atomic_load(&kids[i]->ended), n, weft_cancelled(),
			 (int)scoped);
		TT_CHECK(x, weft_task_release(hs[i]) == 0, "release failed");
	}
	weft_group_destroy(g);
	return rc;
}

/* A random published record (not the controller), or NULL. */
static struct rec *random_rec(struct ctx *x, weft_task **h)
{
	unsigned n = atomic_load(&x->r->nrecs);
	struct rec *c;

	if (n > x->r->max_recs)
		n = x->r->max_recs;
	if (n < 2)
		return NULL;
	c = &tt.recs[1 + rnd(x, n - 1)];
	if (atomic_load(&c->pub) != 1)
		return NULL;
	*h = atomic_load(&c->h);
	return c;
}

static int op_await_other(struct ctx *x)
{
	weft_task *h;
	struct rec *c = random_rec(x, &h);
	uint64_t to = (uint64_t)rnd(x, 2000) * US;
	void *res = NULL;
	int rc;

	if (!c)
		return 0;
	op_begin(x, "await_timeout (other)", OBJ(O_TASK,
		 atomic_load(&c->id)));
	rc = op_end(x, weft_await_timeout(h, &res, to, 0), 0, to);
	if (c == x->me)
		TT_CHECK(x, rc == -EDEADLK, "awaiting itself returned %d", rc);
	else if (rc == -ESRCH)
		/* The registry let go: only in an abandoned round. */
		TT_CHECK(x, x->r->abandon && stopping(x),
			 "await of a registered task: -ESRCH");
	else
		check_await(x, c, rc, res, "await_timeout (other)");
	return rc;
}

static int op_detach(struct ctx *x)
{
	struct rec *c;
	weft_task *h = spawn_child(x, &c);

	if (h)
		TT_CHECK(x, weft_detach(h) == 0, "detach failed");
	return 0;
}

static int op_cancel_random(struct ctx *x)
{
	weft_task *h;
	struct rec *c = random_rec(x, &h);
	int rc;

	if (!c)
		return 0;
	atomic_store(&c->cancel_req, 1);
	rc = weft_cancel(h);
	atomic_fetch_add(&tt.cancels, 1);
	TT_CHECK(x, rc == 0 || rc == -EALREADY ||
			    (rc == -ESRCH && x->r->abandon && stopping(x)),
		 "cancel: unexpected %d", rc);
	return 0;
}

/*
 * Cancelled before it started. Pinned children spawned from this task
 * cannot start before it suspends (their worker is this task's, busy
 * running it), so a cancel made before that is before their start: they
 * must never run. The flag goes up before the cancel; nothing between
 * the spawn and the cancel suspends.
 */
static int op_cancel_before_start(struct ctx *x)
{
	weft_task *hs[6];
	struct rec *kids[6];
	unsigned k = 1 + rnd(x, 6), n = 0, how = rnd(x, 4);

	if (how == 3) {
		/* call_later: cancelled well before the start moment. */
		struct rec *c = rec_new(x, K_LEAF, "later", NULL);
		uint64_t t0 = weft_now(), delay = (2 + rnd(x, 8)) * MS, t1;
		weft_task *h = NULL;
		int rc;

		if (!c)
			return 0;
		rc = weft_call_later(&h, delay, tt_body, c);
		if (rc < 0) {
			atomic_store(&c->pub, 2);
			return 0;
		}
		rec_publish(x, c, h);
		atomic_store(&c->cancel_req, 1);
		rc = weft_cancel(h);
		t1 = weft_now();
		TT_CHECK(x, rc == 0 || rc == -EALREADY,
			 "cancel of a call_later handle: %d", rc);
		/* A margin for the cancel's store to be seen: the start
		 * moment is at least t0 + delay. */
		if (rc == 0 && t1 + MS < t0 + delay) {
			atomic_store(&c->cbs, 1);
			atomic_fetch_add(&tt.cbs_later, 1);
		}
		hs[0] = h;
		kids[0] = c;
		collect(x, hs, kids, 1);
		return 0;
	}
	for (unsigned i = 0; i < k; i++) {
		struct rec *c = rec_new(x, K_LEAF, how ? "pinned" : "unpinned",
					NULL);
		weft_task *h;

		if (!c)
			break;
		h = spawn_rec(x, c, how ? WEFT_SPAWN_PINNED : 0, 0);
		if (!h)
			continue;
		if (rnd(x, 3)) {
			int rc;

			if (how)
				atomic_store(&c->cbs, 1);
			atomic_store(&c->cancel_req, 1);
			rc = weft_cancel(h);
			if (how)
				TT_CHECK(x, rc == 0, "cancel of a pinned task "
					 "that cannot have run yet: %d", rc);
			atomic_fetch_add(how ? &tt.cbs_pinned
					     : &tt.cbs_unpinned, 1);
		}
		hs[n] = h;
		kids[n++] = c;
	}
	collect(x, hs, kids, n);
	for (unsigned i = 0; i < n; i++)
		if (atomic_load(&kids[i]->cbs))
			TT_CHECK(x, atomic_load(&kids[i]->started) == 0,
				 "task #%u ran although cancelled before it "
				 "started", atomic_load(&kids[i]->id));
	return 0;
}

/* ---- cancelled while waiting on each kind of object ---------------------- */

struct victim {
	enum vkind kind;
	weft_chan *ch, *ch2;
	weft_lock *lk;
	weft_sem *sm;
	weft_cond *cv;
	weft_future *fu;
	weft_event *ev;
	weft_task *gate;
	struct rec *gate_rec;
	int fd[2];
	size_t prefill;
	bool cap1;
	atomic_int cancel_sent;
};

#define PRIVATE_V ((void *)(uintptr_t)0x5a5a5a58)

/* The victim's wait. Returns what the wait returned. */
static int victim_wait(struct ctx *x, struct victim *v)
{
	struct weft_sel cs[2];
	void *p = NULL;
	weft_task *hs[1];
	weft_waitset *ws;
	weft_group *g;
	char buf[4096];
	uint64_t saved;
	int rc = 0;

	atomic_store(&x->me->reached, 1);
	op_begin(x, victim_name[v->kind], OBJ(O_PRIVATE, v->kind));
	switch (v->kind) {
	case V_RUNNING:
		for (long i = 0; i < 100000000L; i++) {
			if ((rc = weft_yield()) != 0)
				break;
			wt_spin_us(rnd(x, 3));
		}
		break;
	case V_SLEEP:
		rc = weft_sleep(10 * SEC);
		break;
	case V_CHAN_RECV:
		rc = weft_chan_recv(v->ch, &p);
		break;
	case V_CHAN_SEND:
	case V_CHAN_SEND_FULL:
		rc = weft_chan_send(v->ch, ID2PTR(0));
		break;
	case V_SELECT:
		memset(cs, 0, sizeof(cs));
		cs[0].chan = v->ch;
		cs[0].op = WEFT_SEL_RECV;
		cs[1].chan = v->ch2;
		cs[1].op = WEFT_SEL_SEND;
		cs[1].value = ID2PTR(0);
		rc = weft_select(cs, 2, WEFT_NEVER);
		break;
	case V_LOCK:
		rc = weft_lock_acquire(v->lk);
		break;
	case V_SEM:
		rc = weft_sem_acquire(v->sm);
		break;
	case V_COND:
		rc = weft_lock_acquire(v->lk);
		if (rc)
			break;
		rc = weft_cond_wait(v->cv, v->lk);
		TT_CHECK(x, weft_lock_locked(v->lk) == 1,
			 "cancelled cond_wait returned without the lock");
		weft_lock_release(v->lk);
		break;
	case V_FUTURE:
		rc = weft_future_await(v->fu, &p);
		break;
	case V_EVENT:
		rc = weft_event_wait(v->ev);
		break;
	case V_AWAIT:
		rc = weft_await(v->gate, &p);
		break;
	case V_AWAIT_TIMEOUT:
		rc = weft_await_timeout(v->gate, &p, 10 * SEC,
					WEFT_TIMEOUT_CANCEL);
		break;
	case V_GATHER:
		hs[0] = v->gate;
		rc = weft_gather(hs, 1, NULL);
		break;
	case V_WAIT_ANY:
		hs[0] = v->gate;
		rc = weft_wait_any(hs, 1, WEFT_NEVER);
		break;
	case V_WAITSET:
		hs[0] = v->gate;
		rc = weft_waitset_create(&ws, hs, 1);
		if (rc)
			break;
		rc = weft_waitset_next(ws, WEFT_NEVER);
		weft_waitset_destroy(ws);
		break;
	case V_GROUP:
		rc = weft_group_create(&g);
		if (rc)
			break;
		{
			struct rec *c = rec_new(x, K_GATE, "group gate", v);
			weft_task *h;

			rc = NOT_REACHED; /* no member: no wait */
			if (c) {
				v->gate_rec = c;
				atomic_store(&c->in_group, 1);
				if (weft_group_spawn(g, &h, tt_body, c) == 0) {
					rec_publish(x, c, h);
					weft_task_release(h);
					rc = 0;
				} else {
					atomic_store(&c->pub, 2);
				}
			}
		}
		if (rc == 0)
			rc = weft_group_wait(g);
		TT_CHECK(x, weft_group_size(g) == 0, "cancelled group_wait "
			 "returned with members left");
		weft_group_destroy(g);
		break;
	case V_IO_RECV:
		rc = (int)weft_recv(v->fd[0], buf, sizeof(buf), 0);
		break;
	case V_IO_SEND:
		memset(buf, 0xab, sizeof(buf));
		rc = (int)weft_send(v->fd[0], buf, sizeof(buf), 0);
		break;
	case V_SHIELD:
		weft_shield_begin();
		x->shield++;
		rc = weft_sleep(rnd(x, 2000) * US);
		TT_CHECK(x, rc == 0, "shielded sleep returned %d", rc);
		/* Still shielded until the cancel has come for sure. */
		for (long i = 0; i < 1000000L &&
				    !atomic_load(&v->cancel_sent); i++)
			TT_CHECK(x, weft_yield() == 0,
				 "shielded yield returned non-zero");
		x->shield--;
		weft_shield_end();
		rc = weft_yield();
		TT_CHECK(x, rc == -ECANCELED || !atomic_load(&v->cancel_sent),
			 "first yield after the shield returned %d", rc);
		break;
	case V_DEADLINE:
		saved = weft_timeout_begin(10 * SEC);
		rc = weft_chan_recv(v->ch, &p);
		weft_timeout_end(saved);
		break;
	default:
		break;
	}
	atomic_store_explicit(&x->me->t0, 0, memory_order_relaxed);
	return rc;
}

static int victim_setup(struct ctx *x, struct victim *v)
{
	memset(v, 0, sizeof(*v));
	v->fd[0] = v->fd[1] = -1;
	v->kind = (enum vkind)rnd(x, V__N);
	switch (v->kind) {
	case V_CHAN_RECV:
	case V_DEADLINE:
		v->cap1 = rnd(x, 2);
		return weft_chan_create(&v->ch, v->cap1);
	case V_CHAN_SEND:
		return weft_chan_create(&v->ch, 0);
	case V_CHAN_SEND_FULL:
		if (weft_chan_create(&v->ch, 1))
			return -ENOMEM;
		return weft_chan_try_send(v->ch, PRIVATE_V);
	case V_SELECT:
		if (weft_chan_create(&v->ch, rnd(x, 2)))
			return -ENOMEM;
		return weft_chan_create(&v->ch2, 0);
	case V_LOCK:
		if (weft_lock_create(&v->lk))
			return -ENOMEM;
		return weft_lock_try_acquire(v->lk); /* held by us */
	case V_SEM:
		return weft_sem_create(&v->sm, 0, 0);
	case V_COND:
		if (weft_lock_create(&v->lk))
			return -ENOMEM;
		return weft_cond_create(&v->cv);
	case V_FUTURE:
		return weft_future_create(&v->fu);
	case V_EVENT:
	case V_AWAIT:
	case V_AWAIT_TIMEOUT:
	case V_GATHER:
	case V_WAIT_ANY:
	case V_WAITSET:
	case V_GROUP:
		if (weft_event_create(&v->ev))
			return -ENOMEM;
		if (v->kind == V_EVENT || v->kind == V_GROUP)
			return 0;
		v->gate = spawn_kind(x, K_GATE, "gate", v, &v->gate_rec);
		return v->gate ? 0 : -ENOMEM;
	case V_IO_RECV:
	case V_IO_SEND:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, v->fd))
			return -errno;
		if (v->kind == V_IO_SEND) {
			int sz = 4096;
			char b[1024];
			ssize_t s;

			memset(b, 0x11, sizeof(b));
			setsockopt(v->fd[0], SOL_SOCKET, SO_SNDBUF, &sz,
				   sizeof(sz));
			while ((s = send(v->fd[0], b, sizeof(b),
					 MSG_DONTWAIT)) > 0)
				v->prefill += (size_t)s;
		}
		return 0;
	default:
		return 0;
	}
}

/* After the victim has ended: it took nothing. Then frees. */
static void victim_after(struct ctx *x, struct victim *v, bool checks)
{
	void *p = NULL;
	char b[1024];
	ssize_t s;
	size_t got = 0;
	bool other = false;

	switch (checks ? v->kind : V__N) {
	case V_CHAN_RECV:
	case V_DEADLINE:
		/* No receiver left on it: a rendezvous send finds none. */
		if (!v->cap1)
			TT_CHECK(x, weft_chan_try_send(v->ch, PRIVATE_V) ==
					    -EAGAIN,
				 "%s: a cancelled receiver is still linked",
				 victim_name[v->kind]);
		break;
	case V_CHAN_SEND:
		TT_CHECK(x, weft_chan_try_recv(v->ch, &p) == -EAGAIN,
			 "cancelled rendezvous send: its value is still "
			 "offered (%p)", p);
		break;
	case V_CHAN_SEND_FULL:
		TT_CHECK(x, weft_chan_try_recv(v->ch, &p) == 0 &&
				    p == PRIVATE_V,
			 "full channel: first value %p", p);
		TT_CHECK(x, weft_chan_try_recv(v->ch, &p) == -EAGAIN,
			 "cancelled send to a full channel delivered %p", p);
		break;
	case V_SELECT:
		TT_CHECK(x, weft_chan_try_recv(v->ch2, &p) == -EAGAIN,
			 "cancelled select: its send case is still offered");
		if (!weft_chan_cap(v->ch))
			TT_CHECK(x, weft_chan_try_send(v->ch, PRIVATE_V) ==
					    -EAGAIN,
				 "cancelled select: its receive case is "
				 "still linked");
		break;
	case V_LOCK:
		TT_CHECK(x, weft_lock_release(v->lk) == 0, "release failed");
		TT_CHECK(x, weft_lock_try_acquire(v->lk) == 0,
			 "the lock went to a cancelled waiter");
		weft_lock_release(v->lk);
		break;
	case V_SEM:
		TT_CHECK(x, weft_sem_release(v->sm) == 0, "release failed");
		TT_CHECK(x, weft_sem_value(v->sm) == 1 &&
				    weft_sem_try_acquire(v->sm) == 0,
			 "the permit went to a cancelled waiter");
		break;
	case V_COND:
		TT_CHECK(x, weft_cond_notify(v->cv, 1) == 0,
			 "a cancelled cond waiter was still queued");
		TT_CHECK(x, weft_lock_locked(v->lk) == 0,
			 "the cancelled cond waiter kept the lock");
		break;
	case V_IO_RECV:
		/* The cancelled read is gone from the kernel: a byte sent
		 * now is ours to read. */
		TT_CHECK(x, send(v->fd[1], "z", 1, MSG_DONTWAIT) == 1,
			 "send failed");
		s = recv(v->fd[0], b, 1, MSG_DONTWAIT);
		TT_CHECK(x, s == 1 && b[0] == 'z',
			 "a cancelled weft_recv consumed data (recv: %zd)", s);
		break;
	case V_IO_SEND:
		while ((s = recv(v->fd[1], b, sizeof(b), MSG_DONTWAIT)) > 0) {
			for (ssize_t i = 0; i < s; i++)
				other |= b[i] != 0x11;
			got += (size_t)s;
		}
		TT_CHECK(x, got == v->prefill && !other,
			 "a cancelled weft_send wrote data: %zu bytes read, "
			 "%zu prefilled (foreign bytes: %d)", got, v->prefill,
			 (int)other);
		break;
	default:
		break;
	}
	if (v->ev)
		weft_event_set(v->ev);
	if (v->gate) {
		int rc;
		void *res = NULL;

		weft_shield_begin();
		rc = weft_await(v->gate, &res);
		weft_shield_end();
		check_await(x, v->gate_rec, rc, res, "await of a gate");
		weft_task_release(v->gate);
	}
	weft_chan_destroy(v->ch);
	weft_chan_destroy(v->ch2);
	weft_lock_destroy(v->lk);
	weft_sem_destroy(v->sm);
	weft_cond_destroy(v->cv);
	weft_future_destroy(v->fu);
	weft_event_destroy(v->ev);
	if (v->fd[0] >= 0) {
		close(v->fd[0]);
		close(v->fd[1]);
	}
}

static int op_cancel_waiting(struct ctx *x)
{
	struct victim v;
	struct rec *c;
	weft_task *h;
	uint64_t limit;
	int rc, lrc;
	void *res = NULL;

	if (victim_setup(x, &v) != 0) {
		victim_after(x, &v, false);
		return 0;
	}
	h = spawn_kind(x, K_VICTIM, victim_name[v.kind], &v, &c);
	if (!h) {
		victim_after(x, &v, false);
		return 0;
	}
	atomic_fetch_add(&tt.victims[v.kind], 1);
	/* Until it is in its wait (or done: someone else cancelled it). */
	limit = weft_now() + 2 * SEC * WT_SLOW;
	op_begin(x, "yield (until the victim waits)",
		 OBJ(O_TASK, atomic_load(&c->id)));
	while (!atomic_load(&c->reached) && weft_task_done(h) != 1 &&
	       weft_now() < limit)
		weft_yield();
	op_end(x, 0, 0, WEFT_NEVER);
	switch (rnd(x, 4)) {
	case 0:
		break; /* perhaps before it parks */
	case 1:
		weft_yield();
		break;
	default:
		op_begin(x, "sleep (before the cancel)", OBJ(O_NONE, 0));
		op_end(x, weft_sleep((uint64_t)rnd(x, 300) * US), OPF_SELF,
		       WEFT_NEVER);
		break;
	}
	atomic_store(&c->cancel_req, 1);
	rc = weft_cancel(h);
	atomic_store(&v.cancel_sent, 1);
	TT_CHECK(x, rc == 0 || rc == -EALREADY, "cancel: %d", rc);
	/* Shielded: the victim uses our stack's objects. */
	weft_shield_begin();
	x->shield++;
	op_begin(x, "await (cancelled victim)",
		 OBJ(O_TASK, atomic_load(&c->id)));
	rc = op_end(x, weft_await(h, &res), 0, WEFT_NEVER);
	x->shield--;
	weft_shield_end();
	lrc = atomic_load(&c->last_rc);
	if (v.kind == V_SHIELD) {
		/* Its wait was shielded; the yield after it reported it. */
		TT_CHECK(x, lrc == NOT_REACHED || lrc == -ECANCELED,
			 "%s: %d", victim_name[v.kind], lrc);
	} else if (v.kind == V_IO_SEND && lrc > 0 && lrc != NOT_REACHED) {
		TT_FAIL(x, "%s: a send to a full socket returned %d",
			victim_name[v.kind], lrc);
	} else if (lrc >= 0 && lrc != NOT_REACHED && v.gate_rec &&
		   (atomic_load(&v.gate_rec->cancel_req) || in_shutdown(x))) {
		/* Someone else cancelled the task it waited for: that one
		 * ended, and the wait may have completed. */
	} else {
		/* Or it never reached its wait (cancelled before). */
		TT_CHECK(x, lrc == -ECANCELED || lrc == NOT_REACHED,
			 "%s: the cancelled wait returned %d",
			 victim_name[v.kind], lrc);
	}
	if (lrc == -ECANCELED)
		atomic_fetch_add(&tt.victims_hit[v.kind], 1);
	TT_CHECK(x, rc == -ECANCELED || rc == 0,
		 "await of a cancelled victim: %d", rc);
	TT_CHECK(x, weft_task_release(h) == 0, "release failed");
	victim_after(x, &v, true);
	return 0;
}

/* ---- socketpairs --------------------------------------------------------- */

static inline uint8_t pat_byte(uint64_t pat, uint64_t pos)
{
	return (uint8_t)(mix64(pat + (pos >> 3)) >> ((pos & 7) * 8));
}

static void *writer_body(struct ctx *x)
{
	struct pair *p = x->me->arg;
	size_t total = 1 + rnd(x, 96 * 1024), pos = 0;
	char *b = malloc(8192);

	if (!b)
		goto out;
	while (pos < total && !stopping(x)) {
		size_t n = 1 + rnd(x, (uint32_t)(total - pos < 8192
							 ? total - pos
							 : 8192));
		bool scoped = rnd(x, 4) == 0;
		uint64_t saved = 0;
		ssize_t rc;

		for (size_t i = 0; i < n; i++)
			b[i] = (char)pat_byte(p->pat, pos + i);
		if (scoped)
			saved = weft_timeout_begin((20 + rnd(x, 2000)) * US);
		op_begin(x, "weft_send", OBJ(O_PAIR, p - x->r->pair));
		switch (rnd(x, 3)) {
		case 0:
			rc = weft_send(p->fd[0], b, n, 0);
			break;
		case 1:
			rc = weft_write(p->fd[0], b, n, -1);
			break;
		default: {
			struct iovec iov[2] = { { b, n / 2 },
						{ b + n / 2, n - n / 2 } };
			rc = weft_writev(p->fd[0], iov, 2, -1);
			break;
		}
		}
		op_end(x, (int)rc, OPF_SELF, WEFT_NEVER);
		if (scoped)
			weft_timeout_end(saved);
		if (rc > 0) {
			TT_CHECK(x, (size_t)rc <= n, "wrote %zd of %zu", rc, n);
			pos += (size_t)rc;
			atomic_store(&p->written, (long)pos);
			atomic_fetch_add(&tt.bytes, rc);
			continue;
		}
		if (rc == -ETIMEDOUT)
			continue;
		TT_CHECK(x, rc == -ECANCELED || rc == -EPIPE ||
				    rc == -ECONNRESET,
			 "socket write: unexpected %zd", rc);
		break;
	}
out:
	free(b);
	atomic_store(&p->written, (long)pos);
	shutdown(p->fd[0], SHUT_WR);
	return RESULT(x->me);
}

static void *reader_body(struct ctx *x)
{
	struct pair *p = x->me->arg;
	size_t pos = 0;
	char *b = malloc(8192);

	while (b) {
		size_t n = 1 + rnd(x, 8192);
		bool scoped = rnd(x, 4) == 0;
		uint64_t saved = 0;
		ssize_t rc;

		if (scoped)
			saved = weft_timeout_begin((20 + rnd(x, 2000)) * US);
		op_begin(x, "weft_recv", OBJ(O_PAIR, p - x->r->pair));
		switch (rnd(x, 3)) {
		case 0:
			rc = weft_recv(p->fd[1], b, n, 0);
			break;
		case 1:
			rc = weft_read(p->fd[1], b, n, -1);
			break;
		default: {
			struct iovec iov[2] = { { b, n / 3 },
						{ b + n / 3, n - n / 3 } };
			rc = weft_readv(p->fd[1], iov, 2, -1);
			break;
		}
		}
		op_end(x, (int)rc, OPF_SELF, WEFT_NEVER);
		if (scoped)
			weft_timeout_end(saved);
		if (rc > 0) {
			size_t bad = (size_t)rc;

			for (size_t i = 0; i < (size_t)rc; i++)
				if ((uint8_t)b[i] != pat_byte(p->pat, pos + i)) {
					bad = i;
					break;
				}
			if (!TT_CHECK(x, bad == (size_t)rc,
				      "socketpair %td: byte %zu is %#x, want "
				      "%#x (stream out of order or lost)",
				      p - x->r->pair, pos + bad,
				      (uint8_t)b[bad],
				      pat_byte(p->pat, pos + bad)))
				break;
			pos += (size_t)rc;
			continue;
		}
		if (rc == 0) {
			long w = atomic_load(&p->written);

			atomic_store(&p->eof, 1);
			TT_CHECK(x, (long)pos == w,
				 "socketpair %td: %zu bytes arrived before end "
				 "of file, the writer wrote %ld",
				 p - x->r->pair, pos, w);
			break;
		}
		if (rc == -ETIMEDOUT)
			continue;
		TT_CHECK(x, rc == -ECANCELED, "socket read: unexpected %zd", rc);
		break;
	}
	free(b);
	/* The writer's sends fail with -EPIPE from now on. */
	shutdown(p->fd[1], SHUT_RD);
	return RESULT(x->me);
}

static int op_io_pair(struct ctx *x)
{
	struct round *r = x->r;
	unsigned pi = atomic_fetch_add(&r->npairs, 1);
	struct pair *p;
	weft_task *hs[2] = { NULL, NULL };
	struct rec *kids[2] = { NULL, NULL };
	int sz;

	if (pi >= MAX_PAIRS)
		return 0;
	p = &r->pair[pi];
	memset(p, 0, sizeof(*p));
	p->pat = mix64(r->seed + pi);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->fd)) {
		p->fd[0] = p->fd[1] = -1;
		atomic_store(&r->pair_ready[pi], 1);
		return 0;
	}
	if (rnd(x, 2)) {
		sz = 2048 << rnd(x, 6);
		setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(p->fd[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	hs[0] = spawn_kind(x, K_WRITER, "writer", p, &kids[0]);
	hs[1] = spawn_kind(x, K_READER, "reader", p, &kids[1]);
	p->wr = kids[0];
	p->rd = kids[1];
	/* Release: the controller sees fds and records. */
	atomic_store(&r->pair_ready[pi], 1);
	if (rnd(x, 3)) {
		collect(x, hs, kids, 2);
	} else {
		/* Left to the controller. */
		if (hs[0])
			weft_task_release(hs[0]);
		if (hs[1])
			weft_task_release(hs[1]);
	}
	return 0;
}

/* ---- actors and other bodies --------------------------------------------- */

static int do_op(struct ctx *x, enum op op)
{
	int rc = 0;

	atomic_fetch_add(&tt.ops[op], 1);
	switch (op) {
	case OP_SLEEP: rc = op_sleep(x); break;
	case OP_YIELD: rc = op_yield(x); break;
	case OP_CHAN_SEND: rc = op_chan_send(x); break;
	case OP_CHAN_RECV: rc = op_chan_recv(x); break;
	case OP_SELECT: rc = op_select(x); break;
	case OP_LOCK: rc = op_lock(x); break;
	case OP_SEM: rc = op_sem(x); break;
	case OP_COND_PRODUCE: rc = op_cond_produce(x); break;
	case OP_COND_CONSUME: rc = op_cond_consume(x); break;
	case OP_FUT_SET: rc = op_fut_set(x); break;
	case OP_FUT_AWAIT: rc = op_fut_await(x); break;
	case OP_EVT_SET: rc = op_evt_set(x); break;
	case OP_EVT_CLEAR: rc = op_evt_clear(x); break;
	case OP_EVT_WAIT: rc = op_evt_wait(x); break;
	case OP_SPAWN_AWAIT: rc = op_spawn_await(x); break;
	case OP_GATHER: rc = op_gather(x); break;
	case OP_WAIT_ANY: rc = op_wait_any(x); break;
	case OP_WAITSET: rc = op_waitset(x); break;
	case OP_GROUP: rc = op_group(x); break;
	case OP_AWAIT_OTHER: rc = op_await_other(x); break;
	case OP_DETACH: rc = op_detach(x); break;
	case OP_CANCEL_RANDOM: rc = op_cancel_random(x); break;
	case OP_CANCEL_WAITING: rc = op_cancel_waiting(x); break;
	case OP_CANCEL_BEFORE_START: rc = op_cancel_before_start(x); break;
	case OP_IO_PAIR: rc = op_io_pair(x); break;
	case OP_DEADLINE: rc = op_deadline(x); break;
	case OP_SHIELD: rc = op_shield(x); break;
	default: break;
	}
	if (rc == -ECANCELED && weft_cancelled())
		atomic_fetch_add(&tt.self_cancelled[op], 1);
	return rc;
}

/* The sum of op_weight[], set before any runtime starts. */
static unsigned op_total;

static enum op pick_op(struct ctx *x)
{
	unsigned w = rnd(x, op_total);

	for (int i = 0; i < OP__N; i++) {
		if (w < op_weight[i])
			return (enum op)i;
		w -= op_weight[i];
	}
	return OP_YIELD;
}

static void *actor_body(struct ctx *x)
{
	for (unsigned i = 0; i < x->me->nops && !stopping(x); i++) {
		int rc = do_op(x, pick_op(x));

		/* A cancelled task mostly winds down; sometimes it goes on,
		 * and every wait must then fail at once. */
		if (rc == -ECANCELED && weft_cancelled() && rnd(x, 4))
			break;
	}
	return RESULT(x->me);
}

static void *leaf_body(struct ctx *x)
{
	switch (rnd(x, 4)) {
	case 0:
		break;
	case 1:
		op_begin(x, "yield", OBJ(O_NONE, 0));
		op_end(x, weft_yield(), OPF_SELF, WEFT_NEVER);
		break;
	case 2:
		wt_spin_us(rnd(x, 30));
		break;
	default:
		op_begin(x, "sleep", OBJ(O_NONE, 0));
		op_end(x, weft_sleep((uint64_t)rnd(x, 300) * US), OPF_SELF,
		       WEFT_NEVER);
		break;
	}
	return RESULT(x->me);
}

static void *failer_body(struct ctx *x)
{
	op_begin(x, "sleep", OBJ(O_NONE, 0));
	op_end(x, weft_sleep((uint64_t)rnd(x, 300) * US), OPF_SELF,
	       WEFT_NEVER);
	if (weft_cancelled())
		return RESULT(x->me);
	atomic_store(&x->me->failed, 1);
	return weft_err_ptr(-EIO);
}

/* Waits on the victim's private event (set once the victim is done). */
static void *gate_body(struct ctx *x)
{
	struct victim *v = x->me->arg;

	op_begin(x, "event_wait (gate)", OBJ(O_PRIVATE, v->kind));
	op_end(x, weft_event_wait(v->ev), OPF_SELF, WEFT_NEVER);
	return RESULT(x->me);
}

static void *victim_body(struct ctx *x)
{
	struct victim *v = x->me->arg;

	atomic_store(&x->me->last_rc, victim_wait(x, v));
	return RESULT(x->me);
}

static void tls_dtor(void *p)
{
	struct rec *c = p;

	atomic_fetch_add(&c->dtor, 1);
}

static void *tt_body(void *arg)
{
	struct rec *c = arg;
	struct ctx x;
	void *res;

	memset(&x, 0, sizeof(x));
	x.me = c;
	x.r = c->r;
	x.rng = c->seed;
	if (atomic_fetch_add(&c->started, 1) != 0)
		TT_FAIL(&x, "the body of task #%u ran twice",
			atomic_load(&c->id));
	if (atomic_load(&c->cbs))
		TT_FAIL(&x, "task #%u (%s) ran although cancelled before it "
			"started (weft_cancel() returned 0 before it could "
			"run)", atomic_load(&c->id), atomic_load(&c->role));
	TT_CHECK(&x, weft_tls_get(tt.key) == NULL,
		 "a new task sees a task-local value");
	if (weft_tls_set(tt.key, c) == 0)
		atomic_store(&c->tls_ok, 1);
	switch (c->kind) {
	case K_ACTOR: res = actor_body(&x); break;
	case K_LEAF: res = leaf_body(&x); break;
	case K_FAILER: res = failer_body(&x); break;
	case K_VICTIM: res = victim_body(&x); break;
	case K_GATE: res = gate_body(&x); break;
	case K_WRITER: res = writer_body(&x); break;
	case K_READER: res = reader_body(&x); break;
	default: res = NULL; break;
	}
	TT_CHECK(&x, x.shield == 0, "shield left up");
	if (atomic_fetch_add(&c->ended, 1) != 0)
		TT_FAIL(&x, "the body of task #%u returned twice",
			atomic_load(&c->id));
	return res;
}

/* ---- the controller ------------------------------------------------------ */

struct run {
	int no;
	unsigned workers;
	uint64_t seed, end;
	bool abandon_last;
	bool abandoned; /* the last round was abandoned: check after */
};

static void rec_reset(struct rec *c)
{
	c->r = NULL;
	c->arg = NULL;
	c->depth = 0;
	atomic_store(&c->role, NULL);
	atomic_store(&c->op, NULL);
	atomic_store(&c->obj, 0);
	atomic_store(&c->t0, 0);
	atomic_store(&c->h, NULL);
	atomic_store(&c->pub, 0);
	atomic_store(&c->cancel_req, 0);
	atomic_store(&c->cbs, 0);
	atomic_store(&c->in_group, 0);
	atomic_store(&c->started, 0);
	atomic_store(&c->ended, 0);
	atomic_store(&c->dtor, 0);
	atomic_store(&c->tls_ok, 0);
	atomic_store(&c->failed, 0);
	atomic_store(&c->reached, 0);
	atomic_store(&c->last_rc, NOT_REACHED);
}

/* Object creation in the runtime (no cr_assert in a task). */
static void must(int rc)
{
	if (rc) {
		fprintf(stderr, "torture: creating an object failed: %d\n", rc);
		abort();
	}
}

static void round_init(struct round *r, uint64_t *rng, unsigned no,
		       bool abandon)
{
	static const size_t caps[] = { 0, 0, 1, 2, 8, 64 };
	unsigned prev = atomic_load(&r->nrecs), ids = atomic_load(&r->next_id);

	if (prev > MAX_RECS)
		prev = MAX_RECS;
	for (unsigned i = 0; i < prev; i++)
		rec_reset(&tt.recs[i]);
	if (ids > MAX_IDS)
		ids = MAX_IDS;
	memset(r->sent, 0, ids);
	memset(r->recvd, 0, ids);
	memset(r->idchan, 0, ids);
	atomic_store(&r->next_id, 1);
	atomic_store(&r->stopping, 0);
	atomic_store(&r->npairs, 0);
	for (unsigned i = 0; i < MAX_PAIRS; i++)
		atomic_store(&r->pair_ready[i], 0);
	r->no = no;
	r->seed = mix64(*rng += 0x5bd1e995);
	r->abandon = abandon;
	r->max_depth = 1 + rnd_(rng, 3);
	r->max_recs = (150 + rnd_(rng, 900)) / (WT_SLOW > 1 ? WT_SLOW / 2 : 1);
	r->actor_ops = (8 + rnd_(rng, 40)) / (WT_SLOW > 1 ? 2 : 1);
	r->nchan = 2 + rnd_(rng, NCHAN - 1);
	for (unsigned i = 0; i < r->nchan; i++) {
		r->chan[i].cap = caps[rnd_(rng, 6)];
		must(weft_chan_create(&r->chan[i].c, r->chan[i].cap));
	}
	for (unsigned i = 0; i < NLOCK; i++) {
		must(weft_lock_create(&r->lock[i].l));
		atomic_store(&r->lock[i].inside, 0);
		atomic_store(&r->lock[i].grants, 0);
		r->lock[i].plain = 0;
	}
	for (unsigned i = 0; i < NSEM; i++) {
		r->sem[i].value = 1 + rnd_(rng, 3);
		must(weft_sem_create(&r->sem[i].s, r->sem[i].value,
				     rnd_(rng, 2) ? WEFT_SEM_BOUNDED : 0));
		atomic_store(&r->sem[i].inside, 0);
	}
	for (unsigned i = 0; i < NCOND; i++) {
		struct cond_s *C = &r->cond[i];

		must(weft_cond_create(&C->c));
		must(weft_lock_create(&C->l));
		atomic_store(&C->inside, 0);
		C->tokens = C->produced = C->consumed = 0;
		C->stop = false;
	}
	for (unsigned i = 0; i < NFUT; i++) {
		must(weft_future_create(&r->fut[i].f));
		atomic_store(&r->fut[i].winner, 0);
		atomic_store(&r->fut[i].seen, 0);
	}
	for (unsigned i = 0; i < NEVT; i++)
		must(weft_event_create(&r->evt[i]));
	/* The controller's record. */
	tt.recs[0].r = r;
	tt.recs[0].depth = 0;
	atomic_store(&tt.recs[0].role, "controller");
	atomic_store(&tt.recs[0].id, 0);
	atomic_store(&r->nrecs, 1);
}

/*
 * Ends every wait of the round: channels closed, events and futures set,
 * conditions stopped, and sockets whose peer task has ended shut down.
 * Repeated while tasks remain (an actor may clear an event after it).
 */
static void wake_all(struct ctx *x, struct round *r)
{
	for (unsigned i = 0; i < r->nchan; i++)
		weft_chan_close(r->chan[i].c);
	for (unsigned i = 0; i < NEVT; i++)
		weft_event_set(r->evt[i]);
	for (unsigned i = 0; i < NFUT; i++)
		if (!weft_future_done(r->fut[i].f))
			fut_complete(x, r, i, false, 0);
	for (unsigned i = 0; i < NCOND; i++) {
		struct cond_s *C = &r->cond[i];

		if (C->stop)
			continue; /* only we set it, under the lock */
		op_begin(x, "lock_acquire (stop cond)", OBJ(O_COND, i));
		op_end(x, weft_lock_acquire(C->l), 0, WEFT_NEVER);
		C->stop = true;
		weft_cond_notify_all(C->c);
		weft_lock_release(C->l);
	}
	for (unsigned i = 0; i < MAX_PAIRS && i < atomic_load(&r->npairs);
	     i++) {
		struct pair *p = &r->pair[i];

		if (!atomic_load(&r->pair_ready[i]) || p->fd[0] < 0)
			continue;
		if (!p->shut_w && (!p->wr || atomic_load(&p->wr->ended) ||
				   weft_task_done(atomic_load(&p->wr->h)) == 1)) {
			shutdown(p->fd[0], SHUT_WR);
			p->shut_w = true;
		}
		if (!p->shut_r && (!p->rd || atomic_load(&p->rd->ended) ||
				   weft_task_done(atomic_load(&p->rd->h)) == 1)) {
			shutdown(p->fd[1], SHUT_RD);
			p->shut_r = true;
		}
	}
}

static unsigned recs_used(struct round *r)
{
	unsigned n = atomic_load(&r->nrecs);

	return n > r->max_recs ? r->max_recs : n;
}

/* Checks that need no task: values, locks, semaphores, conditions,
 * futures; then frees the objects. Every task of the round has ended. */
static void round_check_objects(struct round *r)
{
	unsigned ids = atomic_load(&r->next_id), bad = 0;
	void *v;

	if (ids > MAX_IDS)
		ids = MAX_IDS;
	for (unsigned i = 0; i < r->nchan; i++) {
		weft_chan_close(r->chan[i].c);
		while (weft_chan_try_recv(r->chan[i].c, &v) == 0)
			note_recv(NULL, r, v, "the drain at the round's end");
		weft_chan_destroy(r->chan[i].c);
	}
	for (unsigned id = 1; id < ids; id++) {
		unsigned s = atomic_load(&r->sent[id]),
			 g = atomic_load(&r->recvd[id]);

		int ci = (int)atomic_load(&r->idchan[id]) - 1;

		if (s != g && bad++ < 5)
			TT_FAIL(NULL, "value %u on chan %d (capacity %zu): "
				"sent %u time(s), received %u time(s)", id, ci,
				ci >= 0 ? r->chan[ci].cap : 0, s, g);
	}
	for (unsigned i = 0; i < NLOCK; i++) {
		TT_CHECK(NULL, weft_lock_locked(r->lock[i].l) == 0 &&
				       atomic_load(&r->lock[i].inside) == 0,
			 "lock %u still held at the round's end", i);
		TT_CHECK(NULL, r->lock[i].plain ==
				       atomic_load(&r->lock[i].grants),
			 "lock %u: a plain counter under the lock is %ld, "
			 "grants %ld", i, r->lock[i].plain,
			 atomic_load(&r->lock[i].grants));
		weft_lock_destroy(r->lock[i].l);
	}
	for (unsigned i = 0; i < NSEM; i++) {
		TT_CHECK(NULL, weft_sem_value(r->sem[i].s) == r->sem[i].value,
			 "sem %u: %u permits at the end, %u at the start", i,
			 weft_sem_value(r->sem[i].s), r->sem[i].value);
		weft_sem_destroy(r->sem[i].s);
	}
	for (unsigned i = 0; i < NCOND; i++) {
		struct cond_s *C = &r->cond[i];

		TT_CHECK(NULL, weft_lock_locked(C->l) == 0,
			 "cond %u: lock still held", i);
		TT_CHECK(NULL, C->tokens == C->produced - C->consumed &&
				       C->tokens >= 0,
			 "cond %u: tokens %ld, produced %ld, consumed %ld", i,
			 C->tokens, C->produced, C->consumed);
		weft_cond_destroy(C->c);
		weft_lock_destroy(C->l);
	}
	for (unsigned i = 0; i < NFUT; i++) {
		uintptr_t s = atomic_load(&r->fut[i].seen),
			  w = atomic_load(&r->fut[i].winner);

		TT_CHECK(NULL, !s || s == w,
			 "future %u: awaiters got %#lx, the successful set "
			 "was %#lx", i, (unsigned long)s, (unsigned long)w);
		weft_future_destroy(r->fut[i].f);
	}
	for (unsigned i = 0; i < NEVT; i++)
		weft_event_destroy(r->evt[i]);
	for (unsigned i = 0; i < MAX_PAIRS && i < atomic_load(&r->npairs);
	     i++) {
		struct pair *p = &r->pair[i];

		if (!atomic_load(&r->pair_ready[i]) || p->fd[0] < 0)
			continue;
		close(p->fd[0]);
		close(p->fd[1]);
	}
}

/* Per task, once all have ended (await rc, or 1 when not awaitable). */
static void check_rec(struct rec *c, int rc, void *res)
{
	unsigned id = atomic_load(&c->id);
	int started = atomic_load(&c->started), ended = atomic_load(&c->ended);

	TT_CHECK(NULL, started <= 1 && ended == started,
		 "task #%u (%s): body started %d time(s), returned %d",
		 id, atomic_load(&c->role), started, ended);
	if (atomic_load(&c->tls_ok))
		TT_CHECK(NULL, atomic_load(&c->dtor) == 1,
			 "task #%u (%s): task-local destructor ran %d times",
			 id, atomic_load(&c->role), atomic_load(&c->dtor));
	if (atomic_load(&c->cbs))
		TT_CHECK(NULL, !started && (rc == 1 || rc == -ECANCELED),
			 "task #%u (%s) cancelled before it started: ran %d, "
			 "await %d", id, atomic_load(&c->role), started, rc);
	if (rc == 1)
		return;
	if (!started)
		TT_CHECK(NULL, rc == -ENOMEM ||
				       (rc == -ECANCELED &&
					(atomic_load(&c->cancel_req) ||
					 atomic_load(&c->in_group))),
			 "task #%u (%s) never ran: await %d, cancel asked %d",
			 id, atomic_load(&c->role), rc,
			 atomic_load(&c->cancel_req));
	if (rc == -ECANCELED)
		TT_CHECK(NULL, atomic_load(&c->cancel_req) ||
				       atomic_load(&c->in_group),
			 "task #%u (%s) ended -ECANCELED; nobody cancelled it",
			 id, atomic_load(&c->role));
	else if (rc == 0)
		TT_CHECK(NULL, res == expected_result(c),
			 "task #%u (%s): result %p, want %p", id,
			 atomic_load(&c->role), res, expected_result(c));
	else
		TT_CHECK(NULL, rc == -ENOMEM, "task #%u (%s): await %d", id,
			 atomic_load(&c->role), rc);
}

/* Every record's task has ended (spawned only: has been spawned). */
static bool all_ended(struct round *r, bool spawned_only)
{
	unsigned n = recs_used(r);

	for (unsigned i = 1; i < n; i++) {
		struct rec *c = &tt.recs[i];
		int pub = atomic_load(&c->pub);

		if (pub == 0)
			return false; /* being spawned: soon */
		if (pub == 1 && !spawned_only &&
		    weft_task_done(atomic_load(&c->h)) != 1)
			return false;
	}
	return true;
}

static void round_run(struct run *run, struct ctx *x, unsigned no,
		      bool abandon)
{
	struct round *r = &the_round;
	uint64_t until, stop_t0, t_begin;
	unsigned actors, n;

	atomic_store(&tt.round_no, (int)no);
	round_init(r, &x->rng, no, abandon);
	x->r = r;
	actors = (3 + rnd(x, 22)) / (WT_SLOW > 1 ? 2 : 1) + 1;
	for (unsigned i = 0; i < actors; i++) {
		struct rec *c;
		weft_task *h = spawn_kind(x, K_ACTOR, "actor", NULL, &c);

		if (h)
			weft_task_release(h);
	}
	/* The round's time, or less if every task is done before. */
	t_begin = weft_now();
	until = t_begin + (uint64_t)(2 + rnd(x, 40)) * MS;
	while (weft_now() < until && !all_ended(r, false)) {
		op_begin(x, "sleep (round)", OBJ(O_NONE, 0));
		op_end(x, weft_sleep((uint64_t)(1 + rnd(x, 3)) * MS), 0,
		       WEFT_NEVER);
		if (rnd(x, 8) == 0)
			op_cancel_random(x);
	}
	/* seq_cst store, then load of nrecs: see rec_new(). */
	atomic_store(&r->stopping, 1);
	n = recs_used(r);
	stop_t0 = weft_now();
	atomic_fetch_add(&tt.ns_active, (long)(stop_t0 - t_begin));
	for (;;) {
		wake_all(x, r);
		op_begin_at(x, "stopping: until every task has ended",
			    OBJ(O_NONE, 0), stop_t0);
		if (all_ended(r, abandon) && n == recs_used(r))
			break;
		n = recs_used(r);
		weft_sleep(MS);
	}
	op_end(x, 0, 0, WEFT_NEVER);
	atomic_fetch_add(&tt.ns_stop, (long)(weft_now() - stop_t0));
	if (abandon) {
		/* main returns with the tasks running: the shutdown cancels
		 * them. The registry lets its handles go first. */
		for (unsigned i = 1; i < n; i++)
			if (atomic_load(&tt.recs[i].pub) == 1)
				weft_task_release(atomic_load(&tt.recs[i].h));
		run->abandoned = true;
		atomic_fetch_add(&tt.abandoned, 1);
		return;
	}
	for (unsigned i = 1; i < n; i++) {
		struct rec *c = &tt.recs[i];
		weft_task *h;
		void *res = NULL;
		int rc;

		if (atomic_load(&c->pub) != 1)
			continue;
		h = atomic_load(&c->h);
		op_begin(x, "await (round's end)", OBJ(O_TASK, i));
		rc = op_end(x, weft_await(h, &res), 0, WEFT_NEVER);
		TT_CHECK(NULL, weft_task_done(h) == 1, "await returned %d "
			 "before task #%u ended", rc, i);
		check_rec(c, rc, res);
		TT_CHECK(NULL, weft_task_release(h) == 0, "release failed");
	}
	round_check_objects(r);
	atomic_fetch_add(&tt.rounds, 1);
	atomic_fetch_add(&tt.ns_check, (long)(weft_now() - stop_t0));
}

static void *run_main(void *arg)
{
	struct run *run = arg;
	struct ctx x;
	unsigned no = 0;

	memset(&x, 0, sizeof(x));
	x.me = &tt.recs[0];
	x.rng = run->seed;
	x.r = &the_round;
	for (;;) {
		uint64_t now = weft_now();
		bool last = now >= run->end || now >= tt.end;

		if (last && !run->abandon_last)
			break;
		round_run(run, &x, no++, last);
		if (last)
			break;
	}
	/* The shutdown that follows is watched too. */
	atomic_store(&tt.shut.role, "weft_run");
	atomic_store(&tt.shut.op, "shutdown after main returned");
	atomic_store_explicit(&tt.shut.t0, weft_now(), memory_order_release);
	return NULL;
}

/* After weft_run() returned: an abandoned round's tasks all ended (the
 * shutdown cancelled them) and its objects are consistent. */
static void check_abandoned(void)
{
	struct round *r = &the_round;
	unsigned n = recs_used(r);

	for (unsigned i = 1; i < n; i++)
		if (atomic_load(&tt.recs[i].pub) == 1)
			check_rec(&tt.recs[i], 1, NULL);
	round_check_objects(r);
	atomic_fetch_add(&tt.rounds, 1);
}

/* ---- the watchdog -------------------------------------------------------- */

static void dump_ops(uint64_t now)
{
	unsigned shown = 0;

	fprintf(stderr, "torture: operations in flight (task, op, object, "
		"age):\n");
	for (unsigned i = 0; i <= MAX_RECS; i++) {
		struct rec *c = i < MAX_RECS ? &tt.recs[i] : &tt.shut;
		uint64_t t0 = atomic_load_explicit(&c->t0,
						   memory_order_acquire);
		const char *op, *role;
		unsigned obj;

		if (!t0)
			continue;
		op = atomic_load(&c->op);
		role = atomic_load(&c->role);
		obj = atomic_load(&c->obj);
		if (shown++ < 80)
			fprintf(stderr, "  #%-4u %-22s %-36s %s %u  %.3f s\n",
				i, role ? role : "?", op ? op : "?",
				obj_names[(obj >> 24) < O_PRIVATE + 1
						  ? obj >> 24
						  : 0],
				obj & 0xffffffu,
				(double)(now > t0 ? now - t0 : 0) / 1e9);
	}
	fprintf(stderr, "torture: %u in flight\n", shown);
	/* Tasks of the round whose body has not returned, and records
	 * still being spawned. */
	shown = 0;
	fprintf(stderr, "torture: bodies still running, and tasks being "
		"spawned (pub, started, cancel asked, cbs, last op):\n");
	for (unsigned i = 1; i < MAX_RECS; i++) {
		struct rec *c = &tt.recs[i];
		int pub = atomic_load(&c->pub);
		const char *op = atomic_load(&c->op), *role;

		if (!atomic_load(&c->role) || pub == 2 ||
		    (pub == 1 && (atomic_load(&c->ended) ||
				  !atomic_load(&c->started))))
			continue;
		role = atomic_load(&c->role);
		if (shown++ < 80)
			fprintf(stderr, "  #%-4u %-22s pub %d started %d cancel "
				"%d cbs %d  %s%s\n", i, role, pub,
				atomic_load(&c->started),
				atomic_load(&c->cancel_req),
				atomic_load(&c->cbs), op ? op : "-",
				atomic_load(&c->t0) ? " (in flight)" : "");
	}
	fprintf(stderr, "torture: %u listed\n", shown);
}

/* WEFT_TORTURE_GDB=1: the workers' stacks too, from gdb attached to us
 * (debugging aid; tasks' own stacks are not among them). */
static void dump_threads(void)
{
	char cmd[160];

	if (!getenv("WEFT_TORTURE_GDB"))
		return;
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	snprintf(cmd, sizeof(cmd),
		 "gdb -p %d -batch -ex 'thread apply all bt 25' 1>&2",
		 (int)getpid());
	if (system(cmd) != 0)
		fprintf(stderr, "torture: gdb failed\n");
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&tt.quit)) {
		/* The oldest operation past the bound: the culprit, rather
		 * than whoever waits on it. */
		unsigned worst = ~0u;
		uint64_t now, worst_t0 = UINT64_MAX;

		wt_sleep_ms(50);
		now = weft_now();
		for (unsigned i = 0; i <= MAX_RECS; i++) {
			struct rec *c = i < MAX_RECS ? &tt.recs[i] : &tt.shut;
			uint64_t t0 = atomic_load_explicit(
				&c->t0, memory_order_acquire);

			if (t0 && now >= t0 && now - t0 >= STUCK_NS &&
			    t0 < worst_t0) {
				worst = i;
				worst_t0 = t0;
			}
		}
		if (worst != ~0u) {
			unsigned i = worst;
			struct rec *c = i < MAX_RECS ? &tt.recs[i] : &tt.shut;
			uint64_t t0 = worst_t0;
			const char *op, *role;
			unsigned obj;

			op = atomic_load(&c->op);
			role = atomic_load(&c->role);
			obj = atomic_load(&c->obj);
			if (atomic_load(&c->t0) != t0)
				continue; /* moved on meanwhile */
			fprintf(stderr,
				"torture: STUCK: task #%u '%s' has waited "
				"%.1f s in %s on %s %u (bound %.1f s)\n"
				"torture: seed %#llx (replay: "
				"WEFT_TORTURE_SEED=%#llx), run %d (%d "
				"workers), round %d\n",
				i, role ? role : "?", (double)(now - t0) / 1e9,
				op ? op : "?",
				obj_names[(obj >> 24) <= O_PRIVATE ? obj >> 24
								   : 0],
				obj & 0xffffffu, (double)STUCK_NS / 1e9,
				(unsigned long long)tt.seed,
				(unsigned long long)tt.seed,
				atomic_load(&tt.run_no),
				atomic_load(&tt.workers),
				atomic_load(&tt.round_no));
			dump_ops(now);
			dump_threads();
			fflush(stderr);
			abort();
		}
		if (now > tt.end + (uint64_t)120 * SEC * WT_SLOW) {
			fprintf(stderr, "torture: overran its time by 120 s; "
				"seed %#llx\n", (unsigned long long)tt.seed);
			dump_ops(now);
			fflush(stderr);
			abort();
		}
	}
	return NULL;
}

/* ---- the test ------------------------------------------------------------ */

static void print_stats(double secs)
{
	long total = 0;

	for (int i = 0; i < OP__N; i++)
		total += atomic_load(&tt.ops[i]);
	fprintf(stderr,
		"torture: %.1f s, %ld runs, %ld rounds (%ld abandoned), %ld "
		"tasks, %ld operations (%.0f/s), %ld channel values, %ld "
		"socket bytes, %ld timeouts, %ld random cancels\n",
		secs, atomic_load(&tt.runs), atomic_load(&tt.rounds),
		atomic_load(&tt.abandoned), atomic_load(&tt.tasks), total,
		total / secs, atomic_load(&tt.values), atomic_load(&tt.bytes),
		atomic_load(&tt.timeouts), atomic_load(&tt.cancels));
	fprintf(stderr, "torture: time in rounds: %.1f s active, %.1f s "
		"stopping, %.1f s stopping and checking\n",
		atomic_load(&tt.ns_active) / 1e9,
		atomic_load(&tt.ns_stop) / 1e9,
		atomic_load(&tt.ns_check) / 1e9);
	fprintf(stderr, "torture: cancelled before start: %ld pinned, %ld "
		"call_later, %ld unpinned\n", atomic_load(&tt.cbs_pinned),
		atomic_load(&tt.cbs_later), atomic_load(&tt.cbs_unpinned));
	fprintf(stderr, "torture: ops (self-cancelled):");
	for (int i = 0; i < OP__N; i++)
		fprintf(stderr, " %s %ld (%ld)", op_name[i],
			atomic_load(&tt.ops[i]),
			atomic_load(&tt.self_cancelled[i]));
	fprintf(stderr, "\ntorture: victims (cancelled in their wait / "
		"spawned):");
	for (int i = 0; i < V__N; i++)
		fprintf(stderr, " %s %ld/%ld", victim_name[i] + 7,
			atomic_load(&tt.victims_hit[i]),
			atomic_load(&tt.victims[i]));
	fprintf(stderr, "\n");
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static void torture(unsigned seconds)
{
	uint64_t rng;
	int n = 0, failures;

	tt.seed = env_u64("WEFT_TORTURE_SEED", 0);
	if (!tt.seed)
		tt.seed = mix64(wt_now_ns() ^ ((uint64_t)getpid() << 32));
	fprintf(stderr, "torture: seed %#llx (replay: WEFT_TORTURE_SEED=%#llx)"
		", %u s\n", (unsigned long long)tt.seed,
		(unsigned long long)tt.seed, seconds);
	rng = tt.seed;
	op_total = 0;
	for (int i = 0; i < OP__N; i++)
		op_total += op_weight[i];
	must(weft_tls_key_create(&tt.key, tls_dtor));
	tt.start = weft_now();
	tt.end = tt.start + (uint64_t)seconds * SEC;
	cr_assert_eq(pthread_create(&tt.dog, NULL, watchdog_main, NULL), 0);

	while (weft_now() < tt.end) {
		static const unsigned wk[] = { 1, 2, 3, 3, 4, 4, 5, 5, 6, 6 };
		struct weft_config cfg;
		struct run run;
		int rc;

		memset(&run, 0, sizeof(run));
		run.no = n++;
		run.workers = wk[rnd_(&rng, 10)];
		run.seed = mix64(rng += 0x9e37);
		run.end = weft_now() + (uint64_t)(300 + rnd_(&rng, 1700)) * MS;
		run.abandon_last = rnd_(&rng, 2);
		memset(&cfg, 0, sizeof(cfg));
		cfg.workers = run.workers;
		cfg.wake_mode = (int)rnd_(&rng, 3);
		cfg.stack_size = rnd_(&rng, 3) ? 0 : 128 * 1024;
		cfg.shutdown_grace_ms = GRACE_MS;
		atomic_store(&tt.run_no, run.no);
		atomic_store(&tt.workers, (int)run.workers);
		rc = weft_run(run_main, &run, &cfg, NULL);
		atomic_store(&tt.shut.t0, 0);
		if (rc == -EPERM || rc == -ENOSYS) {
			atomic_store(&tt.quit, 1);
			pthread_join(tt.dog, NULL);
			cr_skip_test("io_uring refused by the kernel: %s",
				     weft_strerror(rc));
		}
		TT_CHECK(NULL, rc == 0, "weft_run() = %d (%s)", rc,
			 weft_strerror(rc));
		if (run.abandoned)
			check_abandoned();
		atomic_fetch_add(&tt.runs, 1);
		if (atomic_load(&wt_failures))
			break;
	}
	atomic_store(&tt.quit, 1);
	pthread_join(tt.dog, NULL);
	print_stats((double)(weft_now() - tt.start) / 1e9);
	failures = atomic_load(&wt_failures);
	cr_assert_eq(failures, 0,
		     "seed %#llx (replay: WEFT_TORTURE_SEED=%#llx): %d "
		     "check(s) failed; first: %s",
		     (unsigned long long)tt.seed, (unsigned long long)tt.seed,
		     failures, wt_first_failure);
	WT_LEAK_ASSERT();
}

Test(torture, randomized_mix, .timeout = WT_TIMEOUT(180))
{
	torture(DEFAULT_SECONDS);
}

/* tests/run soak MINUTES: as long as WEFT_TORTURE_SECONDS says. No
 * Criterion timeout (it would override any length asked at run time):
 * the watchdog thread bounds every wait and the whole run, and the
 * suite's alarm is moved to the length asked plus a margin. */
Test(torture, soak)
{
	uint64_t s = env_u64("WEFT_TORTURE_SECONDS", 0);

	if (!s)
		cr_skip_test("soak: set WEFT_TORTURE_SECONDS");
	alarm((unsigned)(s + 300 * WT_SLOW));
	torture((unsigned)s);
}
