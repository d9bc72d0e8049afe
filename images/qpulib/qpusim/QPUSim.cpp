// QPULib's qpusim mode: run encoded QPU code on VC4C's VideoCore IV emulator (see QPUSim.h).
#ifdef QPUSIM_MODE

#include "VideoCore/QPUSim.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include "Target/Emulator.h"  // emuHeap, emuHeapEnd: the SharedArray pool

// VC4C's public headers (PREFIX/include/vc4c of images/vc4c/build.sh)
#include "vc4c/Compiler.h"
#include "vc4c/tools.h"

namespace {

// Bus addresses: the heap at 0 (SharedArray::getAddress() is a byte offset into it), the
// uniforms on the next 4 KiB boundary. VC4C's emulator places instructions at 0x10000000,
// so data must stay below it.
const uint32_t DATA_LIMIT = 0x10000000u;

const uint64_t PAGE = 4096;

uint64_t roundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

std::atomic<uint64_t> lastCycles{0};

uint32_t initialMaxCycles() {
  const char* value = std::getenv("QPUSIM_MAX_CYCLES");
  if (value == nullptr || *value == '\0') return 0xFFFFFFFFu;
  char* end = nullptr;
  unsigned long long n = std::strtoull(value, &end, 10);
  if (*end != '\0' || n == 0 || n > 0xFFFFFFFFull)
    throw std::invalid_argument("QPULib qpusim: QPUSIM_MAX_CYCLES must be a number in 1..2^32-1");
  return (uint32_t) n;
}

std::atomic<uint32_t>& maxCycles() {
  static std::atomic<uint32_t> value{initialMaxCycles()};
  return value;
}

}  // namespace

uint64_t qpusim_last_cycles() { return lastCycles.load(); }

double qpusim_last_seconds(double clock_mhz) {
  return (double) lastCycles.load() * 4.0 / (clock_mhz * 1e6);
}

void qpusim_set_max_cycles(uint32_t cycles) {
  if (cycles == 0) throw std::invalid_argument("QPULib qpusim: the cycle limit must be positive");
  maxCycles().store(cycles);
}

void qpusimInvoke(int numQPUs, const std::vector<uint32_t>& code, Seq<int32_t>* params)
{
  if (numQPUs < 1 || numQPUs > MAX_QPUS)  // MAX_QPUS: Target/Emulator.h (12)
    throw std::invalid_argument("QPULib qpusim: numQPUs must be 1..12, not " + std::to_string(numQPUs));
  if (code.empty() || code.size() % 2 != 0)
    throw std::invalid_argument("QPULib qpusim: encoded code must be whole 64-bit instructions");

  // The used part of the emulation heap, at bus address 0, then the uniforms on the next 4 KiB
  // boundary. The emulator's caches (TMU, uniforms) fill whole 64-byte lines and the uniform
  // FIFO reads ahead, as the hardware does: both buffers are padded to whole pages (zeros),
  // like the page-granular GPU allocations of QPU mode.
  const uint64_t heapBytes = (uint64_t) emuHeapEnd * 4;
  const uint64_t heapMapped = roundUp(heapBytes + 64, PAGE);
  const int perQPU = 2 + params->numElems;
  const uint64_t uniformBytes = (uint64_t) numQPUs * perQPU * 4;
  const uint64_t uniformBase = heapMapped;
  const uint64_t uniformMapped = roundUp(uniformBytes + 64, PAGE);
  if (uniformBase + uniformMapped > DATA_LIMIT)
    throw std::length_error("QPULib qpusim: the heap in use (" + std::to_string(heapBytes) +
                            " bytes) exceeds the emulator's data space (256 MiB)");

  std::vector<uint8_t> heap(heapMapped, 0);
  if (heapBytes) std::memcpy(heap.data(), emuHeap, heapBytes);

  // Uniforms exactly as Invoke.cpp lays them out: per QPU its id, the QPU count, the parameters.
  std::vector<uint8_t> uniforms(uniformMapped, 0);
  std::vector<uint32_t> uniformAddresses;
  for (int q = 0; q < numQPUs; q++) {
    uint32_t* words = reinterpret_cast<uint32_t*>(uniforms.data()) + q * perQPU;
    words[0] = (uint32_t) q;
    words[1] = (uint32_t) numQPUs;
    for (int j = 0; j < params->numElems; j++) words[2 + j] = (uint32_t) params->elems[j];
    uniformAddresses.push_back((uint32_t) (uniformBase + (uint64_t) q * perQPU * 4));
  }

  // encode() emits each instruction as its low word, then its high word.
  std::vector<uint64_t> instructions(code.size() / 2);
  for (size_t i = 0; i < instructions.size(); i++)
    instructions[i] = (uint64_t) code[2 * i] | ((uint64_t) code[2 * i + 1] << 32);

  std::map<uint32_t, std::reference_wrapper<std::vector<uint8_t>>> buffers;
  buffers.emplace(0u, std::ref(heap));
  buffers.emplace((uint32_t) uniformBase, std::ref(uniforms));

  // VC4C logs to stdout by default: keep warnings and errors, on stderr (per thread).
  thread_local bool loggerSet = false;
  if (!loggerSet) {
    vc4c::setLogger(std::wcerr, false, vc4c::LogLevel::WARNING);
    loggerSet = true;
  }

  vc4c::tools::LowLevelEmulationData data(buffers, instructions.data(), (uint32_t) instructions.size(),
                                          uniformAddresses, maxCycles().load());
  bool finished = false;
  uint32_t cycles = 0;
  try {
    vc4c::tools::LowLevelEmulationResult result = vc4c::tools::emulate(data);
    finished = result.executionSuccessful;
    cycles = result.numCycles;
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("QPULib qpusim: the VideoCore IV emulator stopped the kernel: ") +
                             e.what());
  }
  if (!finished)
    throw std::runtime_error("QPULib qpusim: the kernel did not finish (the QPUs hang or the cycle limit of " +
                             std::to_string(maxCycles().load()) + " emulated cycles was reached)");

  if (heapBytes) std::memcpy(emuHeap, heap.data(), heapBytes);
  lastCycles.store(cycles);
  if (std::getenv("QPUSIM_TRACE"))
    std::fprintf(stderr, "qpusim: %d QPU(s), %u instructions, %u cycles (%.1f us at 250 MHz)\n", numQPUs,
                 (unsigned) instructions.size(), cycles, qpusim_last_seconds(250.0) * 1e6);
}

#endif  // QPUSIM_MODE
