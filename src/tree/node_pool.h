// SPDX-License-Identifier: MIT
// node_pool.h - fixed-size block allocator for RangeTree nodes and VMAs.
//
// Every store() copies a root-to-leaf path and frees the old path from an
// RCU callback on another thread; glibc malloc handles that producer /
// consumer pattern poorly (it dominated store() time).  VMAs have the same
// pattern: made by the thread that maps, freed by the RCU callback thread
// after munmap (with malloc, the two met on the arena's lock and the
// callback thread fell behind: 8% of a 2-thread mmap/munmap loop).  The
// pool keeps 64-byte aligned blocks of three size classes:
//
//   alloc()        pops the calling thread's cache; refills it by taking the
//                  whole global return stack (one exchange), else carves a
//                  new slab.
//   free_local()   pushes onto the calling thread's cache (writer side:
//                  nodes that were never published, tree destruction).
//   free_remote()  pushes a pre-linked chain onto the global return stack
//                  with one CAS (RCU callbacks, any thread).  Push-only plus
//                  take-all is ABA-free.
//
// Slabs are never returned to the OS; a thread's cache goes back to the
// global stack when the thread exits.  Under ASan/TSan the pool is bypassed
// (plain aligned new/delete) so the sanitizers see every free and can catch
// a reader touching a node after its grace period.
#pragma once

#include <cstddef>

namespace vmspace::tree::pool {

// Leaf and inner tree nodes, and mm::Vma (vma.cpp checks its size).
enum Class : unsigned { kSmall = 0, kLarge = 1, kVma = 2 };
inline constexpr unsigned kClasses = 3;
inline constexpr std::size_t kClassSize[kClasses] = {384, 1024, 192};

// Throws std::bad_alloc when the system has no memory left.
void* alloc(Class c);
void free_local(Class c, void* p);

// A chain for free_remote(): link blocks with chain_push, then release.
struct Chain {
  void* head = nullptr;
  void* tail = nullptr;
};
void chain_push(Chain& ch, void* p);
void free_remote(Class c, Chain& ch);

// Bytes of slab memory obtained from the system so far (all threads).
std::size_t slab_bytes();

}  // namespace vmspace::tree::pool
