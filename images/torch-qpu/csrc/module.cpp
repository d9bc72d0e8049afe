// torch_qpu._C: the torch_qpu operators, registered with the PyTorch dispatcher.
//
// One source of truth: this file defines every operator's schema
// (TORCH_LIBRARY) and its CPU-key implementation (TORCH_LIBRARY_IMPL) for
// every build. The QPULib backends ("qpu" or "emulator", one per build) are
// compiled only when TORCH_QPU_WITH_QPULIB is defined; a build without QPULib
// still has every operator, with the "cpu" backend only. Python adds the fake
// (meta) kernels and the autograd formulas (torch_qpu/_meta.py).
//
// Why the QPULib side is shaped this way:
//  * QPULib keeps global state (AST builder, emulator heap, mailbox), so every
//    touch of it, including freeing GPU memory, happens under one mutex; the
//    GIL is released meanwhile so other Python threads keep running while the
//    QPUs (or emulator) work.
//  * Compiling a QPULib kernel costs milliseconds (register allocation, ...):
//    each kernel is compiled once per process and cached. The QPU count is a
//    launch-time parameter, so one compiled kernel serves every QPU count.
//  * GPU-shared buffers are a grow-only pool of three slots (two inputs, one
//    output) reused across calls; data moves with memcpy, never element loops.
//  * Resident weights (linear(..., resident=True)) live in a cache keyed by the
//    weight's storage (held weakly), geometry and version counter.
//  * Inputs are only ever read: results land in pool memory, then in a fresh
//    (or the caller's out=) tensor. out= overloads are declared `Tensor(a!)`,
//    so the dispatcher bumps out's version counter.

#include <Python.h>
#include <torch/extension.h>
#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifdef TORCH_QPU_WITH_QPULIB
#include <unistd.h>

#include "calibrate_kernels.h"
#include "kernels.h"
#ifdef QPUSIM_MODE
#include "VideoCore/QPUSim.h"
#endif
// torch_qpu's hand-written kernels (torch_qpu/qpukernels.py, assembled by setup.py) run where
// QPU machine code runs: on the QPUs (qpu mode) and on VC4C's emulator (qpusim mode). QPULib's
// own emulator interprets its own instruction lists, so emulation-only builds keep QPULib's
// kernels.
#if defined(QPUSIM_MODE) || !defined(EMULATION_MODE)
#define TORCH_QPU_ASM_KERNELS 1
#include "qpu_code.h"
#ifndef QPUSIM_MODE
#include "VideoCore/Invoke.h"
#include "VideoCore/VideoCore.h"
#endif
#endif
#endif

namespace torch_qpu {
namespace {

using at::Tensor;

constexpr int64_t kMaxQPUs = 12;

#ifdef TORCH_QPU_WITH_QPULIB
#if defined(QPUSIM_MODE)
// Host only (tests, benchmarks): QPU mode's encoded kernels on VC4C's emulator
// (images/qpulib/qpusim); QPULib's emulator (Kernel::emu) stays available too.
constexpr const char* kMode = "qpusim";
#elif defined(QPU_MODE) && !defined(EMULATION_MODE)
constexpr const char* kMode = "qpu";
#elif defined(EMULATION_MODE)
constexpr const char* kMode = "emulation";
#else
#error "define QPU_MODE, EMULATION_MODE or QPUSIM_MODE (they select the QPULib build)"
#endif
#endif

// ---------------------------------------------------------------------------
// Backends and argument checks (every build).

// Cpu: plain torch. Qpu: QPULib on the VideoCore IV. Emulator: QPULib's
// software emulator. Qpusim: the encoded QPU code on VC4C's emulator.
enum class Backend { Cpu, Qpu, Emulator, Qpusim };

const char* backend_name(Backend be) {
  switch (be) {
    case Backend::Cpu:
      return "cpu";
    case Backend::Qpu:
      return "qpu";
    case Backend::Emulator:
      return "emulator";
    case Backend::Qpusim:
      return "qpusim";
  }
  return "?";
}

// Whether this build has the backend (cpu: every build).
bool built(Backend be) {
  switch (be) {
    case Backend::Cpu:
      return true;
#ifdef TORCH_QPU_WITH_QPULIB
    case Backend::Qpu:
      return std::string_view(kMode) == "qpu";
    case Backend::Emulator:
      return std::string_view(kMode) != "qpu";
    case Backend::Qpusim:
      return std::string_view(kMode) == "qpusim";
#else
    default:
      return false;
#endif
  }
  return false;
}

std::string built_backends() {
  std::string names;
  for (Backend be : {Backend::Qpu, Backend::Qpusim, Backend::Emulator, Backend::Cpu}) {
    if (built(be)) names += std::string(names.empty() ? "" : ", ") + backend_name(be);
  }
  return names;
}

// A failed launch leaves the QPUs in an unknown state (after a mailbox timeout
// they may still be writing the buffers): from then on the qpu (and qpusim)
// backend refuses to run in this process. Empty while usable.
std::string& unusable_reason() {
  static std::string reason;
  return reason;
}
std::mutex& unusable_mutex() {
  static std::mutex m;
  return m;
}
std::string unusable() {
  std::lock_guard<std::mutex> lock(unusable_mutex());
  return unusable_reason();
}

Backend parse_backend(c10::string_view backend) {
  const std::string_view name(backend.data(), backend.size());
  Backend be = Backend::Cpu;
  if (name == "qpu") {
    be = Backend::Qpu;
  } else if (name == "emulator") {
    be = Backend::Emulator;
  } else if (name == "qpusim") {
    be = Backend::Qpusim;
  } else {
    TORCH_CHECK_VALUE(name == "cpu", "torch_qpu: unknown backend '", name,
                      "': choose one of qpu, emulator, qpusim, cpu ('auto' is resolved by the "
                      "Python API)");
  }
  if (be == Backend::Cpu) return be;
#ifdef TORCH_QPU_WITH_QPULIB
  TORCH_CHECK(built(be), "torch_qpu: the '", name, "' backend is not part of this build (a ",
              kMode, "-mode QPULib build: backends ", built_backends(), ")");
  if (be != Backend::Emulator) {
    const std::string reason = unusable();
    TORCH_CHECK(reason.empty(), "torch_qpu: the '", name,
                "' backend is unusable in this process after a failed launch (", reason,
                "); its GPU buffers are not reused. Start a new process (python -m torch_qpu "
                "doctor)");
  }
#ifndef EMULATION_MODE
  // QPULib exits the process when it cannot open the mailbox: refuse first.
  for (const char* path : {"/dev/vcio", "/dev/mem"}) {
    TORCH_CHECK(::access(path, R_OK | W_OK) == 0, "torch_qpu: the 'qpu' backend cannot open ",
                path, " (needs a Raspberry Pi 1/2/3/Zero and root; python -m torch_qpu doctor)");
  }
#endif
  return be;
#else
  TORCH_CHECK(false, "torch_qpu: the '", name,
              "' backend needs torch_qpu built with QPULib; this build has only the cpu backend");
#endif
}

// torch's Python names (float32, not Float) for error messages.
std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return "torch.float32";
    case at::kDouble:
      return "torch.float64";
    case at::kHalf:
      return "torch.float16";
    case at::kBFloat16:
      return "torch.bfloat16";
    case at::kInt:
      return "torch.int32";
    case at::kLong:
      return "torch.int64";
    default:
      return std::string("torch.") + c10::toString(type);
  }
}

void check_num_qpus(int64_t num_qpus) {
  TORCH_CHECK_VALUE(num_qpus >= 1 && num_qpus <= kMaxQPUs, "torch_qpu: num_qpus must be in 1..",
                    kMaxQPUs, ", got ", num_qpus);
}

// dtype and device of one input: float32 everywhere, float64 too on the cpu
// backend (autograd's gradcheck wants double precision).
void check_tensor(const char* op, const Tensor& t, const char* name, Backend backend) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "torch_qpu.", op, ": ", name,
                    " must be a CPU tensor (the QPUs share CPU memory), got ", t.device());
  const bool ok = t.scalar_type() == at::kFloat ||
                  (backend == Backend::Cpu && t.scalar_type() == at::kDouble);
  TORCH_CHECK_TYPE(ok, "torch_qpu.", op, ": ", name, " must be float32",
                   backend == Backend::Cpu ? " (or float64 on the cpu backend)" : "", ", got ",
                   dtype_name(t.scalar_type()));
}

void check_same_dtype(const char* op, const Tensor& a, const char* a_name, const Tensor& b,
                      const char* b_name) {
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "torch_qpu.", op, ": ", a_name, " is ",
                   dtype_name(a.scalar_type()), " but ", b_name, " is ",
                   dtype_name(b.scalar_type()), " (float32 expected)");
}

void check_out(const char* op, const Tensor& out, const Tensor& like, at::IntArrayRef shape,
               Backend backend) {
  check_tensor(op, out, "out", backend);
  check_same_dtype(op, like, "the input", out, "out");
  TORCH_CHECK_VALUE(out.sizes() == shape, "torch_qpu.", op, ": out has shape ", out.sizes(),
                    ", expected ", shape);
}

// Releases the GIL for the duration of a kernel when this thread holds it
// (a direct pybind call); calls through torch.ops arrive with it released.
class GilRelease {
 public:
  GilRelease() : state_(Py_IsInitialized() && PyGILState_Check() ? PyEval_SaveThread() : nullptr) {}
  ~GilRelease() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

#ifdef TORCH_QPU_WITH_QPULIB
// ---------------------------------------------------------------------------
// The QPULib runtime (kernel cache, buffer pool, resident weights).

constexpr int kLanes = 16;
// QPU integer multiplies are 24-bit: the dot kernel multiplies row lengths.
constexpr int64_t kMaxRowFloats = (int64_t{1} << 24) - kLanes;

using ElementwiseKernel = Kernel<Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;
using DotKernel = Kernel<Int, Int, Int, Int, Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;
using Buffer = SharedArray<float>;

int64_t round_up_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------
// Moving data into and out of GPU memory (hardware fix 1).
//
// On arm64 images /dev/mem maps GPU memory as Device memory, where unaligned
// or overlapping accesses fault, and glibc's memcpy/memset make both for
// tails. So every copy into or out of a GPU buffer is a loop of aligned 32-bit
// volatile word accesses, in every mode (the emulators run this same code).
// uint32_t accesses are valid on the emulation heap (an int32_t array) and on
// mapped GPU memory; host floats are bit-cast through a local word.

volatile uint32_t* gpu_words(Buffer& buffer) {
  return reinterpret_cast<volatile uint32_t*>(&buffer[0]);
}

void words_to_gpu(volatile uint32_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t word = 0;
    std::memcpy(&word, src + i, sizeof word);
    dst[i] = word;
  }
}

void zeros_to_gpu(volatile uint32_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = 0u;
}

void words_from_gpu(float* dst, const volatile uint32_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t word = src[i];
    std::memcpy(dst + i, &word, sizeof word);
  }
}

