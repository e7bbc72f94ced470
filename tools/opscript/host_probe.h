// host_probe.h: what the host kernel does where Linux kernels differ, found
// out by trying it (in a child process), so that vmspace can be configured
// to behave like the kernel it is compared with.
//
// Each fact is observed, not read from the kernel command line:
//   zero_page        map one private anonymous page, read a byte, and see
//                    whether /proc/self/smaps counts a resident page (a
//                    zero-page PTE is not counted; an allocated page is)
//   thp_align        two unhinted 2 MiB private mappings, each placed right
//                    below a fresh 1-page mapping, both come back 2 MiB
//                    aligned (a kernel built with THP aligns them; without,
//                    each lands 2 MiB below the page, aligned by chance
//                    once in 512)
//   stack_guard_gap  the lowest hint right below a MAP_GROWSDOWN mapping
//                    that the kernel honours (binary search)
//   mmap_min_addr    where a non-fixed hint of one page at 0x1000 lands
//                    (the kernel rounds a low hint up to its floor)
//   cap_sys_rawio    whether a fixed mapping below vm.mmap_min_addr works
//   cap_ipc_lock     whether a MAP_LOCKED mapping larger than RLIMIT_MEMLOCK
//                    works
//   exec_only_pkey   whether a read of a PROT_EXEC-only page kills a
//                    grandchild with SIGSEGV (x86 protection keys)
// and the settings the kernel states for this process: THP mode
// (/sys/kernel/mm/transparent_hugepage, the 2 MiB size's own setting and
// PR_GET_THP_DISABLE), vm.mmap_min_addr, vm.max_map_count,
// vm.overcommit_memory with the memory sizes it uses, RLIMIT_STACK and
// RLIMIT_MEMLOCK.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vmspace/address_space.h"

namespace vmspace::opscript {

struct HostFacts {
  bool probed = false;  // false: the probe could not run; see `error`
  std::string error;
  std::string kernel;   // uname release
  bool zero_page = true;
  bool exec_only_pkey = false;
  ThpMode thp = ThpMode::always;
  bool thp_align = true;
  std::uint64_t stack_guard_gap = 256 * 4096;
  std::uint64_t mmap_min_addr = 65536;
  std::uint64_t dac_mmap_min_addr = 65536;
  bool cap_sys_rawio = false;
  int max_map_count = 65530;
  std::uint64_t rlimit_stack = 8ull << 20;    // UINT64_MAX: unlimited
  std::uint64_t rlimit_memlock = 8ull << 20;  // UINT64_MAX: unlimited
  bool cap_ipc_lock = false;
  Overcommit overcommit = Overcommit::guess;
  std::uint64_t overcommit_limit_pages = 0;
};

// Probe the host now (forks a child; about a millisecond).  Never throws;
// on failure `probed` is false and the facts are the settings readable
// without the child (sysctl files, rlimits) or upstream defaults.
HostFacts probe_host();

// The facts of this host, probed once per process (thread-safe).
const HostFacts& host_facts();

// One line naming every fact, for the first line of a comparison:
// "# host: linux 6.18.44 zero_page=no thp=madvise ...".
std::string host_facts_line(const HostFacts& f);

// Read facts back from text in host_facts_line()'s format ("# host: linux
// X" optional; then key=value words, any subset, in any order) over `f`.
// Sizes take K/M/G suffixes or "unlimited".  False with *error set on an
// unknown key or a bad value (f is then partly updated).
bool parse_host_facts(std::string_view text, HostFacts& f, std::string* error);

// Make host_like_options() follow `f` instead of host_facts() from now on
// (fuzz-kernel --host: vmspace run as another kind of host).  Call before
// any comparison starts; not thread-safe against concurrent readers.
void override_vmspace_facts(const HostFacts& f);
// The facts host_like_options() follows: the override, else host_facts().
const HostFacts& vmspace_facts();

// Set every host-dependent option of `o` from `f`.
void apply_host_facts(const HostFacts& f, AddressSpaceOptions& o);

}  // namespace vmspace::opscript
