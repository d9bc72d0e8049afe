// QPULib's qpusim mode: run encoded QPU code on VC4C's VideoCore IV emulator (see QPUSim.h).
#ifdef QPUSIM_MODE

#include "VideoCore/QPUSim.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
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

// ---- memory model ----------------------------------------------------------------------

void checkModel(const QpusimMemoryModel& m) {
  auto check = [](double value, const char* name, bool rate) {
    const bool ok = std::isfinite(value) && value >= 0.0 && value <= 1e6 &&
                    !(rate && value != 0.0 && value < 1e-3);
    if (!ok)
      throw std::invalid_argument(std::string("QPULib qpusim: memory model ") + name + " = " +
                                  std::to_string(value) +
                                  (rate ? " is not 0 (unlimited) or 0.001..1e6 bytes per emulated cycle"
                                        : " is not 0..1e6 emulated cycles"));
  };
  check(m.dram_bytes_per_cycle, "dram_bytes_per_cycle", true);
  check(m.dram_latency_cycles, "dram_latency_cycles", false);
  check(m.dma_load_bytes_per_cycle, "dma_load_bytes_per_cycle", true);
  check(m.dma_load_setup_cycles, "dma_load_setup_cycles", false);
  check(m.dma_store_bytes_per_cycle, "dma_store_bytes_per_cycle", true);
  check(m.dma_store_setup_cycles, "dma_store_setup_cycles", false);
}

// QPUSIM_MEMORY_MODEL's file: `key = value` lines (the flat TOML torch_qpu writes: GB/s and
// ns; `inf` = unlimited), `#` comments, string values only for name/description; the clock
// from `clock_mhz` or QPUSIM_CLOCK_MHZ (default 250). Errors name the file, line and key.
QpusimMemoryModel modelFromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("QPULib qpusim: QPUSIM_MEMORY_MODEL=" + path + ": cannot read the file");
  std::map<std::string, double> values;
  bool waitsStall = true;
  std::string line;
  for (int number = 1; std::getline(in, line); number++) {
    const std::string where = "QPULib qpusim: " + path + ":" + std::to_string(number) + ": ";
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    if (line[first] == '[') throw std::invalid_argument(where + "tables are not supported (flat key = value lines)");
    const size_t eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument(where + "expected key = value");
    std::string key = line.substr(first, eq - first);
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    // a comment after the value (after the closing quote of a string)
    const size_t closing = !value.empty() && value.front() == '"' ? value.find('"', 1) : 0;
    const size_t hash = value.find('#', closing == std::string::npos ? 0 : closing);
    if (hash != std::string::npos) value.erase(hash);
    value.erase(value.find_last_not_of(" \t\r") + 1);
    if (key == "name" || key == "description") {
      if (value.size() < 2 || value.front() != '"' || value.back() != '"')
        throw std::invalid_argument(where + key + " must be a quoted string");
      continue;
    }
    if (key == "dma_waits_stall") {
      if (value != "true" && value != "false")
        throw std::invalid_argument(where + key + " must be true or false");
      waitsStall = value == "true";
      continue;
    }
    static const char* const known[] = {"clock_mhz", "dram_bandwidth_gbps", "dram_latency_ns",
                                        "dma_load_bandwidth_gbps", "dma_load_setup_ns",
                                        "dma_store_bandwidth_gbps", "dma_store_setup_ns"};
    bool isKnown = false;
    for (const char* k : known) isKnown = isKnown || key == k;
    if (!isKnown) throw std::invalid_argument(where + "unknown key '" + key + "'");
    char* end = nullptr;
    const double number_value = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || std::isnan(number_value))
      throw std::invalid_argument(where + key + " = '" + value + "' is not a number");
    const bool isRate = key.find("bandwidth") != std::string::npos;
    if (number_value < 0 || (!isRate && std::isinf(number_value)) || (isRate && number_value == 0))
      throw std::invalid_argument(where + key + " = " + value +
                                  (isRate ? " must be positive (inf: unlimited)" : " must be a finite number >= 0"));
    values[key] = number_value;
  }
  for (const char* k : {"dram_bandwidth_gbps", "dram_latency_ns", "dma_load_bandwidth_gbps", "dma_load_setup_ns",
                        "dma_store_bandwidth_gbps", "dma_store_setup_ns"})
    if (!values.count(k)) throw std::invalid_argument("QPULib qpusim: " + path + ": missing key '" + k + "'");
  double clock = 250.0;
  if (values.count("clock_mhz")) {
    clock = values["clock_mhz"];
  } else if (const char* env = std::getenv("QPUSIM_CLOCK_MHZ"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    clock = std::strtod(env, &end);
    if (*end != '\0') throw std::invalid_argument("QPULib qpusim: QPUSIM_CLOCK_MHZ is not a number");
  }
  if (!(clock >= 1.0 && clock <= 10000.0))
    throw std::invalid_argument("QPULib qpusim: the QPU clock must be 1..10000 MHz");
  // One emulated cycle is 4 QPU clocks: bytes per cycle = GB/s * 4000 / MHz, cycles = ns * MHz / 4000.
  auto rate = [clock](double gbps) { return std::isinf(gbps) ? 0.0 : gbps * 4000.0 / clock; };
  auto cycles = [clock](double ns) { return ns * clock / 4000.0; };
  QpusimMemoryModel m;
  m.dram_bytes_per_cycle = rate(values["dram_bandwidth_gbps"]);
  m.dram_latency_cycles = cycles(values["dram_latency_ns"]);
  m.dma_load_bytes_per_cycle = rate(values["dma_load_bandwidth_gbps"]);
  m.dma_load_setup_cycles = cycles(values["dma_load_setup_ns"]);
  m.dma_store_bytes_per_cycle = rate(values["dma_store_bandwidth_gbps"]);
  m.dma_store_setup_cycles = cycles(values["dma_store_setup_ns"]);
  m.dma_waits_stall = waitsStall;
  try {
    checkModel(m);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + " (from " + path + " at " + std::to_string(clock) + " MHz)");
  }
  return m;
}

