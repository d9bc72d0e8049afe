// qpusim: the emulator's memory model (images/vc4c/patches/0011-memory-model.patch) seen from
// hand-encoded QPU code, which (unlike QPULib's 64-byte `*p` transfers) can move DMA blocks of
// any size. The model comes from QPUSIM_MEMORY_MODEL (a file), as for any QPULib program.
//   load NQPUS ROWS   every QPU: one horizontal DMA load of ROWS (1..16) rows of 64 bytes into
//                     the VPM, waited for (an executed read of vpm_ld_wait)
//   store NQPUS ROWS  every QPU: one horizontal DMA store of ROWS (1..64) rows of 64 bytes
//   never NQPUS ROWS  as load, but waited for the way QPULib does (a condition-never `or` of
//                     vpm_ld_wait), which the emulator originally skipped
// Prints "cycles N" (qpusim_last_cycles()) or "caught: <message>" when the launch threw.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <exception>
#include <vector>
#include "QPULib.h"
#include "QpuEncode.h"


int main(int argc, char** argv)
{
  if (argc != 4) { fprintf(stderr, "usage: QpusimMemory load|store|never NQPUS ROWS\n"); return 2; }
  const bool store = strcmp(argv[1], "store") == 0;
  const bool never = strcmp(argv[1], "never") == 0;
  const int nqpus = atoi(argv[2]);
  const int rows = atoi(argv[3]);
  if (rows < 1 || rows > (store ? 64 : 16)) { fprintf(stderr, "ROWS out of range\n"); return 2; }
  try {
    // The heap at bus address 0 holds the 64 rows every QPU's transfer reads or writes.
    SharedArray<int> heap(64 * 16);
    for (int i = 0; i < 64 * 16; i++) heap[i] = i;
    std::vector<uint64_t> program;
    if (store) {
      // VDW setup (ID 2): UNITS rows, DEPTH 16 words, horizontal, VPM row 0; then the address.
      program.push_back(enc::ldi(enc::VPM_SETUP, (2u << 30) | ((uint32_t) rows << 23) | (16u << 16) | (1u << 14), enc::WS));
      program.push_back(enc::ldi(enc::VPM_ADDR, 0, enc::WS));
      program.push_back(enc::readReg(true, enc::VPM_ADDR, enc::C_ALWAYS));  // vpm_st_wait
    } else {
      // VDR stride setup (ID 9): rows 64 bytes apart in memory; VDR setup (ID 1): ROWS rows of
      // 16 words (ROWLEN 0 = 16, NROWS 16 = 0), VPITCH 1, horizontal, VPM row 0; the address.
      program.push_back(enc::ldi(enc::VPM_SETUP, (9u << 28) | 64u));
      program.push_back(enc::ldi(enc::VPM_SETUP, (1u << 31) | ((uint32_t) (rows & 15) << 16) | (1u << 12)));
      program.push_back(enc::ldi(enc::VPM_ADDR, 0));
      program.push_back(enc::readReg(false, enc::VPM_ADDR, never ? enc::C_NEVER : enc::C_ALWAYS));  // vpm_ld_wait
    }
    enc::run(nqpus, program);
    printf("cycles %llu\n", (unsigned long long) qpusim_last_cycles());
  } catch (const std::exception& e) {
    printf("caught: %s\n", e.what());
  }
  return 0;
}
