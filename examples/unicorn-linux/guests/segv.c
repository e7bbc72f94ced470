// SPDX-License-Identifier: MIT
// segv.c - faults delivered as signals.  The guest installs a SIGSEGV
// handler (rt_sigaction with SA_SIGINFO | SA_RESTORER), then faults in the
// way argv[1] names; the handler prints the signal, si_code and where the
// fault was relative to the page, and exits 0.
//   (none)     write to a page made read-only by mprotect (SEGV_ACCERR)
//   maperr     read from a page after munmap (SEGV_MAPERR)
//   exec       call into a readable, writable, non-executable page (NX:
//              SEGV_ACCERR at the first instruction)
//   nohandler  the first case without a handler: killed by SIGSEGV (exit
//              status 139 as the shell reports it)
#include "guest.h"

static u8* page;

static void handler(int sig, void* info, void* ucontext) {
  const struct guest_siginfo* si = (const struct guest_siginfo*)info;
  (void)ucontext;
  say_dec("signal", sig);
  say_dec("si_signo", si->si_signo);
  say_dec("si_code", si->si_code);
  say_dec("si_addr - page", (long)((u8*)si->si_addr - page));
  sys_exit_group(0);
}

int main(int argc, char** argv) {
  const char* how = argc > 1 ? argv[1] : "accerr";
  page = (u8*)sys_mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (is_err(page)) die("mmap failed");
  for (int i = 0; i < 2 * 4096; i++) page[i] = (u8)(i * 7);
  if (!str_eq(how, "nohandler")) say_dec("rt_sigaction", sys_rt_sigaction(SIGSEGV, handler));

  volatile u8* v = page;
  if (str_eq(how, "maperr")) {
    say_dec("munmap", sys_munmap(page, 4096));
    say_dec("other page still there", v[4096 + 5]);
    say_dec("read", v[77]);  // faults
  } else if (str_eq(how, "exec")) {
    page[100] = 0xc3;  // ret
    void (*fn)(void) = (void (*)(void))(page + 100);
    fn();  // faults: the page is not executable
  } else {
    say_dec("mprotect", sys_mprotect(page, 4096, PROT_READ));
    say_dec("still readable", v[123]);
    v[4096 + 123] = 1;  // the next page is still writable
    v[123] = 1;         // faults
  }
  put_str("not reached\n");
  return 3;
}
