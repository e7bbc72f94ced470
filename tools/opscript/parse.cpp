#include "opscript/parse.h"

#include <array>
#include <set>
#include <utility>

namespace vmspace::opscript {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::kMmap: return "mmap";
    case OpKind::kMunmap: return "munmap";
    case OpKind::kMprotect: return "mprotect";
    case OpKind::kMadvise: return "madvise";
    case OpKind::kMremap: return "mremap";
    case OpKind::kMlock: return "mlock";
    case OpKind::kMunlock: return "munlock";
    case OpKind::kMlock2: return "mlock2";
    case OpKind::kFile: return "file";
    case OpKind::kFtruncate: return "ftruncate";
    case OpKind::kWrite: return "write";
    case OpKind::kRead: return "read";
    case OpKind::kMaps: return "maps";
    case OpKind::kFork: return "fork";
    case OpKind::kUse: return "use";
    case OpKind::kMlockall: return "mlockall";
    case OpKind::kMunlockall: return "munlockall";
    case OpKind::kMseal: return "mseal";
    case OpKind::kMincore: return "mincore";
  }
  return "?";
}

namespace {

constexpr std::array<std::pair<std::string_view, Advice>, 22> kAdvice{{
    {"normal", Advice::kNormal},
    {"random", Advice::kRandom},
    {"sequential", Advice::kSequential},
    {"willneed", Advice::kWillneed},
    {"dontneed", Advice::kDontneed},
    {"free", Advice::kFree},
    {"dontfork", Advice::kDontfork},
    {"dofork", Advice::kDofork},
    {"dontdump", Advice::kDontdump},
    {"dodump", Advice::kDodump},
    {"remove", Advice::kRemove},
    {"cold", Advice::kCold},
    {"pageout", Advice::kPageout},
    {"wipeonfork", Advice::kWipeonfork},
    {"keeponfork", Advice::kKeeponfork},
    {"hugepage", Advice::kHugepage},
    {"nohugepage", Advice::kNohugepage},
    {"populate_read", Advice::kPopulateRead},
    {"populate_write", Advice::kPopulateWrite},
    {"guard_install", Advice::kGuardInstall},
    {"guard_remove", Advice::kGuardRemove},
    {"dontneed_locked", Advice::kDontneedLocked},
}};

constexpr std::array<std::pair<std::string_view, OpKind>, 19> kOps{{
    {"mmap", OpKind::kMmap},
    {"munmap", OpKind::kMunmap},
    {"mprotect", OpKind::kMprotect},
    {"madvise", OpKind::kMadvise},
    {"mremap", OpKind::kMremap},
    {"mlock", OpKind::kMlock},
    {"munlock", OpKind::kMunlock},
    {"mlock2", OpKind::kMlock2},
    {"file", OpKind::kFile},
    {"ftruncate", OpKind::kFtruncate},
    {"write", OpKind::kWrite},
    {"read", OpKind::kRead},
    {"maps", OpKind::kMaps},
    {"fork", OpKind::kFork},
    {"use", OpKind::kUse},
    {"mlockall", OpKind::kMlockall},
    {"munlockall", OpKind::kMunlockall},
    {"mseal", OpKind::kMseal},
    {"mincore", OpKind::kMincore},
}};

constexpr std::array<std::pair<std::string_view, unsigned>, 9> kMmapFlags{{
    {"private", mmap_flag::kPrivate},
    {"shared", mmap_flag::kShared},
    {"anon", mmap_flag::kAnon},
    {"fixed", mmap_flag::kFixed},
    {"noreplace", mmap_flag::kNoreplace},
    {"populate", mmap_flag::kPopulate},
    {"growsdown", mmap_flag::kGrowsdown},
    {"noreserve", mmap_flag::kNoreserve},
    {"locked", mmap_flag::kLocked},
}};

constexpr std::array<std::pair<std::string_view, unsigned>, 3> kMremapFlags{{
    {"maymove", mremap_flag::kMaymove},
    {"fixed", mremap_flag::kFixed},
    {"dontunmap", mremap_flag::kDontunmap},
}};

constexpr std::array<std::pair<std::string_view, unsigned>, 3> kMlockallFlags{{
    {"current", mlockall_flag::kCurrent},
    {"future", mlockall_flag::kFuture},
    {"onfault", mlockall_flag::kOnfault},
}};

constexpr size_t kMaxFileName = 200;  // memfd_create allows 249 bytes

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::vector<std::string_view> tokenize(std::string_view line) {
  std::vector<std::string_view> toks;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t j = i;
    while (j < line.size() && !is_space(line[j])) ++j;
    if (j > i) toks.push_back(line.substr(i, j - i));
    i = j;
  }
  return toks;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quote(std::string_view s) {
  std::string out = "'";
  out.append(s);
  out += "'";
  return out;
}

// A failed field parse: the message names the field and the token.
struct Fail {
  std::string message;
};

class LineParser {
 public:
  using NameSet = std::set<std::string, std::less<>>;
  LineParser(int line, std::vector<std::string_view> toks, NameSet& files, NameSet& spaces)
      : line_(line), toks_(std::move(toks)), files_(files), spaces_(spaces) {}

