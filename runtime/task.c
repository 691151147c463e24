/*
 * Tasks: control blocks, spawn, the park/wake protocol, await, gather,
 * cancellation, shields, the cooperative budget and handles.
 *
 * Control blocks come from a type-stable pool: slabs mapped on demand and
 * unmapped only when the runtime ends; the pages of a slab whose blocks are
 * all free go back to the kernel meanwhile. A block that returns to the
 * pool keeps being a task control block, so a waker or a stale handle that
 * still holds its address reads a valid block; the generation counter
 * (gen) and the WEFT__FREE park state tell a reused block apart.
 *
 * The park/wake protocol (task->park) is argued in wait.h, next to the one
 * wait loop that follows it; the waker's half is task_wake() below.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "await.h"
#include "base.h"
#include "group.h"
#include "idle.h"
#include "lifecycle.h"
#include "mem.h"
#include "runtime.h"
#include "spin.h"
#include "stack.h"
#include "stream.h"
#include "task.h"
#include "tls.h"
#include "worker.h"
#include "arch/ctx.h"

#ifdef WEFT__TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define WEFT__CB_CACHE 128

/*
 * Handles
 * -------
 * A handle is not a pointer: it is (slab id: 20 bits | index of the block
 * in its slab: 8 | generation: 36). A process-wide directory maps slab ids
 * to slab memory, so any thread resolves any runtime's handle with two
 * loads. A block's generation is bumped each time it returns to the pool,
 * so a stale handle (its task ended and released) no longer matches; at
 * one spawn/release per 300 ns on the same block it takes some 5.7 hours
 * to come round (16 bits did in 20 ms). When a runtime frees its slabs,
 * their ids go back to the directory with the next generation to use, so
 * a slab id reused by a later runtime starts above every handle made with
 * it before: stale handles of ended runtimes report -ESRCH too.
 *
 * Directory protocol: ids are taken and given back under dir_lock. A slab
 * is published by a release store of its memory into its entry after its
 * blocks are initialised; weft__task_resolve() loads it with acquire. An entry is
 * cleared before its slab is freed; a weft__task_resolve() racing with that is the
 * use of a handle of a runtime being destroyed, which the API forbids.
 */
#define H_GEN_BITS WEFT__H_GEN_BITS
#define H_IDX_BITS WEFT__H_IDX_BITS
#define H_SLAB_BITS WEFT__H_SLAB_BITS
#define H_GEN_MASK ((UINT64_C(1) << H_GEN_BITS) - 1)
#define DIR_CHUNK WEFT__DIR_CHUNK
#define DIR_CHUNKS WEFT__DIR_CHUNKS

_Static_assert(WEFT__CB_SLAB == 1u << H_IDX_BITS, "slab size = index bits");
#if defined(WEFT__REGISTRY) && !defined(WEFT__TSAN) && !defined(WEFT__ASAN)
/* task.h: the registry keeps the block at 224 bytes (its side table). */
_Static_assert(sizeof(struct weft__tcb) == 224, "a control block is 224 bytes");
_Static_assert(sizeof(struct weft__task_side) == 32, "a side entry is 32 bytes");
#endif
_Static_assert(H_GEN_BITS + H_IDX_BITS + H_SLAB_BITS == 64, "handle bits");

_Atomic(struct weft__task_dir_chunk *) weft__task_dir[DIR_CHUNKS];
static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t dir_free;     /* head of the free-id list; under dir_lock */
static uint32_t dir_next = 1; /* first never-used id (0 is never used) */

static struct weft__task_dir_chunk *dir_chunk(uint32_t id)
{
	return weft__task_dir_chunk(id);
}

/* A slab id and the first generation of its blocks; 0 if none. */
static uint32_t dir_take(uint64_t *floor)
{
	uint32_t id = 0;

	pthread_mutex_lock(&dir_lock);
	if (dir_free) {
		id = dir_free;
		dir_free = dir_chunk(id)->next_free[id % DIR_CHUNK];
	} else if (dir_next < (1u << H_SLAB_BITS)) {
		struct weft__task_dir_chunk *c = dir_chunk(dir_next);
		if (!c) {
			/* Freed only with the library (dir_release):
			 * weft__task_resolve() may read them at any time. */
			c = weft__mem_calloc(1, sizeof(*c));
			if (c)
				atomic_store_explicit(
					&weft__task_dir[dir_next / DIR_CHUNK], c,
					memory_order_release);
		}
		if (c)
			id = dir_next++;
	}
	if (id) {
		uint64_t f = dir_chunk(id)->floor[id % DIR_CHUNK];
		*floor = f ? f : 1;
	}
	pthread_mutex_unlock(&dir_lock);
	return id;
}

/* Publishes a slab (release: a weft__task_resolve() that finds it sees its blocks). */
static void dir_publish(uint32_t id, struct weft__tcb *mem)
{
	atomic_store_explicit(&dir_chunk(id)->mem[id % DIR_CHUNK], mem,
			      memory_order_release);
}

static void dir_give_back(uint32_t id, uint64_t floor)
{
	struct weft__task_dir_chunk *c = dir_chunk(id);

	pthread_mutex_lock(&dir_lock);
	atomic_store_explicit(&c->mem[id % DIR_CHUNK], NULL,
			      memory_order_release);
	c->floor[id % DIR_CHUNK] = floor;
	c->owner[id % DIR_CHUNK] = NULL;
	c->next_free[id % DIR_CHUNK] = dir_free;
	dir_free = id;
	pthread_mutex_unlock(&dir_lock);
}

/*
 * The chunks outlive every runtime, so that a stale handle of an ended
 * runtime is still told apart. They go with the library (dlclose, or the
 * process's exit), if no runtime holds a slab then: no call may reach the
 * library after that. Kept if one does (a runtime still running at exit):
 * its threads may still resolve handles. Without this a dlopen/dlclose
 * cycle lost its chunks (LeakSanitizer found it: tests/dlopen_check.c).
 * Relaxed loads under dir_lock: at unload or exit no runtime may still
 * be publishing a slab (the API), so what publishers stored is final.
 */
