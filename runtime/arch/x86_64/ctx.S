/*
 * Context switch for x86-64 (System V ABI).
 *
 * void *weft__ctx_switch(void **save_sp, void *load_sp, void *arg);
 *
 * Saves the callee-saved state of the caller on its own stack (rbp, rbx,
 * r12-r15, the SSE control/status word MXCSR and the x87 control word),
 * stores the resulting stack pointer in *save_sp, switches to load_sp,
 * restores the same set from there and returns `arg` to whoever switched
 * away from load_sp last. The floating-point control state is restored
 * only where it differs (see below). Caller-saved registers need no
 * saving: the ABI already lets the call clobber them. No signal mask, no
 * syscall.
 *
 * Saved frame, from load_sp upwards:
 *   [0]  mxcsr (4 bytes) | x87 cw (2 bytes) | first entry (1) | pad
 *   [8]  r15  [16] r14  [24] r13  [32] r12  [40] rbx  [48] rbp
 *   [56] return address
 *
 * A new context is made by weft__ctx_make() (runtime/arch/ctx.h), which
 * writes such a frame whose return address is just inside weft__ctx_entry
 * below, r12 holding the entry function and r13 its first argument.
 *
 * Unwinding (debuggers, profilers). The CFI below tells an unwinder, at
 * every instruction, where the caller's registers and return address
 * are. Up to `movq %rsi, %rsp` they are those of the context that is
 * switching out. From that instruction on, rsp points at the resumed
 * context's frame, whose layout is the same, so the same rules (CFA = rsp
 * + 64, each register at its slot) now describe the resumed context: a
 * backtrace taken there shows the stack that is coming in, down to its
 * own switch call or, for a new context, to weft__ctx_entry, where it
 * ends. That is the truthful picture (rsp, and from the pops on every
 * register, belong to the new context), and it needs no second set of
 * rules: describing the old context there instead would need expressions
 * through *save_sp for every register. The pops then hand each register
 * back as an epilogue does. tests/gdb_unwind.sh checks a backtrace at
 * every instruction.
 *
 * Control-flow enforcement (CET). The note at the end marks this object
 * IBT-compatible: weft__ctx_switch starts with endbr64, so it may be
 * reached by an indirect call or jump (it is called directly today, but
 * nothing stops taking its address); weft__ctx_entry is entered only by
 * `ret`, which IBT does not check; and the one indirect branch here, the
 * `call *%r12`, goes to weft__task_entry, C code with its own endbr64
 * (-fcf-protection).
 *
 * The note does not claim SHSTK, on purpose. Under a shadow stack every
 * `ret` must return to the address its `call` pushed on the thread's
 * shadow stack, and the `ret` below returns on another stack than the one
 * it was called on: at once when a new task starts (weft__ctx_entry was
 * never pushed by a call), and otherwise as soon as the resumed context
 * returns up its own call chain while the shadow stack holds the other
 * context's, the CPU raises #CP. Supporting it would take a shadow stack
 * per task (map_shadow_stack, Linux 6.6) and a switch of shadow-stack
 * pointers with restore tokens (saveprevssp/rstorssp, as glibc's
 * swapcontext does), which weft does not have. The linker ANDs these bits
 * over all objects, so linking this object leaves the program without
 * SHSTK, and it runs without a shadow stack: the honest outcome, where
 * claiming it would make task switches fault.
 */
#include "../ctx.h"

	.text
	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, @function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	endbr64
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbp, 0
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbx, 0
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r12, 0
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r13, 0
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r14, 0
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r15, 0
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movb	$0, 6(%rsp)	/* not a first entry (see below) */
	/* What the thread runs with now, kept for the comparison below. */
	movl	(%rsp), %ecx
	movzwl	4(%rsp), %r8d
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	/* The CFI is unchanged, and now describes the resumed context's
	 * frame (see the top of this file). */
	/* Restore only what differs, and only control bits count: MXCSR's
	 * six status flags are caller-saved in the ABI, and tasks doing
	 * floating-point work leave different sticky flags behind. A load
	 * of a different MXCSR or x87 control word costs tens of ns on
	 * current Intel parts; comparing first makes the common case two
	 * loads and two branches. The comparison is with the values just
	 * saved (the thread's own, nothing ran since), not a second
	 * stmxcsr/fnstcw: on AMD Zen a stmxcsr costs about 4.5 ns, as much
	 * as the rest of the switch (issue 12: context_switch took 26-38 ns
	 * on EPYC, 12-17 on Xeon).
	 * A new context's frame (weft__ctx_make) has its first-entry byte
	 * set: its MXCSR is loaded whatever the comparison says, which
	 * clears the flags the thread had (weft.h: a new task starts with
	 * none raised). */
	xorl	(%rsp), %ecx
	testl	$0xffc0, %ecx
	jnz	0f
	cmpb	$0, 6(%rsp)
	je	1f
