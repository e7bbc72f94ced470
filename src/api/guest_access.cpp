// SPDX-License-Identifier: MIT
// guest_access.cpp - guest memory as an emulated CPU's atomic instructions
// and the futex syscall see it: AddressSpace::atomic_* and futex_key.
//
// An atomic is one std::atomic_ref operation on the host bytes of the
// guest's page, made inside an RCU read-side section while the thread is
// a translation holder (mm/tlb.h), exactly as access() copies: the frame
// cannot be reused, nor handed to a fork relative, while the operation
// runs, and a page shared copy-on-write is never the target of a write
// (the translation is taken only through a writable, dirty PTE).  So the
// operation is atomic with respect to every other access to the frame:
// other threads' atomics and copies in this space, other spaces mapping
// the same shared page, and host code using a translate()d pointer.  An
// aligned access of at most 8 bytes never crosses a page: one translation
// serves the whole operation.
#include <atomic>
#include <bit>
#include <cerrno>
#include <stdexcept>

#include "api/soft_mmu.h"
#include "mm/memory.h"
#include "mm/mmap_lock.h"
#include "mm/tlb.h"
#include "mm/vma.h"
#include "sync/rcu.h"
#include "vmspace/address_space.h"

namespace vmspace {

// Guest values are x86-64's, little-endian, and the frames hold them as
// the guest wrote them: a host of the other byte order would need a swap
// around every operation (and could not do fetch_add as one).
static_assert(std::endian::native == std::endian::little, "guest atomics assume a little-endian host");

namespace {

void check_size(unsigned size) {
  if (size != 1 && size != 2 && size != 4 && size != 8)
    throw std::invalid_argument("vmspace: guest atomic size must be 1, 2, 4 or 8");
}

// Translate va for `kind` and run op(host pointer) on it, faulting the
// page in as the CPU would (and retrying: a racing zap can undo a fault,
// as in access()).  Nothing is done, and op is not called, on a fault.
template <class Op>
AccessResult guest_atomic(mm::MmStruct* m, std::uint64_t va, unsigned size, AccessKind kind, Op&& op) {
  check_size(size);
  // #AC / BUS_ADRALN: Linux delivers SIGBUS at the address for a
  // misaligned atomic when split-lock or alignment checking traps it; an
  // emulator asks for natural alignment so that every operation is one
  // host atomic on one page.
  if (va % size != 0) return AccessResult{Fault::sigbus, va, 0};
  // Holder while translating and operating, not while faulting (access()).
  mm::mm_tlb_enter(m);
  for (;;) {
    {
      rcu::ReadGuard rcu;
      if (void* p = api::usable(m, va, kind)) {
        op(p);
        break;
      }
    }
    mm::mm_tlb_exit(m);
    const fault::FaultResult r = fault::handle_fault(m, va, api::to_access(kind));
    if (r != fault::FaultResult::ok) return AccessResult{api::to_fault(r), va, 0};
    mm::mm_tlb_enter(m);
  }
  mm::mm_tlb_exit(m);
  return AccessResult{Fault::none, 0, size};
}

// Call fn.template operator()<T>() with T the unsigned type of `size`
// bytes (checked already).
template <class Fn>
void with_width(unsigned size, Fn&& fn) {
  switch (size) {
    case 1: fn.template operator()<std::uint8_t>(); break;
    case 2: fn.template operator()<std::uint16_t>(); break;
    case 4: fn.template operator()<std::uint32_t>(); break;
    default: fn.template operator()<std::uint64_t>(); break;
  }
}

// The guest word at host pointer p (naturally aligned: frames are page
// aligned and va is a multiple of sizeof(T)).
template <class T>
std::atomic_ref<T> word(void* p) {
  return std::atomic_ref<T>(*static_cast<T*>(p));
}

}  // namespace

AccessResult AddressSpace::atomic_load(std::uint64_t va, unsigned size, std::uint64_t* value) {
  return guest_atomic(mm_.get(), va, size, AccessKind::read, [&](void* p) {
    with_width(size, [&]<class T>() { *value = word<T>(p).load(std::memory_order_seq_cst); });
  });
}

AccessResult AddressSpace::atomic_store(std::uint64_t va, unsigned size, std::uint64_t value) {
  return guest_atomic(mm_.get(), va, size, AccessKind::write, [&](void* p) {
    with_width(size, [&]<class T>() { word<T>(p).store(static_cast<T>(value), std::memory_order_seq_cst); });
  });
}

AccessResult AddressSpace::atomic_exchange(std::uint64_t va, unsigned size, std::uint64_t value,
                                           std::uint64_t* old) {
  return guest_atomic(mm_.get(), va, size, AccessKind::write, [&](void* p) {
    with_width(size, [&]<class T>() {
      const T was = word<T>(p).exchange(static_cast<T>(value), std::memory_order_seq_cst);
      if (old != nullptr) *old = was;
    });
  });
}

AccessResult AddressSpace::atomic_compare_exchange(std::uint64_t va, unsigned size, std::uint64_t* expected,
                                                   std::uint64_t desired, bool* success) {
  // A write access even when the comparison fails: x86's CMPXCHG always
  // writes (the old value back), so the CPU takes a write fault first.
  return guest_atomic(mm_.get(), va, size, AccessKind::write, [&](void* p) {
    with_width(size, [&]<class T>() {
      T exp = static_cast<T>(*expected);
      const bool ok = word<T>(p).compare_exchange_strong(exp, static_cast<T>(desired), std::memory_order_seq_cst);
      if (!ok) *expected = exp;
      if (success != nullptr) *success = ok;
    });
  });
}

AccessResult AddressSpace::atomic_fetch_add(std::uint64_t va, unsigned size, std::uint64_t value,
                                            std::uint64_t* old) {
  return guest_atomic(mm_.get(), va, size, AccessKind::write, [&](void* p) {
    with_width(size, [&]<class T>() {
      // Unsigned: wraps modulo 2^(8 * size), as the guest's LOCK XADD.
      const T was = word<T>(p).fetch_add(static_cast<T>(value), std::memory_order_seq_cst);
      if (old != nullptr) *old = was;
    });
  });
}

// Linux get_futex_key(), with the VMA deciding the kind of key: a private
// futex, or a shared one on private memory, is keyed by the space and the
// address; a shared futex on a MAP_SHARED mapping by the object all its
// mappings share (the file, or the shmem object of shared anonymous
// memory, which fork passes on) and the byte offset in it.  (Linux looks
// at the page instead: a private file mapping's page not yet copied on
// write gets the file's key there.  vmspace keys all private memory by
// address, which is what a futex on private memory can rely on anyway.)
// Under the mmap_lock for reading: the VMA, its file and pgoff are stable
// while read; nothing is faulted in.
int AddressSpace::futex_key(std::uint64_t va, bool shared, FutexKey* key) const {
  if (va % 4 != 0 || key == nullptr) return -EINVAL;
  mm::MmStruct* m = mm_.get();
  int r = -EFAULT;
  mm::mmap_read_lock(m);
  if (const mm::Vma* v = mm::vma_lookup(m, va); v != nullptr && mm::vma_data_accessible(v)) {
    if (shared && (v->vm_flags & mm::VM_SHARED) && v->vm_file != nullptr)
      *key = FutexKey{v->vm_file, (v->vm_pgoff << mm::kPageShift) + (va - v->vm_start)};
    else
      *key = FutexKey{m, va};
    r = 0;
  }
  mm::mmap_read_unlock(m);
  return r;
}

}  // namespace vmspace