__attribute__((destructor)) static void dir_release(void)
{
	unsigned i, j;

	pthread_mutex_lock(&dir_lock);
	for (i = 0; i < DIR_CHUNKS; i++) {
		struct weft__task_dir_chunk *c = atomic_load_explicit(
			&weft__task_dir[i], memory_order_relaxed);

		for (j = 0; c && j < DIR_CHUNK; j++)
			if (atomic_load_explicit(&c->mem[j],
						 memory_order_relaxed))
				goto busy;
	}
	for (i = 0; i < DIR_CHUNKS; i++) {
		weft__mem_free(atomic_load_explicit(&weft__task_dir[i],
						    memory_order_relaxed));
		atomic_store_explicit(&weft__task_dir[i], NULL,
				      memory_order_relaxed);
	}
	dir_free = 0;
	dir_next = 1;
busy:
	pthread_mutex_unlock(&dir_lock);
}

static uint64_t gen_next(uint64_t g)
{
	g = (g + 1) & H_GEN_MASK;
	return g ? g : 1;
}

/*
 * Control block pool
 * ------------------
 * Blocks come in slabs of WEFT__CB_SLAB, each slab a mapping of its own
 * kept until the runtime ends: an address that was a control block stays
 * one, so a late waker (a wait queue's grant that reaches a task after it
 * woke for another reason and ended) or a stale handle always reads a
 * control block. A free block reads park == FREE and a handle whose
 * generation moved on.
 *
 * Free blocks live in two tiers. Each worker keeps a LIFO cache of up to
 * WEFT__CB_CACHE (no lock; half goes back when it fills). The shared pool,
 * under cb_lock, is one LIFO list of free blocks (doubly linked: qnext,
 * and gprev, free while the block is), so that the blocks freed last, whose lines are still in the
 * cache, are taken first (taking them slab by slab instead cost
 * spawn_many 15-25%). Each slab counts its blocks on that list (nfree);
 * a slab with all of them there is on the EMPTY list, one whose pages went
 * back on BARE, others on none. A block is taken from the list, else from
 * a BARE slab, else from a new one.
 *
 * Giving pages back (issue 17: a burst of a million tasks left 200 MB
 * resident for ever). A slab's pages go back only while it is all free and
 * off every list but BARE, so no block of it can be handed out meanwhile;
 * after MADV_DONTNEED its blocks read as zeros, and zero is FREE (task.h),
 * handle 0 matches no handle (generation 0 is never used), so late readers
 * keep reading free blocks. What late writers may store there (weft_cancel
 * racing the end of a task it holds no reference to; a shutdown sweep's
 * cancel flag) dirties a page again, nothing more: reuse writes every field
 * a free block must have. The generations are lost with the pages, so the
 * slab keeps the first one its blocks start at when reused (floor, above
 * every generation handed out before), as the directory does for ids.
 * As with stacks (stack.c), the give-back is decayed, because each
 * madvise is a TLB shoot-down: the first worker to see more than
 * CB_KEEP_EMPTY all-free slabs arms a trim WEFT__CB_DECAY_NS ahead; the
 * one that finds it due takes the excess off EMPTY and their blocks off
 * the list, a few slabs at a time, gives their pages back outside the
 * lock and puts the slabs on BARE. Workers' caches would pin a
 * slab each block (a burst leaves them 128 blocks of 128 slabs): arming
 * and each give-back bump cb_trim_gen, and each worker, at its next
 * periodic service, gives back all of its cache but the CB_CACHE_HOT
 * blocks on top (the ones in use), so that their slabs empty and go at
 * the next trim.
 */
#define CB_EMPTY 0
#define CB_BARE 1
#define CB_NONE 2
#define CB_KEEP_EMPTY 2
#define CB_CACHE_HOT 16
#define CB_TRIM_BATCH 8
#define WEFT__CB_DECAY_NS (1000 * WEFT_NSEC_PER_MSEC)

struct weft__cb_slab {
	struct weft__cb_slab *next;          /* all slabs; never unlinked */
	struct weft__cb_slab *lnext, *lprev; /* its list; under cb_lock */
	struct weft__tcb *mem;
	unsigned nfree;                      /* its blocks in the shared pool */
	unsigned list;                       /* CB_EMPTY, CB_BARE, CB_NONE */
	uint64_t floor; /* first generation at the next (re)start of blocks */
	uint32_t id;    /* in the handle directory */
};

/* Bytes of a slab's mapping: whole pages. */
static size_t cb_slab_bytes(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

#ifdef WEFT__REGISTRY
	/* The blocks, then their side table (task.h weft__task_side). */
	return (WEFT__CB_SLAB * (sizeof(struct weft__tcb) +
				 sizeof(struct weft__task_side)) +
		ps - 1) & ~(ps - 1);
#else
	return (WEFT__CB_SLAB * sizeof(struct weft__tcb) + ps - 1) & ~(ps - 1);
#endif
}

/* ---- handles ---------------------------------------------------------- */

weft_task *weft__task_handle(struct weft__tcb *t)
{
	return (weft_task *)(uintptr_t)atomic_load_explicit(
		&t->handle, memory_order_relaxed);
}

void weft__task_blocks(struct weft_runtime *rt,
		       void (*fn)(struct weft__tcb *t, void *arg), void *arg)
{
	struct weft__cb_slab *s;
	unsigned i;

	/* Slabs are pushed at the head under cb_lock and never unlinked
	 * (nor their memory unmapped) before the runtime ends: the head read
	 * under the lock, each slab's next and mem are final. */
	weft__spin_lock(&rt->cb_lock);
	s = rt->cb_slabs;
	weft__spin_unlock(&rt->cb_lock);
	for (; s; s = s->next)
		for (i = 0; i < WEFT__CB_SLAB; i++)
			fn(&s->mem[i], arg);
}

void *weft__task_debug_block(weft_task *h)
{
	int err;

	return weft__task_resolve(h, &err);
}

/* ---- control block pool ------------------------------------------------ */