// Copy `rows` rows of `cols` floats (contiguous) into GPU memory with a row
// pitch of `pitch` floats, zero-filling each row's padding.
void copy_padded(volatile uint32_t* dst, const float* src, int64_t rows, int64_t cols,
                 int64_t pitch) {
  for (int64_t r = 0; r < rows; ++r) {
    words_to_gpu(dst + r * pitch, src + r * cols, cols);
    zeros_to_gpu(dst + r * pitch + cols, pitch - cols);
  }
}

// ---------------------------------------------------------------------------
// Launch sizing (hardware fix 2).
//
// The kernel's mailbox driver gives a QPU job 1 s (3 s on newer kernels),
// whatever timeout QPULib asks for (10 s). Work is split into launches whose
// estimated run time stays under a budget of a tenth of that. The estimate is
// the larger of a compute bound, from emulated cycles per 16-wide slice that
// the qpusim backend measured (with a margin: tests check that no qpusim
// launch takes more cycles than estimated), and a memory bound, the bytes the
// launch moves at a sixth of the ~1.35 GB/s the seed measured streaming a
// matrix on a Pi 3. One emulated cycle is 4 QPU clocks (QPUSim.h).
namespace launch_model {
constexpr double kBudgetSeconds = 0.1;
constexpr double kClockHz = 250e6;
constexpr double kClocksPerCycle = 4.0;
constexpr double kMinBytesPerSecond = 200e6;
constexpr double kLaunchCycles = 400;        // start, uniforms, final store, end
constexpr double kEwCyclesPerSlice = 80;     // elementwise, per slice on one QPU
constexpr double kDotCyclesPerPair = 200;    // dot, per (vector, row) on one QPU
constexpr double kDotCyclesPerSlice = 40;    // dot, per 16-float slice of a row

double budget_seconds = kBudgetSeconds;  // tests shrink it (set_launch_budget)

double seconds(double cycles_per_qpu, double bytes) {
  return std::max(cycles_per_qpu * kClocksPerCycle / kClockHz, bytes / kMinBytesPerSecond);
}

// Emulated cycles of one QPU for an elementwise launch of `slices` on nq QPUs.
double elementwise_cycles(int64_t slices, int64_t nq) {
  return kLaunchCycles + static_cast<double>(ceil_div(slices, nq)) * kEwCyclesPerSlice;
}

// ... and for a dot launch of nvec x nrows pairs of rows kp floats long.
double dot_cycles(int64_t nvec, int64_t nrows, int64_t kp, int64_t nq, bool split_columns) {
  const int64_t slices = kp / kLanes;
  const double pairs = static_cast<double>(nvec * (split_columns ? nrows : ceil_div(nrows, nq)));
  const double per_pair =
      kDotCyclesPerPair +
      static_cast<double>(split_columns ? ceil_div(slices, nq) : slices) * kDotCyclesPerSlice;
  return kLaunchCycles + pairs * per_pair;
}

// The largest count in 1..total for which fits(count) holds (fits is monotone;
// 1 when even that does not fit: one item is the smallest launch there is).
template <typename Fits>
int64_t largest_fitting(int64_t total, Fits fits) {
  if (fits(total)) return total;
  int64_t lo = 1;
  int64_t hi = total;  // fits(lo) unknown, !fits(hi)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

// Slices per elementwise launch.
int64_t elementwise_chunk(int64_t slices, int64_t num_qpus) {
  return largest_fitting(slices, [&](int64_t count) {
    const int64_t nq = std::min(num_qpus, count);
    return seconds(elementwise_cycles(count, nq), 3.0 * kLanes * 4 * count) <= budget_seconds;
  });
}

// (vectors, rows) per dot launch: whole rows of the matrix first, then vectors.
std::pair<int64_t, int64_t> dot_chunk(int64_t nvec, int64_t nrows, int64_t kp, int64_t num_qpus,
                                      bool split_columns) {
  const int64_t groups = split_columns ? num_qpus : 1;
  auto fits = [&](int64_t v, int64_t r) {
    const int64_t nq = split_columns ? num_qpus : std::min(num_qpus, r);
    const double bytes = static_cast<double>(v * r) * (2.0 * kp * 4 + groups * kLanes * 4);
    return seconds(dot_cycles(v, r, kp, nq, split_columns), bytes) <= budget_seconds;
  };
  const int64_t rows = largest_fitting(nrows, [&](int64_t r) { return fits(1, r); });
  if (rows < nrows) return {1, rows};
  return {largest_fitting(nvec, [&](int64_t v) { return fits(v, nrows); }), nrows};
}
}  // namespace launch_model

// How a matrix is laid out in GPU memory: rows `pitch` floats apart (QPULib's dot kernels
// and the gemv kernel; two spare vectors after the last row for the gemv kernel's loads
// ahead), or as the gemm kernel's A panels with `pitch` k steps each.
enum class Layout { Rows = 0, PanelsA = 1 };

constexpr int64_t kPanelRows = 32;  // rows of an A panel (a gemm tile's height)
constexpr int64_t kPanelCols = 16;  // columns of a B panel (a gemm tile's width)
constexpr int64_t kSlackFloats = 32;  // two vectors: what the kernels read ahead

// A panels (ceil(M/32), steps, 32): a[32 ib + i, k] at [ib][k][i], zeros elsewhere.
Tensor pack_a_panels(const Tensor& a, int64_t steps) {
  const int64_t panels = (a.size(0) + kPanelRows - 1) / kPanelRows;
  Tensor padded = at::zeros({panels * kPanelRows, steps}, a.options());
  padded.narrow(0, 0, a.size(0)).narrow(1, 0, a.size(1)).copy_(a);
  return padded.view({panels, kPanelRows, steps}).transpose(1, 2).contiguous();
}

// B panels (ceil(N/16), steps, 16): b[k, 16 jb + j] at [jb][k][j], zeros elsewhere.
Tensor pack_b_panels(const Tensor& b, int64_t steps) {
  const int64_t panels = (b.size(1) + kPanelCols - 1) / kPanelCols;
  Tensor padded = at::zeros({steps, panels * kPanelCols}, b.options());
  padded.narrow(0, 0, b.size(0)).narrow(1, 0, b.size(1)).copy_(b);
  return padded.view({steps, panels, kPanelCols}).transpose(0, 1).contiguous();
}

int64_t layout_floats(const Tensor& mat, Layout layout, int64_t pitch) {
  if (layout == Layout::PanelsA) {
    return (mat.size(0) + kPanelRows - 1) / kPanelRows * pitch * kPanelRows;
  }
  return std::max<int64_t>(mat.size(0) * pitch + kSlackFloats, kLanes);
}

// A matrix kept in GPU-shared memory between calls.
struct ResidentEntry {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  Layout layout = Layout::Rows;
  int64_t pitch = 0;
  int64_t version = -1;
  std::unique_ptr<SharedArray<float>> buffer;
  int64_t capacity = 0;
};

// Everything that touches QPULib; one instance per process. Every member
// function expects the caller to hold `mutex`.
class Runtime {
 public:
  enum Slot : std::size_t { kInputA = 0, kInputB = 1, kOutput = 2, kTable = 3, kNumSlots = 4 };

  std::mutex mutex;

  ~Runtime() { release(); }

  ElementwiseKernel& elementwise(kernels::BinaryOp op) {
    auto& slot = elementwise_kernels_.at(static_cast<std::size_t>(op));
    if (!slot) {
      switch (op) {
        case kernels::BinaryOp::Add:
          slot = std::make_unique<ElementwiseKernel>(&kernels::elementwise<kernels::BinaryOp::Add>);
          break;
        case kernels::BinaryOp::Sub:
          slot = std::make_unique<ElementwiseKernel>(&kernels::elementwise<kernels::BinaryOp::Sub>);
          break;
        case kernels::BinaryOp::Mul:
          slot = std::make_unique<ElementwiseKernel>(&kernels::elementwise<kernels::BinaryOp::Mul>);
          break;
      }
      ++compiles_;
    }
    return *slot;
  }

  // split_columns: kernels::dot_cols, else kernels::dot_rows.
  DotKernel& dot(bool split_columns) {
    auto& slot = split_columns ? dot_cols_kernel_ : dot_rows_kernel_;
    if (!slot) {
      slot = std::make_unique<DotKernel>(split_columns ? &kernels::dot_cols : &kernels::dot_rows);
      ++compiles_;
    }
    return *slot;
  }

  // A pool buffer holding at least `floats` floats (grow-only).
  Buffer& buffer(Slot slot, int64_t floats) {
    auto& entry = buffers_.at(slot);
    auto& capacity = capacities_.at(slot);
    if (!entry || capacity < floats) {
      // Grow with some headroom so slowly growing sizes do not reallocate
      // every call (in emulation mode old buffers cannot be freed).
      int64_t grown = std::max<int64_t>(floats, capacity + capacity / 4);
      grown = std::max<int64_t>(round_up_lanes(grown), 1024);
      entry.reset();  // QPU mode: give the old GPU memory back first.
      capacity = 0;
      entry = allocate(floats, grown, &capacity);
    }
    return *entry;
  }

  // The GPU copy of `mat` (2-D float32, rows padded to kp), uploaded again only
  // when the tensor's storage, geometry or version changed. Inference tensors
  // have no version counter: they are copied into the pool on every call.
  Buffer& resident(const Tensor& mat, int64_t kp, Layout layout = Layout::Rows,
                   Slot slot = kInputB) {
    sweep_residents();
    if (mat.is_inference()) {
      return upload(buffer(slot, layout_floats(mat, layout, kp)), mat, kp, layout);
    }
    c10::StorageImpl* storage = mat.storage().unsafeGetStorageImpl();
    ResidentEntry* entry = nullptr;
    for (auto& candidate : residents_) {
      if (candidate.storage._unsafe_get_target() == storage &&
          candidate.offset == mat.storage_offset() && mat.sizes() == candidate.sizes &&
          mat.strides() == candidate.strides && candidate.layout == layout &&
          candidate.pitch == kp) {
        entry = &candidate;
        break;
      }
    }
    const int64_t version = mat._version();
    if (entry != nullptr && entry->version == version) return *entry->buffer;
    if (entry == nullptr) {
      residents_.push_back(ResidentEntry{mat.storage().getWeakStorageImpl(), mat.storage_offset(),
                                         mat.sizes().vec(), mat.strides().vec(), layout, kp, -1,
                                         nullptr, 0});
      entry = &residents_.back();
    }
    // Until the upload has finished the entry matches no version, so a failed
    // allocation or copy (an exception) is retried on the next call.
    entry->version = -1;
    const int64_t needed = layout_floats(mat, layout, kp);
    if (!entry->buffer || entry->capacity < needed) {
      entry->buffer.reset();
      entry->capacity = 0;
      entry->buffer = allocate(needed, needed, &entry->capacity);
    }
    upload(*entry->buffer, mat, kp, layout);
    entry->version = version;
    ++resident_uploads_;
    return *entry->buffer;
  }

