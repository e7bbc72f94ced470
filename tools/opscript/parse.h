// parse.h: op-script parser (docs/op-scripts.md, "Lexical rules" and
// "Operations").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "opscript/script.h"

namespace vmspace::opscript {

struct ParseError {
  int line = 0;  // 1-based
  std::string message;

  // "line N: <message>" (the caller prepends a file name if it has one).
  std::string to_string() const;
};

struct ParseResult {
  Script script;                   // meaningful only when ok()
  std::vector<ParseError> errors;  // every malformed line, in line order

  bool ok() const { return errors.empty(); }
  // All errors, one "line N: <message>" per line, each ending in '\n'.
  // `prefix` (e.g. "foo.ops:") is prepended to each line.
  std::string error_text(std::string_view prefix = {}) const;
};

// Parses a whole script. Every malformed line is reported; the script must
// not be run unless ok().
ParseResult parse_script(std::string_view text);

// Lexical helpers, exposed for tests and for tools that take numbers on the
// command line (e.g. `--window`). Return nullopt on malformed input.
std::optional<uint64_t> parse_number(std::string_view tok);  // 12, 0x1f, 3p, 0x10p
std::optional<Addr> parse_addr(std::string_view tok);        // @, @+N, -
std::optional<unsigned> parse_prot(std::string_view tok);    // rw-, r--, ---, rwx

}  // namespace vmspace::opscript
