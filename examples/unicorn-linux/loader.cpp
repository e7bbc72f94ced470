// SPDX-License-Identifier: MIT
// loader.cpp - see loader.h.
#include "loader.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <random>

namespace unicorn_linux {
namespace {

constexpr std::uint64_t kPage = vmspace::kGuestPageSize;
constexpr std::uint64_t page_down(std::uint64_t a) { return a & ~(kPage - 1); }
constexpr std::uint64_t page_up(std::uint64_t a) { return (a + kPage - 1) & ~(kPage - 1); }

// The top of user space (x86-64, 47 bits) and the size the stack mapping
// starts with; MAP_GROWSDOWN lets vmspace's fault path grow it further,
// up to RLIMIT_STACK.
constexpr std::uint64_t kStackTop = vmspace::kTaskSize47;
constexpr std::uint64_t kInitialStack = 128 * 1024;

int prot_of(std::uint32_t p_flags) {
  return ((p_flags & PF_R) ? PROT_READ : 0) | ((p_flags & PF_W) ? PROT_WRITE : 0) |
         ((p_flags & PF_X) ? PROT_EXEC : 0);
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw LoadError(path + ": " + why);
}

void check(long rc, const char* what) {
  if (rc < 0) throw LoadError(std::string(what) + " failed: " + std::strerror(static_cast<int>(-rc)));
}

void write_guest(vmspace::AddressSpace& as, std::uint64_t va, const void* src, std::uint64_t n) {
  vmspace::AccessResult r = as.write(va, src, n);
  if (!r.ok()) throw LoadError("writing the initial image failed at " + std::to_string(r.addr) + ": " +
                               vmspace::fault_name(r.fault));
}

}  // namespace

std::uint64_t ElfImage::brk_start() const {
  std::uint64_t end = 0;
  for (const Segment& s : segments) end = std::max(end, s.vaddr + s.memsz);
  return page_up(end);
}

ElfImage read_elf(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  ElfImage img;
  img.file.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < img.file.size()) {
    const ssize_t n = ::read(fd, img.file.data() + got, img.file.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(fd);
      fail(path, err ? std::strerror(err) : "file shrank while read");
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  const std::vector<unsigned char>& f = img.file;

  Elf64_Ehdr eh;
  if (f.size() < sizeof eh || std::memcmp(f.data(), ELFMAG, SELFMAG) != 0) fail(path, "not an ELF file");
  std::memcpy(&eh, f.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
    fail(path, "not an x86-64 (64-bit little-endian) ELF file");
  if (eh.e_type == ET_DYN) fail(path, "a position-independent executable or shared object; only static ET_EXEC (-static -no-pie) runs here");
  if (eh.e_type != ET_EXEC) fail(path, "not an executable (ELF type " + std::to_string(eh.e_type) + ")");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
      eh.e_phoff > f.size() || std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > f.size() - eh.e_phoff)
    fail(path, "bad program header table");

  for (unsigned i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    std::memcpy(&ph, f.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
      fail(path, "dynamically linked; only static executables (-static) run here");
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz || ph.p_offset > f.size() || ph.p_filesz > f.size() - ph.p_offset)
      fail(path, "PT_LOAD segment " + std::to_string(i) + " lies outside the file");
    if (ph.p_vaddr < kPage || ph.p_vaddr > kStackTop || ph.p_memsz > kStackTop - ph.p_vaddr)
      fail(path, "PT_LOAD segment " + std::to_string(i) + " lies outside user space");
    img.segments.push_back(Segment{ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz, prot_of(ph.p_flags)});
  }
  if (img.segments.empty()) fail(path, "no PT_LOAD segment");
  // Where the program headers are in memory: PT_PHDR, else the PT_LOAD
  // holding them in the file.
  img.phnum = eh.e_phnum;
  img.phent = eh.e_phentsize;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    std::memcpy(&ph, f.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_PHDR) img.phdr = ph.p_vaddr;
  }
  if (img.phdr == 0)
    for (const Segment& s : img.segments)
      if (eh.e_phoff >= s.offset && eh.e_phoff - s.offset < s.filesz) img.phdr = s.vaddr + (eh.e_phoff - s.offset);
  img.entry = eh.e_entry;
  bool entry_mapped = false;
  for (const Segment& s : img.segments)
    entry_mapped |= (s.prot & PROT_EXEC) && img.entry >= s.vaddr && img.entry < s.vaddr + s.memsz;
  if (!entry_mapped) fail(path, "the entry point is not in an executable segment");
  return img;
}

void map_segments(vmspace::AddressSpace& as, const ElfImage& img) {
  // All mappings first, then the bytes, then the protections: two segments
  // sharing a page get both segments' bytes and the later one's
  // protection, as Linux's file mappings of the two would.
  for (const Segment& s : img.segments) {
    const std::uint64_t start = page_down(s.vaddr);
    check(as.mmap(start, page_up(s.vaddr + s.memsz) - start, PROT_READ | PROT_WRITE,
                  MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS),
          "mmap of a PT_LOAD segment");
  }
  for (const Segment& s : img.segments)
    if (s.filesz) write_guest(as, s.vaddr, img.file.data() + s.offset, s.filesz);
  for (const Segment& s : img.segments) {
    const std::uint64_t start = page_down(s.vaddr);
    check(as.mprotect(start, page_up(s.vaddr + s.memsz) - start, s.prot), "mprotect of a PT_LOAD segment");
  }
}

std::uint64_t build_stack(vmspace::AddressSpace& as, const ElfImage& img, const std::vector<std::string>& argv) {
  check(as.mmap(kStackTop - kInitialStack, kInitialStack, PROT_READ | PROT_WRITE,
                MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN),
        "mmap of the stack");
  // The strings at the top (below an 8-byte end marker, as Linux leaves
  // the program's path there; here zeros), the platform, AT_RANDOM's bytes.
  std::uint64_t sp = kStackTop - 8;
  std::vector<std::uint64_t> argv_ptrs;
  for (const std::string& a : argv) {
    sp -= a.size() + 1;
    write_guest(as, sp, a.c_str(), a.size() + 1);
    argv_ptrs.push_back(sp);
  }
  static constexpr char kPlatform[] = "x86_64";
  sp -= sizeof kPlatform;
  write_guest(as, sp, kPlatform, sizeof kPlatform);
  const std::uint64_t platform = sp;
  unsigned char random[16];
  std::random_device rd;
  for (unsigned char& b : random) b = static_cast<unsigned char>(rd());
  sp = (sp - sizeof random) & ~std::uint64_t{15};
  write_guest(as, sp, random, sizeof random);
  const std::uint64_t at_random = sp;
  // argc, argv[argc] = NULL, envp[0] = NULL, auxv pairs: one block written
  // at a 16-byte aligned stack pointer, as the ABI requires at _start.
  std::vector<std::uint64_t> words;
  words.push_back(argv.size());
  words.insert(words.end(), argv_ptrs.begin(), argv_ptrs.end());
  words.push_back(0);  // end of argv
  words.push_back(0);  // envp: empty
  const std::uint64_t auxv[] = {
      AT_PHDR,   img.phdr,  AT_PHENT,  img.phent, AT_PHNUM,   img.phnum,     AT_PAGESZ, kPage,
      AT_BASE,   0,         AT_FLAGS,  0,         AT_ENTRY,   img.entry,     AT_UID,    ::getuid(),
      AT_EUID,   ::geteuid(), AT_GID,  ::getgid(), AT_EGID,   ::getegid(),   AT_SECURE, 0,
      AT_RANDOM, at_random, AT_EXECFN, argv_ptrs.empty() ? 0 : argv_ptrs[0], AT_PLATFORM, platform,
      AT_CLKTCK, 100,       AT_NULL,   0};
  words.insert(words.end(), std::begin(auxv), std::end(auxv));
  sp = (sp - words.size() * 8) & ~std::uint64_t{15};
  write_guest(as, sp, words.data(), words.size() * 8);
  return sp;
}

}  // namespace unicorn_linux