  // Drops the GPU copy of `mat` (all of them when mat is undefined).
  void forget(const Tensor& mat) {
    if (!mat.defined()) {
      residents_.clear();
      return;
    }
    c10::StorageImpl* storage = mat.storage().unsafeGetStorageImpl();
    residents_.erase(std::remove_if(residents_.begin(), residents_.end(),
                                    [storage](const ResidentEntry& e) {
                                      return e.storage._unsafe_get_target() == storage;
                                    }),
                     residents_.end());
  }

  // Runs `kernel` on nq QPUs with this backend. `estimated_cycles`: what the
  // launch model expects one QPU to take (checked against qpusim's count).
  // A failed launch on the qpu (or qpusim) backend makes it unusable in this
  // process: the QPUs may still be running (a mailbox timeout), so their
  // buffers are abandoned, never reused or given back (hardware fix 2).
  template <typename K, typename... Args>
  void launch(Backend be, K& kernel, int64_t nq, double estimated_cycles, Args... args) {
    kernel.setNumQPUs(static_cast<int>(nq));
    run_launch(be, nq, estimated_cycles, [&] {
#ifdef QPUSIM_MODE
      if (be == Backend::Emulator) {
        kernel.emu(args...);
      } else {
        kernel.call(args...);
      }
#else
      kernel.call(args...);
#endif
    });
  }

#ifdef TORCH_QPU_ASM_KERNELS
  // One of torch_qpu's own kernels (qpu_code.h), launched through QPULib's launch path with
  // QPULib's uniform layout (QPU index, QPU count, then `params`).
  void launch_asm(Backend be, const std::vector<uint32_t>& code, int64_t nq,
                  double estimated_cycles, const std::vector<uint32_t>& params) {
    Seq<int32_t> uniforms;
    for (uint32_t word : params) uniforms.append(static_cast<int32_t>(word));
    run_launch(be, nq, estimated_cycles, [&] {
#ifdef QPUSIM_MODE
      qpusimInvoke(static_cast<int>(nq), code, &uniforms);
#else
      // Invoke.cpp writes the uniforms and launch messages after the code.
      const int64_t words = static_cast<int64_t>(code.size()) + kMaxQPUs * (uniforms.numElems + 4) + 64;
      if (!code_memory_ || code_memory_words_ < words || code_loaded_ != &code) {
        if (!qpus_enabled_) {
          enableQPUs();
          qpus_enabled_ = true;
        }
        code_memory_.reset();
        code_memory_ = std::make_unique<SharedArray<uint32_t>>(static_cast<uint32_t>(words));
        code_memory_words_ = words;
        volatile uint32_t* dst = reinterpret_cast<volatile uint32_t*>(code_memory_->getPointer());
        for (std::size_t i = 0; i < code.size(); ++i) dst[i] = code[i];
        code_loaded_ = &code;
      }
      invoke(static_cast<int>(nq), *code_memory_, static_cast<int>(code.size()), &uniforms);
#endif
    });
  }
#endif

  // Runs one launch (`body`) with the bookkeeping every backend shares: failure handling
  // (see launch) and the qpusim cycle counters.
  template <typename Body>
  void run_launch(Backend be, int64_t nq, double estimated_cycles, Body&& body) {
    try {
      body();
    } catch (const std::exception& e) {
      if (be != Backend::Emulator) {
        {
          std::lock_guard<std::mutex> lock(unusable_mutex());
          unusable_reason() = e.what();
        }
        failed_launch_ = true;
        abandon_buffers();
      }
      TORCH_CHECK(false, "torch_qpu: a ", backend_name(be), " kernel launch failed: ", e.what(),
                  be == Backend::Emulator
                      ? ""
                      : "; the backend is unusable in this process from now on");
    }
    ++launches_;
#ifdef QPUSIM_MODE
    if (be == Backend::Qpusim) {
      const auto cycles = static_cast<int64_t>(qpusim_last_cycles());
      qpusim_cycles_ += cycles;
      qpusim_max_launch_cycles_ = std::max(qpusim_max_launch_cycles_, cycles);
      const double ratio = static_cast<double>(cycles) / estimated_cycles;
      if (ratio > worst_estimate_ratio_) {
        worst_estimate_ratio_ = ratio;
        worst_estimate_nq_ = nq;
      }
    }
#else
    (void)estimated_cycles;
#endif
  }

  // Gives every GPU buffer back and drops the compiled kernels (QPU mode:
  // the QPUs are disabled with the last kernel). Runs at interpreter exit
  // (torch_qpu registers it with atexit) and from the destructor, since the
  // firmware does not free GPU memory when the process ends (hardware fix 5).
  // After a failed launch the buffers are abandoned instead (see launch).
  void release() {
    // A member, not unusable(): this also runs from the destructor at exit,
    // after function-local statics constructed later may be gone.
    if (failed_launch_) abandon_buffers();
    for (auto& entry : buffers_) entry.reset();
    capacities_.fill(0);
    residents_.clear();
    for (auto& kernel : elementwise_kernels_) kernel.reset();
    dot_rows_kernel_.reset();
    dot_cols_kernel_.reset();
#if defined(TORCH_QPU_ASM_KERNELS) && !defined(QPUSIM_MODE)
    code_memory_.reset();
    code_loaded_ = nullptr;
    if (qpus_enabled_) {
      disableQPUs();
      qpus_enabled_ = false;
    }
#endif
  }

  static float* host_pointer(Buffer& buffer) { return &buffer[0]; }

  // A new GPU-shared buffer of `wanted` floats (or just `needed` when the
  // emulator heap is nearly full); its size goes to *allocated.
  static std::unique_ptr<Buffer> allocate(int64_t needed, int64_t wanted, int64_t* allocated) {
    TORCH_CHECK(wanted <= std::numeric_limits<int32_t>::max() / 4,
                "torch_qpu: tensor too large for the 32-bit GPU address space (", wanted,
                " floats)");
    const int64_t floats = reserve_check(needed, wanted);
    try {
      auto buffer = std::make_unique<Buffer>(static_cast<uint32_t>(floats));
      *allocated = floats;
      return buffer;
    } catch (const std::bad_alloc&) {
      // The firmware's GPU memory (gpu_mem in config.txt) is exhausted.
      TORCH_CHECK(false, "torch_qpu: could not allocate ", floats * 4 / 1024,
                  " KiB of GPU-shared memory; raise gpu_mem in config.txt or use smaller "
                  "tensors (python -m torch_qpu doctor)");
    }
    return nullptr;  // not reached: TORCH_CHECK(false, ...) throws
  }

  int64_t compiles() const { return compiles_; }
  int64_t launches() const { return launches_; }
  int64_t resident_uploads() const { return resident_uploads_; }
  int64_t resident_matrices() const { return static_cast<int64_t>(residents_.size()); }
  int64_t qpusim_cycles() const { return qpusim_cycles_; }
  int64_t qpusim_max_launch_cycles() const { return qpusim_max_launch_cycles_; }
  double worst_estimate_ratio() const { return worst_estimate_ratio_; }
  int64_t worst_estimate_nq() const { return worst_estimate_nq_; }
  int64_t abandoned_floats() const { return abandoned_floats_; }

  // Floats of GPU memory this runtime holds (pool and resident weights).
  int64_t gpu_floats() const {
    int64_t total = 0;
    for (int64_t capacity : capacities_) total += capacity;
    for (const auto& entry : residents_) total += entry.buffer ? entry.capacity : 0;
    return total;
  }

  std::array<int64_t, kNumSlots> capacities() const { return capacities_; }

 private:
  static Buffer& upload(Buffer& buffer, const Tensor& mat, int64_t kp, Layout layout) {
    if (layout == Layout::PanelsA) {
      const Tensor panels = pack_a_panels(mat, kp);
      words_to_gpu(gpu_words(buffer), panels.const_data_ptr<float>(), panels.numel());
      return buffer;
    }
    const Tensor mc = mat.contiguous();
    if (mc.numel() > 0) {
      copy_padded(gpu_words(buffer), mc.const_data_ptr<float>(), mc.size(0), mc.size(1), kp);
    }
    zeros_to_gpu(gpu_words(buffer) + mc.size(0) * kp, kSlackFloats);
    return buffer;
  }

  // Leaks every GPU buffer on purpose (see launch): never freed, never reused.
  void abandon_buffers() {
#if defined(TORCH_QPU_ASM_KERNELS) && !defined(QPUSIM_MODE)
    static_cast<void>(code_memory_.release());  // the QPUs may still be running it
    code_loaded_ = nullptr;
#endif
    for (std::size_t i = 0; i < kNumSlots; ++i) {
      if (buffers_[i]) {
        abandoned_floats_ += capacities_[i];
        static_cast<void>(buffers_[i].release());
      }
      capacities_[i] = 0;
    }
    for (auto& entry : residents_) {
      if (entry.buffer) {
        abandoned_floats_ += entry.capacity;
        static_cast<void>(entry.buffer.release());
      }
    }
    residents_.clear();
  }

  // Entries whose weight tensor is gone give their GPU memory back.
  void sweep_residents() {
    residents_.erase(std::remove_if(residents_.begin(), residents_.end(),
                                    [](const ResidentEntry& e) { return e.storage.expired(); }),
                     residents_.end());
  }

