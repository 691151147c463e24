/*
 * Task control blocks, handles, spawn and the waker's half of the park
 * protocol (task.c; the protocol is argued in wait.h).
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include "base.h"
#include "debug.h"
#include "spin.h"

/* Blocks per slab, and a handle's bits (see "handles" below). */
#define WEFT__CB_SLAB 256
#define WEFT__H_GEN_BITS 36
#define WEFT__H_IDX_BITS 8 /* log2(WEFT__CB_SLAB) */
#define WEFT__H_SLAB_BITS 20

/* ---- tasks ------------------------------------------------------------ */

/* A parked task's way out of the objects it waits on, for a drop at
 * shutdown: embedded first in the waiter's own record (on its stack). */
struct weft__unwait {
	void (*fn)(struct weft__unwait *u);
};

/* Park states of a task (task->park). The protocol is argued in wait.h. */
enum {
	/* Control block is in the free pool. Zero on purpose: a slab whose
	 * pages went back to the kernel reads as zeros, that is as free
	 * blocks, to a late waker or a stale handle (task.c). */
	WEFT__FREE = 0,
	WEFT__RUNNING = 1,  /* on a CPU or queued; no wait in progress */
	WEFT__PARKING = 2,  /* announced a wait, still on its stack */
	WEFT__PARKED = 3,   /* off its stack, waiting for a wake */
	WEFT__NOTIFIED = 4  /* woken; the next park re-checks its condition */
};

/* task->flags: written by the spawner before the task is published, and
 * by io/ops.c around an I/O wait (pinned while a request is in flight;
 * unpinned by the completion, which may race with another waker reading
 * them: hence atomic; see io/ops.c). */
#define WEFT__T_PINNED 0x1u
/* Pinned by its first open receive stream (io/ops.c), not by its spawner:
 * the pin goes when its last stream is closed. */
#define WEFT__T_STREAM_PIN 0x2u

struct weft__cb_slab;
struct weft__stack;
struct weft__worker;
struct weft__waiter;
struct weft__tls_slot;

/*
 * A task control block. Allocated from the runtime's type-stable pool
 * (task.c): its address stays a task control block until the runtime ends
 * (pages of an all-free slab go back to the kernel and read as free
 * blocks), so a late wake-up or a stale handle reads a valid (if reused
 * or free) block and the generation number tells them apart. The program never sees one: its
 * `weft_task *` is a tagged handle (struct weft_task, never defined), a
 * different type, which task.c resolves (weft__task_handle() makes one), so
 * the compiler refuses a block where a handle is expected and back.
 */
