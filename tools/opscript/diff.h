// diff.h: comparing the kernel's and vmspace's output lines
// (docs/op-scripts.md, "Comparing").
#pragma once

#include <string>
#include <vector>

namespace vmspace::opscript {

struct DiffResult {
  bool equal = true;               // every line agrees
  std::vector<std::string> lines;  // vmspace's lines, differing lines as "-kernel " / "+vmspace " pairs
};

// Lines that agree are printed once, as they are. Where the two sides
// differ, each differing line is printed prefixed: the kernel's as
// "-kernel <line>", vmspace's as "+vmspace <line>", paired in order
// (a kernel line, then the vmspace line in its place). When one side has
// more differing lines than the other (e.g. an extra maps line), the extra
// lines are printed with their side's prefix alone.
//
// The output is aligned per operation: each op's block (its maps lines, if
// any, and its "N: ..." line) and each final maps block (one for every
// space) are compared with each other, and within a block by longest common
// subsequence, so a missing maps line does not shift every following line.
DiffResult diff_lines(const std::vector<std::string>& kernel, const std::vector<std::string>& vmspace);

}  // namespace vmspace::opscript
