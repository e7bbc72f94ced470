// SPDX-License-Identifier: MIT
// guest.h - the whole "libc" of the test guests: raw x86-64 Linux system
// calls, _start, and printing of strings and numbers.  Each guest is one
// translation unit built -static -nostdlib, so it runs the same natively
// and under vmspace-unicorn, and nothing here depends on where the kernel
// (or the runner) placed anything: guests print offsets and checksums,
// never absolute addresses.
#pragma once

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

enum {
  SYS_write = 1, SYS_mmap = 9, SYS_mprotect = 10, SYS_munmap = 11, SYS_brk = 12,
  SYS_rt_sigaction = 13, SYS_rt_sigreturn = 15, SYS_mremap = 25, SYS_madvise = 28,
  SYS_exit = 60, SYS_arch_prctl = 158, SYS_exit_group = 231,
};
enum { PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4 };
enum { MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20 };
enum { MREMAP_MAYMOVE = 1 };
enum { MADV_DONTNEED = 4 };
enum { SIGBUS = 7, SIGSEGV = 11 };
#define SA_SIGINFO 0x4ul
#define SA_RESTORER 0x04000000ul

static inline long syscall6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#define syscall3(n, a, b, c) syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static inline long sys_write(int fd, const void* buf, u64 n) { return syscall3(SYS_write, fd, buf, n); }
static inline void* sys_mmap(void* addr, u64 len, int prot, int flags) {
  return (void*)syscall6(SYS_mmap, (long)addr, (long)len, prot, flags, -1, 0);
}
static inline long sys_munmap(void* addr, u64 len) { return syscall3(SYS_munmap, addr, len, 0); }
static inline long sys_mprotect(void* addr, u64 len, int prot) { return syscall3(SYS_mprotect, addr, len, prot); }
static inline long sys_madvise(void* addr, u64 len, int advice) { return syscall3(SYS_madvise, addr, len, advice); }
static inline void* sys_mremap(void* old, u64 old_len, u64 new_len, int flags) {
  return (void*)syscall6(SYS_mremap, (long)old, (long)old_len, (long)new_len, flags, 0, 0);
}
static inline u64 sys_brk(u64 addr) { return (u64)syscall3(SYS_brk, addr, 0, 0); }
static inline __attribute__((noreturn)) void sys_exit_group(int status) {
  syscall3(SYS_exit_group, status, 0, 0);
  __builtin_unreachable();
}
static inline int is_err(const void* p) { return (u64)p >= (u64)-4095; }

// The kernel's struct sigaction (not glibc's): handler, flags, restorer, mask.
struct kernel_sigaction {
  void (*handler)(int, void*, void*);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
};
// The start of siginfo_t: what the handlers read.
struct guest_siginfo {
  int si_signo, si_errno, si_code, pad;
  void* si_addr;
};
// rt_sigreturn, as glibc's __restore_rt (the tests' handlers never return).
void guest_restore_rt(void);
__asm__(".text\n.globl guest_restore_rt\nguest_restore_rt:\n  mov $15, %eax\n  syscall\n  hlt\n");
static inline long sys_rt_sigaction(int sig, void (*handler)(int, void*, void*)) {
  struct kernel_sigaction sa = {handler, SA_SIGINFO | SA_RESTORER, guest_restore_rt, 0};
  return syscall6(SYS_rt_sigaction, sig, (long)&sa, 0, 8, 0, 0);
}

// -nostdlib: GCC may still emit calls to these for copies and clears.
// (Built with -fno-tree-loop-distribute-patterns so they are not turned
// into calls to themselves.)
void* memcpy(void* dst, const void* src, u64 n) {
  u8* d = (u8*)dst;
  const u8* s = (const u8*)src;
  for (u64 i = 0; i < n; i++) d[i] = s[i];
  return dst;
}
void* memset(void* dst, int c, u64 n) {
  u8* d = (u8*)dst;
  for (u64 i = 0; i < n; i++) d[i] = (u8)c;
  return dst;
}

static inline u64 str_len(const char* s) {
  u64 n = 0;
  while (s[n]) n++;
  return n;
}
static inline int str_eq(const char* a, const char* b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}
static inline void put_str(const char* s) { sys_write(1, s, str_len(s)); }
static inline void put_hex(u64 v) {
  char buf[19];
  buf[0] = '0', buf[1] = 'x';
  for (int i = 0; i < 16; i++) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  sys_write(1, buf, 18);
}
static inline void put_dec(long v) {
  char buf[24];
  int i = 24;
  u64 u = v < 0 ? -(u64)v : (u64)v;
  do buf[--i] = (char)('0' + u % 10), u /= 10;
  while (u);
  if (v < 0) buf[--i] = '-';
  sys_write(1, buf + i, 24 - i);
}
// "name value\n" helpers.
static inline void say_hex(const char* name, u64 v) { put_str(name), put_str(" "), put_hex(v), put_str("\n"); }
static inline void say_dec(const char* name, long v) { put_str(name), put_str(" "), put_dec(v), put_str("\n"); }

// FNV-1a over n bytes.
static inline u64 checksum(const void* p, u64 n) {
  const u8* b = (const u8*)p;
  u64 h = 0xcbf29ce484222325ul;
  for (u64 i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ul;
  return h;
}

static inline void die(const char* what) {
  sys_write(2, what, str_len(what));
  sys_write(2, "\n", 1);
  sys_exit_group(1);
}

int main(int argc, char** argv);
void guest_start_c(long* sp);

// _start: the ABI's initial stack is argc, argv[], NULL, envp[], NULL, auxv.
__attribute__((noreturn, used)) void guest_start_c(long* sp) {
  sys_exit_group(main((int)sp[0], (char**)(sp + 1)));
}
__asm__(".text\n.globl _start\n_start:\n  xor %ebp, %ebp\n  mov %rsp, %rdi\n  and $-16, %rsp\n"
        "  call guest_start_c\n  hlt\n");
