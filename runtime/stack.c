/*
 * Task stacks.
 *
 * Stacks of the runtime's default size come from an arena: slabs of
 * WEFT__STK_SLAB stacks in one anonymous MAP_NORESERVE mapping, so a page is
 * committed only when a task touches it. Below each stack sits a guard
 * region. On Linux 6.13+ it is installed with madvise(MADV_GUARD_INSTALL),
 * which marks page tables instead of splitting the mapping, so a million
 * guarded stacks stay a handful of VMAs, far under vm.max_map_count. Older
 * kernels get mprotect(PROT_NONE) guards: two VMAs a stack, so near
 * vm.max_map_count (65,530 by default: about 32,000 stacks) the mprotect()
 * fails. No layout avoids that: every stack needs a PROT_NONE region below
 * it and a PROT_READ|WRITE one above it, so the runs alternate. An
 * unmapped hole as guard would be one VMA a stack, but the kernel may put
 * any later mapping into a hole. So a stack whose guard cannot be
 * installed is never handed out: the task that wanted it fails to start
 * with -ENOMEM (issue 9, bug 3: slabs used to hand such stacks out
 * unguarded). Its slab keeps it and installs the guard on a later try,
 * so the runtime recovers once mappings are freed. Stacks of other sizes
 * get a mapping of their own, unmapped when their task ends; one whose
 * guard fails is unmapped at once.
 *
 * Free arena stacks live in two tiers:
 *   - each worker's hot cache (at most rt->stack_cache, which may be 0:
 *     WEFT_STACK_CACHE_NONE), touched pages kept, so steady-state
 *     spawning does no syscall at all;
 *   - the shared pool, under stk_lock, in two lists: warm stacks (pages
 *     kept) that overflowed a hot cache, and cold ones (pages given back
 *     with MADV_DONTNEED; guard markers survive it). Giving pages back is
 *     decayed, like jemalloc's purging: every madvise is a TLB shoot-down
 *     IPI to every CPU of the process, and doing it on each overflow made
 *     a burst of 100,000 ending tasks spend half its time in them. A
 *     parking worker that finds more warm stacks than all hot caches hold
 *     arms a trim WEFT__STK_DECAY_NS ahead; a worker parking after that
 *     moment moves the excess to the cold list in one address-sorted pass
 *     (neighbours merged into one madvise), and parking workers wait no
 *     longer than the armed moment (idle.c), so memory does return to the
 *     kernel after a burst even when the process then sleeps. Busy
 *     workers do the same from their periodic pick (worker.c, about every
 *     50 us of run time), so it returns under steady load too.
 * Arena address space is kept until the runtime ends, never unmapped
 * earlier.
 *
 * A stack overflow runs into the guard and faults. The SIGSEGV handler,
 * on a per-worker alternate signal stack, recognises a fault inside the
 * guard of the running task's stack, or any fault while the stack pointer
 * is below that stack, prints the task's name and stack size and lets the
 * process die of the signal; any other fault goes to the handler that was
 * there before. A frame larger than the guard could skip it and write
 * into the stack below (another task's) without a fault: weft is built
 * with -fstack-clash-protection, and passes it to code that links it
 * (CMake package, weft.pc), so such a frame touches each page on its way
 * down and faults in the guard. Code built without it keeps that hole.
 * The guard stays 64 KiB: with MADV_GUARD_INSTALL a larger one costs page
 * tables (a 1 MiB guard per stack needs about one page-table page per
 * stack: 4 GiB for a million parked tasks), with mprotect() nothing but
 * address space, and neither closes the hole for an unprobed frame larger
 * still.
 *
 * Debugging: WEFT_DEBUG_STACK_GUARD=mprotect in the environment, read when
 * a runtime starts, makes it use mprotect() guards even where
 * MADV_GUARD_INSTALL works, so tests run the pre-6.13 path (Debian 12's
 * 6.1, for one) on any kernel.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "base.h"
#include "mem.h"
#include "runtime.h"
#include "spin.h"
#include "stack.h"
#include "task.h"
#include "worker.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT__VALGRIND 1
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif

#define WEFT__STK_SLAB 32
/* Warm stacks beyond the hot caches give their pages back after this. */
#define WEFT__STK_DECAY_NS (1000 * WEFT_NSEC_PER_MSEC)
#define WEFT__GUARD (64 * 1024)
#define WEFT__ALTSTACK (64 * 1024)

