/*
 * The allocation hook: all heap memory of the runtime goes through these
 * calls (Lua's lua_Alloc), so that there is one place to count, to fail on
 * purpose in tests, or to swap allocators.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "base.h"
#include "mem.h"

/*
 * Allocation-failure injection, for tests of the -ENOMEM paths (every
 * allocation of the library goes through the three calls below). Armed by
 * weft__mem_debug_fail(skip, n): the next `skip` allocations succeed,
 * the `n` after them fail, later ones succeed again. Any thread's
 * allocation counts, so with several threads allocating at once which one
 * fails is up to the schedule; a test that walks skip = 0, 1, 2 ... until
 * no failure was injected still fails every allocation of a call in turn.
 * weft__mem_debug_fail(-1, 0) disarms; weft__mem_debug_fail_hits() says
 * how many failures were injected since the last arming.
 * Disarmed, it costs one acquire load and a predicted branch. Relaxed
 * throughout: the counters order nothing but themselves (the countdown is
 * one RMW per allocation, so each allocation takes one distinct value).
 */
static atomic_bool fail_armed;
static atomic_long fail_left;     /* allocations to let pass, then fail */
static atomic_long fail_n;        /* stored before fail_armed is set */
static atomic_ulong fail_hits;    /* failures injected since arming */

void weft__mem_debug_fail(long skip, long n)
{
	atomic_store_explicit(&fail_armed, false, memory_order_relaxed);
	if (skip < 0 || n <= 0)
		return; /* disarmed; the count of failures stays readable */
	atomic_store_explicit(&fail_hits, 0, memory_order_relaxed);
	atomic_store_explicit(&fail_n, n, memory_order_relaxed);
	atomic_store_explicit(&fail_left, skip, memory_order_relaxed);
	/* Release: a thread that sees armed (acquire below) sees fail_n. */
	atomic_store_explicit(&fail_armed, true, memory_order_release);
}

unsigned long weft__mem_debug_fail_hits(void)
{
	return atomic_load_explicit(&fail_hits, memory_order_relaxed);
}

static bool alloc_fails(void)
{
	long v;

	if (weft__likely(!atomic_load_explicit(&fail_armed,
					       memory_order_acquire)))
		return false;
	v = atomic_fetch_sub_explicit(&fail_left, 1, memory_order_relaxed);
	if (v > 0)
		return false;
	if (v <= -atomic_load_explicit(&fail_n, memory_order_relaxed)) {
		atomic_store_explicit(&fail_armed, false, memory_order_relaxed);
		return false;
	}
	atomic_fetch_add_explicit(&fail_hits, 1, memory_order_relaxed);
	return true;
}

void *weft__mem_alloc(size_t size)
{
	return alloc_fails() ? NULL : malloc(size);
}

void *weft__mem_calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : calloc(n, size);
}

/* align: a power of two; size is rounded up to a multiple of it, as C11's
 * aligned_alloc() asks. Freed with weft__mem_free(). */
void *weft__mem_aligned(size_t align, size_t size)
{
	if (alloc_fails())
		return NULL;
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

void weft__mem_free(void *p)
{
	free(p);
}

void *weft__mem_map(size_t size)
{
	void *p;

	if (alloc_fails())
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef WEFT__ASAN
	/* A task stack unmapped before may have left these addresses
	 * poisoned (frames that never returned); fresh pages are not. */
	__asan_unpoison_memory_region(p, size);
#endif
	return p;
}

void weft__mem_unmap(void *p, size_t size)
{
	if (p)
		munmap(p, size);
}

void weft__mem_give_back(void *p, size_t size)
{
	/* Cannot fail on a private anonymous mapping of our own; if it did,
	 * the pages would only stay resident. */
	(void)madvise(p, size, MADV_DONTNEED);
}