0:	ldmxcsr	(%rsp)
1:	cmpw	4(%rsp), %r8w
	je	2f
	fldcw	4(%rsp)
2:
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	popq	%r15
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r15
	popq	%r14
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r14
	popq	%r13
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r13
	popq	%r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r12
	popq	%rbx
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbx
	popq	%rbp
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbp
	movq	%rdx, %rax
	/* A plain ret keeps the CPU's return-stack predictor balanced. Most
	 * switches leave from and resume at the same call site (the one in
	 * worker.c's switch_to), so its prediction is right; replacing it
	 * by pop + jmp was measured 3x slower in the runtime, because every
	 * later ret then mispredicts. */
	ret
	.cfi_endproc
	.size	weft__ctx_switch, .-weft__ctx_switch

/*
 * First instructions of a new context. Reached by the `ret` above, at
 * .Lctx_start, with rax = the arg passed to the switch, r12 = entry
 * function, r13 = its context pointer. Calls entry(arg, ctx), which never
 * returns. rsp is 16-byte aligned there (weft__ctx_make arranges it), so
 * the call leaves the callee with the ABI's rsp+8 alignment.
 *
 * Unwinding ends here: the return-address column is undefined in this
 * whole function, the unwinders' mark of the outermost frame (as in
 * glibc's _start and clone). rbp = 0 also ends frame-pointer chains.
 *
 * Why the nop: an unwinder looks a caller's return address up at address
 * - 1 (the call instruction, for a normal return address). A new
 * context's return address is .Lctx_start, so that lookup lands one byte
 * earlier; without the nop it would fall outside this function (in the
 * padding after weft__ctx_switch), in no FDE and no symbol, and a
 * backtrace taken in weft__ctx_switch after the stack switch would go
 * astray. weft__ctx_make adds WEFT__CTX_ENTRY_SKIP (ctx.h) to this
 * function's address; the check at the end keeps the two in step. No
 * endbr64 is needed at .Lctx_start: IBT checks indirect calls and jumps,
 * not returns. weft__ctx_entry itself is never called, so the nop (not an
 * endbr64) at its start also makes an indirect call to it fault under IBT.
 */
	.globl	weft__ctx_entry
	.hidden	weft__ctx_entry
	.type	weft__ctx_entry, @function
	.p2align 4
weft__ctx_entry:
	.cfi_startproc
	.cfi_undefined rip
	nop
.Lctx_start:
	xorl	%ebp, %ebp
	movq	%rax, %rdi
	movq	%r13, %rsi
	call	*%r12
	ud2
	.cfi_endproc
	.size	weft__ctx_entry, .-weft__ctx_entry
	.if	.Lctx_start - weft__ctx_entry - WEFT__CTX_ENTRY_SKIP
	.error	"weft__ctx_entry: resume point and WEFT__CTX_ENTRY_SKIP disagree"
	.endif

/* NT_GNU_PROPERTY_TYPE_0 note: GNU_PROPERTY_X86_FEATURE_1_AND with IBT
 * (bit 0) only; SHSTK (bit 1) is not claimed, see the top of this file. */
	.section .note.gnu.property, "a"
	.p2align 3
	.long	4		/* name size: "GNU\0" */
	.long	16		/* descriptor size */
	.long	5		/* NT_GNU_PROPERTY_TYPE_0 */
	.asciz	"GNU"
	.long	0xc0000002	/* GNU_PROPERTY_X86_FEATURE_1_AND */
	.long	4		/* property data size */
	.long	0x1		/* GNU_PROPERTY_X86_FEATURE_1_IBT */
	.long	0		/* pad to 8 bytes */

	.section .note.GNU-stack,"",@progbits