enum { GUARD_MADVISE = 1, GUARD_MPROTECT = 2 };

/*
 * One slab: WEFT__STK_SLAB slots of guard + stack in one mapping, slot i
 * described by desc[i].
 *
 *   mem                                                        mem + len
 *   | guard 0 | stack 0 | guard 1 | stack 1 | ... | guard 31 | stack 31 |
 *
 * A stack is in a free list or in use only once its guard is installed;
 * until then its bit in `unarmed` is set and only the slab knows of it.
 * A new slab is mapped and armed outside stk_lock by the thread that
 * found the pool empty (an mmap and 32 guard installs take tens of
 * microseconds, which every other thread wanting a stack used to wait out
 * on the spinlock), then published under it. A slab whose guards could
 * not all be installed keeps its unarmed stacks, counted in
 * rt->stk_unarmed, and later refills arm them (under the lock: it only
 * happens near vm.max_map_count) before they map anything new.
 */
struct weft__slab {
	struct weft__slab *next;
	void *mem;
	size_t len;
	uint32_t unarmed; /* bit i: guard i not installed, desc[i] unusable */
	struct weft__stack desc[WEFT__STK_SLAB];
};

_Static_assert(WEFT__STK_SLAB <= 32, "weft__slab.unarmed has 32 bits");

static void put_str(const char *s);

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* Which guard mechanism the kernel offers; probed on a scratch mapping. */
static int probe_guard(void)
{
	size_t ps = page_size();
	void *m = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int mode = GUARD_MPROTECT;

	if (m == MAP_FAILED)
		return GUARD_MPROTECT;
	if (madvise(m, ps, MADV_GUARD_INSTALL) == 0)
		mode = GUARD_MADVISE;
	munmap(m, 2 * ps);
	return mode;
}

/*
 * Makes [lo, lo + len) a guard; returns 0 or -errno. Should
 * MADV_GUARD_INSTALL be refused on a mapping although the probe took it,
 * mprotect() guards this one region. (The mode used to change here, to
 * mprotect and then to "none", unlocked for stack_own(); it is now set
 * once, before any worker runs.) mprotect() splits the mapping and so
 * fails with ENOMEM at vm.max_map_count.
 */
static int install_guard(struct weft_runtime *rt, char *lo, size_t len)
{
	static atomic_bool told;
	int err;

	if (rt->stk_guard_mode == GUARD_MADVISE &&
	    madvise(lo, len, MADV_GUARD_INSTALL) == 0)
		return 0;
	if (mprotect(lo, len, PROT_NONE) == 0)
		return 0;
	err = errno;
	/* Said once a process, as -ENOMEM from weft_await() cannot say that
	 * mappings ran out, not memory. Relaxed: the exchange only elects
	 * the one caller that writes; nothing else is published by it. */
	if (err == ENOMEM &&
	    !atomic_exchange_explicit(&told, true, memory_order_relaxed))
		put_str("weft: cannot install a task stack's guard: mprotect() "
			"failed with ENOMEM, likely at vm.max_map_count (before "
			"Linux 6.13 each stack takes two mappings); tasks that "
			"need a new stack fail to start with -ENOMEM\n");
	return -err;
}

int weft__stack_init(struct weft_runtime *rt)
{
	const char *force = getenv("WEFT_DEBUG_STACK_GUARD");

	rt->stk_guard = WEFT__GUARD;
	if (force && strcmp(force, "mprotect") == 0)
		rt->stk_guard_mode = GUARD_MPROTECT;
	else
		rt->stk_guard_mode = probe_guard();
	return 0;
}

static void stack_register(struct weft__stack *s)
{
#ifdef WEFT__VALGRIND
	s->vg_id = VALGRIND_STACK_REGISTER(s->lo, s->lo + s->size);
#else
	(void)s;
#endif
}

static void stack_deregister(struct weft__stack *s)
{
#ifdef WEFT__VALGRIND
	VALGRIND_STACK_DEREGISTER(s->vg_id);
#else
	(void)s;
#endif
}

/*
 * Installs the guards of sl's unarmed stacks, in address order, and links
 * each armed stack into *list. Stops at the first failure: the next would
 * fail the same way. Returns how many were armed, and the error in *err.
 * Needs no lock for a slab nobody else knows of; stk_lock for a published
 * one.
 */
