#include "opscript/diff.h"

#include <algorithm>
#include <string_view>

namespace vmspace::opscript {

namespace {

// An op result line ("12: = 0") or a final maps header ("final maps:",
// "final maps NAME:") ends a block.
bool ends_block(std::string_view l) {
  if (l.starts_with("final maps") && l.ends_with(":")) return true;
  size_t i = 0;
  while (i < l.size() && l[i] >= '0' && l[i] <= '9') ++i;
  return i > 0 && l.substr(i).starts_with(": ");
}

using Block = std::vector<std::string_view>;

std::vector<Block> split_blocks(const std::vector<std::string>& lines) {
  std::vector<Block> blocks(1);
  for (const auto& l : lines) {
    blocks.back().push_back(l);
    if (ends_block(l)) blocks.emplace_back();
  }
  if (blocks.back().empty()) blocks.pop_back();
  return blocks;
}

void emit_hunk(const Block& k, size_t k0, size_t k1, const Block& v, size_t v0, size_t v1, DiffResult& out) {
  while (k0 < k1 || v0 < v1) {
    if (k0 < k1) out.lines.push_back("-kernel " + std::string(k[k0++]));
    if (v0 < v1) out.lines.push_back("+vmspace " + std::string(v[v0++]));
    out.equal = false;
  }
}

void diff_block(const Block& k, const Block& v, DiffResult& out) {
  const size_t n = k.size(), m = v.size();
  // lcs[i][j]: LCS length of k[i..] and v[j..].
  std::vector<std::vector<unsigned>> lcs(n + 1, std::vector<unsigned>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = k[i] == v[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  size_t i = 0, j = 0, hi = 0, hj = 0;  // hunk start
  while (i < n && j < m) {
    if (k[i] == v[j]) {
      emit_hunk(k, hi, i, v, hj, j, out);
      out.lines.emplace_back(v[j]);
      hi = ++i;
      hj = ++j;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      ++i;
    } else {
      ++j;
    }
  }
  emit_hunk(k, hi, n, v, hj, m, out);
}

}  // namespace

DiffResult diff_lines(const std::vector<std::string>& kernel, const std::vector<std::string>& vmspace) {
  DiffResult out;
  auto kb = split_blocks(kernel);
  auto vb = split_blocks(vmspace);
  const Block empty;
  for (size_t b = 0; b < kb.size() || b < vb.size(); ++b)
    diff_block(b < kb.size() ? kb[b] : empty, b < vb.size() ? vb[b] : empty, out);
  return out;
}

}  // namespace vmspace::opscript