/* Lists of slabs; under cb_lock. */
static void cb_list_del(struct weft_runtime *rt, struct weft__cb_slab *s)
{
	if (s->list == CB_NONE)
		return;
	if (s->lprev)
		s->lprev->lnext = s->lnext;
	else
		rt->cb_list[s->list] = s->lnext;
	if (s->lnext)
		s->lnext->lprev = s->lprev;
	rt->cb_list_n[s->list]--;
	s->list = CB_NONE;
}

static void cb_list_add(struct weft_runtime *rt, struct weft__cb_slab *s,
			unsigned list)
{
	s->list = list;
	s->lprev = NULL;
	s->lnext = rt->cb_list[list];
	if (s->lnext)
		s->lnext->lprev = s;
	rt->cb_list[list] = s;
	rt->cb_list_n[list]++;
}

/* Relaxed: a hint for weft__task_trim_wanted(); the trim decides under the
 * lock. */
static void cb_hint(struct weft_runtime *rt)
{
	/* Stored only when it changes: readers share its line. */
	if (atomic_load_explicit(&rt->cb_empty_hint, memory_order_relaxed) !=
	    rt->cb_list_n[CB_EMPTY])
		atomic_store_explicit(&rt->cb_empty_hint,
				      rt->cb_list_n[CB_EMPTY],
				      memory_order_relaxed);
}

/* The generation the slab's blocks start at after a restart: above every
 * one handed out (a handle of a live block carries its gen; a free
 * block's is the next to hand out, so its successor is above both). */
static uint64_t cb_slab_floor(const struct weft__cb_slab *s)
{
	uint64_t floor = s->floor;
	unsigned i;

	for (i = 0; i < WEFT__CB_SLAB; i++) {
		uint64_t g = gen_next(atomic_load_explicit(
			&s->mem[i].handle, memory_order_relaxed) & H_GEN_MASK);
		if (g > floor)
			floor = g;
	}
	return floor;
}

/* The shared pool's list of free blocks (under cb_lock): push at the
 * head, unlink anywhere; gprev is the back link. */
static void cb_push(struct weft_runtime *rt, struct weft__tcb *t)
{
	t->gprev = NULL;
	t->qnext = rt->cb_free;
	if (t->qnext)
		t->qnext->gprev = t;
	rt->cb_free = t;
}

static void cb_unlink(struct weft_runtime *rt, struct weft__tcb *t)
{
	if (t->gprev)
		t->gprev->qnext = t->qnext;
	else
		rt->cb_free = t->qnext;
	if (t->qnext)
		t->qnext->gprev = t->gprev;
	t->gprev = NULL;
}

/* The slab of block t (its id is in its handle). */
static struct weft__cb_slab *cb_slab_of(const struct weft__tcb *t)
{
	uint32_t id = (uint32_t)(atomic_load_explicit(&t->handle,
						      memory_order_relaxed) >>
				 (H_GEN_BITS + H_IDX_BITS));

	return dir_chunk(id)->owner[id % DIR_CHUNK];
}

/* Makes every block of s free with generation s->floor and puts them on
 * the shared list; s on no list. Fresh pages or given-back ones: every
 * field a free block is read for is written (a late writer may have left
 * a cancel flag, which task_start() clears). Called with cb_lock held. */
static void cb_slab_fill(struct weft_runtime *rt, struct weft__cb_slab *s)
{
	struct weft__tcb *blk = s->mem;
	unsigned i;

	for (i = 0; i < WEFT__CB_SLAB; i++) {
		atomic_store_explicit(&blk[i].park, WEFT__FREE,
				      memory_order_relaxed);
		atomic_store_explicit(
			&blk[i].handle,
			(uint64_t)(s->id << H_IDX_BITS | i) << H_GEN_BITS |
				s->floor,
			memory_order_relaxed);
		blk[i].rt = rt;
		blk[i].tls = NULL;
		blk[i].stack = NULL;
		cb_push(rt, &blk[i]);
	}
	s->nfree = WEFT__CB_SLAB;
	s->list = CB_NONE;
}

/* A new slab, its blocks on the shared list. Called with cb_lock held. */
static struct weft__cb_slab *cb_slab_new(struct weft_runtime *rt)
{
	struct weft__cb_slab *s = weft__mem_calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->mem = weft__mem_map(cb_slab_bytes());
	s->floor = 1;
	s->id = s->mem ? dir_take(&s->floor) : 0;
	if (!s->id) {
		weft__mem_unmap(s->mem, cb_slab_bytes());
		weft__mem_free(s);
		return NULL;
	}
	dir_chunk(s->id)->owner[s->id % DIR_CHUNK] = s;
	s->next = rt->cb_slabs;
	rt->cb_slabs = s;
	cb_slab_fill(rt, s);
	/* Release: a weft__task_resolve() that finds the slab sees its
	 * blocks. */
	dir_publish(s->id, s->mem);
	return s;
}

/* Takes up to `want` blocks from the shared pool into a list. Called with
 * cb_lock held. */
static struct weft__tcb *cb_take(struct weft_runtime *rt, unsigned want,
				 unsigned *got)
{
	struct weft__tcb *head = NULL;
	unsigned n = 0;

	while (n < want) {
		struct weft__tcb *t = rt->cb_free;
		struct weft__cb_slab *s;

		if (!t) {
			if (n)
				break;
			if ((s = rt->cb_list[CB_BARE])) {
				cb_list_del(rt, s);
				cb_slab_fill(rt, s);
			} else if (!cb_slab_new(rt)) {
				break;
			}
			continue;
		}
		rt->cb_free = t->qnext;
		if (t->qnext)
			t->qnext->gprev = NULL;
		t->gprev = NULL;
		s = cb_slab_of(t);
		if (s->nfree-- == WEFT__CB_SLAB)
			cb_list_del(rt, s); /* no longer all free */
		t->qnext = head;
		head = t;
		n++;
	}
	cb_hint(rt);
	*got = n;
	return head;
}

/* Puts a list of free blocks back in the shared pool. Called with cb_lock
 * held. */