struct weft__tcb {
	/* Saved stack pointer while off-CPU; NULL before the first run.
	 * Written by the worker that switches the task out, read by the one
	 * that switches it in; the run queues order the two. */
	void *sp;
	/* WEFT__FREE..WEFT__NOTIFIED; see the protocol in wait.h. */
	atomic_int park;
	/* WEFT__T_* flags; read with weft__task_flags(). */
	atomic_uint flags;
	/* The stack, taken when the task first runs, given back when it
	 * ends (stack.c). */
	struct weft__stack *stack;
	/* Link in the inject queue, a worker's remote or pinned list, or the
	 * free pool. Owned by whoever holds the task in that list. */
	struct weft__tcb *qnext;
#ifdef WEFT__REGISTRY
	/* The registry's spawn site ("file.c:123" from weft_spawn_at() and
	 * friends, or NULL), in the place `home` has without the registry:
	 * written at the spawn with the line's other fields, so that it
	 * costs no line more (home, read for pinned tasks only, is in the
	 * slab's side table: weft__task_side). */
	const char *site;
#else
	/* Pinned tasks: the worker they always run on. */
	struct weft__worker *home;
#endif
	/* Body, argument, and result once returned. */
	weft_fn fn;
	void *arg;
	void *result;
#ifdef WEFT__REGISTRY
	/* Usable stack size asked for, in 4 KiB units rounded up (2^40
	 * bytes at most: it fits); 0: the runtime's default. And the
	 * registry's spawn moment (coarse, ns >> 20: about ms; its top bits
	 * come back from the clock at the read). One word, as stack_size
	 * alone is without the registry. */
	uint32_t stack_4k;
	uint32_t spawn_ms;
#else
	/* Usable stack size asked for; 0: the runtime's default. */
	size_t stack_size;
#endif
	/* Cancellation: set by weft_cancel() from any thread (release), read
	 * at suspension points (acquire). */
	atomic_int cancel;
	/* Shield depth; only the task itself touches it. */
	int shield;
	/* Receive streams the task has open (io/ops.c); only the task
	 * itself touches it. */
	unsigned streams;
	/* Outcome reported to awaiters: 0, -ECANCELED or -ENOMEM. Written
	 * before `done` is set (release), read after it (acquire). */
	int outcome;
	/* 1 once the task has ended and its result is final. */
	atomic_int done;
	/* Tasks waiting in weft_await(), guarded by wlock. */
	weft__spin wlock;
	struct weft__waiter *waiters;
	/* References: one per handle the program holds, one held by the
	 * task itself until it ends; the block returns to the pool at 0.
	 * Low 32 bits: all references; high 32: the program's share (handle
	 * references), so that a release past the last handle reference is
	 * refused (-ESRCH) instead of dropping the task's own, in the same
	 * single RMW (task.c). */
	_Atomic uint64_t refs;
	/* The block's handle (task.c): its place in the handle directory
	 * (slab id and index, fixed for the block's life) above its
	 * generation (low 36 bits, never 0), which is bumped each time the
	 * block returns to the pool. Read by any thread, so atomic. */
	_Atomic uint64_t handle;
	/* While parked on an object the program owns (a wait queue, a
	 * select): how to take its wait nodes back if the task is dropped
	 * at shutdown (weft__task_drop_all). Set and cleared by the task
	 * around its wait; read only after every worker has stopped. */
	struct weft__unwait *unwait;
	/* Floating-point control state the task starts with: its
	 * spawner's at the spawn (arch/ctx.h weft__fpctl). */
	uint64_t fpctl;
	/* Deadline of the current weft_timeout_begin() scope (ns), or
	 * WEFT_NEVER; only the task itself touches it. */
	uint64_t deadline;
	/* Task group (group.c): the group, and the links of its list of
	 * live members; under the group's lock. While the block is free,
	 * gprev is the back link of the shared pool's list (task.c, under
	 * cb_lock): a free block is no group's member. */
	struct weft_group *group;
	struct weft__tcb *gnext, *gprev;
	/* weft_call_later/call_at: the task sleeps until this moment (ns)
	 * before fn runs; 0: start at once. Set before the task is queued. */
	uint64_t start_at;
	/* Task-local values (tls.c), allocated on first weft_tls_set(). */
	struct weft__tls_slot *tls;
	/* The runtime the task belongs to. */
	struct weft_runtime *rt;
#ifdef WEFT__TSAN
	void *tsan_fiber;
#endif
#ifdef WEFT__ASAN
	void *asan_fake; /* ASan fake-stack handle while switched out */
#endif
	char name[32];
};

#ifdef WEFT__REGISTRY
/*
 * The registry's side table (debug.h): one entry per control block, in
 * the slab's mapping after its WEFT__CB_SLAB blocks, so that blocks stay
 * 224 bytes (a larger block costs every spawn the memory traffic of its
 * extra lines: 288 bytes made spawn_many a third slower) and nothing here
 * is written at a spawn. Fresh or given-back pages read as zeros.
 */
