#include "opscript/serialize.h"

#include "opscript/result.h"

namespace vmspace::opscript {

std::string number_text(uint64_t v) {
  if (v != 0 && v % kPageSize == 0) return std::to_string(v / kPageSize) + "p";
  if (v < 10) return std::to_string(v);
  return hex(v);
}

std::string addr_text(const Addr& a) {
  if (a.is_null) return "-";
  if (a.offset == 0) return "@";
  return "@+" + number_text(a.offset);
}

std::string prot_text(unsigned p) {
  std::string s = "---";
  if (p & prot::kRead) s[0] = 'r';
  if (p & prot::kWrite) s[1] = 'w';
  if (p & prot::kExec) s[2] = 'x';
  return s;
}

namespace {

std::string flag_list(unsigned flags, std::initializer_list<std::pair<unsigned, const char*>> names) {
  std::string s;
  for (const auto& [bit, name] : names) {
    if (!(flags & bit)) continue;
    if (!s.empty()) s += ',';
    s += name;
  }
  return s.empty() ? "0" : s;
}

}  // namespace

std::string op_text(const Op& op) {
  std::string s = op_name(op.kind);
  auto arg = [&s](const std::string& a) {
    s += ' ';
    s += a;
  };
  switch (op.kind) {
    case OpKind::kMmap:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(prot_text(op.prot));
      arg(flag_list(op.flags, {{mmap_flag::kPrivate, "private"},
                               {mmap_flag::kShared, "shared"},
                               {mmap_flag::kAnon, "anon"},
                               {mmap_flag::kFixed, "fixed"},
                               {mmap_flag::kNoreplace, "noreplace"},
                               {mmap_flag::kPopulate, "populate"},
                               {mmap_flag::kGrowsdown, "growsdown"},
                               {mmap_flag::kNoreserve, "noreserve"},
                               {mmap_flag::kLocked, "locked"}}));
      if (op.has_file) {
        arg(op.file);
        arg(number_text(op.offset));
      }
      break;
    case OpKind::kMunmap:
    case OpKind::kMlock:
    case OpKind::kMunlock:
    case OpKind::kRead:
    case OpKind::kMseal:
    case OpKind::kMincore:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      break;
    case OpKind::kMprotect:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(prot_text(op.prot));
      break;
    case OpKind::kMadvise:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(advice_name(op.advice));
      break;
    case OpKind::kMremap:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(number_text(op.new_len));
      arg(flag_list(op.flags, {{mremap_flag::kMaymove, "maymove"},
                               {mremap_flag::kFixed, "fixed"},
                               {mremap_flag::kDontunmap, "dontunmap"}}));
      if (!op.new_addr.is_null) arg(addr_text(op.new_addr));
      break;
    case OpKind::kMlock2:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(op.onfault ? "onfault" : "0");
      break;
    case OpKind::kFile:
    case OpKind::kFtruncate:
      arg(op.file);
      arg(number_text(op.len));
      break;
    case OpKind::kWrite:
      arg(addr_text(op.addr));
      arg(number_text(op.len));
      arg(hex(op.byte));
      break;
    case OpKind::kFork:
    case OpKind::kUse:
      arg(op.space);
      break;
    case OpKind::kMlockall:
      arg(flag_list(op.flags, {{mlockall_flag::kCurrent, "current"},
                               {mlockall_flag::kFuture, "future"},
                               {mlockall_flag::kOnfault, "onfault"}}));
      break;
    case OpKind::kMaps:
    case OpKind::kMunlockall:
      break;
  }
  return s;
}

std::string script_text(const Script& script) {
  std::string s;
  for (const auto& op : script.ops) {
    s += op_text(op);
    s += '\n';
  }
  return s;
}

}  // namespace vmspace::opscript
