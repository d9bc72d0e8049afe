// Disassemble QPU machine code with VC4C's own disassembler (vc4c::disassembleCodeOnly, its
// public API): 64-bit words as hex, one per line on stdin; one instruction per line out.
// tests/qpulib/test_qpusim.py compares torch_qpu's assembler with it.
#include <vc4c/VC4C.h>

#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>

int main() {
  std::string binary;
  std::size_t count = 0;
  for (std::string line; std::getline(std::cin, line);) {
    if (line.empty()) continue;
    const std::uint64_t word = std::stoull(line, nullptr, 16);
    for (int byte = 0; byte < 8; ++byte) binary.push_back(static_cast<char>((word >> (8 * byte)) & 0xFF));
    ++count;
  }
  std::istringstream in(binary);
  vc4c::disassembleCodeOnly(in, std::cout, count, vc4c::OutputMode::ASSEMBLER);
  return 0;
}
