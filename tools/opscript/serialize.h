// serialize.h: op-script text from a parsed Script — the inverse of
// parse_script, for tools that generate scripts (fuzz-kernel writes the
// scripts it finds as .ops files).
#pragma once

#include <cstdint>
#include <string>

#include "opscript/script.h"

namespace vmspace::opscript {

// A number as a script writes it: "0", "7", "0x1800", "3p" (page multiples).
std::string number_text(uint64_t v);
// "@", "@+3p", "@+0x1800", "-".
std::string addr_text(const Addr& a);
// "rw-", "r--", ...
std::string prot_text(unsigned prot);
// One line without a newline, e.g. "mmap @ 8p rw- private,anon,fixed".
// parse_script(op_text(op)) gives back an equal op.
std::string op_text(const Op& op);
// One op per line, each ending in '\n'.
std::string script_text(const Script& script);

}  // namespace vmspace::opscript
