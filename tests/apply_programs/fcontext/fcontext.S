/* A stack-switching library with boost.context's x86-64 System V interface and
 * saved-context layout (jump_fcontext, ontop_fcontext, make_fcontext, placed
 * as boost 1.74's library places them), written for the tests
 * so that they need no boost: built with plain gcc, it stands for a system
 * library the project does not build (buildhook/apply/fcontext.py recognises
 * this code and tells the saved contexts precisely).  With -DOTHER_LAYOUT,
 * jump_fcontext starts with a nop: code the applier does not know, so it keeps
 * the conservative memory scan.
 *
 * A saved context S: MXCSR and x87 control word at S, r12, r13, r14, r15,
 * rbx, rbp at S+8..S+0x30, the return address at S+0x38; resumed, rsp is
 * S+0x40.  transfer_t { fcontext_t fctx; void *data; } comes back in
 * rax:rdx, and a new context's function gets it in rdi:rsi.
 */
/* Save the callee-saved state below the return address the call pushed: S = rsp, handed over in rax. */
.macro SAVE_CONTEXT
    leaq -0x38(%rsp), %rsp
    stmxcsr (%rsp)
    fnstcw 0x4(%rsp)
    movq %r12, 0x8(%rsp)
    movq %r13, 0x10(%rsp)
    movq %r14, 0x18(%rsp)
    movq %r15, 0x20(%rsp)
    movq %rbx, 0x28(%rsp)
    movq %rbp, 0x30(%rsp)
    movq %rsp, %rax          /* the context left: to hand over */
.endm

/* Load the state saved at rsp = S (the return address stays at S+0x38). */
.macro RESTORE_CONTEXT
    ldmxcsr (%rsp)
    fldcw 0x4(%rsp)
    movq 0x8(%rsp), %r12
    movq 0x10(%rsp), %r13
    movq 0x18(%rsp), %r14
    movq 0x20(%rsp), %r15
    movq 0x28(%rsp), %rbx
    movq 0x30(%rsp), %rbp
.endm

    .text
    .globl jump_fcontext
    .type jump_fcontext, @function
    .align 16
jump_fcontext:
#ifdef OTHER_LAYOUT
    nop
#endif
    SAVE_CONTEXT
    movq %rdi, %rsp          /* the context resumed */
    movq 0x38(%rsp), %r8
    RESTORE_CONTEXT
    leaq 0x40(%rsp), %rsp
    movq %rsi, %rdx          /* transfer_t.data */
    movq %rax, %rdi          /* transfer_t.fctx, for a context that starts */
    jmp *%r8
    .size jump_fcontext, .-jump_fcontext

    .globl ontop_fcontext
    .type ontop_fcontext, @function
    .align 16
ontop_fcontext:              /* (to, data, function): function runs on top of the context resumed */
    movq %rdx, %r8
    SAVE_CONTEXT
    movq %rdi, %rsp
    RESTORE_CONTEXT
    leaq 0x38(%rsp), %rsp    /* the resumed context's return address stays: function returns there */
    movq %rax, %rdi          /* transfer_t { the context left, data } */
    jmp *%r8
    .size ontop_fcontext, .-ontop_fcontext

    .globl make_fcontext
    .type make_fcontext, @function
    .align 16
make_fcontext:               /* (stack top, size, function) */
    movq %rdi, %rax
    andq $-16, %rax
    leaq -0x40(%rax), %rax
    movq %rdx, 0x28(%rax)    /* rbx: the function */
    stmxcsr (%rax)
    fnstcw 0x4(%rax)
    leaq trampoline(%rip), %rcx
    movq %rcx, 0x38(%rax)    /* where the first jump goes */
    leaq finish(%rip), %rcx
    movq %rcx, 0x30(%rax)    /* rbp: the function's return address */
    ret
trampoline:
    push %rbp
    jmp *%rbx
finish:
    xorq %rdi, %rdi
    call _exit@PLT
    hlt
    .size make_fcontext, .-make_fcontext
    .section .note.GNU-stack,"",%progbits