static void cb_give(struct weft_runtime *rt, struct weft__tcb *head)
{
	while (head) {
		struct weft__tcb *t = head;
		struct weft__cb_slab *s = cb_slab_of(t);

		head = t->qnext;
		cb_push(rt, t);
		if (++s->nfree == WEFT__CB_SLAB)
			cb_list_add(rt, s, CB_EMPTY);
	}
	cb_hint(rt);
}

/* The shared pool's part of task_alloc(): out of line, so that the
 * common case (a block from the worker's cache) inlines into spawn. */
static __attribute__((noinline)) struct weft__tcb *
task_alloc_shared(struct weft_runtime *rt, struct weft__worker *w)
{
	struct weft__tcb *t;
	unsigned got;

	weft__spin_lock(&rt->cb_lock);
	t = cb_take(rt, w ? WEFT__CB_CACHE / 2 : 1, &got);
	weft__spin_unlock(&rt->cb_lock);
	if (t && w && got > 1) {
		w->cb_free = t->qnext;
		w->cb_n = got - 1;
	}
	return t;
}

/* A free block (FREE), from the calling worker's cache if it has one
 * (w may be NULL: a thread outside the runtime), or NULL: out of memory. */
static inline struct weft__tcb *task_alloc(struct weft_runtime *rt,
					   struct weft__worker *w)
{
	struct weft__tcb *t;

	if (weft__likely(w && w->cb_free)) {
		t = w->cb_free;
		w->cb_free = t->qnext;
		w->cb_n--;
	} else if (!(t = task_alloc_shared(rt, w))) {
		return NULL;
	}
	t->qnext = NULL;
	return t;
}

/* Gives back the part of w's cache below its first `keep` blocks. */
static void cb_cache_give(struct weft__worker *w, unsigned keep)
{
	struct weft__tcb *head, *t = w->cb_free;
	unsigned i;

	if (w->cb_n <= keep)
		return;
	if (keep == 0) {
		head = w->cb_free;
		w->cb_free = NULL;
	} else {
		for (i = 1; i < keep; i++)
			t = t->qnext;
		head = t->qnext;
		t->qnext = NULL;
	}
	w->cb_n = keep;
	weft__spin_lock(&w->rt->cb_lock);
	cb_give(w->rt, head);
	weft__spin_unlock(&w->rt->cb_lock);
}

static void cb_free(struct weft__tcb *t)
{
	struct weft_runtime *rt = t->rt;
	struct weft__worker *w = weft__worker_self();
	uint64_t g;

	if (t->tls) {
		weft__mem_free(t->tls);
		t->tls = NULL;
	}
	/* gen first, then FREE (both release): a weft__task_resolve() that sees the
	 * old gen and then not-FREE raced with the release of the last
	 * reference, which the API forbids. Generation 0 is never used. */
	g = atomic_load_explicit(&t->handle, memory_order_relaxed);
	g = (g & ~H_GEN_MASK) | gen_next(g & H_GEN_MASK);
	atomic_store_explicit(&t->handle, g, memory_order_release);
	atomic_store_explicit(&t->park, WEFT__FREE, memory_order_release);
	/* The registry's snapshot reader (debug.c snap_take()) treats the
	 * handle as a seqlock's sequence: it reads the handle, the block's
	 * plain fields, an acquire fence, the handle again. The next spawn
	 * of this block writes those fields plainly; this fence keeps those
	 * writes from becoming visible before the new generation (a seqlock
	 * writer's fence after its first bump), so a reader that copied a
	 * new name or site also sees the handle changed. A release store
	 * orders what came before it, not what comes after: on x86 the
	 * fence is free, on AArch64 it is the barrier that matters. */
	atomic_thread_fence(memory_order_release);

	if (w && w->rt == rt) {
		t->qnext = w->cb_free;
		w->cb_free = t;
		/* Full: the half on top goes back to the shared pool. */
		if (++w->cb_n >= WEFT__CB_CACHE) {
			struct weft__tcb *head = w->cb_free;
			unsigned i;

			for (i = 0; i < WEFT__CB_CACHE / 2; i++)
				w->cb_free = w->cb_free->qnext;
			t = head;
			for (i = 1; i < WEFT__CB_CACHE / 2; i++)
				t = t->qnext;
			t->qnext = NULL;
			w->cb_n -= WEFT__CB_CACHE / 2;
			weft__spin_lock(&rt->cb_lock);
			cb_give(rt, head);
			weft__spin_unlock(&rt->cb_lock);
		}
		return;
	}
	t->qnext = NULL;
	weft__spin_lock(&rt->cb_lock);
	cb_give(rt, t);
	weft__spin_unlock(&rt->cb_lock);
}

/* Relaxed: both are hints. A stale cb_empty_hint only moves the trim to a
 * later look (it decides under cb_lock); a stale cb_trim_gen only delays
 * the give-back of a cache to a later service. */
bool weft__task_trim_wanted(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	return atomic_load_explicit(&rt->cb_empty_hint,
				    memory_order_relaxed) > CB_KEEP_EMPTY ||
	       w->cb_trim_seen != atomic_load_explicit(&rt->cb_trim_gen,
						       memory_order_relaxed);
}

