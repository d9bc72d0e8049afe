// Microbenchmarks of the memory calibration kit (python -m torch_qpu.calibrate), written
// with QPULib's DSL like kernels.h.
//
// Why these four: each isolates one parameter of the memory model (torch_qpu/memory_model.py,
// the emulator's patch images/vc4c/patches/0011-memory-model.patch):
//  * tmu_stream: every QPU streams its own block through the TMU with four gathers in
//    flight; on 12 QPUs the DRAM is the bottleneck, so time per byte gives its bandwidth
//    (and on 1 and 4 QPUs, how much one QPU gets);
//  * tmu_chain: one QPU, one gather at a time (each waits for the last) over a ring of
//    lines, `passes` times; a ring larger than the L2 misses every time, one smaller than
//    the L2 (but larger than the TMU cache) hits the L2: the difference per step is the
//    DRAM's latency plus one line's transfer, the instructions cancel;
//  * dma_load / dma_store: QPULib's `*p` loads and stores (a 64-byte DMA each, the
//    transfer waited for, set up under the hardware mutex); on 12 QPUs the shared DMA
//    engine is the bottleneck (its rate), on 1 QPU each transfer's time is its fixed setup
//    cost plus its bytes plus the loop's instructions.
//
// All take (Int n, Int ring, Ptr<Float> src, Ptr<Float> out), so one compiled Kernel type
// serves them; module.cpp's _calibrate_run hook launches them through its Runtime. The
// values read are never used except for a sum stored per QPU, so the compiler keeps every
// load; `src` holds whatever the pool buffer held.
#pragma once

#include <QPULib.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace torch_qpu::calibrate {

// n >= 4 vectors per QPU from src + me() * n * 16: four gathers in flight (the TMU's limit).
inline void tmu_stream(Int n, Int ring, Ptr<Float> src, Ptr<Float> out) {
  (void)ring;
  Ptr<Float> p = src + me() * (n << 4) + index();
  Float sum = 0;
  Float x;
  gather(p);
  gather(p + 16);
  gather(p + 32);
  p = p + 48;
  For(Int i = 3, i < n, i = i + 1)
    gather(p);
    receive(x);
    sum = sum + x;
    p = p + 16;
  End
  receive(x);
  sum = sum + x;
  receive(x);
  sum = sum + x;
  receive(x);
  sum = sum + x;
  Ptr<Float> q = out + (me() << 4);
  *q = sum;
}

// `n` passes over `ring` lines of 64 bytes from src, one gather at a time.
inline void tmu_chain(Int n, Int ring, Ptr<Float> src, Ptr<Float> out) {
  Float sum = 0;
  Float x;
  Ptr<Float> p = src + index();
  For(Int pass = 0, pass < n, pass = pass + 1)
    p = src + index();
    For(Int i = 0, i < ring, i = i + 1)
      gather(p);
      receive(x);
      sum = sum + x;
      p = p + 16;
    End
  End
  Ptr<Float> q = out + (me() << 4);
  *q = sum;
}

// n DMA loads of 64 bytes per QPU from src + me() * n * 16, each waited for.
inline void dma_load(Int n, Int ring, Ptr<Float> src, Ptr<Float> out) {
  (void)ring;
  Ptr<Float> p = src + me() * (n << 4);
  Float sum = 0;
  For(Int i = 0, i < n, i = i + 1)
    Float x = *p;
    sum = sum + x;
    p = p + 16;
  End
  Ptr<Float> q = out + (me() << 4);
  *q = sum;
}

// n DMA stores of 64 bytes per QPU to out + me() * n * 16, each waited for.
inline void dma_store(Int n, Int ring, Ptr<Float> src, Ptr<Float> out) {
  (void)ring;
  (void)src;
  Ptr<Float> p = out + me() * (n << 4);
  Float v = toFloat(index());
  For(Int i = 0, i < n, i = i + 1)
    *p = v;
    v = v + 1.0f;
    p = p + 16;
  End
}

using CalibrationKernel = Kernel<Int, Int, Ptr<Float>, Ptr<Float>>;

struct Benchmark {
  const char* name;
  void (*body)(Int, Int, Ptr<Float>, Ptr<Float>);
};

inline constexpr std::array<Benchmark, 4> kBenchmarks{{
    {"tmu_stream", &tmu_stream},
    {"tmu_chain", &tmu_chain},
    {"dma_load", &dma_load},
    {"dma_store", &dma_store},
}};

inline std::size_t benchmark_index(const std::string& name) {
  for (std::size_t i = 0; i < kBenchmarks.size(); ++i) {
    if (name == kBenchmarks[i].name) return i;
  }
  throw std::invalid_argument("torch_qpu: unknown calibration benchmark '" + name +
                              "' (tmu_stream, tmu_chain, dma_load, dma_store)");
}

// The compiled kernel of a benchmark (compiled once per process; the caller holds the
// runtime's mutex, as for every use of QPULib).
inline CalibrationKernel& kernel(const std::string& name) {
  static std::array<std::unique_ptr<CalibrationKernel>, kBenchmarks.size()> compiled;
  const std::size_t i = benchmark_index(name);
  if (!compiled[i]) compiled[i] = std::make_unique<CalibrationKernel>(kBenchmarks[i].body);
  return *compiled[i];
}

// Floats of `src` and `out` a run reads or writes (both at least one vector per QPU).
inline std::pair<int64_t, int64_t> buffer_floats(const std::string& name, int64_t num_qpus, int64_t n,
                                                 int64_t ring) {
  const std::size_t i = benchmark_index(name);
  if (i == 0 && n < 4) throw std::invalid_argument("torch_qpu: tmu_stream needs n >= 4 vectors per QPU");
  const int64_t per_qpu = num_qpus * n * 16;
  const int64_t results = num_qpus * 16;
  switch (i) {
    case 0:  // tmu_stream
    case 2:  // dma_load
      return {per_qpu, results};
    case 1:  // tmu_chain
      return {ring * 16, results};
    default:  // dma_store
      return {16, per_qpu};
  }
}

}  // namespace torch_qpu::calibrate