  // How many floats to allocate: `wanted` (with headroom) if it fits, else
  // the `needed` minimum; raises when even that does not fit.
  static int64_t reserve_check(int64_t needed, int64_t wanted) {
#ifdef EMULATION_MODE
    // QPULib's emulator heap is a bump allocator that aborts when full;
    // fail with a Python error instead.
    const int64_t used = emuHeapEnd;
    const int64_t size = static_cast<int64_t>(EMULATOR_HEAP_SIZE);
    if (used + wanted < size) return wanted;
    const int64_t minimum = round_up_lanes(needed);
    TORCH_CHECK(used + minimum < size, "torch_qpu: QPULib emulator heap exhausted (", used,
                " of ", size, " words used, ", minimum,
                " more needed); use smaller tensors or rebuild QPULib with a larger "
                "EMULATOR_HEAP_SIZE");
    return minimum;
#else
    (void)needed;
    return wanted;
#endif
  }

#if defined(TORCH_QPU_ASM_KERNELS) && !defined(QPUSIM_MODE)
  std::unique_ptr<SharedArray<uint32_t>> code_memory_;
  int64_t code_memory_words_ = 0;
  const std::vector<uint32_t>* code_loaded_ = nullptr;
  bool qpus_enabled_ = false;
#endif
  std::array<std::unique_ptr<ElementwiseKernel>, 3> elementwise_kernels_{};
  std::unique_ptr<DotKernel> dot_rows_kernel_;
  std::unique_ptr<DotKernel> dot_cols_kernel_;
  std::array<std::unique_ptr<Buffer>, kNumSlots> buffers_{};
  std::array<int64_t, kNumSlots> capacities_{};
  // A vector (not a list): entries are only ever looked up by the caller
  // holding the mutex, and no reference to one outlives the call.
  std::vector<ResidentEntry> residents_;
  int64_t compiles_ = 0;
  int64_t launches_ = 0;
  int64_t resident_uploads_ = 0;
  int64_t qpusim_cycles_ = 0;
  int64_t qpusim_max_launch_cycles_ = 0;
  double worst_estimate_ratio_ = 0.0;
  int64_t worst_estimate_nq_ = 0;
  int64_t abandoned_floats_ = 0;
  bool failed_launch_ = false;
};

Runtime& runtime() {
  // Destroyed at exit so that, in QPU mode, the pool's GPU memory goes back to
  // the firmware and the QPUs are disabled (Kernel's destructor). Those
  // destructors only use QPULib's plain-int globals (mailbox fd, user count).
  static Runtime instance;
  return instance;
}

// dst (contiguous float32, numel n) = a OP b, in launches of at most
// launch_model::elementwise_chunk slices. dst may alias an input: each chunk
// of it is written only after that chunk of the inputs went to GPU memory.
void kernel_elementwise(Backend be, kernels::BinaryOp op, const Tensor& a, const Tensor& b,
                        Tensor& dst, int64_t num_qpus) {
  const int64_t n = a.numel();
  if (n == 0) return;
  const Tensor ac = a.contiguous();
  const Tensor bc = b.contiguous();
  const int64_t padded = round_up_lanes(n);
  TORCH_CHECK(padded <= std::numeric_limits<int32_t>::max(), "torch_qpu: tensor too large (", n,
              " elements)");
  const int64_t slices = padded / kLanes;
  const int64_t max_qpus = std::min<int64_t>(num_qpus, slices);
  const float* pa = ac.const_data_ptr<float>();
  const float* pb = bc.const_data_ptr<float>();
  float* pd = dst.mutable_data_ptr<float>();
  GilRelease no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  const int64_t chunk = launch_model::elementwise_chunk(slices, max_qpus);
  ElementwiseKernel& kernel = rt.elementwise(op);
  Buffer& buf_a = rt.buffer(Runtime::kInputA, chunk * kLanes);
  Buffer& buf_b = rt.buffer(Runtime::kInputB, chunk * kLanes);
  Buffer& buf_out = rt.buffer(Runtime::kOutput, chunk * kLanes);
  for (int64_t first = 0; first < slices; first += chunk) {
    const int64_t count = std::min(chunk, slices - first);
    const int64_t begin = first * kLanes;
    const int64_t valid = std::min(n - begin, count * kLanes);
    copy_padded(gpu_words(buf_a), pa + begin, 1, valid, count * kLanes);
    copy_padded(gpu_words(buf_b), pb + begin, 1, valid, count * kLanes);
    const int64_t nq = std::min(max_qpus, count);
    rt.launch(be, kernel, nq, launch_model::elementwise_cycles(count, nq),
              static_cast<int>(count * kLanes), &buf_a, &buf_b, &buf_out);
    words_from_gpu(pd + begin, gpu_words(buf_out), valid);
  }
}

// vecs (V, K) @ mat.T for mat (R, K): shape (V, R), in launches of at most
// launch_model::dot_chunk (vectors, rows). resident: keep mat in GPU memory
// between calls (see Runtime::resident).
Tensor kernel_dot(Backend be, const Tensor& vecs, const Tensor& mat, int64_t num_qpus,
                  bool resident) {
  const int64_t nvec = vecs.size(0);
  const int64_t k = vecs.size(1);
  const int64_t nrows = mat.size(0);
  const auto options = vecs.options();
  if (nvec == 0 || nrows == 0 || k == 0) return at::zeros({nvec, nrows}, options);
  const int64_t kp = round_up_lanes(k);
  TORCH_CHECK_VALUE(kp <= kMaxRowFloats, "torch_qpu: rows longer than ", kMaxRowFloats,
                    " floats are not supported (24-bit QPU multiply)");
  TORCH_CHECK_VALUE(nvec <= std::numeric_limits<int32_t>::max() && nrows <= (int64_t{1} << 24),
                    "torch_qpu: too many rows (", nvec, " x ", nrows, ")");
  const Tensor vc = vecs.contiguous();
  const Tensor mc = resident ? Tensor() : mat.contiguous();
  // Split rows across QPUs, unless splitting each row's columns keeps more
  // QPUs busy (few rows, long rows: e.g. a 1 x 10^5 mv).
  const int64_t row_qpus = std::min<int64_t>(num_qpus, nrows);
  const int64_t col_qpus = std::min<int64_t>(num_qpus, kp / kLanes);
  const bool split_columns = col_qpus > row_qpus;
  const int64_t nq = split_columns ? col_qpus : row_qpus;
  const int64_t groups = split_columns ? nq : 1;  // partial-sum blocks per output
  const int64_t block = groups * kLanes;          // floats of partial sums per output
  Tensor partials = at::empty({nvec, nrows, block}, options);
  float* out = partials.mutable_data_ptr<float>();
  {
    GilRelease no_gil;
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    const auto [vec_chunk, row_chunk] = launch_model::dot_chunk(nvec, nrows, kp, nq, split_columns);
    DotKernel& kernel = rt.dot(split_columns);
    Buffer& buf_v = rt.buffer(Runtime::kInputA, nvec * kp);
    Buffer& buf_out = rt.buffer(Runtime::kOutput, vec_chunk * row_chunk * block);
    Buffer& buf_m = resident ? rt.resident(mat, kp) : rt.buffer(Runtime::kInputB, nrows * kp);
    copy_padded(gpu_words(buf_v), vc.const_data_ptr<float>(), nvec, k, kp);
    if (!resident) copy_padded(gpu_words(buf_m), mc.const_data_ptr<float>(), nrows, k, kp);
    for (int64_t v0 = 0; v0 < nvec; v0 += vec_chunk) {
      const int64_t nv = std::min(vec_chunk, nvec - v0);
      for (int64_t r0 = 0; r0 < nrows; r0 += row_chunk) {
        const int64_t nr = std::min(row_chunk, nrows - r0);
        // dot_rows needs a row per QPU; dot_cols a column slice per QPU (nq <= kp / 16).
        const int64_t launch_qpus = split_columns ? nq : std::min(nq, nr);
        rt.launch(be, kernel, launch_qpus,
                  launch_model::dot_cycles(nv, nr, kp, launch_qpus, split_columns),
                  static_cast<int>(nv), static_cast<int>(nr), static_cast<int>(kp),
                  static_cast<int>(v0 * kp), static_cast<int>(r0 * kp), &buf_v, &buf_m, &buf_out);
        // The launch's partial sums are (nv, nr, block); place them in (nvec, nrows, block).
        for (int64_t v = 0; v < nv; ++v) {
          words_from_gpu(out + ((v0 + v) * nrows + r0) * block, gpu_words(buf_out) + v * nr * block,
                         nr * block);
        }
      }
    }
  }
  // The kernels leave 16 lane-wise partial sums per output (per QPU when
  // split by columns); add them here.
  return partials.sum(-1);
}

#ifdef TORCH_QPU_ASM_KERNELS
// ---------------------------------------------------------------------------
// torch_qpu's own kernels (torch_qpu/qpukernels.py): packing, work lists, launch sizing.
//
// Each kernel reads a work list per QPU from a table in GPU memory (the host balances the
// QPUs); see qpukernels.py for the layouts. The old QPULib kernels stay selectable
// (set_kernels("qpulib")) for comparison.

enum class KernelSet { Asm = 0, QPULib = 1 };
std::atomic<int>& kernel_set() {
  static std::atomic<int> value{static_cast<int>(KernelSet::Asm)};
  return value;
}

bool use_asm(Backend be) {
  return be != Backend::Emulator && kernel_set().load() == static_cast<int>(KernelSet::Asm);
}

struct AsmCode {
  std::vector<uint32_t> gemm, gemv, ew_add, ew_sub, ew_mul;
};

const AsmCode& asm_code() {
  static const AsmCode code{
      {std::begin(qpu_code::k_gemm), std::end(qpu_code::k_gemm)},
      {std::begin(qpu_code::k_gemv), std::end(qpu_code::k_gemv)},
      {std::begin(qpu_code::k_ew_add), std::end(qpu_code::k_ew_add)},
      {std::begin(qpu_code::k_ew_sub), std::end(qpu_code::k_ew_sub)},
      {std::begin(qpu_code::k_ew_mul), std::end(qpu_code::k_ew_mul)},
  };
  return code;
}

// Launch sizing for these kernels (hardware fix 2): per-QPU cycles from their instruction
// counts with a margin (tests check no qpusim launch exceeds its estimate), and the same
// memory floor as QPULib's kernels.
namespace asm_model {
constexpr double kLaunchCycles = 1500;   // uniforms, instruction-cache fills, last DMA
constexpr double kGemmStepCycles = 50;   // one k step of a tile (97 instructions per two)
constexpr double kGemmTileCycles = 700;  // list entry, zeroing, first loads, 8 DMA stores
constexpr double kGemvPairCycles = 12;   // two vectors of a segment (9 instructions)
constexpr double kGemvItemCycles = 150;  // three uniforms, loads ahead, lane sum, store share
constexpr double kEwBlockCycles = 40;    // four vectors (18 instructions) and a DMA wait
constexpr double kEwItemCycles = 150;

double cycles(double per_qpu_cycles, double bytes) {
  const double memory = bytes / launch_model::kMinBytesPerSecond * launch_model::kClockHz /
                        launch_model::kClocksPerCycle;
  return std::max(kLaunchCycles + per_qpu_cycles, memory);
}

bool fits(double estimated_cycles) {
  return estimated_cycles * launch_model::kClocksPerCycle / launch_model::kClockHz <=
         launch_model::budget_seconds;
}
}  // namespace asm_model

// The per-QPU work lists of one launch. write() puts them into the table slot, QPU q's list
// `stride` bytes after QPU q-1's, and returns the kernel's first two launch parameters.
class WorkLists {
 public:
  explicit WorkLists(int64_t nq) : lists_(static_cast<std::size_t>(nq)) {}

  std::vector<uint32_t>& operator[](int64_t q) { return lists_.at(static_cast<std::size_t>(q)); }

  std::vector<uint32_t> write(Runtime& rt) {
    std::size_t longest = 0;
    for (const auto& list : lists_) longest = std::max(longest, list.size());
    // The uniform FIFO and its cache read whole 64-byte lines ahead of the kernel.
    const int64_t stride = static_cast<int64_t>(longest) + kLanes;
    const int64_t words = static_cast<int64_t>(lists_.size()) * stride + kLanes;
    Buffer& table = rt.buffer(Runtime::kTable, words);
    volatile uint32_t* dst = gpu_words(table);
    zeros_to_gpu(dst, words);
    for (std::size_t q = 0; q < lists_.size(); ++q) {
      for (std::size_t i = 0; i < lists_[q].size(); ++i) {
        dst[static_cast<int64_t>(q) * stride + static_cast<int64_t>(i)] = lists_[q][i];
      }
    }
    return {table.getAddress(), static_cast<uint32_t>(stride * 4)};
  }