uint64_t weft__task_trim(struct weft__worker *w, uint64_t now)
{
	struct weft_runtime *rt = w->rt;
	struct weft__cb_slab *bare = NULL, *s;
	unsigned gen = atomic_load_explicit(&rt->cb_trim_gen,
					    memory_order_relaxed);
	uint64_t at;

	if (w->cb_trim_seen != gen) {
		w->cb_trim_seen = gen;
		cb_cache_give(w, CB_CACHE_HOT);
	}
	if (atomic_load_explicit(&rt->cb_empty_hint, memory_order_relaxed) <=
	    CB_KEEP_EMPTY)
		return 0;
	/* Armed and not due: no lock (every busy worker's service passes
	 * here; taking cb_lock each time made spawns contend: spawn_many
	 * lost a fifth). A stale moment only moves the look. */
	at = atomic_load_explicit(&rt->cb_trim_at, memory_order_relaxed);
	if (at && now < at)
		return at;
	weft__spin_lock(&rt->cb_lock);
	at = atomic_load_explicit(&rt->cb_trim_at, memory_order_relaxed);
	if (rt->cb_list_n[CB_EMPTY] <= CB_KEEP_EMPTY) {
		atomic_store_explicit(&rt->cb_trim_at, 0, memory_order_relaxed);
		weft__spin_unlock(&rt->cb_lock);
		return 0;
	}
	if (!at || now < at) {
		if (!at) {
			at = now + WEFT__CB_DECAY_NS;
			atomic_store_explicit(&rt->cb_trim_at, at,
					      memory_order_relaxed);
			/* Caches give back their cold blocks before the
			 * trim comes, so their slabs go with it. */
			atomic_fetch_add_explicit(&rt->cb_trim_gen, 1,
						  memory_order_relaxed);
		}
		weft__spin_unlock(&rt->cb_lock);
		return at;
	}
	/* Decayed: all-free slabs beyond CB_KEEP_EMPTY give their pages
	 * back, CB_TRIM_BATCH at a time so that the lock is never held for
	 * long (unlinking a slab's blocks touches 256 cold lines; a million
	 * tasks' slabs at once held it some 100 ms). Off every list
	 * meanwhile: nothing can hand a block out. */
	atomic_store_explicit(&rt->cb_trim_at, 0, memory_order_relaxed);
	while (rt->cb_list_n[CB_EMPTY] > CB_KEEP_EMPTY) {
		unsigned n = 0;

		while (n++ < CB_TRIM_BATCH &&
		       rt->cb_list_n[CB_EMPTY] > CB_KEEP_EMPTY) {
			s = rt->cb_list[CB_EMPTY];
			cb_list_del(rt, s);
			for (unsigned i = 0; i < WEFT__CB_SLAB; i++)
				cb_unlink(rt, &s->mem[i]);
			s->nfree = 0;
			s->lnext = bare;
			bare = s;
		}
		cb_hint(rt);
		weft__spin_unlock(&rt->cb_lock);
		for (s = bare; s; s = s->lnext) {
			s->floor = cb_slab_floor(s);
			weft__mem_give_back(s->mem, cb_slab_bytes());
		}
		weft__spin_lock(&rt->cb_lock);
		while ((s = bare)) {
			bare = s->lnext;
			cb_list_add(rt, s, CB_BARE);
		}
	}
	atomic_fetch_add_explicit(&rt->cb_trim_gen, 1, memory_order_relaxed);
	weft__spin_unlock(&rt->cb_lock);
	return 0;
}

#define REFS_ALL UINT64_C(0xffffffff)
#define REFS_HANDLE (UINT64_C(1) << 32)

void weft__task_unref(struct weft__tcb *t)
{
	/* acq_rel: the last dropper sees every write made under the other
	 * references before it recycles the block. */
	if ((atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) &
	     REFS_ALL) == 1)
		cb_free(t);
}

void weft__task_pool_fini(struct weft_runtime *rt)
{
	struct weft__cb_slab *s = rt->cb_slabs, *n;
	unsigned i;

	for (; s; s = n) {
		struct weft__tcb *blk = s->mem;

		n = s->next;
		/* The id's next slab starts above every generation handed
		 * out here. */
		dir_give_back(s->id, cb_slab_floor(s));
		for (i = 0; i < WEFT__CB_SLAB; i++) {
			/* Tasks dropped at shutdown still hold what they
			 * were given (a slab without pages reads zeros). */
			if (blk[i].tls)
				weft__mem_free(blk[i].tls);
			if (blk[i].stack)
				weft__stack_drop(rt, blk[i].stack);
#ifdef WEFT__TSAN
			if (blk[i].tsan_fiber)
				__tsan_destroy_fiber(blk[i].tsan_fiber);
#endif
		}
		weft__mem_unmap(blk, cb_slab_bytes());
		weft__mem_free(s);
	}
	rt->cb_slabs = NULL;
	rt->cb_free = NULL;
	for (i = 0; i < 2; i++) {
		rt->cb_list[i] = NULL;
		rt->cb_list_n[i] = 0;
	}
}

/*
 * Shutdown sweep (lifecycle.c's drain and close). Runs on any thread while
 * the runtime runs, next to spawns, ends and recycling of blocks.
 *   Slabs: pushed at the head of rt->cb_slabs under cb_lock and never
 *   unlinked before weft__task_pool_fini(), which runs after every worker
 *   stopped and every sweep returned. Taking the head under the lock
 *   (acquire) makes every slab linked before it readable, `next` and `mem`
 *   included; slabs linked after are missed, and the drain sweeps again.
 *   Blocks: only the atomics park, done and cancel are touched, because a
 *   block may end and be recycled by task_start() at any moment. A block is
 *   live if park (acquire) is not FREE and done (acquire) is 0 (a slab
 *   whose pages went back reads zeros: FREE). A decision
 *   made on a block that is recycled meanwhile is harmless: the cancel
 *   either reaches the new task (spawned during shutdown, which is to be
 *   cancelled anyway) or lands before task_start() clears the flag and is
 *   lost, and the next sweep sees the new task live and cancels it then.
 *   The exchange's release pairs with the acquire in weft__task_cancel_pending(), as
 *   weft_cancel()'s store does. Only a task whose flag was clear is woken:
 *   whoever set it before woke it, and the flag stays set, so sweeps
 *   repeated while shielded tasks linger do not keep waking them (a wake
 *   on a block recycled meanwhile is spurious, which the park protocol
 *   allows).
 */
unsigned weft__task_cancel_all(struct weft_runtime *rt,
			       struct weft__tcb *except)
{
	struct weft__cb_slab *s;
	unsigned live = 0, i;

