// SPDX-License-Identifier: MIT
// A thread whose first use of its batch of freed VMAs is
// vm_area_free_flush() (it destroys an AddressSpace before it ever used
// RCU) and that later leaves a VMA in the batch must exit unregistered
// from liburcu: the batch's exit destructor calls rcu::call, so the
// thread must register before the batch's destructor is scheduled (it
// then runs first).  Otherwise the thread re-registers while exiting and
// liburcu keeps a pointer into its freed TLS.
//
// Its own executable: it interposes liburcu's register/unregister calls
// (the library reaches them through the PLT) to count them per thread.
#include <dlfcn.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "support/test_host.h"
#include "vmspace/address_space.h"

namespace {
thread_local int t_registered = 0;
std::atomic<int> g_left_registered{0};

// Destroyed after everything the thread constructed later (thread_local
// destructors run in reverse order): sees the final count.
struct ExitCheck {
  ~ExitCheck() {
    if (t_registered != 0) g_left_registered.fetch_add(1);
  }
};
}  // namespace

extern "C" void urcu_memb_register_thread() {
  static auto real = reinterpret_cast<void (*)()>(dlsym(RTLD_NEXT, "urcu_memb_register_thread"));
  ++t_registered;
  real();
}
extern "C" void urcu_memb_unregister_thread() {
  static auto real = reinterpret_cast<void (*)()>(dlsym(RTLD_NEXT, "urcu_memb_unregister_thread"));
  --t_registered;
  real();
}

namespace vmspace {
namespace {

TEST(VmaFreeExit, AThreadExitsUnregisteredWhateverItsFirstUse) {
  constexpr std::uint64_t kBase = 0x300000000000, kPage = 4096;
  for (LockMode mode : kAllLockModes) {
    auto a = std::make_unique<AddressSpace>(test::test_options(mode));
    auto c = std::make_unique<AddressSpace>(test::test_options(mode));
    ASSERT_EQ(c->mmap(kBase, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), static_cast<long>(kBase));
    std::thread t([&] {
      static thread_local ExitCheck check;
      (void)&check;
      a.reset();  // the thread's first use of the batch: ~AddressSpace flushes it
      EXPECT_EQ(c->munmap(kBase, kPage), 0);  // one VMA waits in the batch until the exit
    });
    t.join();
    EXPECT_EQ(g_left_registered.load(), 0) << lock_mode_name(mode) << ": the thread exited registered with liburcu";
  }
}

}  // namespace
}  // namespace vmspace
