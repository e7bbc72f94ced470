// SPDX-License-Identifier: MIT
// smc.c - self-modifying code.  Writes `mov eax, IMM; ret` into an RWX
// page, calls it, rewrites IMM, calls it again (an emulator that kept the
// old translation would return the old value); the same with W^X flips
// (RW to write, RX to run); and patches a function in its own .text after
// mprotect(RWX).
#include "guest.h"

// patchme: alone on its page of .text (mov $1111, %eax; ret).
int patchme(void);
__asm__(".text\n.balign 4096\n.globl patchme\npatchme:\n  mov $1111, %eax\n  ret\n.balign 4096\n");

static void emit_mov_ret(volatile u8* p, u32 imm) {
  p[0] = 0xb8;  // mov $imm32, %eax
  p[1] = (u8)imm, p[2] = (u8)(imm >> 8), p[3] = (u8)(imm >> 16), p[4] = (u8)(imm >> 24);
  p[5] = 0xc3;  // ret
}
static void set_imm(volatile u8* p, u32 imm) {
  p[1] = (u8)imm, p[2] = (u8)(imm >> 8), p[3] = (u8)(imm >> 16), p[4] = (u8)(imm >> 24);
}

int main(int argc, char** argv) {
  (void)argc, (void)argv;
  // 1. One RWX page: write, run, rewrite, run.
  u8* rwx = (u8*)sys_mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS);
  if (is_err(rwx)) die("mmap failed");
  int (*fn)(void) = (int (*)(void))(rwx + 64);
  emit_mov_ret(rwx + 64, 42);
  say_dec("rwx call", fn());
  for (u32 i = 1; i <= 5; i++) {
    set_imm(rwx + 64, 1000 * i + i);
    say_dec("rwx call after rewrite", fn());
  }

  // 2. W^X: RW to write, RX to run.
  u8* wx = (u8*)sys_mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (is_err(wx)) die("mmap failed");
  emit_mov_ret(wx, 7);
  say_dec("mprotect rx", sys_mprotect(wx, 4096, PROT_READ | PROT_EXEC));
  int (*fn2)(void) = (int (*)(void))wx;
  say_dec("w^x call", fn2());
  say_dec("mprotect rw", sys_mprotect(wx, 4096, PROT_READ | PROT_WRITE));
  set_imm(wx, 77777);
  say_dec("mprotect rx", sys_mprotect(wx, 4096, PROT_READ | PROT_EXEC));
  say_dec("w^x call after rewrite", fn2());

  // 3. Patch our own .text.
  say_dec("patchme", patchme());
  u8* text_page = (u8*)((u64)patchme & ~4095ul);
  say_dec("mprotect text rwx", sys_mprotect(text_page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
  set_imm((volatile u8*)patchme, 2222);
  say_dec("patchme after patch", patchme());
  set_imm((volatile u8*)patchme, 3333);
  say_dec("patchme after second patch", patchme());

  say_dec("munmap", sys_munmap(rwx, 4096));
  return 0;
}