static unsigned slab_arm(struct weft_runtime *rt, struct weft__slab *sl,
			 struct weft__stack **list, int *err)
{
	size_t slot = rt->stk_guard + rt->stack_size;
	unsigned armed = 0;

	*err = -ENOMEM;
	while (sl->unarmed) {
		unsigned i = (unsigned)__builtin_ctz(sl->unarmed);
		struct weft__stack *s = &sl->desc[i];

		*err = install_guard(rt, (char *)sl->mem + i * slot,
				     rt->stk_guard);
		if (*err < 0)
			break;
		sl->unarmed &= ~(1u << i);
		s->next = *list;
		*list = s;
		armed++;
	}
	return armed;
}

/*
 * Arms stacks that published slabs still hold unarmed, into the cold free
 * list. Returns 0 if at least one was armed, else the error. Called with
 * stk_lock, only while rt->stk_unarmed is not 0.
 */
static int slab_rearm(struct weft_runtime *rt)
{
	struct weft__slab *sl;
	int err = -ENOMEM;

	for (sl = rt->stk_slabs; sl; sl = sl->next) {
		unsigned n;

		if (!sl->unarmed)
			continue;
		n = slab_arm(rt, sl, &rt->stk_free, &err);
		rt->stk_unarmed -= n;
		if (n)
			return 0;
		if (err < 0)
			break; /* the next would fail the same way */
	}
	return err;
}

/*
 * Maps a new slab and arms what it can of it, outside stk_lock: nobody
 * else knows of the slab until slab_publish(). Returns it with its armed
 * stacks in *armed, or NULL when no mapping could be made or no guard
 * installed (the caller's task then fails to start with -ENOMEM).
 */
static struct weft__slab *slab_new(struct weft_runtime *rt,
				   struct weft__stack **armed)
{
	size_t slot = rt->stk_guard + rt->stack_size;
	size_t len = slot * WEFT__STK_SLAB;
	struct weft__slab *sl;
	char *mem;
	unsigned i;
	int err;

	*armed = NULL;
	sl = weft__mem_calloc(1, sizeof(*sl));
	if (!sl)
		return NULL;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
		   0);
	if (mem == MAP_FAILED) {
		weft__mem_free(sl);
		return NULL;
	}
	sl->mem = mem;
	sl->len = len;
	for (i = 0; i < WEFT__STK_SLAB; i++) {
		struct weft__stack *s = &sl->desc[i];
		s->lo = mem + i * slot + rt->stk_guard;
		s->size = rt->stack_size;
		s->arena = true;
		s->cold = true;
	}
	sl->unarmed = (uint32_t)((1ull << WEFT__STK_SLAB) - 1);
	if (!slab_arm(rt, sl, armed, &err)) {
		/* Not one guard: keep nothing of it. */
		munmap(mem, len);
		weft__mem_free(sl);
		return NULL;
	}
	for (i = 0; i < WEFT__STK_SLAB; i++)
		stack_register(&sl->desc[i]);
	return sl;
}

/* Makes a slab from slab_new() known: its armed stacks (a list, maybe
 * empty) join the cold free list, its unarmed ones are counted for
 * slab_rearm(). Called with stk_lock. */
static void slab_publish(struct weft_runtime *rt, struct weft__slab *sl,
			 struct weft__stack *armed)
{
	struct weft__stack *tail = armed;

	if (tail) {
		while (tail->next)
			tail = tail->next;
		tail->next = rt->stk_free;
		rt->stk_free = armed;
	}
	rt->stk_unarmed += (unsigned)__builtin_popcount(sl->unarmed);
	sl->next = rt->stk_slabs;
	rt->stk_slabs = sl;
}

static struct weft__stack *stack_own(struct weft_runtime *rt, size_t size)
{
	size_t ps = page_size();
	struct weft__stack *s = weft__mem_calloc(1, sizeof(*s));
	char *mem;

