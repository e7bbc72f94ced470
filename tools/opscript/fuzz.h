// fuzz.h: random op scripts, the vmspace-vs-kernel comparison and a
// delta-debugging shrinker, for `vmspace fuzz-kernel` (and its tests).
//
// By default the generator produces scripts from the op kinds in
// kEnabledOps and the advice in kEnabledAdvice only (what the library
// passes today; the others wait in kPendingOps and kPendingAdvice). It
// keeps a rough page-level model of the region it works in (one for each
// space after a fork: locks, seals, guard markers, MCL_FUTURE too), so
// that most operations land on the places where Linux is subtle: VMA edges,
// the middle of a VMA, across several VMAs and holes, next to mappings with
// equal or different flags, and back on the pages a guard region, a
// DONTUNMAP move, a seal or a lock just changed.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "opscript/runner.h"
#include "opscript/script.h"
#include "vmspace/lock_mode.h"

namespace vmspace::opscript::fuzz {

// The op kinds the generator emits. Adding a kind here (e.g. kWrite once the
// library supports it) enables it; generate_op() has a case for every kind.
inline constexpr std::array kEnabledOps = {
    OpKind::kMmap,   OpKind::kMunmap,  OpKind::kMprotect, OpKind::kMadvise,  OpKind::kMaps,
    OpKind::kWrite,  OpKind::kRead,    OpKind::kMremap,   OpKind::kMlock,    OpKind::kMunlock,
    OpKind::kMlock2, OpKind::kMlockall, OpKind::kMunlockall, OpKind::kMseal, OpKind::kMincore,
    OpKind::kFile,   OpKind::kFtruncate, OpKind::kFork,  OpKind::kUse,
};

// The op kinds the generator can emit but does not by default (none
// now). Enable one by moving it to kEnabledOps (fork and use belong
// together: `use` only has other spaces to switch to after a `fork`). Every
// OpKind is in exactly one of the two lists.
inline constexpr std::array<OpKind, 0> kPendingOps = {};

// The madvise advice the generator emits, and the advice it can emit but
// does not by default (as for the op kinds: move one over to enable it).
// PAGEOUT stays out: Linux drops shared-memory pages that were only ever
// read, and vmspace does not track which shared pages are clean.
inline constexpr std::array kEnabledAdvice = {
    Advice::kNormal,     Advice::kRandom,       Advice::kSequential,    Advice::kWillneed,
    Advice::kDontneed,   Advice::kFree,         Advice::kDontfork,      Advice::kDofork,
    Advice::kDontdump,   Advice::kDodump,       Advice::kRemove,        Advice::kCold,
    Advice::kWipeonfork, Advice::kKeeponfork,   Advice::kHugepage,      Advice::kNohugepage,
    Advice::kPopulateRead, Advice::kPopulateWrite, Advice::kGuardInstall, Advice::kGuardRemove,
    Advice::kDontneedLocked,
};
inline constexpr std::array kPendingAdvice = {
    Advice::kPageout,
};

namespace detail {
template <class T, size_t N, size_t M, size_t K>
constexpr bool partitions(const std::array<T, N>& a, const std::array<T, M>& b, const T (&all)[K]) {
  if (N + M != K) return false;
  for (T x : all) {
    size_t n = 0;
    for (T y : a) n += y == x;
    for (T y : b) n += y == x;
    if (n != 1) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::partitions(kEnabledOps, kPendingOps, kAllOpKinds),
              "every OpKind is in exactly one of kEnabledOps and kPendingOps");
static_assert(detail::partitions(kEnabledAdvice, kPendingAdvice, kAllAdvice),
              "every Advice is in exactly one of kEnabledAdvice and kPendingAdvice");

// mmap flags the generator may add beyond private/shared/anon/fixed/
// noreplace/growsdown/noreserve (e.g. mmap_flag::kPopulate | kLocked once
// the library supports them). File-backed mmaps are generated when
// OpKind::kFile is enabled.
inline constexpr unsigned kExtraMmapFlags = mmap_flag::kPopulate | mmap_flag::kLocked;

struct GenOptions {
  size_t ops = 150;  // operations per script
  // The op kinds to generate (tests enable others to check that every
  // generator round-trips through the parser).
  std::vector<OpKind> kinds{kEnabledOps.begin(), kEnabledOps.end()};
  // The madvise advice to generate (when kMadvise is among the kinds).
  std::vector<Advice> advice{kEnabledAdvice.begin(), kEnabledAdvice.end()};
  unsigned extra_mmap_flags = kExtraMmapFlags;
};

// The seed of run `run` of a fuzz session with seed `seed`. Run 0's seed is
// `seed` itself, so a run can be replayed alone with `--seed <run seed>
// --runs 1`; the others are spread with the 64-bit golden ratio so that
// sessions with nearby seeds do not repeat each other's runs.
uint64_t run_seed(uint64_t seed, uint64_t run);

// A random script of options.ops operations, a pure function of
// (seed, options). Every op round-trips through script_text/parse_script
// (line numbers are set to 1..n), and the script is well_formed().
Script generate_script(uint64_t seed, const GenOptions& options = {});

// Sets each op's line to its 1-based index (as parse_script of
// script_text(script) would).
void renumber(Script& script);

// One comparison of a script's output on vmspace and on the host kernel.
struct Comparison {
  bool ok = false;     // false: setup error (kernel runner failed), see error
  std::string error;
  bool equal = true;   // every line agrees (meaningful when ok)
  std::vector<std::string> diff;  // diff_lines output (kernel vs vmspace)
  std::string retried;  // non-empty: the first kernel run failed with this error and was retried
};

// Runs `script` on a fresh AddressSpace built from host_like_options(mode)
// and on the host kernel (run_on_kernel), and diffs the two. A kernel run
// that fails (e.g. a child that hung: seen rarely in ASan builds, where the
// forked child can block) is retried once, with `retried` set; a second
// failure is a setup error.
Comparison compare_with_kernel(const Script& script, LockMode mode, const Window& window);

// Runs `script` on two executors (fresh ones from the factories) and diffs
// them as diff_lines(a, b); for tests and for comparing two library sides.
using ExecutorFactory = std::function<std::unique_ptr<Executor>()>;
Comparison compare_executors(const Script& script, const ExecutorFactory& a, const ExecutorFactory& b,
                             const Window& window);

// True when parse_script(script_text(script)) accepts the script: every
// file is declared once, before an op names it; every fork names a new
// space and every use one that exists (op scripts 1.1). The shrinker only
// tries well-formed candidates, so a reproducer always parses.
bool well_formed(const Script& script);

// True when the candidate still shows the failure being shrunk.
using Interesting = std::function<bool(const Script&)>;

struct ShrinkOptions {
  size_t max_evaluations = 5000;  // predicate calls before giving up (best so far is kept)
};

struct ShrinkStats {
  size_t evaluations = 0;  // predicate calls made
  size_t original_ops = 0;
  size_t final_ops = 0;
};

// Delta debugging: removes chunks of ops (halves, quarters, ... single ops)
// while `interesting` stays true, then tries simplifying single ops (length
// to one page, page-aligned addresses and lengths, plain flags, rw-, normal
// advice, fewer mlockall flags, mlock2 without onfault), and repeats until
// nothing changes. Only well_formed() candidates are tried. `script` must be
// interesting; the result is interesting and renumbered.
Script shrink(Script script, const Interesting& interesting, const ShrinkOptions& options = {},
              ShrinkStats* stats = nullptr);

}  // namespace vmspace::opscript::fuzz