struct ModelState {
  std::mutex lock;
  QpusimMemoryModel model;
  bool fromEnvironmentDone = false;
};

ModelState& modelState() {
  static ModelState state;
  return state;
}

// The model for a launch: QPUSIM_MEMORY_MODEL's file on first use (unless a model was set).
QpusimMemoryModel currentModel() {
  ModelState& s = modelState();
  std::lock_guard<std::mutex> guard(s.lock);
  if (!s.fromEnvironmentDone) {
    const char* path = std::getenv("QPUSIM_MEMORY_MODEL");
    if (path != nullptr && *path != '\0') s.model = modelFromFile(path);
    s.fromEnvironmentDone = true;
  }
  return s.model;
}

}  // namespace

void qpusim_set_memory_model(const QpusimMemoryModel& model) {
  checkModel(model);
  ModelState& s = modelState();
  std::lock_guard<std::mutex> guard(s.lock);
  s.model = model;
  s.fromEnvironmentDone = true;  // an explicit model wins over the environment
}

QpusimMemoryModel qpusim_memory_model() { return currentModel(); }

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
  const QpusimMemoryModel model = currentModel();
  data.memoryTiming.dramBytesPerCycle = model.dram_bytes_per_cycle;
  data.memoryTiming.dramLatencyCycles = model.dram_latency_cycles;
  data.memoryTiming.dmaLoadBytesPerCycle = model.dma_load_bytes_per_cycle;
  data.memoryTiming.dmaLoadSetupCycles = model.dma_load_setup_cycles;
  data.memoryTiming.dmaStoreBytesPerCycle = model.dma_store_bytes_per_cycle;
  data.memoryTiming.dmaStoreSetupCycles = model.dma_store_setup_cycles;
  data.memoryTiming.dmaWaitsStall = model.dma_waits_stall;
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