	if (!s)
		return NULL;
	size = (size + ps - 1) & ~(ps - 1);
	mem = mmap(NULL, rt->stk_guard + size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
		   0);
	if (mem == MAP_FAILED) {
		weft__mem_free(s);
		return NULL;
	}
	if (install_guard(rt, mem, rt->stk_guard) < 0) {
		/* No guard: refuse rather than risk silent corruption on
		 * overflow. */
		munmap(mem, rt->stk_guard + size);
		weft__mem_free(s);
		return NULL;
	}
	s->lo = mem + rt->stk_guard;
	s->size = size;
	s->arena = false;
	stack_register(s);
	return s;
}

struct weft__stack *weft__stack_get(struct weft__worker *w, size_t size)
{
	struct weft_runtime *rt = w->rt;
	struct weft__stack *s;

	if (size && size != rt->stack_size) {
		s = stack_own(rt, size);
		if (!s)
			return NULL;
		goto out;
	}
	s = w->stk_free;
	if (weft__likely(s)) {
		w->stk_free = s->next;
		w->stk_n--;
	} else {
		weft__spin_lock(&rt->stk_lock);
		if ((s = rt->stk_warm)) {
			rt->stk_warm = s->next;
			rt->stk_warm_n--;
		} else if (rt->stk_free ||
			   (rt->stk_unarmed && slab_rearm(rt) == 0)) {
			s = rt->stk_free;
			rt->stk_free = s->next;
		} else {
			struct weft__slab *sl;
			struct weft__stack *armed;

			/* Empty: map and arm a slab without the lock (two
			 * threads may both do so; each keeps its own). */
			weft__spin_unlock(&rt->stk_lock);
			sl = slab_new(rt, &armed);
			if (!sl)
				return NULL;
			s = armed;
			weft__spin_lock(&rt->stk_lock);
			slab_publish(rt, sl, s->next);
		}
		weft__spin_unlock(&rt->stk_lock);
	}
	s->cold = false;
out:
#ifdef WEFT__ASAN
	/* Frames of the previous user of these addresses that never
	 * returned (a task's entry and exit path) left poisoned redzones
	 * behind; a new own mapping often lands on the same addresses. */
	__asan_unpoison_memory_region(s->lo, s->size);
#endif
	return s;
}