	weft__spin_lock(&rt->cb_lock);
	s = rt->cb_slabs;
	weft__spin_unlock(&rt->cb_lock);
	for (; s; s = s->next) {
		struct weft__tcb *blk = s->mem;

		for (i = 0; i < WEFT__CB_SLAB; i++) {
			struct weft__tcb *t = &blk[i];

			if (t == except ||
			    atomic_load_explicit(&t->park,
						 memory_order_acquire) ==
				    WEFT__FREE ||
			    atomic_load_explicit(&t->done,
						 memory_order_acquire))
				continue;
			live++;
			if (!atomic_exchange_explicit(&t->cancel, 1,
						      memory_order_acq_rel))
				weft__task_wake(t);
		}
	}
	return live;
}

static void task_publish_end(struct weft__tcb *t, int outcome,
			     bool dropped);

/*
 * Dropping at shutdown. Runs on the thread that frees the runtime, after
 * every worker was joined: no task runs and no worker touches a block any
 * more; threads outside the runtime (blocking-pool threads included, whose
 * shutdown comes after this, so that a pool call in weft_join() on a
 * dropped task returns) may still use the program's objects, under their
 * locks, and a finishing pool call may still wake its (dropped) task, which
 * only queues it. Two passes: first
 * every dropped task's wait nodes leave the objects they are linked into
 * (unwait, under each object's lock), so that no grant made in the second
 * pass can pick a node of a dropped task; then each dropped task ends
 * with -ECANCELED, which wakes threads in weft_join(), reports to waitsets
 * and leaves its task group (whose grant then reaches only threads).
 * Before this, the nodes stayed linked after the stacks holding them were
 * unmapped, and the next use of the object by the program touched freed
 * memory (bug 2 of issue 9).
 */
void weft__task_drop_all(struct weft_runtime *rt)
{
	struct weft__cb_slab *s;
	unsigned i, pass;

	for (pass = 0; pass < 2; pass++) {
		for (s = rt->cb_slabs; s; s = s->next) {
			struct weft__tcb *blk = s->mem;

			for (i = 0; i < WEFT__CB_SLAB; i++) {
				struct weft__tcb *t = &blk[i];

				if (atomic_load_explicit(
					    &t->park, memory_order_acquire) ==
					    WEFT__FREE ||
				    atomic_load_explicit(
					    &t->done, memory_order_acquire))
					continue;
				if (pass == 0) {
					if (t->unwait)
						t->unwait->fn(t->unwait);
					t->unwait = NULL;
				} else {
					task_publish_end(t, -ECANCELED, true);
				}
			}
		}
	}
}

/* ---- spawn ------------------------------------------------------------ */

/* Fills a fresh block and queues it. `refs` is 1 (detached) or 2. */
/* Inline: spawn's every argument would otherwise be passed through. */
static inline __attribute__((always_inline)) void
task_start(struct weft_runtime *rt, struct weft__worker *w,
	   struct weft__tcb *t, weft_fn fn, void *arg,
	   const struct weft_spawn_opts *opts, unsigned refs, const char *site)
{
	unsigned flags = opts ? opts->flags : 0;

	weft__assert(atomic_load_explicit(&t->park, memory_order_relaxed) ==
		     WEFT__FREE);
	t->fn = fn;
	t->arg = arg;
	t->result = NULL;
	t->sp = NULL;
	t->stack = NULL;
#ifdef WEFT__REGISTRY
	t->stack_4k = opts ? (uint32_t)((opts->stack_size + 4095) >> 12) : 0;
#else
	t->stack_size = opts ? opts->stack_size : 0;
#endif
	t->shield = 0;
	t->streams = 0;
	t->outcome = 0;
	t->waiters = NULL;
	t->tls = NULL;
	t->deadline = WEFT_NEVER;
	t->start_at = 0;
	t->unwait = NULL;
	t->fpctl = weft__ctx_fpctl_get();
	atomic_store_explicit(&t->flags, 0, memory_order_relaxed);
#ifndef WEFT__REGISTRY
	t->home = NULL;
#endif
	if ((flags & WEFT_SPAWN_PINNED) && w) {
		atomic_store_explicit(&t->flags, WEFT__T_PINNED,
				      memory_order_relaxed);
		/* With the registry, home is read only while PINNED is set
		 * (its side table is not written at other spawns). */
		weft__task_set_home(t, w);
	}
	if (opts && opts->name) {
		strncpy(t->name, opts->name, sizeof(t->name) - 1);
		t->name[sizeof(t->name) - 1] = '\0';
	} else {
		memcpy(t->name, "task", 5);
	}
	atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
	atomic_store_explicit(&t->done, 0, memory_order_relaxed);
	atomic_store_explicit(&t->refs, refs + (refs - 1) * REFS_HANDLE,
			      memory_order_relaxed);
#ifdef WEFT__REGISTRY
	/* The registry (debug.h): no clock read (the worker's coarse one);
	 * the snapshot reader re-checks the handle after reading these. */
	t->site = site;
	t->spawn_ms = (uint32_t)((w ? w->dbg_now : weft_now()) >>
				 WEFT__SPAWN_SHIFT);
#else
	(void)site;
#endif
	/* Leaves FREE last: weft__task_resolve() accepts the block from here on. The
	 * queue push below publishes every field to the worker that runs
	 * the task. */
	atomic_store_explicit(&t->park, WEFT__RUNNING, memory_order_release);
	(void)rt;
}

/* weft_spawn_opts(), starting fn at start_at (ns; 0: at once). */
static int spawn(weft_task **out, weft_fn fn, void *arg,
		 const struct weft_spawn_opts *opts, uint64_t start_at,
		 struct weft_group *group, const char *site)
{
	struct weft__worker *w = weft__worker_self();
	struct weft_runtime *rt;
	struct weft__tcb *t;
	unsigned flags = opts ? opts->flags : 0;
	bool detached = flags & WEFT_SPAWN_DETACHED;
	int err = 0;

