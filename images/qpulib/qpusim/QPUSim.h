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

// The emulator's memory timing (rpibuild's VC4C patch 0011; images/vc4c/README.md), in
// emulated cycles. DRAM is one server shared by every L2 line fill (64 bytes) and DMA
// transfer; a fill completes dram_latency_cycles after its bytes went through it; a DMA
// transfer queues on the one load (or store) engine, takes bytes / min(engine, DRAM rate)
// and completes its setup cycles after that; vpm_ld_wait/vpm_st_wait stall until the QPU's
// last transfer completed. A rate of 0 is unlimited. dma_waits_stall: the DMA wait QPULib
// encodes (a condition-never `or` of the wait register) stalls, as on the hardware; the
// emulator originally skipped it. The defaults are the emulator's original timing ("memory
// free": an 8-cycle fill, a 12-cycle DMA, no contention, QPULib's DMA waits skipped).
// torch_qpu.memory_model converts a model in GB/s and ns to these units for a QPU clock.
struct QpusimMemoryModel {
  double dram_bytes_per_cycle = 0.0;
  double dram_latency_cycles = 8.0;
  double dma_load_bytes_per_cycle = 0.0;
  double dma_load_setup_cycles = 12.0;
  double dma_store_bytes_per_cycle = 0.0;
  double dma_store_setup_cycles = 12.0;
  bool dma_waits_stall = false;
};

// The model used by the following launches (all threads). Throws std::invalid_argument
// naming the field for a negative, NaN or infinite value (rates: 0 or 0.001..1e6 bytes per
// cycle; cycles: 0..1e6). The environment variable QPUSIM_MEMORY_MODEL names a file setting
// the initial model (key = value lines, as torch_qpu's memory_model.toml: GB/s and ns,
// converted at clock_mhz from the file or QPUSIM_CLOCK_MHZ, default 250; dma_waits_stall =
// true unless the file says false); a bad file makes the first launch throw, naming the file
// and the key.
void qpusim_set_memory_model(const QpusimMemoryModel& model);
QpusimMemoryModel qpusim_memory_model();

#endif  // QPUSIM_MODE
#endif  // _QPULIB_QPUSIM_H_