static int by_address(const void *a, const void *b)
{
	const struct weft__stack *x = *(struct weft__stack *const *)a;
	const struct weft__stack *y = *(struct weft__stack *const *)b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * Gives the pages of a list of arena stacks back to the kernel. Each
 * madvise() call costs a TLB shoot-down on every CPU running this process,
 * so neighbours in the arena (one slab is carved in address order, and
 * stacks tend to come back in the order they went out) are merged into one
 * range, guards included: guard markers survive MADV_DONTNEED, and
 * PROT_NONE guards have no pages to drop.
 */
static void release_pages(struct weft_runtime *rt, struct weft__stack *list)
{
	struct weft__stack *batch[64];
	unsigned n = 0, i;

	while (list) {
		for (n = 0; list && n < 64; list = list->next)
			batch[n++] = list;
		qsort(batch, n, sizeof(batch[0]), by_address);
		char *lo = batch[0]->lo, *hi = lo + batch[0]->size;
		for (i = 1; i < n; i++) {
			if (batch[i]->lo == hi + rt->stk_guard) {
				hi = batch[i]->lo + batch[i]->size;
				continue;
			}
			madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
			lo = batch[i]->lo;
			hi = lo + batch[i]->size;
		}
		madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
	}
}

void weft__stack_put(struct weft__worker *w, struct weft__stack *s)
{
	struct weft_runtime *rt = w->rt;
	struct weft__stack *head, *tail;
	unsigned i, n;

	if (!s->arena) {
		stack_deregister(s);
		munmap(s->lo - rt->stk_guard, rt->stk_guard + s->size);
		weft__mem_free(s);
		return;
	}
	s->next = w->stk_free;
	w->stk_free = s;
	if (++w->stk_n <= rt->stack_cache)
		return;
	/* Over the watermark: the older half goes to the shared warm list
	 * (rounded up: with no cache, the one stack). The cache keeps the
	 * most recently used (warmest). */
	n = (w->stk_n + 1) / 2;
	if (n == w->stk_n) {
		head = w->stk_free;
		w->stk_free = NULL;
	} else {
		for (tail = w->stk_free, i = 1; i < w->stk_n - n; i++)
			tail = tail->next;
		head = tail->next;
		tail->next = NULL;
	}
	w->stk_n -= n;
	for (tail = head; tail->next; tail = tail->next)
		;
	weft__spin_lock(&rt->stk_lock);
	tail->next = rt->stk_warm;
	rt->stk_warm = head;
	rt->stk_warm_n += n;
	atomic_store_explicit(&rt->stk_warm_hint, rt->stk_warm_n,
			      memory_order_relaxed);
	weft__spin_unlock(&rt->stk_lock);
}

/* Relaxed: stk_warm_hint is a hint, stored under stk_lock; a stale value
 * only moves the trim to a later look, and weft__stack_trim() decides
 * under the lock. */
bool weft__stack_trim_wanted(struct weft__worker *w)
{
	struct weft_runtime *rt = w->rt;

	return atomic_load_explicit(&rt->stk_warm_hint, memory_order_relaxed) >
	       (unsigned long)rt->stack_cache * rt->nworkers;
}

uint64_t weft__stack_trim(struct weft__worker *w, uint64_t now)
{
	struct weft_runtime *rt = w->rt;
	unsigned long keep = (unsigned long)rt->stack_cache * rt->nworkers;
	struct weft__stack *head = NULL, *tail = NULL, *s;
	uint64_t at;

	if (!weft__stack_trim_wanted(w))
		return 0;
	weft__spin_lock(&rt->stk_lock);
	if (rt->stk_warm_n <= keep) {
		rt->stk_trim_at = 0;
		weft__spin_unlock(&rt->stk_lock);
		return 0;
	}
	if (!rt->stk_trim_at || now < rt->stk_trim_at) {
		if (!rt->stk_trim_at)
			rt->stk_trim_at = now + WEFT__STK_DECAY_NS;
		at = rt->stk_trim_at;
		weft__spin_unlock(&rt->stk_lock);
		return at;
	}
	/* Decayed: keep `keep` warm stacks, the rest go cold. */
	while (rt->stk_warm_n > keep) {
		s = rt->stk_warm;
		rt->stk_warm = s->next;
		rt->stk_warm_n--;
		s->cold = true;
		s->next = head;
		head = s;
		if (!tail)
			tail = s;
	}
	rt->stk_trim_at = 0;
	atomic_store_explicit(&rt->stk_warm_hint, rt->stk_warm_n,
			      memory_order_relaxed);
	weft__spin_unlock(&rt->stk_lock);
	release_pages(rt, head);
	weft__spin_lock(&rt->stk_lock);
	tail->next = rt->stk_free;
	rt->stk_free = head;
	weft__spin_unlock(&rt->stk_lock);
	return 0;
}

void weft__stack_drop(struct weft_runtime *rt, struct weft__stack *s)
{
	/* Shutdown, task still holding its stack: arena stacks go with the
	 * arena; a stack with its own mapping is unmapped here. */
	if (!s->arena) {
		stack_deregister(s);
		munmap(s->lo - rt->stk_guard, rt->stk_guard + s->size);
		weft__mem_free(s);
	}
}

void weft__stack_fini(struct weft_runtime *rt)
{
	struct weft__slab *sl, *n;
	unsigned i;

	for (sl = rt->stk_slabs; sl; sl = n) {
		n = sl->next;
		for (i = 0; i < WEFT__STK_SLAB; i++)
			stack_deregister(&sl->desc[i]);
		munmap(sl->mem, sl->len);
		weft__mem_free(sl);
	}
	rt->stk_slabs = NULL;
	rt->stk_unarmed = 0;
	rt->stk_free = NULL;
	rt->stk_warm = NULL;
	rt->stk_warm_n = 0;
}

/* ---- stack overflow reports ------------------------------------------- */


/*
 * The SIGSEGV handler is the process's, and other code may install its
 * own after weft (a crash reporter): each worker's start looks whether
 * weft's is still the one installed and, if not, installs it again over
 * the newcomer, which becomes the handler it hands on to (old_segv).
 * So an overflow is reported whatever was installed since (and kills the
 * process with the default action), and the other handler still sees
 * every fault that is not an overflow. old_segv is written (under
 * segv_lock) before weft's handler is installed, and read only by that
 * handler, i.e. after the install.
 */
static struct sigaction old_segv;
static pthread_mutex_t segv_lock = PTHREAD_MUTEX_INITIALIZER;
/* The alternate signal stack the thread had before it became a worker
 * (worker 0 is the user's thread), restored when it stops being one. */
static __thread stack_t saved_ss;

static void put_str(const char *s)
{
	ssize_t r = write(STDERR_FILENO, s, strlen(s));
	(void)r;
}

static void put_num(size_t v)
{
	char buf[24];
	int i = sizeof(buf);

	buf[--i] = '\0';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	put_str(&buf[i]);
}

/* The stack pointer of the code that faulted, or UINTPTR_MAX if this CPU's
 * context is not known here. */
static uintptr_t fault_sp(void *uctx)
{
	ucontext_t *uc = uctx;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.sp;
#else
	(void)uc;
	return UINTPTR_MAX;
#endif
}

static bool segv_chain(int sig, siginfo_t *si, void *uctx);

static void segv_handler(int sig, siginfo_t *si, void *uctx)
{
	struct weft__worker *w = weft__worker_tls;
	struct weft__tcb *t = w ? w->current : NULL;
	char *addr = si->si_addr;

	if (t && t->stack) {
		char *lo = t->stack->lo;
		size_t guard = w->rt->stk_guard;
		/* In the guard; or anywhere, with the stack pointer below the
		 * stack: a frame larger than the guard, not probed page by
		 * page, that jumped past it and faulted further down (in
		 * another stack's guard, say). */
		if ((addr < lo && addr >= lo - guard) ||
		    fault_sp(uctx) < (uintptr_t)lo) {
			put_str("weft: stack overflow in task '");
			put_str(t->name);
			put_str("' (stack size ");
			put_num(t->stack->size);
			put_str(" bytes); give it a larger stack_size\n");
			/* The access runs again under SIG_DFL and the
			 * process dies of it. Not handed on: a sanitizer's
			 * handler would turn the death into a report of its
			 * own and an exit status. */
			signal(sig, SIG_DFL);
			return;
		}
	}
	/* Not an overflow: the other handler decides (it may recover, a
	 * collector's write barrier say); with none, the default. */
	if (!segv_chain(sig, si, uctx))
		signal(sig, SIG_DFL);
}

/* Hands a fault on to the handler installed before weft's; false if there
 * was none. */
static bool segv_chain(int sig, siginfo_t *si, void *uctx)
{
	if (old_segv.sa_flags & SA_SIGINFO) {
		if (old_segv.sa_sigaction) {
			old_segv.sa_sigaction(sig, si, uctx);
			return true;
		}
	} else if (old_segv.sa_handler != SIG_DFL &&
		   old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
		return true;
	}
	return false;
}

/* Installs weft's handler unless it is the one installed (see above). */
static void segv_install(void)
{
	struct sigaction sa, cur;

	pthread_mutex_lock(&segv_lock);
	/* By the handler alone (sa_handler and sa_sigaction share their
	 * storage): an interposer (a sanitizer's sigaction) may report the
	 * flags otherwise, and weft must never hand faults on to itself. */
	if (sigaction(SIGSEGV, NULL, &cur) == 0 &&
	    cur.sa_sigaction != segv_handler) {
		old_segv = cur;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = segv_handler;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
	}
	pthread_mutex_unlock(&segv_lock);
}

int weft__stack_signal_init(struct weft__worker *w)
{
	stack_t ss;

	segv_install();
	w->altstack = mmap(NULL, WEFT__ALTSTACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->altstack == MAP_FAILED) {
		w->altstack = NULL;
		return -ENOMEM;
	}
	ss.ss_sp = w->altstack;
	ss.ss_size = WEFT__ALTSTACK;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, &saved_ss) < 0) {
		int err = -errno;
		munmap(w->altstack, WEFT__ALTSTACK);
		w->altstack = NULL;
		return err;
	}
	return 0;
}

void weft__stack_signal_fini(struct weft__worker *w)
{
	stack_t ss;

	if (!w->altstack)
		return;
	if (saved_ss.ss_sp && !(saved_ss.ss_flags & SS_DISABLE)) {
		sigaltstack(&saved_ss, NULL);
	} else {
		memset(&ss, 0, sizeof(ss));
		ss.ss_flags = SS_DISABLE;
		sigaltstack(&ss, NULL);
	}
	munmap(w->altstack, WEFT__ALTSTACK);
	w->altstack = NULL;
}