	if (!fn || (flags & ~(WEFT_SPAWN_PINNED | WEFT_SPAWN_DETACHED)) ||
	    (!out && !detached) ||
	    (opts && (opts->stack_size > ((size_t)1 << 40) ||
		      opts->reserved[0] || opts->reserved[1])))
		return -EINVAL;
	rt = (opts && opts->runtime) ? opts->runtime : (w ? w->rt : NULL);
	if (!rt)
		return -EPERM;
	if (w && w->rt != rt)
		w = NULL; /* a worker of another runtime: spawn as a foreigner */
	/* From outside, refused once rt shuts down; the gate (lifecycle.c)
	 * keeps rt's pools alive until the task is queued. */
	if (!w && (err = weft__lifecycle_enter(rt)) < 0)
		return err;

	t = task_alloc(rt, w);
	if (!t) {
		if (!w)
			weft__lifecycle_leave(rt);
		return -ENOMEM;
	}
	task_start(rt, w, t, fn, arg, opts, detached ? 1 : 2, site);
	t->start_at = start_at;
	t->group = NULL;
	if (group)
		weft__group_link(group, t);
	if (out)
		*out = detached ? NULL : weft__task_handle(t);
	if (w) {
		WEFT__METRIC(w, spawned, 1);
		weft__worker_schedule(w, t, false);
	} else {
		weft__metrics_spawn_foreign(rt);
		weft__worker_schedule_remote(rt, t);
		weft__lifecycle_leave(rt);
	}
	return 0;
}

/* weft.h's macros call the *_at forms with the spawn site; the plain
 * names stay for programs built without them (and before them). */
int weft_spawn_opts_at(weft_task **out, weft_fn fn, void *arg,
		       const struct weft_spawn_opts *opts, const char *site)
{
	return spawn(out, fn, arg, opts, 0, NULL, site);
}

int weft_spawn_opts(weft_task **out, weft_fn fn, void *arg,
		    const struct weft_spawn_opts *opts)
{
	return spawn(out, fn, arg, opts, 0, NULL, NULL);
}

int weft__task_spawn_in(weft_task **out, weft_fn fn, void *arg,
			const struct weft_spawn_opts *opts, struct weft_group *g,
			const char *site)
{
	struct weft_spawn_opts o = { .name = "group task" };

	if (opts) {
		o = *opts;
		if (!o.name)
			o.name = "group task";
	}
	if (!out)
		o.flags |= WEFT_SPAWN_DETACHED;
	return spawn(out, fn, arg, &o, 0, g, site);
}

int weft__task_spawn_at(weft_task **out, weft_fn fn, void *arg,
			const struct weft_spawn_opts *opts, uint64_t start_at)
{
	return spawn(out, fn, arg, opts, start_at, NULL, NULL);
}

int weft__task_spawn_main(struct weft_runtime *rt, weft_fn fn, void *arg,
		     struct weft__tcb **out)
{
	struct weft_spawn_opts o = { .name = "main" };
	struct weft__worker *w = rt->workers[0];
	struct weft__tcb *t = task_alloc(rt, w);

	if (!t)
		return -ENOMEM;
	/* Two references: the task's own and weft_run()'s, which is never
	 * given back (the pool is freed whole). */
	task_start(rt, w, t, fn, arg, &o, 2, NULL);
	rt->main_task = t;
	/* Maybe from a thread that is not worker 0 (weft_runtime_run). */
	weft__metrics_spawn_foreign(rt);
	weft__worker_schedule(w, t, false);
	*out = t;
	return 0;
}

weft_task *weft_spawn_at(weft_fn fn, void *arg, const char *site)
{
	weft_task *h;

	return spawn(&h, fn, arg, NULL, 0, NULL, site) < 0 ? NULL : h;
}

weft_task *weft_spawn(weft_fn fn, void *arg)
{
	return weft_spawn_at(fn, arg, NULL);
}

/* ---- ending ----------------------------------------------------------- */



/* Publishes the end of t and wakes its awaiters. Runs on t's own stack (or,
 * for a task that never started, on the stack of whoever failed it). */
static void task_finish(struct weft__tcb *t, int outcome)
{
	if (t->tls)
		weft__tls_run_destructors(t);
	if (outcome == 0 &&
	    atomic_load_explicit(&t->cancel, memory_order_acquire))
		outcome = -ECANCELED;
	task_publish_end(t, outcome, false);
}

/* dropped: the runtime is stopped (weft__task_drop_all): tasks waiting
 * are being dropped too and are not woken; threads, waitsets and groups
 * are told. */
static void task_publish_end(struct weft__tcb *t, int outcome, bool dropped)
{
	t->outcome = outcome;

	weft__await_finish(t, dropped);

	/* Only now that the task is done (weft_task_done, awaiters): a
	 * group waiter released here must find every member ended. The
	 * task's own reference keeps its block valid meanwhile. */
	if (t->group)
		weft__group_task_end(t);

	if (!dropped && t == t->rt->main_task) {
		atomic_store_explicit(&t->rt->stopping, 1,
				      memory_order_seq_cst);
		weft__idle_wake_all(t->rt);
	}
}

void weft__task_fail_start(struct weft__worker *w, struct weft__tcb *t,
			   int err)
{
	task_finish(t, err);
	WEFT__METRIC_FINISHED(w);
	weft__task_unref(t);
}

void weft__task_entry(void *arg, void *ctx)
{
	struct weft__worker *w = arg;
	struct weft__tcb *t = ctx;

	weft__worker_after_switch(w);
	/* weft.h: a new task starts "with no exception flags raised". */
	weft__ctx_fpflags_clear();
	/* call_later/call_at: wait for the start moment first; a cancel
	 * meanwhile ends the sleep and keeps fn from running. */
	if (t->start_at)
		weft_sleep_until(t->start_at);
	/* asyncio: a task cancelled before it started never runs. */
	if (!atomic_load_explicit(&t->cancel, memory_order_acquire))
		t->result = t->fn(t->arg);
	/* Receive streams it left open are closed here, on the worker they
	 * pin it to (weft.h): an armed one would hold its socket open, and
	 * fill its worker's buffers, for the runtime's life. */
	if (weft__unlikely(t->streams)) {
		weft__stream_close_task(weft__worker_self(), t);
		t->streams = 0;
	}
	/* weft_run()'s main: graceful shutdown before the runtime stops. */
	if (t == t->rt->main_task)
		weft__lifecycle_drain(t);
	task_finish(t, 0);
	/* The task may have moved: ask for the current worker afresh. */
	w = weft__worker_self();
	weft__worker_switch_out(w, WEFT__SW_EXIT);
	__builtin_unreachable();
}

