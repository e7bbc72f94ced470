// SPDX-License-Identifier: MIT
// tlb.cpp - translation holders and the gathered release of shared frames
// (tlb.h says why).
#include "mm/tlb.h"

#include <atomic>
#include <new>

#include "sync/rcu.h"
#include "sync/tls.h"

// The seq_cst fence in mm_tlb_held is the releaser's half of the Dekker
// pair (tlb.h).  GCC's ThreadSanitizer does not model atomic_thread_fence
// and rejects it under -Werror (-Wtsan); tsan needs no edge from it: the
// immediate release is ordered after a holder's uses by mm_tlb_exit's
// release and mm_tlb_held's acquire, the deferred one by RCU, and a
// holder that the ordering makes see the new PTE never touches the old
// frame.
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

namespace vmspace::mm {

namespace {

std::atomic<unsigned> next_shard{0};
VMSPACE_TLS_FAST thread_local unsigned tls_shard = ~0u;

// A thread keeps one shard for its life (its enter and exit hit the same
// counter, whatever mm).
unsigned my_shard() {
  unsigned s = tls_shard;
  if (__builtin_expect(s == ~0u, 0))
    s = tls_shard = next_shard.fetch_add(1, std::memory_order_relaxed) % MmStruct::kTlbShards;
  return s;
}

// A gathered batch whose release waits for a grace period.
// Allocated with its n frame numbers right after it.
struct DeferredRelease {
  rcu::Head head;  // first: the callback gets &head
  mem::PhysMem* phys;
  unsigned n;
  mem::pfn_t* pfns() { return reinterpret_cast<mem::pfn_t*>(this + 1); }
};
static_assert(sizeof(DeferredRelease) % alignof(mem::pfn_t) == 0);

void release(mem::PhysMem* phys, const mem::pfn_t* pfns, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    phys->frame(pfns[i]).mapcount.fetch_sub(1, std::memory_order_relaxed);
    phys->put(pfns[i]);  // the cleared PTE's reference
  }
}

void deferred_release(rcu::Head* h) {
  auto* d = reinterpret_cast<DeferredRelease*>(h);
  release(d->phys, d->pfns(), d->n);
  ::operator delete(d);
}

}  // namespace

void mm_tlb_enter(MmStruct* mm) {
  // seq_cst, as the holder's PTE loads that follow (usable() in
  // address_space.cpp): with the fence in mm_tlb_held, either the
  // releaser's count load sees this increment or those PTE loads see the
  // releaser's change (C++20's rules for seq_cst fences; no fence needed
  // here: on x86 the locked add is one already).
  mm->tlb_holders[my_shard()].n.fetch_add(1, std::memory_order_seq_cst);
}

void mm_tlb_exit(MmStruct* mm) {
  // Release: the uses of the translations happen before a releaser that
  // reads the lowered count drops the frames (mm_tlb_held's acquire loads).
  mm->tlb_holders[my_shard()].n.fetch_sub(1, std::memory_order_release);
}

bool mm_tlb_held(MmStruct* mm) {
  // After the PTE change (sequenced before it); pairs with mm_tlb_enter's
  // seq_cst increment and the holder's seq_cst PTE loads.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (const auto& shard : mm->tlb_holders)
    if (shard.n.load(std::memory_order_seq_cst) != 0) return true;
  return false;
}

void MmuGather::finish() {
  if (n_ == 0) return;
  mem::PhysMem* phys = mm_->phys;
  if (!mm_tlb_held(mm_)) {
    release(phys, pfns_, n_);
  } else {
    // A holder that may still use an old translation read the PTE before
    // the change, inside an RCU read section that had begun by then (its
    // copy's ReadGuard, or its scope): the grace period rcu::call waits
    // for outlasts that section.
    void* p = ::operator new(sizeof(DeferredRelease) + n_ * sizeof(mem::pfn_t), std::nothrow);
    if (p != nullptr) {
      auto* d = new (p) DeferredRelease{};
      d->phys = phys;
      d->n = n_;
      for (unsigned i = 0; i < n_; ++i) d->pfns()[i] = pfns_[i];
      rcu::call(&d->head, &deferred_release);
    }
    // (Else: the frames keep the extra mapping and reference; see tlb.h.)
  }
  n_ = 0;
}

}  // namespace vmspace::mm