struct weft__task_side {
	/* Pinned tasks: the worker they always run on (written when pinned:
	 * at the spawn, or by an I/O request's pin; read only while the
	 * WEFT__T_PINNED flag is set). */
	struct weft__worker *home;
	/* The current or last wait: its start moment (the worker's coarse
	 * clock, weft_now() ns) << WEFT__W_SHIFT, a has-deadline bit
	 * (WEFT__W_TIMED) and the kind (enum weft__debug_wait_kind); 0
	 * before the first. Meaningful while park says the task waits. */
	_Atomic uint64_t wait_word;
	/* What it waits on, by kind (debug.h): the object (a channel, a
	 * lock...) or the number (an fd, a deadline); no kind has both. */
	_Atomic uint64_t wait_what;
	/* Free (32 bytes an entry). A per-task count of switches or waits
	 * is not kept: in the first line (every switch touches it) there is
	 * no room left, elsewhere it costs a line per switch, and here the
	 * spawn would have to reset it (this table is not written at a
	 * spawn). */
	uint64_t unused;
};

/* t's entry: its index in the slab is in its handle (task.c). */
static inline struct weft__task_side *weft__task_side(struct weft__tcb *t)
{
	unsigned idx = (unsigned)(atomic_load_explicit(&t->handle,
						       memory_order_relaxed) >>
				  WEFT__H_GEN_BITS) &
		       (WEFT__CB_SLAB - 1);

	return (struct weft__task_side *)(void *)(t - idx + WEFT__CB_SLAB) +
	       idx;
}
#endif

/* Pinned tasks' worker (weft__tcb home, or the side table's). */
static inline struct weft__worker *weft__task_home(struct weft__tcb *t)
{
#ifdef WEFT__REGISTRY
	return weft__task_side(t)->home;
#else
	return t->home;
#endif
}

static inline void weft__task_set_home(struct weft__tcb *t,
				       struct weft__worker *w)
{
#ifdef WEFT__REGISTRY
	weft__task_side(t)->home = w;
#else
	t->home = w;
#endif
}

/* The usable stack size asked for; 0: the runtime's default. */
static inline size_t weft__task_stack_size(const struct weft__tcb *t)
{
#ifdef WEFT__REGISTRY
	return (size_t)t->stack_4k << 12;
#else
	return t->stack_size;
#endif
}

/* task.c */
void weft__task_unref(struct weft__tcb *t);
void weft__task_entry(void *arg, void *ctx) __attribute__((noreturn));
void weft__task_wake(struct weft__tcb *t);
/* weft__task_wake(), but a parked task woken on this worker goes to the
 * back of its queue, not the next slot. The caller notifies. */
void weft__task_wake_back(struct weft__tcb *t);
void weft__task_fail_start(struct weft__worker *w, struct weft__tcb *t,
			   int err);
struct weft__worker *weft__task_park(struct weft__worker *w);
void weft__task_pool_fini(struct weft_runtime *rt);
/* Returning control blocks to the kernel, the way weft__stack_trim() does
 * stacks (task.c): gives back the cold part of the worker's cache when
 * asked to, and the pages of all-free slabs beyond a few, decayed. Returns
 * the moment a trim is armed for, 0 if none. Owner worker only. */
uint64_t weft__task_trim(struct weft__worker *w, uint64_t now);
/* Whether weft__task_trim() has something to do (relaxed hints). */
bool weft__task_trim_wanted(struct weft__worker *w);
/* Tests: the address of the block a handle names (NULL if stale), to ask
 * the kernel whether its page is resident; declared again in the test. */
void *weft__task_debug_block(weft_task *h);
/* Calls fn for every control block of rt, free ones included (debug.c
 * tells them apart). Any thread, while the runtime exists. */
void weft__task_blocks(struct weft_runtime *rt,
		       void (*fn)(struct weft__tcb *t, void *arg), void *arg);
int weft__task_spawn_main(struct weft_runtime *rt, weft_fn fn, void *arg,
		     struct weft__tcb **out);
weft_task *weft__task_handle(struct weft__tcb *t);

/* Acquire: pairs with the unpinning release store of a completion
 * (ring.c op_complete). */
static inline unsigned weft__task_flags(const struct weft__tcb *t)
{
	return atomic_load_explicit(&t->flags, memory_order_acquire);
}

