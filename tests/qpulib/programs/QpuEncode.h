// Hand-encoded QPU instructions for the qpusim test programs (QpusimFaults.cpp,
// QpusimMemory.cpp): what QPULib's DSL cannot express (a hazard on purpose, DMA blocks of any
// size). Encodings from the VideoCore IV 3D Architecture Reference Guide, section 3.
#pragma once

#include <stdint.h>
#include <vector>
#include "QPULib.h"

namespace enc {
const uint64_t SIG_NONE = 1, SIG_END = 3, SIG_LDI = 14;
const uint64_t W_NOP = 39, W_R0 = 32, R_NOP = 39, C_NEVER = 0, C_ALWAYS = 1, OP_OR = 21;
const uint64_t MUX_RA = 6, MUX_RB = 7, WS = 1ull << 44;
const uint64_t VPM_SETUP = 49, VPM_ADDR = 50;  // A: read (load) side, B: write (store) side

// Load immediate into waddr_add (file A, or file B with ws = WS).
inline uint64_t ldi(uint64_t waddrAdd, uint32_t value, uint64_t ws = 0) {
  return (SIG_LDI << 60) | ws | (C_ALWAYS << 49) | (waddrAdd << 38) | (W_NOP << 32) | value;
}
// `or waddr_add, ra, ra`
inline uint64_t orRa(uint64_t waddrAdd, uint64_t raddrA) {
  return (SIG_NONE << 60) | (C_ALWAYS << 49) | (waddrAdd << 38) | (W_NOP << 32) | (OP_OR << 24) |
         (raddrA << 18) | (R_NOP << 12) | (MUX_RA << 9) | (MUX_RA << 6);
}
// `or -, r, r` of raddr_a (file A) or raddr_b (file B), with the add condition given
inline uint64_t readReg(bool fileB, uint64_t raddr, uint64_t cond) {
  const uint64_t mux = fileB ? MUX_RB : MUX_RA;
  return (SIG_NONE << 60) | (cond << 49) | (W_NOP << 38) | (W_NOP << 32) | (OP_OR << 24) |
         ((fileB ? R_NOP : raddr) << 18) | ((fileB ? raddr : R_NOP) << 12) | (mux << 9) | (mux << 6);
}
inline uint64_t nop(uint64_t sig = SIG_NONE) {
  return (sig << 60) | (W_NOP << 38) | (W_NOP << 32) | (R_NOP << 18) | (R_NOP << 12);
}

// Ends `program` (program end and its two delay slots) and launches it on qpusim with no
// parameters (QPULib's uniform layout: QPU index, QPU count).
inline void run(int nqpus, std::vector<uint64_t> program) {
  program.push_back(nop(SIG_END));
  program.push_back(nop());
  program.push_back(nop());
  std::vector<uint32_t> words;
  for (uint64_t instr : program) {
    words.push_back((uint32_t) instr);
    words.push_back((uint32_t) (instr >> 32));
  }
  Seq<int32_t> params;
  qpusimInvoke(nqpus, words, &params);
}
}  // namespace enc