  // Returns the op, or sets error().
  bool parse(Op& op);
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string msg) {
    if (error_.empty()) error_ = std::move(msg);
    return false;
  }
  bool arg_count(std::string_view usage, size_t min, size_t max) {
    size_t n = toks_.size() - 1;
    if (n < min || n > max) {
      std::string expect = min == max ? std::to_string(min) : std::to_string(min) + " or " + std::to_string(max);
      return fail(std::string(op_name(op_kind_)) + ": expected " + expect + " argument" +
                  (max == 1 ? "" : "s") + " (" + std::string(op_name(op_kind_)) +
                  (usage.empty() ? "" : " ") + std::string(usage) + "), got " + std::to_string(n));
    }
    return true;
  }
  bool number(size_t i, const char* what, uint64_t& out) {
    auto v = parse_number(toks_[i]);
    if (!v) return fail(std::string("bad ") + what + " " + quote(toks_[i]) +
                        " (expected a decimal or 0x hex number, optional trailing 'p')");
    out = *v;
    return true;
  }
  bool addr(size_t i, const char* what, Addr& out) {
    auto v = parse_addr(toks_[i]);
    if (!v) return fail(std::string("bad ") + what + " " + quote(toks_[i]) + " (expected @, @+N or -)");
    out = *v;
    return true;
  }
  bool prot(size_t i, unsigned& out) {
    auto v = parse_prot(toks_[i]);
    if (!v) return fail("bad PROT " + quote(toks_[i]) + " (expected three characters: r or -, w or -, x or -)");
    out = *v;
    return true;
  }
  bool file_name(size_t i, std::string& out);
  bool declared_file(size_t i, std::string& out) {
    if (!file_name(i, out)) return false;
    if (!files_.contains(out)) return fail("file " + quote(out) + " is not declared (declare it with `file NAME SIZE` first)");
    return true;
  }
  bool space_name(size_t i, std::string& out);
  bool mmap_flags(size_t i, unsigned& out);
  bool mremap_flags(size_t i, unsigned& out);
  bool mlockall_flags(size_t i, unsigned& out);
  bool in_window(const Addr& a, uint64_t len, const char* what) {
    if (a.is_null) return fail(std::string(what) + ": ADDR must be @ or @+N, not -");
    if (a.offset > kWindowSize || len > kWindowSize - a.offset)
      return fail(std::string(what) + ": range @+" + std::to_string(a.offset) + " length " + std::to_string(len) +
                  " extends past the 1 TiB window");
    return true;
  }

  int line_;
  std::vector<std::string_view> toks_;
  NameSet& files_;
  NameSet& spaces_;
  OpKind op_kind_ = OpKind::kMaps;
  std::string error_;
};