 private:
  std::vector<std::vector<uint32_t>> lists_;
};

// The largest count in 1..total whose launch fits the budget, for work items of equal cost.
int64_t items_per_launch(int64_t total, int64_t num_qpus,
                         const std::function<double(int64_t, int64_t)>& estimate) {
  return launch_model::largest_fitting(total, [&](int64_t count) {
    return asm_model::fits(estimate(count, std::min(num_qpus, count)));
  });
}

// Calls launch(first, count, nq) for consecutive chunks of `total` work items, `chunk` at a
// time, each on as many QPUs as it has items (at most num_qpus).
template <typename Launch>
void for_each_launch(int64_t total, int64_t chunk, int64_t num_qpus, Launch&& launch) {
  for (int64_t first = 0; first < total; first += chunk) {
    const int64_t count = std::min(chunk, total - first);
    launch(first, count, std::min(num_qpus, count));
  }
}

// a (M, K) @ b (K, N) on the gemm kernel (32 x 16 tiles). resident_a: a is a weight kept in
// GPU memory as A panels between calls.
Tensor asm_gemm(Backend be, const Tensor& a, const Tensor& b, int64_t num_qpus, bool resident_a) {
  const int64_t m = a.size(0);
  const int64_t k = a.size(1);
  const int64_t n = b.size(1);
  const auto options = a.options();
  if (m == 0 || n == 0 || k == 0) return at::zeros({m, n}, options);
  TORCH_CHECK_VALUE(k < (int64_t{1} << 22), "torch_qpu: inner dimension too large (", k, ")");
  const int64_t kp = k + (k & 1);  // the k loop does two steps per turn
  const int64_t steps = kp + 2;    // one step fetched ahead, and a spare
  const int64_t row_panels = ceil_div(m, kPanelRows);
  const int64_t col_panels = ceil_div(n, kPanelCols);
  const int64_t tiles = row_panels * col_panels;
  constexpr int64_t kTileFloats = kPanelRows * kPanelCols;
  const Tensor bp = pack_b_panels(b, steps);
  const Tensor ap = resident_a ? Tensor() : pack_a_panels(a, steps);
  Tensor tile_out = at::empty({tiles, 2, kLanes, kLanes}, options);
  auto estimate = [&](int64_t count, int64_t nq) {
    const double per_qpu = static_cast<double>(ceil_div(count, nq)) *
                           (asm_model::kGemmTileCycles + asm_model::kGemmStepCycles * kp);
    const double bytes = static_cast<double>(count) * steps * (kPanelRows + kPanelCols) * 4;
    return asm_model::cycles(per_qpu, bytes);
  };
  {
    GilRelease no_gil;
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    const int64_t chunk = items_per_launch(tiles, num_qpus, estimate);
    Buffer& buf_a = resident_a ? rt.resident(a, steps, Layout::PanelsA, Runtime::kInputA)
                               : rt.buffer(Runtime::kInputA, ap.numel());
    Buffer& buf_b = rt.buffer(Runtime::kInputB, bp.numel());
    Buffer& buf_c = rt.buffer(Runtime::kOutput, chunk * kTileFloats);
    if (!resident_a) words_to_gpu(gpu_words(buf_a), ap.const_data_ptr<float>(), ap.numel());
    words_to_gpu(gpu_words(buf_b), bp.const_data_ptr<float>(), bp.numel());
    const uint32_t a_base = buf_a.getAddress();
    const uint32_t b_base = buf_b.getAddress();
    const uint32_t c_base = buf_c.getAddress();
    for_each_launch(tiles, chunk, num_qpus, [&](int64_t first, int64_t count, int64_t nq) {
      WorkLists lists(nq);
      for (int64_t i = 0; i < count; ++i) {
        // Tiles next to each other (the same A panel) run at the same time on different
        // QPUs, so the A panel is read from DRAM once for them (L2).
        const int64_t t = first + i;
        auto& list = lists[i % nq];
        list.push_back(static_cast<uint32_t>(a_base + (t / col_panels) * steps * kPanelRows * 4));
        list.push_back(static_cast<uint32_t>(b_base + (t % col_panels) * steps * kPanelCols * 4));
        list.push_back(static_cast<uint32_t>(c_base + i * kTileFloats * 4));
      }
      for (int64_t q = 0; q < nq; ++q) {
        auto& list = lists[q];
        list.insert(list.begin(), static_cast<uint32_t>(list.size() / 3));
      }
      std::vector<uint32_t> params = lists.write(rt);
      params.push_back(static_cast<uint32_t>(kp / 2 * 64));
      rt.launch_asm(be, asm_code().gemm, nq, estimate(count, nq), params);
      words_from_gpu(tile_out.mutable_data_ptr<float>() + first * kTileFloats, gpu_words(buf_c),
                     count * kTileFloats);
    });
  }
  // Lane l of accumulator (i, r) holds C[32 ib + 16 i + l, 16 jb + (l - r) mod 16].
  const Tensor lanes = at::arange(kLanes, options.dtype(at::kLong));
  const Tensor rotation = (lanes.view({kLanes, 1}) - lanes.view({1, kLanes})).remainder(kLanes);
  const Tensor by_lane = tile_out.view({row_panels, col_panels, 2, kLanes, kLanes})
                             .permute({0, 2, 4, 1, 3});  // (ib, i, l, jb, r)
  const Tensor index = rotation.view({1, 1, kLanes, 1, kLanes}).expand(by_lane.sizes());
  const Tensor c = at::gather(by_lane, 4, index).reshape({row_panels * kPanelRows, col_panels * kPanelCols});
  return c.narrow(0, 0, m).narrow(1, 0, n).contiguous();
}

constexpr int64_t kGemvSegmentPairs = 32;  // pairs of 16-float vectors: 4 KiB of x

// mat (R, K) @ vec (K): the gemv kernel on row segments.
Tensor asm_gemv(Backend be, const Tensor& vec, const Tensor& mat, int64_t num_qpus, bool resident) {
  const int64_t rows = mat.size(0);
  const int64_t k = mat.size(1);
  const auto options = vec.options();
  if (rows == 0 || k == 0) return at::zeros({rows}, options);
  const int64_t pitch = (k + 31) / 32 * 32;
  const int64_t pairs = pitch / 32;
  TORCH_CHECK_VALUE(pitch <= kMaxRowFloats, "torch_qpu: rows longer than ", kMaxRowFloats,
                    " floats are not supported");
  // Segments of at most 32 pairs (1024 floats, 4 KiB): the x segment then fits TMU1's cache
  // (4 KiB per slice), and the items go segment by segment, so the QPUs working side by side
  // read one x segment from DRAM, not one per row (an mv of 100 x 10^5 read x 100 times).
  // More segments when that leaves a QPU idle or the QPUs more than 3 % apart (100 rows of
  // 1024 on 12 QPUs: 2 segments each, 17 items on the busiest QPU against 16.7 on average).
  int64_t segments = ceil_div(pairs, kGemvSegmentPairs);
  while (segments < pairs &&
         (rows * segments < 4 * num_qpus ||
          ceil_div(rows * segments, num_qpus) * num_qpus * 100 > rows * segments * 103)) {
    ++segments;
  }
  struct Item {
    int64_t row, first_pair, pairs;
  };
  std::vector<Item> items;
  items.reserve(static_cast<std::size_t>(rows * segments));
  for (int64_t s = 0; s < segments; ++s) {
    const int64_t p0 = s * pairs / segments;
    const int64_t p1 = (s + 1) * pairs / segments;
    for (int64_t r = 0; r < rows && p1 > p0; ++r) items.push_back({r, p0, p1 - p0});
  }
  const int64_t total = static_cast<int64_t>(items.size());
  const double item_pairs = static_cast<double>(pairs) / static_cast<double>(segments);
  auto estimate = [&](int64_t count, int64_t nq) {
    const double per_qpu = static_cast<double>(ceil_div(count, nq)) *
                           (asm_model::kGemvItemCycles + asm_model::kGemvPairCycles * (item_pairs + 1));
    return asm_model::cycles(per_qpu, static_cast<double>(count) * (item_pairs + 1) * 2 * 32 * 4);
  };
  const Tensor mc = resident ? Tensor() : mat.contiguous();
  const Tensor vc = vec.contiguous();
  std::vector<float> values;
  std::vector<int64_t> value_rows;
  {
    GilRelease no_gil;
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    const int64_t chunk = items_per_launch(total, num_qpus, estimate);
    Buffer& buf_x = rt.buffer(Runtime::kInputA, pitch + kSlackFloats);
    Buffer& buf_m = resident ? rt.resident(mat, pitch)
                             : rt.buffer(Runtime::kInputB, rows * pitch + kSlackFloats);
    copy_padded(gpu_words(buf_x), vc.const_data_ptr<float>(), 1, k, pitch + kSlackFloats);
    if (!resident) {
      copy_padded(gpu_words(buf_m), mc.const_data_ptr<float>(), rows, k, pitch);
      zeros_to_gpu(gpu_words(buf_m) + rows * pitch, kSlackFloats);
    }
    const int64_t most_groups = ceil_div(ceil_div(chunk, std::min(num_qpus, chunk)), kLanes);
    Buffer& buf_out = rt.buffer(Runtime::kOutput, num_qpus * most_groups * kLanes);
    const uint32_t x_base = buf_x.getAddress();
    const uint32_t m_base = buf_m.getAddress();
    const uint32_t out_base = buf_out.getAddress();
    for_each_launch(total, chunk, num_qpus, [&](int64_t first, int64_t count, int64_t nq) {
      const int64_t groups = ceil_div(ceil_div(count, nq), kLanes);
      WorkLists lists(nq);
      std::vector<std::pair<int64_t, int64_t>> slots;  // (float in the output, its row)
      for (int64_t q = 0; q < nq; ++q) {
        const int64_t mine = (count - q + nq - 1) / nq;  // items q, q + nq, ...
        auto& list = lists[q];
        list.push_back(static_cast<uint32_t>(ceil_div(mine, kLanes)));
        list.push_back(static_cast<uint32_t>(out_base + q * groups * kLanes * 4));
        for (int64_t j = 0; j < mine; ++j) {
          if (j % kLanes == 0) list.push_back(static_cast<uint32_t>(std::min<int64_t>(kLanes, mine - j)));
          const Item& item = items[static_cast<std::size_t>(first + q + j * nq)];
          list.push_back(static_cast<uint32_t>(m_base + (item.row * pitch + item.first_pair * 32) * 4));
          list.push_back(static_cast<uint32_t>(x_base + item.first_pair * 32 * 4));
          list.push_back(static_cast<uint32_t>(item.pairs));
          slots.emplace_back(q * groups * kLanes + j, item.row);
        }
      }
      rt.launch_asm(be, asm_code().gemv, nq, estimate(count, nq), lists.write(rt));
      std::vector<float> out(static_cast<std::size_t>(nq * groups * kLanes));
      words_from_gpu(out.data(), gpu_words(buf_out), static_cast<int64_t>(out.size()));
      for (const auto& [slot, row] : slots) {
        values.push_back(out[static_cast<std::size_t>(slot)]);
        value_rows.push_back(row);
      }
    });
  }
  // Segments of one row are added here (one value per segment).
  Tensor y = at::zeros({rows}, options);
  const Tensor index = at::tensor(value_rows, options.dtype(at::kLong));
  const Tensor partial = at::tensor(values, options);
  y.index_add_(0, index, partial);
  return y;
}

// dst (contiguous, numel n) = a OP b on the elementwise kernels, blocks of 64 floats.
void asm_elementwise(Backend be, kernels::BinaryOp op, const Tensor& a, const Tensor& b, Tensor& dst,
                     int64_t num_qpus) {
  const int64_t n = a.numel();
  if (n == 0) return;
  constexpr int64_t kBlock = 4 * kLanes;
  const int64_t blocks = ceil_div(n, kBlock);
  const Tensor ac = a.contiguous();
  const Tensor bc = b.contiguous();
  const float* pa = ac.const_data_ptr<float>();
  const float* pb = bc.const_data_ptr<float>();
  float* pd = dst.mutable_data_ptr<float>();
  const auto& code = op == kernels::BinaryOp::Add   ? asm_code().ew_add
                     : op == kernels::BinaryOp::Sub ? asm_code().ew_sub
                                                    : asm_code().ew_mul;
  auto estimate = [&](int64_t count, int64_t nq) {
    const double per_qpu = asm_model::kEwItemCycles + static_cast<double>(ceil_div(count, nq)) * asm_model::kEwBlockCycles;
    return asm_model::cycles(per_qpu, static_cast<double>(count) * kBlock * 3 * 4);
  };
  GilRelease no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  const int64_t chunk = items_per_launch(blocks, num_qpus, estimate);
  Buffer& buf_a = rt.buffer(Runtime::kInputA, chunk * kBlock + kSlackFloats);
  Buffer& buf_b = rt.buffer(Runtime::kInputB, chunk * kBlock + kSlackFloats);
  Buffer& buf_out = rt.buffer(Runtime::kOutput, chunk * kBlock);
  for_each_launch(blocks, chunk, num_qpus, [&](int64_t first, int64_t count, int64_t nq) {
    const int64_t begin = first * kBlock;
    const int64_t valid = std::min(n - begin, count * kBlock);
    copy_padded(gpu_words(buf_a), pa + begin, 1, valid, count * kBlock + kSlackFloats);
    copy_padded(gpu_words(buf_b), pb + begin, 1, valid, count * kBlock + kSlackFloats);
    WorkLists lists(nq);
    for (int64_t q = 0; q < nq; ++q) {  // one contiguous run per QPU
      const int64_t b0 = q * count / nq;
      const int64_t b1 = (q + 1) * count / nq;
      lists[q] = {1u, static_cast<uint32_t>(buf_a.getAddress() + b0 * kBlock * 4),
                  static_cast<uint32_t>(buf_b.getAddress() + b0 * kBlock * 4),
                  static_cast<uint32_t>(buf_out.getAddress() + b0 * kBlock * 4),
                  static_cast<uint32_t>(b1 - b0)};
    }
    rt.launch_asm(be, code, nq, estimate(count, nq), lists.write(rt));
    words_from_gpu(pd + begin, gpu_words(buf_out), valid);
  });
}

// vecs (V, K) @ mat.T for mat (R, K) on torch_qpu's kernels: gemv when either side is a single
// vector, else gemm with the weight (or the taller operand) on the 32-row side of the tiles.
Tensor asm_dot(Backend be, const Tensor& vecs, const Tensor& mat, int64_t num_qpus, bool resident) {
  const int64_t nvec = vecs.size(0);
  const int64_t nrows = mat.size(0);
  if (nvec == 0 || nrows == 0 || vecs.size(1) == 0) return at::zeros({nvec, nrows}, vecs.options());
  if (nvec == 1) return asm_gemv(be, vecs[0], mat, num_qpus, resident).unsqueeze(0);
  if (nrows == 1) return asm_gemv(be, mat[0], vecs, num_qpus, false).unsqueeze(1);
  if (resident || nrows > nvec) return asm_gemm(be, mat, vecs.t(), num_qpus, resident).t();
  return asm_gemm(be, vecs, mat.t(), num_qpus, false);
}
#endif  // TORCH_QPU_ASM_KERNELS
#endif  // TORCH_QPU_WITH_QPULIB

// ---------------------------------------------------------------------------
// The operators' implementations (CPU dispatch key).

enum class BinaryOp { Add, Sub, Mul };

const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
  }
  return "?";
}

