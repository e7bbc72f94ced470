#include "opscript/runner.h"

#include <set>

namespace vmspace::opscript {

bool op_in_window(const Op& op, const Window& w) {
  auto range_ok = [&](const Addr& a, uint64_t len) { return !a.is_null && w.contains_range(a.absolute(w), len); };
  switch (op.kind) {
    case OpKind::kMmap:
      // Without fixed/noreplace the address is only a hint: the kernel
      // never replaces existing mappings then.
      if (!(op.flags & (mmap_flag::kFixed | mmap_flag::kNoreplace))) return true;
      return range_ok(op.addr, op.len);
    case OpKind::kMremap:
      if (!range_ok(op.addr, op.len)) return false;
      if (op.flags & mremap_flag::kFixed) return range_ok(op.new_addr, op.new_len);
      return true;
    case OpKind::kMunmap:
    case OpKind::kMprotect:
    case OpKind::kMadvise:
    case OpKind::kMlock:
    case OpKind::kMunlock:
    case OpKind::kMlock2:
    case OpKind::kWrite:
    case OpKind::kRead:
    case OpKind::kMseal:
    case OpKind::kMincore:
      return range_ok(op.addr, op.len);
    case OpKind::kFile:
    case OpKind::kFtruncate:
    case OpKind::kMaps:
    case OpKind::kFork:
    case OpKind::kUse:
    case OpKind::kMlockall:    // the whole process: the window's pages and the
    case OpKind::kMunlockall:  // runner's own, which locking does not change
      return true;
  }
  return false;
}

OpResult execute_op(const Op& op, Executor& ex, const Window& w) {
  if (!op_in_window(op, w)) return OpResult::unsupported();
  const uint64_t a = op.addr.absolute(w);
  switch (op.kind) {
    case OpKind::kMmap:
      return ex.mmap(a, op.len, op.prot, op.flags, op.has_file ? &op.file : nullptr, op.offset);
    case OpKind::kMunmap:
      return ex.munmap(a, op.len);
    case OpKind::kMprotect:
      return ex.mprotect(a, op.len, op.prot);
    case OpKind::kMadvise:
      return ex.madvise(a, op.len, op.advice);
    case OpKind::kMremap:
      return ex.mremap(a, op.len, op.new_len, op.flags, op.new_addr.absolute(w));
    case OpKind::kMlock:
      return ex.mlock(a, op.len);
    case OpKind::kMunlock:
      return ex.munlock(a, op.len);
    case OpKind::kMlock2:
      return ex.mlock2(a, op.len, op.onfault);
    case OpKind::kFile:
      return ex.file(op.file, op.len);
    case OpKind::kFtruncate:
      return ex.ftruncate(op.file, op.len);
    case OpKind::kWrite:
      return ex.write(a, op.len, op.byte);
    case OpKind::kRead:
      return ex.read(a, op.len);
    case OpKind::kMaps:
      return OpResult::ok();
    case OpKind::kFork:
      return ex.fork(op.space);
    case OpKind::kUse:
      return ex.use(op.space);
    case OpKind::kMlockall:
      return ex.mlockall(op.flags);
    case OpKind::kMunlockall:
      return ex.munlockall();
    case OpKind::kMseal:
      return ex.mseal(a, op.len);
    case OpKind::kMincore:
      return ex.mincore(a, op.len);
  }
  return OpResult::unsupported();
}

std::vector<std::string> maps_lines(Executor& ex, const Window& w) {
  std::vector<std::string> out;
  for (const auto& e : window_maps(ex.maps(), w)) out.push_back(format_map_line(e, w));
  return out;
}

void run_script(const Script& script, Executor& ex, const Window& w,
                const std::function<void(std::string_view)>& emit) {
  std::set<std::string, std::less<>> live{kMainSpace};  // the spaces that exist on this side
  std::vector<std::string> forked;                       // every space the script forks, in order
  bool current_live = true;
  size_t index = 0;
  for (const Op& op : script.ops) {
    ++index;
    const bool needs_space = op.kind != OpKind::kFile && op.kind != OpKind::kFtruncate && op.kind != OpKind::kUse;
    if (op.kind == OpKind::kFork) forked.push_back(op.space);
    if (needs_space && !current_live) {
      emit(format_op_line(index, OpResult::unsupported(), w));
      continue;
    }
    switch (op.kind) {
      case OpKind::kMaps:
        for (const auto& l : maps_lines(ex, w)) emit(l);
        emit(format_op_line(index, OpResult::ok(), w));
        continue;
      case OpKind::kFork: {
        OpResult r = execute_op(op, ex, w);
        if (r.kind == OpResult::Kind::kOk) live.insert(op.space);
        emit(format_op_line(index, r, w));
        continue;
      }
      case OpKind::kUse: {
        OpResult r = OpResult::unsupported();
        if (live.contains(op.space)) r = execute_op(op, ex, w);
        current_live = r.kind == OpResult::Kind::kOk;
        emit(format_op_line(index, r, w));
        continue;
      }
      default:
        emit(format_op_line(index, execute_op(op, ex, w), w));
        continue;
    }
  }
  emit(kFinalMapsHeader);
  if (forked.empty()) {
    if (current_live)
      for (const auto& l : maps_lines(ex, w)) emit(l);
    return;
  }
  if (ex.use(kMainSpace).kind == OpResult::Kind::kOk)
    for (const auto& l : maps_lines(ex, w)) emit(l);
  for (const std::string& name : forked) {
    emit(final_maps_header(name));
    if (live.contains(name) && ex.use(name).kind == OpResult::Kind::kOk)
      for (const auto& l : maps_lines(ex, w)) emit(l);
  }
}

std::vector<std::string> run_script(const Script& script, Executor& ex, const Window& w) {
  std::vector<std::string> lines;
  run_script(script, ex, w, [&](std::string_view l) { lines.emplace_back(l); });
  return lines;
}

}  // namespace vmspace::opscript