/* Park protocol steps (argued in wait.h). Step 1: announce the wait. */
static inline void weft__task_park_prepare(struct weft__tcb *t)
{
	atomic_exchange_explicit(&t->park, WEFT__PARKING, memory_order_acq_rel);
}

/* weft__wait()'s start: the wait's kind and object or number
 * (weft__wait_for) and the moment (the worker's coarse clock, ns) go
 * into t's side entry (debug.h); weft__task_waits_timed() adds the
 * deadline bit when the deadline's timer is armed. Only
 * the task itself writes them. Release: a reader that loads the word
 * with acquire reads this wait's object, or a later wait's. The word is
 * not cleared when the wait ends: a reader looks at it only while park
 * says the task waits. */
static inline void weft__task_waits_begin(struct weft__tcb *t, uint64_t now,
					  unsigned kind, uint64_t what)
{
#ifdef WEFT__REGISTRY
	struct weft__task_side *d = weft__task_side(t);

	atomic_store_explicit(&d->wait_what, what, memory_order_relaxed);
	atomic_store_explicit(&d->wait_word, now << WEFT__W_SHIFT | kind,
			      memory_order_release);
#else
	(void)t;
	(void)now;
	(void)kind;
	(void)what;
#endif
}

/* The wait's deadline is armed (a timer will end it): the deadlock check
 * does not count it as stuck. Timed waits only, after the begin. */
static inline void weft__task_waits_timed(struct weft__tcb *t)
{
#ifdef WEFT__REGISTRY
	struct weft__task_side *d = weft__task_side(t);

	atomic_store_explicit(
		&d->wait_word,
		atomic_load_explicit(&d->wait_word, memory_order_relaxed) |
			WEFT__W_TIMED,
		memory_order_relaxed);
#else
	(void)t;
#endif
}

/* The condition held: no park after all. */
static inline void weft__task_park_done(struct weft__tcb *t)
{
	atomic_store_explicit(&t->park, WEFT__RUNNING, memory_order_relaxed);
}

static inline bool weft__task_cancel_pending(struct weft__tcb *t)
{
	return t->shield == 0 &&
	       atomic_load_explicit(&t->cancel, memory_order_acquire);
}

/* An operation completed without suspending; counts against the
 * cooperative budget (may yield). No-op outside task context. */
void weft__task_coop_tick(void);

/* Spawn into a group (g may be NULL), with options (opts may be NULL;
 * the name defaults to "group task"; out NULL: detached). */
int weft__task_spawn_in(weft_task **out, weft_fn fn, void *arg,
			const struct weft_spawn_opts *opts, struct weft_group *g,
			const char *site);

/* Shutdown, after every worker has stopped, before the blocking pool is
 * shut down and rings, stacks and blocks are freed: every task still alive
 * is dropped. Its wait nodes are taken out of the objects the program
 * owns, and it ends with -ECANCELED for threads in weft_join(), waitsets
 * and task groups (runtime.c). */
void weft__task_drop_all(struct weft_runtime *rt);
/* Shutdown sweep. Requests cancellation of every live task of rt but
 * `except` (may be NULL) and wakes those not cancelled before; returns
 * how many are live. Any thread. */
unsigned weft__task_cancel_all(struct weft_runtime *rt,
			       struct weft__tcb *except);
/* ---- handles -------------------------------------------------------------
 * A handle is (slab id | index in the slab | generation); a process-wide
 * directory maps slab ids to slab memory (task.c argues the protocol).
 * Resolving one is inline: every call that takes a handle does it. */
/* (WEFT__CB_SLAB and the handle's bits: at the top of the file.) */
#define WEFT__DIR_CHUNK 1024u
#define WEFT__DIR_CHUNKS ((1u << WEFT__H_SLAB_BITS) / WEFT__DIR_CHUNK)

/* One chunk of the directory: the slabs (what weft__task_resolve() reads, 8
 * bytes an entry), and per id the generation its next slab starts at and
 * the free-id link (under task.c's dir_lock). */