Backend check_binary(BinaryOp op, const Tensor& a, const Tensor& b, c10::string_view backend,
                     int64_t num_qpus) {
  const Backend be = parse_backend(backend);
  check_num_qpus(num_qpus);
  const char* name = op_name(op);
  check_tensor(name, a, "a", be);
  check_tensor(name, b, "b", be);
  check_same_dtype(name, a, "a", b, "b");
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "torch_qpu.", name,
                    ": shapes must match (no broadcasting), got ", a.sizes(), " and ", b.sizes());
  return be;
}

// Writes a OP b into out (shape checked by the caller).
void binary_into(BinaryOp op, Backend be, const Tensor& a, const Tensor& b, Tensor& out,
                 int64_t num_qpus) {
  if (be == Backend::Cpu) {
    switch (op) {
      case BinaryOp::Add:
        at::add_out(out, a, b);
        return;
      case BinaryOp::Sub:
        at::sub_out(out, a, b);
        return;
      case BinaryOp::Mul:
        at::mul_out(out, a, b);
        return;
    }
  }
#ifdef TORCH_QPU_WITH_QPULIB
  const auto kop = op == BinaryOp::Add   ? kernels::BinaryOp::Add
                   : op == BinaryOp::Sub ? kernels::BinaryOp::Sub
                                         : kernels::BinaryOp::Mul;
  // Chunked launches write out piecewise: an out that partly overlaps an input
  // (not the same elements) goes through a temporary.
  const bool partial_overlap = at::get_overlap_status(out, a) == at::MemOverlapStatus::Partial ||
                               at::get_overlap_status(out, b) == at::MemOverlapStatus::Partial;
  auto run = [&](Tensor& dst) {
#ifdef TORCH_QPU_ASM_KERNELS
    if (use_asm(be)) return asm_elementwise(be, kop, a, b, dst, num_qpus);
#endif
    kernel_elementwise(be, kop, a, b, dst, num_qpus);
  };
  if (out.is_contiguous() && !partial_overlap) {
    run(out);
  } else {
    Tensor tmp = at::empty(a.sizes(), a.options());
    run(tmp);
    out.copy_(tmp);
  }
#else
  (void)num_qpus;
#endif
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, c10::string_view backend,
              int64_t num_qpus) {
  const Backend be = check_binary(op, a, b, backend, num_qpus);
  Tensor out = at::empty(a.sizes(), a.options());
  binary_into(op, be, a, b, out, num_qpus);
  return out;
}

void binary_out(BinaryOp op, const Tensor& a, const Tensor& b, c10::string_view backend,
                   int64_t num_qpus, Tensor& out) {
  const Backend be = check_binary(op, a, b, backend, num_qpus);
  check_out(op_name(op), out, a, a.sizes(), be);
  binary_into(op, be, a, b, out, num_qpus);
}

template <BinaryOp Op>
Tensor binary_op(const Tensor& a, const Tensor& b, c10::string_view backend, int64_t num_qpus) {
  return binary(Op, a, b, backend, num_qpus);
}

template <BinaryOp Op>
void binary_op_out(const Tensor& a, const Tensor& b, c10::string_view backend, int64_t num_qpus,
                      Tensor& out) {
  binary_out(Op, a, b, backend, num_qpus, out);
}

// vecs (V, K) @ mat.T (mat (R, K)) on the chosen backend.
Tensor dot(Backend be, const Tensor& vecs, const Tensor& mat, int64_t num_qpus, bool resident) {
  if (be == Backend::Cpu) return at::mm(vecs, mat.t());
#ifdef TORCH_QPU_WITH_QPULIB
#ifdef TORCH_QPU_ASM_KERNELS
  if (use_asm(be)) return asm_dot(be, vecs, mat, num_qpus, resident);
#endif
  return kernel_dot(be, vecs, mat, num_qpus, resident);
#else
  (void)num_qpus;
  (void)resident;
  return Tensor();  // not reached: parse_backend refused
#endif
}

Backend check_mv(const Tensor& matrix, const Tensor& vector, c10::string_view backend,
                 int64_t num_qpus) {
  const Backend be = parse_backend(backend);
  check_num_qpus(num_qpus);
  check_tensor("mv", matrix, "matrix", be);
  check_tensor("mv", vector, "vector", be);
  check_same_dtype("mv", matrix, "matrix", vector, "vector");
  TORCH_CHECK_VALUE(matrix.dim() == 2 && vector.dim() == 1,
                    "torch_qpu.mv: needs a 2-D matrix and a 1-D vector, got ", matrix.dim(),
                    "-D and ", vector.dim(), "-D");
  TORCH_CHECK_VALUE(matrix.size(1) == vector.size(0), "torch_qpu.mv: matrix is ", matrix.sizes(),
                    " but vector has ", vector.size(0), " elements");
  return be;
}

Tensor mv_impl(Backend be, const Tensor& matrix, const Tensor& vector, int64_t num_qpus) {
  if (be == Backend::Cpu) return at::mv(matrix, vector);
  return dot(be, vector.unsqueeze(0), matrix, num_qpus, false).squeeze(0);
}

Tensor mv(const Tensor& matrix, const Tensor& vector, c10::string_view backend, int64_t num_qpus) {
  const Backend be = check_mv(matrix, vector, backend, num_qpus);
  return mv_impl(be, matrix, vector, num_qpus);
}

void mv_out(const Tensor& matrix, const Tensor& vector, c10::string_view backend,
               int64_t num_qpus, Tensor& out) {
  const Backend be = check_mv(matrix, vector, backend, num_qpus);
  check_out("mv", out, matrix, {matrix.size(0)}, be);
  out.copy_(mv_impl(be, matrix, vector, num_qpus));
}

