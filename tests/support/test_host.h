// SPDX-License-Identifier: MIT
// test_host.h - which Linux host the vmspace-only tests pretend to run on.
//
// By default the unit and stress tests build AddressSpaces with upstream
// Linux's behaviour (AddressSpaceOptions' defaults).  CTest runs the fault,
// mm and stress tests a second time with VMSPACE_TEST_HOST set to host
// facts in `vmspace replay --host` syntax (tests/CMakeLists.txt: a host
// without the zero page, with execute-only protection keys and THP
// "always"), so every such test also passes on the other kind of host.
// Tests that check one setting's specifics skip when it is not in force.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "opscript/host_probe.h"
#include "vmspace/address_space.h"

namespace vmspace::test {

// The facts VMSPACE_TEST_HOST names, over upstream defaults.
inline const opscript::HostFacts& test_host_facts() {
  static const opscript::HostFacts facts = [] {
    opscript::HostFacts f;  // upstream defaults
    AddressSpaceOptions d;
    f.zero_page = d.zero_page;
    f.exec_only_pkey = d.exec_only_pkey;
    f.thp = d.thp;
    f.thp_align = d.thp_align;
    f.stack_guard_gap = d.stack_guard_gap;
    f.mmap_min_addr = d.mmap_min_addr;
    f.dac_mmap_min_addr = d.dac_mmap_min_addr;
    f.cap_sys_rawio = d.cap_sys_rawio;
    f.max_map_count = d.max_map_count;
    f.rlimit_stack = d.rlimit_stack;
    f.rlimit_memlock = d.rlimit_memlock;
    f.cap_ipc_lock = d.cap_ipc_lock;
    f.overcommit = d.overcommit;
    f.overcommit_limit_pages = d.overcommit_limit_pages;
    if (const char* env = std::getenv("VMSPACE_TEST_HOST"); env != nullptr && *env != '\0') {
      std::string why;
      if (!opscript::parse_host_facts(env, f, &why)) {
        std::fprintf(stderr, "VMSPACE_TEST_HOST: %s\n", why.c_str());
        std::abort();
      }
    }
    return f;
  }();
  return facts;
}

// Options for a test's AddressSpace: the test host's behaviour.
inline AddressSpaceOptions test_options(LockMode mode) {
  AddressSpaceOptions o;
  o.mode = mode;
  opscript::apply_host_facts(test_host_facts(), o);
  return o;
}

}  // namespace vmspace::test