/* ---- park and wake ---------------------------------------------------- */


/* back: queue a parked task behind the worker's others instead of in its
 * next slot (timers woken in a batch keep their deadline order). */
static inline __attribute__((always_inline)) void task_wake(struct weft__tcb *t,
							 bool back)
{
	int s = atomic_load_explicit(&t->park, memory_order_acquire);

	for (;;) {
		switch (s) {
		case WEFT__RUNNING:
		case WEFT__PARKING:
			/* Still on its stack: it (or its lander) sees this. */
			if (atomic_compare_exchange_weak_explicit(
				    &t->park, &s, WEFT__NOTIFIED,
				    memory_order_acq_rel, memory_order_acquire))
				return;
			break;
		case WEFT__PARKED:
			if (atomic_compare_exchange_weak_explicit(
				    &t->park, &s, WEFT__NOTIFIED,
				    memory_order_acq_rel,
				    memory_order_acquire)) {
				struct weft__worker *w = weft__worker_self();
				if (w && w->rt == t->rt)
					weft__worker_schedule(w, t, back);
				else
					weft__worker_schedule_remote(t->rt, t);
				return;
			}
			break;
		case WEFT__NOTIFIED:
			/* Already woken, but this waker's condition store must
			 * still reach the task's next check: an RMW, never a
			 * plain load (store buffering; see "Why every waker
			 * writes park" above). */
			if (atomic_compare_exchange_weak_explicit(
				    &t->park, &s, WEFT__NOTIFIED,
				    memory_order_release,
				    memory_order_acquire))
				return;
			break;
		default: /* FREE: gone */
			return;
		}
	}
}

void weft__task_wake(struct weft__tcb *t)
{
	task_wake(t, false);
}

void weft__task_wake_back(struct weft__tcb *t)
{
	task_wake(t, true);
}


struct weft__worker *weft__task_park(struct weft__worker *w)
{
	return weft__worker_switch_out(w, WEFT__SW_PARK);
}


void weft__task_coop_tick(void)
{
	struct weft__worker *w = weft__worker_self();

	if (w && w->current)
		weft__worker_budget_tick(w);
}

int weft_yield(void)
{
	struct weft__worker *w = weft__worker_self();
	struct weft__tcb *self;

	if (!w || !w->current)
		return -EPERM;
	self = w->current;
	weft__worker_switch_out(w, WEFT__SW_YIELD);
	return weft__task_cancel_pending(self) ? -ECANCELED : 0;
}

/* ---- cancellation ----------------------------------------------------- */

int weft_cancel(weft_task *h)
{
	struct weft__tcb *t;
	int err = 0;

	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	if (atomic_load_explicit(&t->done, memory_order_acquire))
		return -EALREADY;
	/* Release pairs with the acquire in weft__task_cancel_pending(); the wake makes
	 * a suspended task look at it. */
	atomic_store_explicit(&t->cancel, 1, memory_order_release);
	weft__task_wake(t);
	return 0;
}

int weft_shield_begin(void)
{
	struct weft__worker *w = weft__worker_self();

	if (!w || !w->current)
		return -EPERM;
	w->current->shield++;
	return 0;
}

int weft_shield_end(void)
{
	struct weft__worker *w = weft__worker_self();

	if (!w || !w->current)
		return -EPERM;
	weft__check(w->current->shield > 0,
		    "weft_shield_end() without weft_shield_begin()");
	w->current->shield--;
	return 0;
}

int weft_cancelled(void)
{
	struct weft__worker *w = weft__worker_self();

	if (!w || !w->current)
		return 0;
	return atomic_load_explicit(&w->current->cancel,
				    memory_order_acquire) != 0;
}

/* ---- handles ---------------------------------------------------------- */

int weft_task_retain(weft_task *h)
{
	struct weft__tcb *t;
	int err = 0;

	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	/* Also from a handle that holds no reference (weft_self()'s, or
	 * one whose references were released while the task runs): the
	 * task's own reference keeps the block alive meanwhile. */
	atomic_fetch_add_explicit(&t->refs, 1 + REFS_HANDLE,
				  memory_order_relaxed);
	return 0;
}

int weft_task_release(weft_task *h)
{
	struct weft__tcb *t;
	int err = 0;

	t = weft__task_resolve(h, &err);
	if (!t)
		return err;
	/* A task still alive (its own reference) whose handle references
	 * are all given back: a second release of the same handle, which
	 * would otherwise drop the task's own reference, is refused. One
	 * CAS takes a handle reference and a reference together; acq_rel
	 * as in weft__task_unref(), whose last-dropper rule this follows. */
	uint64_t v = atomic_load_explicit(&t->refs, memory_order_relaxed);
	do {
		if (v < REFS_HANDLE)
			return -ESRCH;
	} while (!atomic_compare_exchange_weak_explicit(
		&t->refs, &v, v - 1 - REFS_HANDLE, memory_order_acq_rel,
		memory_order_relaxed));
	if ((v & REFS_ALL) == 1)
		cb_free(t);
	return 0;
}

int weft_detach(weft_task *h)
{
	return weft_task_release(h);
}

weft_task *weft_self(void)
{
	struct weft__worker *w = weft__worker_self();

	return (w && w->current) ? weft__task_handle(w->current) : NULL;
}

const char *weft_task_name(weft_task *h)
{
	int err = 0;
	struct weft__tcb *t = weft__task_resolve(h, &err);

	return t ? t->name : NULL;
}

int weft_task_done(weft_task *h)
{
	int err = 0;
	struct weft__tcb *t = weft__task_resolve(h, &err);

	if (!t)
		return err;
	return atomic_load_explicit(&t->done, memory_order_acquire) != 0;
}