Backend check_mm(const Tensor& a, const Tensor& b, c10::string_view backend, int64_t num_qpus) {
  const Backend be = parse_backend(backend);
  check_num_qpus(num_qpus);
  check_tensor("mm", a, "a", be);
  check_tensor("mm", b, "b", be);
  check_same_dtype("mm", a, "a", b, "b");
  TORCH_CHECK_VALUE(a.dim() == 2 && b.dim() == 2, "torch_qpu.mm: needs 2-D tensors, got ",
                    a.dim(), "-D and ", b.dim(), "-D");
  TORCH_CHECK_VALUE(a.size(1) == b.size(0), "torch_qpu.mm: shapes ", a.sizes(), " and ",
                    b.sizes(), " cannot be multiplied");
  return be;
}

Tensor mm_impl(Backend be, const Tensor& a, const Tensor& b, int64_t num_qpus) {
  if (be == Backend::Cpu) return at::mm(a, b);
  // The kernel takes dot products of rows, so it wants b's columns as rows.
  return dot(be, a, b.t(), num_qpus, false);
}

Tensor mm(const Tensor& a, const Tensor& b, c10::string_view backend, int64_t num_qpus) {
  const Backend be = check_mm(a, b, backend, num_qpus);
  return mm_impl(be, a, b, num_qpus);
}

void mm_out(const Tensor& a, const Tensor& b, c10::string_view backend, int64_t num_qpus,
               Tensor& out) {
  const Backend be = check_mm(a, b, backend, num_qpus);
  check_out("mm", out, a, {a.size(0), b.size(1)}, be);
  out.copy_(mm_impl(be, a, b, num_qpus));
}

Backend check_linear(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                     c10::string_view backend, int64_t num_qpus) {
  const Backend be = parse_backend(backend);
  check_num_qpus(num_qpus);
  check_tensor("linear", x, "x", be);
  check_tensor("linear", weight, "weight", be);
  check_same_dtype("linear", x, "x", weight, "weight");
  TORCH_CHECK_VALUE(weight.dim() == 2,
                    "torch_qpu.linear: weight must be 2-D (out_features, in_features), got ",
                    weight.dim(), "-D");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == weight.size(1), "torch_qpu.linear: x has shape ",
                    x.sizes(), ", expected (..., ", weight.size(1), ")");
  if (bias.has_value()) {
    check_tensor("linear", *bias, "bias", be);
    check_same_dtype("linear", x, "x", *bias, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0),
                      "torch_qpu.linear: bias must have shape (", weight.size(0), ",), got ",
                      bias->sizes());
  }
  return be;
}

std::vector<int64_t> linear_shape(const Tensor& x, const Tensor& weight) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = weight.size(0);
  return shape;
}

Tensor linear_impl(Backend be, const Tensor& x, const Tensor& weight,
                   const std::optional<Tensor>& bias, int64_t num_qpus, bool resident) {
  if (be == Backend::Cpu) return at::linear(x, weight, bias);
  // Explicit row count: reshape({-1, 0}) is ambiguous when in_features is 0.
  const int64_t rows = c10::multiply_integers(x.sizes().slice(0, x.dim() - 1));
  Tensor result = dot(be, x.reshape({rows, weight.size(1)}), weight, num_qpus, resident);
  if (bias.has_value()) result.add_(*bias);
  return result.reshape(linear_shape(x, weight));
}

Tensor linear(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
              c10::string_view backend, int64_t num_qpus, bool resident) {
  const Backend be = check_linear(x, weight, bias, backend, num_qpus);
  return linear_impl(be, x, weight, bias, num_qpus, resident);
}

void linear_out(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                   c10::string_view backend, int64_t num_qpus, bool resident, Tensor& out) {
  const Backend be = check_linear(x, weight, bias, backend, num_qpus);
  check_out("linear", out, x, linear_shape(x, weight), be);
  out.copy_(linear_impl(be, x, weight, bias, num_qpus, resident));
}

// Autograd kernel of the out= overloads: refuses inputs that require grad
// (as torch's own out= functions do), then runs the op below autograd.
void refuse_grad(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                 torch::jit::Stack* stack) {
  const std::size_t count = op.schema().arguments().size();
  if (c10::GradMode::is_enabled()) {
    for (std::size_t i = stack->size() - count; i < stack->size(); ++i) {
      const auto& value = (*stack)[i];
      TORCH_CHECK(!(value.isTensor() && value.toTensor().requires_grad()), op.schema().name(), ".",
                  op.schema().overload_name(),
                  "(): functions with out=... arguments don't support automatic "
                  "differentiation, but one of the arguments requires grad");
    }
  }
  at::AutoDispatchBelowAutograd guard;
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
}

// ADInplaceOrView kernel of the out= overloads: runs the op, then bumps the
// version counter of every argument the schema marks as written (Tensor(a!)).
// torch's own fallback only bumps returned aliases, and these overloads
// return nothing (aliased returns cannot be functionalized for torch.compile).
void bump_written_versions(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                           torch::jit::Stack* stack) {
  const auto& arguments = op.schema().arguments();
  const std::size_t first = stack->size() - arguments.size();
  std::vector<Tensor> written;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const auto* alias = arguments[i].alias_info();
    const auto& value = (*stack)[first + i];
    if (alias != nullptr && alias->isWrite() && value.isTensor()) {
      written.push_back(value.toTensor());
    }
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const Tensor& t : written) torch::autograd::impl::bump_version(t);
}

// ---------------------------------------------------------------------------
// Introspection for the Python package (not operators).

pybind11::dict stats() {
  pybind11::dict d;
#ifdef TORCH_QPU_WITH_QPULIB
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  d["kernel_compiles"] = rt.compiles();
  d["launches"] = rt.launches();
  d["gpu_floats"] = rt.gpu_floats();
  d["abandoned_floats"] = rt.abandoned_floats();
  d["qpusim_cycles"] = rt.qpusim_cycles();
  d["qpusim_max_launch_cycles"] = rt.qpusim_max_launch_cycles();
  d["launch_estimate_ratio_max"] = rt.worst_estimate_ratio();
  d["launch_estimate_ratio_qpus"] = rt.worst_estimate_nq();
  d["unusable"] = unusable();
  d["resident_uploads"] = rt.resident_uploads();
  d["resident_matrices"] = rt.resident_matrices();
  const auto caps = rt.capacities();
  d["pool_capacity_floats"] = pybind11::make_tuple(caps[0], caps[1], caps[2], caps[3]);
#endif
  return d;
}

// Drops the resident GPU copy of `weight` (every one when None): the next
// resident call uploads it again. Frees under the runtime lock.
void resident_forget(const std::optional<Tensor>& weight) {
#ifdef TORCH_QPU_WITH_QPULIB
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  rt.forget(weight.has_value() ? *weight : Tensor());
#else
  (void)weight;
#endif
}

// Gives all GPU memory back and drops the compiled kernels (Runtime::release);
// torch_qpu calls it at interpreter exit. Later calls allocate again.
void release_gpu_memory() {
#ifdef TORCH_QPU_WITH_QPULIB
  GilRelease no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  rt.release();
#endif
}

// One launch of a tiny kernel (a 16-float add on one QPU) on this build's QPU
// backend: qpu (qpusim on the host). Returns "" when it ran and gave the right
// answer, else why not. available_backends() offers qpu only after this
// succeeded (hardware fix 3): the firmware refuses QPU jobs under vc4-kms-v3d,
// and /dev/mem in a container needs CAP_SYS_RAWIO.
std::string probe() {
#ifdef TORCH_QPU_WITH_QPULIB
  const char* name = std::string_view(kMode) == "qpu"      ? "qpu"
                     : std::string_view(kMode) == "qpusim" ? "qpusim"
                                                           : "emulator";
  try {
    const Tensor a = at::arange(16, at::TensorOptions().dtype(at::kFloat));
    const Tensor b = at::full({16}, 0.5f, at::TensorOptions().dtype(at::kFloat));
    const Tensor got = binary(BinaryOp::Add, a, b, name, 1);
    if (!at::equal(got, a + b)) return "the probe kernel ran but returned wrong results";
    return "";
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  }
#else
  return "torch_qpu was built without QPULib";
#endif
}

// Test hooks: the launch budget in seconds (hardware fix 2; returns the old
// one) and, in qpusim builds, the emulator's cycle limit (a launch that runs
// past it fails like a mailbox timeout).
double set_launch_budget(double seconds) {
#ifdef TORCH_QPU_WITH_QPULIB
  TORCH_CHECK_VALUE(seconds > 0 && seconds <= launch_model::kBudgetSeconds,
                    "torch_qpu: the launch budget must be in (0, ", launch_model::kBudgetSeconds,
                    "] seconds, got ", seconds);
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  return std::exchange(launch_model::budget_seconds, seconds);
#else
  TORCH_CHECK(false, "torch_qpu: built without QPULib (no launches to size)");
#endif
}

void qpusim_set_max_cycles_hook(int64_t cycles) {
#ifdef QPUSIM_MODE
  TORCH_CHECK_VALUE(cycles >= 1 && cycles <= 0xFFFFFFFFll,
                    "torch_qpu: the cycle limit must be in 1..2^32-1, got ", cycles);
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  qpusim_set_max_cycles(static_cast<uint32_t>(cycles));
#else
  (void)cycles;
  TORCH_CHECK(false, "torch_qpu: not a qpusim build");
#endif
}

// Which kernels the qpu and qpusim backends run: "asm" (torch_qpu's own, the default where
// they exist) or "qpulib" (the QPULib DSL kernels, kept for comparison). The emulator backend
// always runs QPULib's.
void set_kernels(const std::string& name) {
#ifdef TORCH_QPU_ASM_KERNELS
  TORCH_CHECK_VALUE(name == "asm" || name == "qpulib", "torch_qpu: unknown kernel set '", name,
                    "': choose asm or qpulib");
  kernel_set().store(static_cast<int>(name == "asm" ? KernelSet::Asm : KernelSet::QPULib));
#else
  TORCH_CHECK_VALUE(name == "qpulib", "torch_qpu: this build has only QPULib's kernels (",
                    "torch_qpu's own run on the qpu and qpusim backends), not '", name, "'");
#endif
}

std::string get_kernels() {
#ifdef TORCH_QPU_ASM_KERNELS
  return kernel_set().load() == static_cast<int>(KernelSet::Asm) ? "asm" : "qpulib";
#else
  return "qpulib";
#endif
}

#ifdef QPUSIM_MODE
// Test hook: run arbitrary machine code on qpusim with QPULib's uniform layout. Parameters
// equal to -1 are replaced by the bus address of `data` (copied into GPU memory and back).
// Returns the emulated cycles. A failed launch leaves qpusim unusable, as any other.
int64_t qpusim_run_code(const std::vector<uint64_t>& words, int64_t num_qpus,
                        const std::vector<int64_t>& params, Tensor& data) {
  check_num_qpus(num_qpus);
  TORCH_CHECK_VALUE(data.scalar_type() == at::kFloat && data.is_contiguous() && data.numel() > 0,
                    "torch_qpu: data must be a non-empty contiguous float32 tensor");
  std::vector<uint32_t> code;
  for (uint64_t word : words) {
    code.push_back(static_cast<uint32_t>(word & 0xFFFFFFFFu));
    code.push_back(static_cast<uint32_t>(word >> 32));
  }
  const Backend be = parse_backend("qpusim");
  GilRelease no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  Buffer& buf = rt.buffer(Runtime::kInputA, data.numel() + kSlackFloats);
  copy_padded(gpu_words(buf), data.const_data_ptr<float>(), 1, data.numel(),
              data.numel() + kSlackFloats);
  std::vector<uint32_t> uniforms;
  for (int64_t p : params) uniforms.push_back(p == -1 ? buf.getAddress() : static_cast<uint32_t>(p));
  rt.launch_asm(be, code, num_qpus, 1e12, uniforms);
  words_from_gpu(data.mutable_data_ptr<float>(), gpu_words(buf), data.numel());
  return static_cast<int64_t>(qpusim_last_cycles());
}