bool LineParser::file_name(size_t i, std::string& out) {
  std::string_view t = toks_[i];
  bool ok = !t.empty() && t.size() <= kMaxFileName &&
            ((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z') || t[0] == '_');
  for (char c : t) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '.' || c == '-');
  }
  if (!ok)
    return fail("bad file name " + quote(t) + " (expected a letter or _ followed by letters, digits, _ . -; at most " +
                std::to_string(kMaxFileName) + " characters)");
  out = std::string(t);
  return true;
}

bool LineParser::space_name(size_t i, std::string& out) {
  std::string_view t = toks_[i];
  bool ok = !t.empty();
  for (char c : t)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
  if (!ok) return fail("bad space name " + quote(t) + " (expected letters, digits and _)");
  out = std::string(t);
  return true;
}

bool LineParser::mmap_flags(size_t i, unsigned& out) {
  std::string_view t = toks_[i];
  out = 0;
  size_t pos = 0;
  while (true) {
    size_t comma = t.find(',', pos);
    std::string_view name = t.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (name.empty()) return fail("bad mmap FLAGS " + quote(t) + ": empty flag");
    unsigned bit = 0;
    for (const auto& [n, b] : kMmapFlags)
      if (n == name) bit = b;
    if (bit == 0)
      return fail("unknown mmap flag " + quote(name) +
                  " (expected private, shared, anon, fixed, noreplace, populate, growsdown, noreserve, locked)");
    if (out & bit) return fail("duplicate mmap flag " + quote(name));
    out |= bit;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  if ((out & mmap_flag::kPrivate) && (out & mmap_flag::kShared))
    return fail("mmap FLAGS " + quote(t) + ": both private and shared");
  if (!(out & (mmap_flag::kPrivate | mmap_flag::kShared)))
    return fail("mmap FLAGS " + quote(t) + ": need exactly one of private or shared");
  return true;
}

bool LineParser::mremap_flags(size_t i, unsigned& out) {
  std::string_view t = toks_[i];
  out = 0;
  if (t == "0") return true;
  size_t pos = 0;
  while (true) {
    size_t comma = t.find(',', pos);
    std::string_view name = t.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (name.empty()) return fail("bad mremap FLAGS " + quote(t) + ": empty flag");
    unsigned bit = 0;
    for (const auto& [n, b] : kMremapFlags)
      if (n == name) bit = b;
    if (bit == 0) return fail("unknown mremap flag " + quote(name) + " (expected 0, or maymove, fixed, dontunmap)");
    if (out & bit) return fail("duplicate mremap flag " + quote(name));
    out |= bit;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return true;
}

bool LineParser::mlockall_flags(size_t i, unsigned& out) {
  std::string_view t = toks_[i];
  out = 0;
  if (t == "0") return true;  // an extension: no flags (the kernel says -EINVAL)
  size_t pos = 0;
  while (true) {
    size_t comma = t.find(',', pos);
    std::string_view name = t.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (name.empty()) return fail("bad mlockall FLAGS " + quote(t) + ": empty flag");
    unsigned bit = 0;
    for (const auto& [n, b] : kMlockallFlags)
      if (n == name) bit = b;
    if (bit == 0) return fail("unknown mlockall flag " + quote(name) + " (expected current, future, onfault)");
    if (out & bit) return fail("duplicate mlockall flag " + quote(name));
    out |= bit;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return true;
}

bool LineParser::parse(Op& op) {
  std::string_view name = toks_[0];
  bool known = false;
  for (const auto& [n, k] : kOps) {
    if (n == name) {
      op_kind_ = k;
      known = true;
    }
  }
  if (!known) return fail("unknown operation " + quote(name));
  op.kind = op_kind_;
  op.line = line_;
  switch (op_kind_) {
    case OpKind::kMmap: {
      if (!arg_count("ADDR LEN PROT FLAGS [FILE OFFSET]", 4, 6)) return false;
      if (toks_.size() == 6) return fail("mmap: FILE needs an OFFSET (mmap ADDR LEN PROT FLAGS [FILE OFFSET])");
      if (!addr(1, "ADDR", op.addr) || !number(2, "LEN", op.len) || !prot(3, op.prot) || !mmap_flags(4, op.flags))
        return false;
      if (toks_.size() == 7) {
        op.has_file = true;
        if (!declared_file(5, op.file) || !number(6, "OFFSET", op.offset)) return false;
        if (op.flags & mmap_flag::kAnon) return fail("mmap: anon together with a FILE");
      } else if (!(op.flags & mmap_flag::kAnon)) {
        return fail("mmap: FLAGS need anon when no FILE is given");
      }
      return true;
    }
    case OpKind::kMunmap:
    case OpKind::kMlock:
    case OpKind::kMunlock:
    case OpKind::kMseal:
    case OpKind::kMincore:
      return arg_count("ADDR LEN", 2, 2) && addr(1, "ADDR", op.addr) && number(2, "LEN", op.len);
    case OpKind::kMprotect:
      return arg_count("ADDR LEN PROT", 3, 3) && addr(1, "ADDR", op.addr) && number(2, "LEN", op.len) &&
             prot(3, op.prot);
    case OpKind::kMadvise: {
      if (!arg_count("ADDR LEN ADVICE", 3, 3) || !addr(1, "ADDR", op.addr) || !number(2, "LEN", op.len)) return false;
      for (const auto& [n, a] : kAdvice) {
        if (n == toks_[3]) {
          op.advice = a;
          return true;
        }
      }
      {
        std::string names;
        for (const auto& [n, a] : kAdvice) names += std::string(names.empty() ? "" : ", ") + std::string(n);
        return fail("unknown ADVICE " + quote(toks_[3]) + " (expected " + names + ")");
      }
    }
    case OpKind::kMremap:
      if (!arg_count("OLD OLDLEN NEWLEN FLAGS [NEW]", 4, 5)) return false;
      if (!addr(1, "OLD", op.addr) || !number(2, "OLDLEN", op.len) || !number(3, "NEWLEN", op.new_len) ||
          !mremap_flags(4, op.flags))
        return false;
      if (toks_.size() == 6 && !addr(5, "NEW", op.new_addr)) return false;
      return true;
    case OpKind::kMlock2:
      if (!arg_count("ADDR LEN onfault", 3, 3) || !addr(1, "ADDR", op.addr) || !number(2, "LEN", op.len)) return false;
      if (toks_[3] == "onfault") {
        op.onfault = true;
      } else if (toks_[3] == "0") {
        op.onfault = false;
      } else {
        return fail("bad mlock2 flags " + quote(toks_[3]) + " (expected onfault or 0)");
      }
      return true;
    case OpKind::kFile:
      if (!arg_count("NAME SIZE", 2, 2) || !file_name(1, op.file) || !number(2, "SIZE", op.len)) return false;
      if (files_.contains(op.file)) return fail("file " + quote(op.file) + " is already declared");
      op.has_file = true;
      files_.insert(op.file);
      return true;
    case OpKind::kFtruncate:
      if (!arg_count("NAME SIZE", 2, 2) || !declared_file(1, op.file) || !number(2, "SIZE", op.len)) return false;
      op.has_file = true;
      return true;
    case OpKind::kWrite: {
      uint64_t b = 0;
      if (!arg_count("ADDR LEN BYTE", 3, 3) || !addr(1, "ADDR", op.addr) || !number(2, "LEN", op.len) ||
          !number(3, "BYTE", b))
        return false;
      if (b > 255) return fail("BYTE " + quote(toks_[3]) + " is out of range (0-255)");
      op.byte = static_cast<uint8_t>(b);
      return in_window(op.addr, op.len, "write");
    }
    case OpKind::kRead:
      return arg_count("ADDR LEN", 2, 2) && addr(1, "ADDR", op.addr) && number(2, "LEN", op.len) &&
             in_window(op.addr, op.len, "read");
    case OpKind::kMaps:
    case OpKind::kMunlockall:
      return arg_count("", 0, 0);
    case OpKind::kFork:
      if (!arg_count("NAME", 1, 1) || !space_name(1, op.space)) return false;
      if (spaces_.contains(op.space))
        return fail("space " + quote(op.space) + " already exists (fork needs a new NAME)");
      spaces_.insert(op.space);
      return true;
    case OpKind::kUse:
      if (!arg_count("NAME", 1, 1) || !space_name(1, op.space)) return false;
      if (!spaces_.contains(op.space))
        return fail("space " + quote(op.space) + " does not exist (create it with `fork " + op.space + "` first)");
      return true;
    case OpKind::kMlockall:
      return arg_count("FLAGS", 1, 1) && mlockall_flags(1, op.flags);
  }
  return fail("unknown operation " + quote(name));
}

}  // namespace

const char* advice_name(Advice a) {
  for (const auto& [n, v] : kAdvice)
    if (v == a) return n.data();  // the literals are NUL-terminated
  return "?";
}

std::string ParseError::to_string() const { return "line " + std::to_string(line) + ": " + message; }

std::string ParseResult::error_text(std::string_view prefix) const {
  std::string out;
  for (const auto& e : errors) {
    out.append(prefix);
    out += e.to_string();
    out += '\n';
  }
  return out;
}

std::optional<uint64_t> parse_number(std::string_view tok) {
  bool page = false;
  if (!tok.empty() && tok.back() == 'p') {
    page = true;
    tok.remove_suffix(1);
  }
  uint64_t base = 10;
  if (tok.size() >= 2 && tok[0] == '0' && tok[1] == 'x') {
    base = 16;
    tok.remove_prefix(2);
  }
  if (tok.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : tok) {
    int d = hex_digit(c);
    if (d < 0 || static_cast<uint64_t>(d) >= base) return std::nullopt;
    if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / base) return std::nullopt;  // overflow
    v = v * base + static_cast<uint64_t>(d);
  }
  if (page) {
    if (v > UINT64_MAX / kPageSize) return std::nullopt;
    v *= kPageSize;
  }
  return v;
}

std::optional<Addr> parse_addr(std::string_view tok) {
  if (tok == "-") return Addr::null();
  if (tok == "@") return Addr::at(0);
  if (tok.size() > 2 && tok[0] == '@' && tok[1] == '+') {
    auto v = parse_number(tok.substr(2));
    if (v) return Addr::at(*v);
  }
  return std::nullopt;
}

std::optional<unsigned> parse_prot(std::string_view tok) {
  if (tok.size() != 3) return std::nullopt;
  unsigned p = 0;
  if (tok[0] == 'r') p |= prot::kRead; else if (tok[0] != '-') return std::nullopt;
  if (tok[1] == 'w') p |= prot::kWrite; else if (tok[1] != '-') return std::nullopt;
  if (tok[2] == 'x') p |= prot::kExec; else if (tok[2] != '-') return std::nullopt;
  return p;
}

ParseResult parse_script(std::string_view text) {
  ParseResult r;
  std::set<std::string, std::less<>> files;
  std::set<std::string, std::less<>> spaces{kMainSpace};
  int lineno = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++lineno;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    auto toks = tokenize(line);
    if (toks.empty()) continue;
    LineParser lp(lineno, std::move(toks), files, spaces);
    Op op;
    if (lp.parse(op)) {
      r.script.ops.push_back(std::move(op));
    } else {
      r.errors.push_back(ParseError{lineno, lp.error()});
    }
  }
  if (!r.ok()) r.script.ops.clear();
  return r;
}

}  // namespace vmspace::opscript
