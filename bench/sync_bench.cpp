// SPDX-License-Identifier: MIT
// Microbenchmarks for the sync primitives (not tests: no pass/fail).
//   RwSemaphore vs std::shared_mutex: uncontended read pair, write pair,
//   and two threads contending on the read side and on a mix.
#include <benchmark/benchmark.h>

#include <shared_mutex>

#include "sync/rcu.h"
#include "sync/rwsem.h"
#include "sync/seqcount.h"
#include "sync/spinlock.h"

namespace {

using vmspace::RwSemaphore;

template <class Lock>
Lock& shared_lock_instance() {
  static Lock l;
  return l;
}

template <class Lock>
void BM_ReadPair(benchmark::State& state) {
  Lock& l = shared_lock_instance<Lock>();
  for (auto _ : state) {
    l.lock_shared();
    l.unlock_shared();
  }
}

template <class Lock>
void BM_WritePair(benchmark::State& state) {
  Lock& l = shared_lock_instance<Lock>();
  for (auto _ : state) {
    l.lock();
    l.unlock();
  }
}

// 1 in 16 operations takes the write side; the rest read.
template <class Lock>
void BM_Mixed(benchmark::State& state) {
  Lock& l = shared_lock_instance<Lock>();
  unsigned i = static_cast<unsigned>(state.thread_index());
  for (auto _ : state) {
    if ((++i & 15) == 0) {
      l.lock();
      l.unlock();
    } else {
      l.lock_shared();
      l.unlock_shared();
    }
  }
}

BENCHMARK(BM_ReadPair<RwSemaphore>)->Name("read_pair/RwSemaphore")->Threads(1)->Threads(2);
BENCHMARK(BM_ReadPair<std::shared_mutex>)->Name("read_pair/std::shared_mutex")->Threads(1)->Threads(2);
BENCHMARK(BM_WritePair<RwSemaphore>)->Name("write_pair/RwSemaphore")->Threads(1)->Threads(2);
BENCHMARK(BM_WritePair<std::shared_mutex>)->Name("write_pair/std::shared_mutex")->Threads(1)->Threads(2);
BENCHMARK(BM_Mixed<RwSemaphore>)->Name("mixed_1w15r/RwSemaphore")->Threads(2);
BENCHMARK(BM_Mixed<std::shared_mutex>)->Name("mixed_1w15r/std::shared_mutex")->Threads(2);

void BM_SpinLockPair(benchmark::State& state) {
  static vmspace::SpinLock l;
  for (auto _ : state) {
    l.lock();
    l.unlock();
  }
}
BENCHMARK(BM_SpinLockPair)->Name("spinlock_pair")->Threads(1)->Threads(2);

void BM_RcuReadSection(benchmark::State& state) {
  for (auto _ : state) {
    vmspace::rcu::ReadGuard g;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_RcuReadSection)->Name("rcu_read_section")->Threads(1)->Threads(2);

void BM_SeqCountRead(benchmark::State& state) {
  static vmspace::SeqCount sc;
  for (auto _ : state) {
    std::uint64_t s = sc.read_begin();
    benchmark::DoNotOptimize(sc.read_retry(s));
  }
}
BENCHMARK(BM_SeqCountRead)->Name("seqcount_read");

}  // namespace

BENCHMARK_MAIN();
