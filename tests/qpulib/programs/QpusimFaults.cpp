// qpusim: what the emulator detects must make the launch throw (a C++ exception the caller
// can catch), never pass silently. argv[1] selects the case; the program prints "ok" when the
// launch ran, "caught: <message>" when it threw, and the results it got.
//   gathers N   a kernel with N TMU gathers outstanding before the first receive (4 is the limit)
//   hazard 0|1  hand-encoded code reading a physical register in the instruction right after
//               writing it (1; a hazard on hardware) or with a NOP in between (0; fine)
//   limit N     the 4-gather kernel with a cycle limit of N (qpusim_set_max_cycles)
//   semaphore 0|1  a kernel that increments semaphore 0 and decrements it again (0) or leaves
//               it raised at the end (1; the next job on hardware would see it)
//   dma-mutex N a kernel with one DMA load and one DMA store on N QPUs: prints how many encoded
//               instructions acquire (read) and release (write) the hardware mutex (register 51)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <exception>
#include <vector>
#include "QPULib.h"
#include "QpuEncode.h"

static int numGathers = 4;

void gathers(Ptr<Int> p)
{
  Int v[8];
  for (int i = 0; i < numGathers; i++) gather(p + 16*i + index());
  for (int i = 0; i < numGathers; i++) receive(v[i]);
  Int sum = 0;
  for (int i = 0; i < numGathers; i++) sum = sum + v[i];
  *p = sum;
}

static bool leaveSemaphore = false;

void semaphore(Ptr<Int> p)
{
  semaInc(0);
  if (!leaveSemaphore) semaDec(0);
  *p = 1;
}

void increment(Ptr<Int> p, Ptr<Int> q)
{
  Int offset = me() << 4;
  *(q + offset) = *(p + offset) + 1;
}


int main(int argc, char** argv)
{
  if (argc != 3) { fprintf(stderr, "usage: QpusimFaults gathers N | hazard 0|1 | limit N | semaphore 0|1 | dma-mutex N\n"); return 2; }
  try {
    if (strcmp(argv[1], "gathers") == 0 || strcmp(argv[1], "limit") == 0) {
      if (strcmp(argv[1], "limit") == 0) qpusim_set_max_cycles((uint32_t) atoi(argv[2]));
      else numGathers = atoi(argv[2]);
      auto k = compile(gathers);
      SharedArray<int> a(16 * 8);
      for (int i = 0; i < 16 * 8; i++) a[i] = i;
      k(&a);
      printf("ok\n");
      for (int i = 0; i < 16; i++) printf("%d: %d\n", i, a[i]);
    } else if (strcmp(argv[1], "semaphore") == 0) {
      leaveSemaphore = atoi(argv[2]) == 1;
      auto k = compile(semaphore);
      SharedArray<int> a(16);
      for (int i = 0; i < 16; i++) a[i] = 0;
      k(&a);
      printf("ok\n%d\n", a[0]);
    } else if (strcmp(argv[1], "dma-mutex") == 0) {
      int nqpus = atoi(argv[2]);
      auto k = compile(increment);
      k.setNumQPUs(nqpus);
      int acquires = 0, releases = 0;
      for (size_t i = 0; i + 1 < k.qpusimCode.size(); i += 2) {
        uint64_t instr = (uint64_t) k.qpusimCode[i] | ((uint64_t) k.qpusimCode[i + 1] << 32);
        uint64_t sig = instr >> 60;
        if (sig == 14 || sig == 15) {  // load immediate, branch: no register reads
          if (sig == 14 && (((instr >> 38) & 63) == 51 || ((instr >> 32) & 63) == 51)) releases++;
          continue;
        }
        if (((instr >> 18) & 63) == 51 || ((instr >> 12) & 63) == 51) acquires++;
        if (((instr >> 38) & 63) == 51 || ((instr >> 32) & 63) == 51) releases++;
      }
      SharedArray<int> p(16 * nqpus), q(16 * nqpus);
      for (int i = 0; i < 16 * nqpus; i++) { p[i] = i; q[i] = 0; }
      k(&p, &q);
      int wrong = 0;
      for (int i = 0; i < 16 * nqpus; i++) wrong += q[i] != i + 1;
      printf("ok\nacquires %d releases %d wrong %d\n", acquires, releases, wrong);
    } else {
      using namespace enc;
      std::vector<uint64_t> program;
      program.push_back(ldi(0, 5));         // ra0 = 5
      if (atoi(argv[2]) == 0) program.push_back(enc::nop());
      program.push_back(orRa(W_R0, 0));     // r0 = ra0 | ra0
      enc::run(1, program);
      printf("ok\n");
    }
    printf("cycles %llu\n", (unsigned long long) qpusim_last_cycles());
  } catch (const std::exception& e) {
    printf("caught: %s\n", e.what());
  }
  return 0;
}