struct weft__task_dir_chunk {
	_Atomic(struct weft__tcb *) mem[WEFT__DIR_CHUNK]; /* NULL: id unused */
	uint64_t floor[WEFT__DIR_CHUNK];
	uint32_t next_free[WEFT__DIR_CHUNK]; /* 0: end of the list */
	/* The pool's record of the slab (task.c), read only by the runtime
	 * that holds the id, under its cb_lock; written by it before the
	 * slab is published and cleared in dir_give_back(). A later runtime
	 * taking the id does so in dir_take(): dir_lock's release in
	 * dir_give_back() and acquire in dir_take() order its write after
	 * the last reads of the one before. Kept here, not in each
	 * block: 8 more bytes a block cost spawn_many a fifth (224 bytes
	 * are 3.5 lines; the hot fields moved across lines). */
	struct weft__cb_slab *owner[WEFT__DIR_CHUNK];
};

extern _Atomic(struct weft__task_dir_chunk *)
	weft__task_dir[WEFT__DIR_CHUNKS];

/* Acquire: pairs with the release store that publishes a chunk. */
static inline struct weft__task_dir_chunk *weft__task_dir_chunk(uint32_t id)
{
	return atomic_load_explicit(&weft__task_dir[id / WEFT__DIR_CHUNK],
				    memory_order_acquire);
}

/* The block a handle names, or NULL with *err set (-EINVAL: NULL;
 * -ESRCH: stale, or no handle of this process). */
static inline struct weft__tcb *weft__task_resolve(weft_task *h, int *err)
{
	uint64_t v = (uint64_t)(uintptr_t)h;
	uint32_t slab = (uint32_t)(v >> (WEFT__H_GEN_BITS + WEFT__H_IDX_BITS));
	struct weft__task_dir_chunk *c;
	struct weft__tcb *mem, *t;

	if (!h) {
		*err = -EINVAL;
		return NULL;
	}
	*err = -ESRCH;
	c = slab ? weft__task_dir_chunk(slab) : NULL;
	if (!c)
		return NULL;
	mem = atomic_load_explicit(&c->mem[slab % WEFT__DIR_CHUNK],
				   memory_order_acquire);
	if (!mem)
		return NULL;
	t = &mem[(v >> WEFT__H_GEN_BITS) & (WEFT__CB_SLAB - 1)];
	if (atomic_load_explicit(&t->handle, memory_order_acquire) != v ||
	    atomic_load_explicit(&t->park, memory_order_acquire) ==
		    WEFT__FREE)
		return NULL;
	/* weft.h: a handle is stale once its task has ended and its last
	 * reference was released, also while the block still waits for the
	 * task's own reference (the ended task may still be on its way out
	 * on a worker; the perturbation build caught a weft_wait_any() on
	 * such a handle finding the task instead of -EINVAL). A running
	 * task's handle with no handle reference stays usable: weft_self()
	 * of a detached task is one. Orderings: done is stored (release) by
	 * the ending task before it drops its own reference; a caller that
	 * still holds a handle reference made the RMW that counts it before
	 * this load, so it reads refs >= 1 << 32 and is never refused; only
	 * a caller whose references are all gone (its own release RMW came
	 * first) can read fewer, and then the handle is stale by weft.h's
	 * rule whichever done it reads. No store-then-load pair across
	 * threads here: nothing waits on the answer. */
	if (weft__unlikely(
		    atomic_load_explicit(&t->done, memory_order_acquire) &&
		    atomic_load_explicit(&t->refs, memory_order_acquire) <
			    (UINT64_C(1) << 32)))
		return NULL;
	return t;
}
/* Spawns with opts; the task sleeps until start_at (ns; 0: at once)
 * before fn runs (call.c's callbacks). */
int weft__task_spawn_at(weft_task **out, weft_fn fn, void *arg,
			const struct weft_spawn_opts *opts, uint64_t start_at);

#endif /* WEFT_TASK_H */
