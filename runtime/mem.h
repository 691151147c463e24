/*
 * The allocation hook (mem.c).
 */
#ifndef WEFT_MEM_H
#define WEFT_MEM_H

#include <stddef.h>

/* ---- allocation --------------------------------------------------------
 * All heap memory of the runtime goes through these (Lua's lua_Alloc): one
 * place to count, to fail on purpose in tests, or to swap allocators. */
void *weft__mem_alloc(size_t size);
void *weft__mem_calloc(size_t n, size_t size);
void *weft__mem_aligned(size_t align, size_t size);
/* Tests: fail allocations on demand (misc.c); declared again in
 * tests/weft_test.h, which cannot include this header. */
void weft__mem_debug_fail(long skip, long n);
unsigned long weft__mem_debug_fail_hits(void);
void weft__mem_free(void *p);
/* Anonymous read-write pages of their own (NULL: none), counted and failed
 * on purpose like the heap; unmapped with weft__mem_unmap(). */
void *weft__mem_map(size_t size);
void weft__mem_unmap(void *p, size_t size);
/* The pages of [p, p + size) go back to the kernel; they read as zeros
 * afterwards (MADV_DONTNEED). p and size: page multiples. */
void weft__mem_give_back(void *p, size_t size);

#endif /* WEFT_MEM_H */
