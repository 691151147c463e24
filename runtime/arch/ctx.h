/*
 * The context switch, chosen by CPU. The assembly lives in
 * runtime/arch/<arch>/ctx.S; this header is the one place that picks it
 * and knows each architecture's initial frame layout.
 */
#ifndef WEFT_ARCH_CTX_H
#define WEFT_ARCH_CTX_H

/* A new context resumes this many bytes into weft__ctx_entry, past one
 * padding instruction that keeps unwinders inside that function (see
 * ctx.S, which includes this header to check the distance). */
#if defined(__x86_64__)
#define WEFT__CTX_ENTRY_SKIP 1
#elif defined(__aarch64__)
#define WEFT__CTX_ENTRY_SKIP 4
#endif

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Switch stacks: save the caller's callee-saved state and stack pointer in
 * *save_sp, resume the context saved at load_sp, and hand it `arg` as the
 * return value of its own weft__ctx_switch() call (or as the first argument
 * of its entry function, for a new context). */
void *weft__ctx_switch(void **save_sp, void *load_sp, void *arg);
void weft__ctx_entry(void);

/* Entry function of a new context: `arg` from the first switch into it,
 * `ctx` from weft__ctx_make(). Must never return. */
typedef void (*weft__ctx_fn)(void *arg, void *ctx);

/* Floating-point control state a new context starts with (rounding mode,
 * exception masks, x87 precision, flush-to-zero): x86-64: MXCSR's control
 * bits | x87 control word << 32; AArch64: FPCR. weft__ctx_fpctl_get() reads
 * the calling thread's; weft__ctx_make() puts one into the frame it
 * makes. */
typedef uint64_t weft__fpctl;

#if defined(__x86_64__)
#define WEFT__CTX_FRAME 64

static inline weft__fpctl weft__ctx_fpctl_get(void)
{
	uint32_t mxcsr;
	uint16_t fpucw;

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(fpucw));
	/* The six status flags (sticky exceptions) are not carried over. */
	return (mxcsr & ~UINT32_C(0x3f)) | (uint64_t)fpucw << 32;
}

/* Lowers any raised x87 exception flags of the calling thread: a new task
 * starts with none (the switch carries control state, not the flags,
 * which belong to the thread and whatever ran on it). MXCSR's six flags
 * need no work here: a new context's first switch-in loads its MXCSR,
 * which has none, whatever the thread had (ctx.S, the frame's
 * first-entry byte). Reads first: fnclex costs about 14 ns on AMD Zen,
 * the read about 5. */
static inline void weft__ctx_fpflags_clear(void)
{
	uint16_t sw;

	__asm__ volatile("fnstsw %0" : "=am"(sw));
	if (sw & 0x3fu)
		__asm__ volatile("fnclex");
}

/* Builds a switch frame at the top of [lo, hi) and returns its stack
 * pointer, to be passed as load_sp. */
static inline void *weft__ctx_make(void *lo, void *hi, weft__ctx_fn fn,
				   void *ctx, weft__fpctl fp)
{
	uintptr_t top = ((uintptr_t)hi) & ~(uintptr_t)15;
	/* After the frame is popped and `ret` consumed its slot, rsp must be
	 * 16-byte aligned for weft__ctx_entry (whose `call` then gives the
	 * callee the ABI's rsp = 8 mod 16): the return slot sits at top - 24,
	 * so rsp is top - 16 after the `ret`. */
	uint64_t *sp = (uint64_t *)(top - 16 - WEFT__CTX_FRAME);
	uint32_t mxcsr = (uint32_t)fp & ~UINT32_C(0x3f);
	uint16_t fpucw = (uint16_t)(fp >> 32);
	uint8_t first = 1;

	(void)lo;
	memset(sp, 0, WEFT__CTX_FRAME + 16);
	memcpy(&sp[0], &mxcsr, 4);
	memcpy((char *)&sp[0] + 4, &fpucw, 2);
	/* The first switch-in loads this MXCSR even where its control
	 * bits match the thread's: that clears the thread's flags. */
	memcpy((char *)&sp[0] + 6, &first, 1);
	sp[1] = 0;			/* r15 */
	sp[2] = 0;			/* r14 */
	sp[3] = (uint64_t)(uintptr_t)ctx; /* r13 */
	sp[4] = (uint64_t)(uintptr_t)fn;	/* r12 */
	sp[5] = 0;			/* rbx */
	sp[6] = 0;			/* rbp */
	sp[7] = (uint64_t)(uintptr_t)weft__ctx_entry + WEFT__CTX_ENTRY_SKIP;
	return sp;
}
#elif defined(__aarch64__)
#define WEFT__CTX_FRAME 176

static inline weft__fpctl weft__ctx_fpctl_get(void)
{
	uint64_t fpcr;

	__asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
	return fpcr;
}

/* As on x86-64: FPSR's cumulative exception flags (IOC, DZC, OFC, UFC,
 * IXC, IDC) and QC. */
static inline void weft__ctx_fpflags_clear(void)
{
	uint64_t fpsr;

	__asm__ volatile("mrs %0, fpsr" : "=r"(fpsr));
	if (fpsr & UINT64_C(0x0800009f))
		__asm__ volatile("msr fpsr, %0"
				 : : "r"(fpsr & ~UINT64_C(0x0800009f)));
}

/* Signs a return address as weft__ctx_switch's PACIASP does when sp is
 * `modifier`: PACIA1716 signs x17 with key A and modifier x16. Like
 * PACIASP and AUTIASP it sits in the hint space, so on a CPU without
 * pointer authentication (or with key A disabled for the process) all
 * three are nops and the address stays plain at both ends. */
static inline uint64_t weft__ctx_sign_ra(uint64_t ra, uint64_t modifier)
{
	register uint64_t x17 __asm__("x17") = ra;
	register uint64_t x16 __asm__("x16") = modifier;

	__asm__("hint #8" : "+r"(x17) : "r"(x16)); /* pacia1716 */
	return x17;
}

static inline void *weft__ctx_make(void *lo, void *hi, weft__ctx_fn fn,
				   void *ctx, weft__fpctl fpcr)
{
	uintptr_t top = ((uintptr_t)hi) & ~(uintptr_t)15;
	uint64_t *sp = (uint64_t *)(top - WEFT__CTX_FRAME);

	(void)lo;
	memset(sp, 0, WEFT__CTX_FRAME);
	sp[0] = (uint64_t)(uintptr_t)fn;	/* x19 */
	sp[1] = (uint64_t)(uintptr_t)ctx; /* x20 */
	/* x30, signed for the switch's AUTIASP, which runs with sp = top
	 * once it has popped this frame. */
	sp[11] = weft__ctx_sign_ra((uint64_t)(uintptr_t)weft__ctx_entry +
					   WEFT__CTX_ENTRY_SKIP,
				   top);
	sp[20] = fpcr;
	return sp;
}
#else
#error "weft: no context switch for this CPU (x86-64 and AArch64 only)"
#endif
#endif /* !__ASSEMBLER__ */

#endif /* WEFT_ARCH_CTX_H */
