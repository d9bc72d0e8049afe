// QPULib's qpusim mode (rpibuild; copied into Lib/VideoCore/ by images/qpulib/build.sh for
// MODE=qpusim, which compiles with -DEMULATION_MODE -DQPUSIM_MODE).
//
// A kernel is compiled and encoded exactly as in QPU mode and runs on VC4C's cycle-stepped
// VideoCore IV emulator (vc4c::tools::emulate) instead of the mailbox: the uniforms are those
// Invoke.cpp passes (QPU id, QPU count, then the parameters in QPULib's order) and the
// emulation-mode heap (SharedArray) is mapped at its bus addresses (SharedArray::getAddress()).
// Anything the emulator reports (register hazard, a fifth outstanding TMU request, semaphores
// or mutex left in a bad state, a second host interrupt, an unsupported access, a hang) makes
// the call throw std::runtime_error; the heap is then left as it was before the call.
#ifndef _QPULIB_QPUSIM_H_
#define _QPULIB_QPUSIM_H_

#ifdef QPUSIM_MODE

#include <stdint.h>
#include <vector>
#include "Common/Seq.h"

// Run encoded QPU code on `numQPUs` (1..12) emulated QPUs with QPULib's uniform layout.
void qpusimInvoke(int numQPUs, const std::vector<uint32_t>& code, Seq<int32_t>* params);

// Emulated cycles of the last successful launch (0 before the first). One emulated cycle is
// one instruction issue on every running QPU, i.e. 4 cycles of the QPU clock (a 16-way vector
// runs on 4-way ALUs over 4 clocks). Memory timing in the emulator is approximate.
uint64_t qpusim_last_cycles();

// The simulated run time of the last launch in seconds at the given QPU clock
// (250 MHz on the Raspberry Pi 1-3): qpusim_last_cycles() * 4 / clock.
double qpusim_last_seconds(double clock_mhz = 250.0);

// QPUSIM_TRACE (any value) prints every launch's QPU count, instructions and cycles on stderr.

// Emulated cycles after which a launch is stopped as hung (and throws); default 2^32 - 1.
// The environment variable QPUSIM_MAX_CYCLES sets the initial value.
void qpusim_set_max_cycles(uint32_t cycles);

#endif  // QPUSIM_MODE
#endif  // _QPULIB_QPUSIM_H_