// Test hook: the machine code QPULib generated for one of its kernels here (the words its
// encoder emitted), for the assembler's round-trip test.
std::vector<uint64_t> qpulib_code(const std::string& name) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  const std::vector<uint32_t>* words = nullptr;
  if (name == "add") words = &rt.elementwise(kernels::BinaryOp::Add).qpusimCode;
  else if (name == "mul") words = &rt.elementwise(kernels::BinaryOp::Mul).qpusimCode;
  else if (name == "dot_rows") words = &rt.dot(false).qpusimCode;
  else if (name == "dot_cols") words = &rt.dot(true).qpusimCode;
  TORCH_CHECK_VALUE(words != nullptr, "torch_qpu: no QPULib kernel named '", name, "'");
  std::vector<uint64_t> out;
  for (std::size_t i = 0; i + 1 < words->size(); i += 2) {
    out.push_back(static_cast<uint64_t>((*words)[i]) | (static_cast<uint64_t>((*words)[i + 1]) << 32));
  }
  return out;
}
#endif
// qpusim: the emulator's memory model (QPUSim.h; torch_qpu.memory_model converts a model in
// GB/s and ns to these emulated-cycle units).
void qpusim_set_memory_model_hook(const std::array<double, 6>& v, bool dma_waits_stall) {
#ifdef QPUSIM_MODE
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  try {
    qpusim_set_memory_model(
        QpusimMemoryModel{v[0], v[1], v[2], v[3], v[4], v[5], dma_waits_stall});
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
#else
  (void)v, (void)dma_waits_stall;
  TORCH_CHECK(false, "torch_qpu: not a qpusim build");
#endif
}

// torch_qpu.calibrate: one launch of a microbenchmark (calibrate_kernels.h) through the
// runtime's launch path. Returns (qpusim's emulated cycles, 0 on other backends; the
// launch's wall time in seconds).
std::pair<int64_t, double> calibrate_run(const std::string& bench, const std::string& backend,
                                         int64_t num_qpus, int64_t n, int64_t ring) {
#ifdef TORCH_QPU_WITH_QPULIB
  const Backend be = parse_backend(c10::string_view(backend.data(), backend.size()));
  TORCH_CHECK_VALUE(be != Backend::Cpu, "torch_qpu: calibration needs a QPU backend");
  TORCH_CHECK_VALUE(num_qpus >= 1 && num_qpus <= kMaxQPUs && n >= 1 && n <= (1 << 20) &&
                        ring >= 1 && ring <= (1 << 20),
                    "torch_qpu: calibration run out of range");
  GilRelease no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  try {
    const auto [src_floats, out_floats] = calibrate::buffer_floats(bench, num_qpus, n, ring);
    calibrate::CalibrationKernel& kernel = calibrate::kernel(bench);
    Buffer& src = rt.buffer(Runtime::kInputA, src_floats);
    Buffer& out = rt.buffer(Runtime::kOutput, out_floats);
    const auto start = std::chrono::steady_clock::now();
    rt.launch(be, kernel, num_qpus, std::numeric_limits<double>::infinity(), static_cast<int>(n),
              static_cast<int>(ring), &src, &out);
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    int64_t cycles = 0;
#ifdef QPUSIM_MODE
    if (be == Backend::Qpusim) cycles = static_cast<int64_t>(qpusim_last_cycles());
#endif
    return {cycles, wall.count()};
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
  return {};  // not reached: TORCH_CHECK_VALUE(false, ...) throws
#else
  (void)bench, (void)backend, (void)num_qpus, (void)n, (void)ring;
  TORCH_CHECK(false, "torch_qpu: built without QPULib (no QPU backend to calibrate)");
#endif
}

}  // namespace
}  // namespace torch_qpu

TORCH_LIBRARY(torch_qpu, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  for (const char* name : {"add", "sub", "mul"}) {
    const std::string op(name);
    const std::string functional =
        op + "(Tensor a, Tensor b, str backend=\"cpu\", int num_qpus=12) -> Tensor";
    const std::string out = op +
                            ".out(Tensor a, Tensor b, str backend=\"cpu\", int num_qpus=12, *, "
                            "Tensor(a!) out) -> ()";
    m.def(functional.c_str(), tags);
    m.def(out.c_str(), tags);
  }
  m.def("mv(Tensor matrix, Tensor vector, str backend=\"cpu\", int num_qpus=12) -> Tensor", tags);
  m.def(
      "mv.out(Tensor matrix, Tensor vector, str backend=\"cpu\", int num_qpus=12, *, "
      "Tensor(a!) out) -> ()",
      tags);
  m.def("mm(Tensor a, Tensor b, str backend=\"cpu\", int num_qpus=12) -> Tensor", tags);
  m.def(
      "mm.out(Tensor a, Tensor b, str backend=\"cpu\", int num_qpus=12, *, Tensor(a!) out) -> ()",
      tags);
  m.def(
      "linear(Tensor x, Tensor weight, Tensor? bias=None, str backend=\"cpu\", int num_qpus=12, "
      "bool resident=False) -> Tensor",
      tags);
  m.def(
      "linear.out(Tensor x, Tensor weight, Tensor? bias=None, str backend=\"cpu\", "
      "int num_qpus=12, bool resident=False, *, Tensor(a!) out) -> ()",
      tags);
}

TORCH_LIBRARY_IMPL(torch_qpu, CPU, m) {
  using torch_qpu::BinaryOp;
  m.impl("add", &torch_qpu::binary_op<BinaryOp::Add>);
  m.impl("add.out", &torch_qpu::binary_op_out<BinaryOp::Add>);
  m.impl("sub", &torch_qpu::binary_op<BinaryOp::Sub>);
  m.impl("sub.out", &torch_qpu::binary_op_out<BinaryOp::Sub>);
  m.impl("mul", &torch_qpu::binary_op<BinaryOp::Mul>);
  m.impl("mul.out", &torch_qpu::binary_op_out<BinaryOp::Mul>);
  m.impl("mv", &torch_qpu::mv);
  m.impl("mv.out", &torch_qpu::mv_out);
  m.impl("mm", &torch_qpu::mm);
  m.impl("mm.out", &torch_qpu::mm_out);
  m.impl("linear", &torch_qpu::linear);
  m.impl("linear.out", &torch_qpu::linear_out);
}

// out= overloads are not differentiable (like torch's own out= functions): the
// Autograd kernel refuses inputs that require grad, and the ADInplaceOrView
// kernel bumps out's version counter (a custom op gets neither by default,
// so autograd would not see the write).
TORCH_LIBRARY_IMPL(torch_qpu, Autograd, m) {
  for (const char* name : {"add.out", "sub.out", "mul.out", "mv.out", "mm.out", "linear.out"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&torch_qpu::refuse_grad>());
  }
}

TORCH_LIBRARY_IMPL(torch_qpu, ADInplaceOrView, m) {
  for (const char* name : {"add.out", "sub.out", "mul.out", "mv.out", "mm.out", "linear.out"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&torch_qpu::bump_written_versions>());
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "torch_qpu's operators (torch.ops.torch_qpu) and runtime counters; use the package";
#ifdef TORCH_QPU_WITH_QPULIB
  m.attr("mode") = torch_qpu::kMode;
#else
  m.attr("mode") = pybind11::none();
#endif
  m.attr("max_qpus") = torch_qpu::kMaxQPUs;
  m.def("stats", &torch_qpu::stats, "kernel compiles, launches, pool capacities, resident uploads");
  m.def("release_gpu_memory", &torch_qpu::release_gpu_memory,
        "give all GPU memory back and drop the compiled kernels (also run at exit)");
  m.def("probe", &torch_qpu::probe,
        "launch a tiny kernel on this build's QPU backend: '' when it ran, else why not");
  m.def("unusable", &torch_qpu::unusable,
        "why the qpu/qpusim backend refuses to run after a failed launch ('' when usable)");
  m.def("_set_launch_budget", &torch_qpu::set_launch_budget, pybind11::arg("seconds"));
  m.def("_qpusim_set_max_cycles", &torch_qpu::qpusim_set_max_cycles_hook, pybind11::arg("cycles"));
  m.def("set_kernels", &torch_qpu::set_kernels,
        "the kernels the qpu/qpusim backends run: 'asm' (torch_qpu's own) or 'qpulib'",
        pybind11::arg("name"));
  m.def("get_kernels", &torch_qpu::get_kernels);
#ifdef TORCH_QPU_ASM_KERNELS
  m.attr("kernel_sets") = pybind11::make_tuple("asm", "qpulib");
#else
  m.attr("kernel_sets") = pybind11::make_tuple("qpulib");
#endif
#ifdef QPUSIM_MODE
  m.def("_qpusim_run_code", &torch_qpu::qpusim_run_code, pybind11::arg("words"),
        pybind11::arg("num_qpus"), pybind11::arg("params"), pybind11::arg("data"));
  m.def("_qpulib_code", &torch_qpu::qpulib_code, pybind11::arg("name"));
#endif
  m.def("_qpusim_set_memory_model", &torch_qpu::qpusim_set_memory_model_hook,
        pybind11::arg("cycles_model"), pybind11::arg("dma_waits_stall"));
  m.def("_calibrate_run", &torch_qpu::calibrate_run, pybind11::arg("bench"),
        pybind11::arg("backend"), pybind11::arg("num_qpus"), pybind11::arg("n"),
        pybind11::arg("ring"));
  m.def("resident_forget", &torch_qpu::resident_forget,
        "drop the resident GPU copy of a weight (all when None)", pybind11::arg("weight"));
  // The operators' implementations without the dispatcher, for the bench's
  // overhead figure (the registered op against a direct call).
  m.def("direct_add", [](const at::Tensor& a, const at::Tensor& b, const std::string& backend,
                         int64_t num_qpus) {
    return torch_qpu::binary_op<torch_qpu::BinaryOp::Add>(a, b, backend, num_qpus);
  });
  m.def("direct_mv", [](const at::Tensor& matrix, const at::Tensor& vector,
                        const std::string& backend,
                        int64_t num_qpus) { return torch_qpu::mv(matrix, vector, backend, num_qpus); });
}
