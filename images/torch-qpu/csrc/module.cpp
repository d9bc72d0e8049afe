// torch_qpu._C: host side of the QPU kernels (pybind11 via torch's extension
// machinery). Built only when QPULib is available; the Python package falls
// back to its cpu backend otherwise.
//
// Why it is shaped this way:
//  * QPULib keeps global state (AST builder, emulator heap, mailbox), so every
//    touch of it happens under one mutex; the GIL is released meanwhile so
//    other Python threads keep running while the QPUs (or emulator) work.
//  * Compiling a QPULib kernel costs milliseconds (register allocation, ...):
//    each kernel is compiled once per process and cached. The QPU count is a
//    launch-time parameter, so one compiled kernel serves every QPU count.
//  * GPU-shared buffers are a grow-only pool of three slots (two inputs, one
//    output) reused across calls; data moves with memcpy, never element loops.
//  * Inputs are only ever read: results land in pool memory, then in a fresh
//    (or the caller's out=) tensor.

#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "kernels.h"

namespace torch_qpu {
namespace {

#if defined(QPU_MODE) && !defined(EMULATION_MODE)
constexpr const char* kMode = "qpu";
#elif defined(EMULATION_MODE)
constexpr const char* kMode = "emulation";
#else
#error "define QPU_MODE or EMULATION_MODE (they select the QPULib build)"
#endif

constexpr int kLanes = 16;
constexpr int kMaxQPUs = 12;
// QPU integer multiplies are 24-bit: the dot kernel multiplies row lengths.
constexpr int64_t kMaxRowFloats = (int64_t{1} << 24) - kLanes;

using ElementwiseKernel = Kernel<Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;
using DotKernel = Kernel<Int, Int, Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;
using Buffer = SharedArray<float>;

int64_t round_up_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Everything that touches QPULib; one instance per process.
class Runtime {
 public:
  enum Slot : std::size_t { kInputA = 0, kInputB = 1, kOutput = 2, kNumSlots = 3 };

  std::mutex mutex;

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
      entry = allocate(floats, grown, &capacity);
    }
    return *entry;
  }

  static float* host_pointer(Buffer& buffer) { return &buffer[0]; }

  // A new GPU-shared buffer of `wanted` floats (or just `needed` when the
  // emulator heap is nearly full); its size goes to *allocated. Call with
  // the mutex held.
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
  int64_t launches = 0;
  int64_t resident_uploads = 0;

  std::array<int64_t, kNumSlots> capacities() const { return capacities_; }

 private:
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

  std::array<std::unique_ptr<ElementwiseKernel>, 3> elementwise_kernels_{};
  std::unique_ptr<DotKernel> dot_rows_kernel_;
  std::unique_ptr<DotKernel> dot_cols_kernel_;
  std::array<std::unique_ptr<Buffer>, kNumSlots> buffers_{};
  std::array<int64_t, kNumSlots> capacities_{};
  int64_t compiles_ = 0;
};

Runtime& runtime() {
  // Destroyed at exit so that, in QPU mode, the pool's GPU memory goes back to
  // the firmware and the QPUs are disabled (Kernel's destructor). Those
  // destructors only use QPULib's plain-int globals (mailbox fd, user count).
  static Runtime instance;
  return instance;
}

void check_float_cpu(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "torch_qpu: ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, "torch_qpu: ", name,
              " must be float32, got ", t.scalar_type());
}

void check_num_qpus(int64_t num_qpus) {
  TORCH_CHECK(num_qpus >= 1 && num_qpus <= kMaxQPUs, "torch_qpu: num_qpus must be in 1..",
              kMaxQPUs, ", got ", num_qpus);
}

// Copy `rows` rows of `cols` floats (contiguous) into `dst` with a row pitch
// of `pitch` floats, zero-filling each row's padding.
void copy_padded(float* dst, const float* src, int64_t rows, int64_t cols, int64_t pitch) {
  if (cols == pitch) {
    std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(rows * cols));
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * pitch, src + r * cols, sizeof(float) * static_cast<std::size_t>(cols));
    std::memset(dst + r * pitch + cols, 0, sizeof(float) * static_cast<std::size_t>(pitch - cols));
  }
}

// out = a OP b for same-shaped tensors. `out` (contiguous float32 CPU) may
// alias an input: it is written only after the inputs were copied out.
void elementwise(int64_t op, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor out,
                 int64_t num_qpus) {
  TORCH_CHECK(op >= 0 && op <= 2, "torch_qpu: unknown elementwise op ", op);
  check_float_cpu(a, "a");
  check_float_cpu(b, "b");
  check_float_cpu(out, "out");
  check_num_qpus(num_qpus);
  TORCH_CHECK(a.sizes() == b.sizes(), "torch_qpu: shapes differ: ", a.sizes(), " vs ", b.sizes());
  TORCH_CHECK(out.sizes() == a.sizes(), "torch_qpu: out has shape ", out.sizes(), ", expected ",
              a.sizes());
  TORCH_CHECK(out.is_contiguous(), "torch_qpu: out must be contiguous");
  const int64_t n = a.numel();
  if (n == 0) return;
  const torch::Tensor ac = a.contiguous();
  const torch::Tensor bc = b.contiguous();
  const int64_t padded = round_up_lanes(n);
  const int64_t slices = padded / kLanes;
  const int nq = static_cast<int>(std::min<int64_t>(num_qpus, slices));
  const auto kernel_op = static_cast<kernels::BinaryOp>(op);

  pybind11::gil_scoped_release no_gil;
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  ElementwiseKernel& kernel = rt.elementwise(kernel_op);
  Buffer& buf_a = rt.buffer(Runtime::kInputA, padded);
  Buffer& buf_b = rt.buffer(Runtime::kInputB, padded);
  Buffer& buf_out = rt.buffer(Runtime::kOutput, padded);
  copy_padded(Runtime::host_pointer(buf_a), ac.data_ptr<float>(), 1, n, padded);
  copy_padded(Runtime::host_pointer(buf_b), bc.data_ptr<float>(), 1, n, padded);
  kernel.setNumQPUs(nq);
  kernel.call(static_cast<int>(padded), &buf_a, &buf_b, &buf_out);
  ++rt.launches;
  std::memcpy(out.data_ptr<float>(), Runtime::host_pointer(buf_out),
              sizeof(float) * static_cast<std::size_t>(n));
}

// A matrix kept in GPU-shared memory between calls (row-padded), so that
// layers whose weights do not change skip the host-to-GPU copy, which on a
// Pi costs more than the QPU work of a matrix-vector product. Python decides
// when to re-upload (torch_qpu.nn.Linear watches the weight's version).
class ResidentMatrix {
 public:
  explicit ResidentMatrix(const torch::Tensor& mat) { upload(mat); }

  // (Re)copies `mat` (float32, 2-D) into GPU-shared memory.
  void upload(const torch::Tensor& mat) {
    check_float_cpu(mat, "matrix");
    TORCH_CHECK(mat.dim() == 2, "torch_qpu: a resident matrix must be 2-D, got ", mat.sizes());
    const int64_t rows = mat.size(0);
    const int64_t cols = mat.size(1);
    const int64_t kp = round_up_lanes(cols);
    TORCH_CHECK(kp <= kMaxRowFloats && rows <= (int64_t{1} << 24),
                "torch_qpu: matrix too large for the QPU kernels: ", mat.sizes());
    const torch::Tensor mc = mat.contiguous();
    pybind11::gil_scoped_release no_gil;
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    const int64_t needed = std::max<int64_t>(rows * kp, kLanes);
    if (!buffer_ || capacity_ < needed) {
      buffer_.reset();
      buffer_ = Runtime::allocate(needed, needed, &capacity_);
    }
    if (rows * cols > 0) {
      copy_padded(Runtime::host_pointer(*buffer_), mc.data_ptr<float>(), rows, cols, kp);
    }
    rows_ = rows;
    cols_ = cols;
    ++rt.resident_uploads;
  }

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  Buffer& buffer() { return *buffer_; }

 private:
  // QPU mode: the GPU memory goes back to the firmware when the Python
  // object dies (SharedArray's destructor; the mailbox is already open).
  std::unique_ptr<Buffer> buffer_;
  int64_t capacity_ = 0;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
};

// vecs @ mat.T where mat is either a tensor (copied into the pool) or a
// resident matrix; shape (V, R).
torch::Tensor dot_core(const torch::Tensor& vecs, const torch::Tensor* mat,
                       ResidentMatrix* resident, int64_t num_qpus) {
  check_float_cpu(vecs, "vecs");
  check_num_qpus(num_qpus);
  const int64_t nrows = mat ? mat->size(0) : resident->rows();
  const int64_t mat_cols = mat ? mat->size(1) : resident->cols();
  TORCH_CHECK(vecs.dim() == 2, "torch_qpu: dot_rows needs 2-D tensors, got ", vecs.sizes());
  TORCH_CHECK(vecs.size(1) == mat_cols, "torch_qpu: inner sizes differ: ", vecs.sizes(), " vs (",
              nrows, ", ", mat_cols, ")");
  const int64_t nvec = vecs.size(0);
  const int64_t k = vecs.size(1);
  auto result_options = torch::TensorOptions().dtype(torch::kFloat32);
  if (nvec == 0 || nrows == 0 || k == 0) return torch::zeros({nvec, nrows}, result_options);
  const int64_t kp = round_up_lanes(k);
  TORCH_CHECK(kp <= kMaxRowFloats, "torch_qpu: rows longer than ", kMaxRowFloats,
              " floats are not supported (24-bit QPU multiply)");
  TORCH_CHECK(nvec <= std::numeric_limits<int32_t>::max() && nrows <= (int64_t{1} << 24),
              "torch_qpu: too many rows");
  const torch::Tensor vc = vecs.contiguous();
  const torch::Tensor mc = mat ? mat->contiguous() : torch::Tensor();
  // Split rows across QPUs, unless splitting each row's columns keeps more
  // QPUs busy (few rows, long rows: e.g. a 1 x 10^5 mv).
  const int64_t row_qpus = std::min<int64_t>(num_qpus, nrows);
  const int64_t col_qpus = std::min<int64_t>(num_qpus, kp / kLanes);
  const bool split_columns = col_qpus > row_qpus;
  const int nq = static_cast<int>(split_columns ? col_qpus : row_qpus);
  const int64_t groups = split_columns ? nq : 1;  // partial-sum blocks per output
  const int64_t out_floats = nvec * nrows * groups * kLanes;
  torch::Tensor partials = torch::empty({nvec, nrows, groups * kLanes}, result_options);

  {
    pybind11::gil_scoped_release no_gil;
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    DotKernel& kernel = rt.dot(split_columns);
    Buffer& buf_v = rt.buffer(Runtime::kInputA, nvec * kp);
    Buffer& buf_out = rt.buffer(Runtime::kOutput, out_floats);
    Buffer& buf_m = resident ? resident->buffer() : rt.buffer(Runtime::kInputB, nrows * kp);
    copy_padded(Runtime::host_pointer(buf_v), vc.data_ptr<float>(), nvec, k, kp);
    if (!resident) {
      copy_padded(Runtime::host_pointer(buf_m), mc.data_ptr<float>(), nrows, k, kp);
    }
    kernel.setNumQPUs(nq);
    kernel.call(static_cast<int>(nvec), static_cast<int>(nrows), static_cast<int>(kp), &buf_v,
                &buf_m, &buf_out);
    ++rt.launches;
    std::memcpy(partials.data_ptr<float>(), Runtime::host_pointer(buf_out),
                sizeof(float) * static_cast<std::size_t>(out_floats));
  }
  // The kernels leave 16 lane-wise partial sums per output (per QPU when
  // split by columns); add them here.
  return partials.sum(-1);
}

// Returns vecs @ mat.T, shape (V, R), for vecs (V, K) and mat (R, K).
torch::Tensor dot_rows(const torch::Tensor& vecs, const torch::Tensor& mat, int64_t num_qpus) {
  check_float_cpu(mat, "mat");
  TORCH_CHECK(mat.dim() == 2, "torch_qpu: dot_rows needs 2-D tensors, got ", mat.sizes());
  return dot_core(vecs, &mat, nullptr, num_qpus);
}

// Returns vecs @ M.T for a resident matrix M.
torch::Tensor dot_resident(const torch::Tensor& vecs, ResidentMatrix& mat, int64_t num_qpus) {
  return dot_core(vecs, nullptr, &mat, num_qpus);
}

pybind11::dict stats() {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  pybind11::dict d;
  d["kernel_compiles"] = rt.compiles();
  d["launches"] = rt.launches;
  d["resident_uploads"] = rt.resident_uploads;
  const auto caps = rt.capacities();
  d["pool_capacity_floats"] = pybind11::make_tuple(caps[0], caps[1], caps[2]);
  return d;
}

}  // namespace
}  // namespace torch_qpu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "QPULib kernels for torch_qpu (use the torch_qpu package, not this module)";
  m.attr("mode") = torch_qpu::kMode;
  m.attr("max_qpus") = torch_qpu::kMaxQPUs;
  m.def("elementwise", &torch_qpu::elementwise, "out = a OP b (0 add, 1 sub, 2 mul)",
        pybind11::arg("op"), pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out"),
        pybind11::arg("num_qpus"));
  m.def("dot_rows", &torch_qpu::dot_rows, "vecs @ mat.T for 2-D float32 tensors",
        pybind11::arg("vecs"), pybind11::arg("mat"), pybind11::arg("num_qpus"));
  pybind11::class_<torch_qpu::ResidentMatrix>(
      m, "ResidentMatrix", "a float32 matrix kept in GPU-shared memory between calls")
      .def(pybind11::init<const torch::Tensor&>(), pybind11::arg("matrix"))
      .def("upload", &torch_qpu::ResidentMatrix::upload, pybind11::arg("matrix"))
      .def_property_readonly("shape", [](const torch_qpu::ResidentMatrix& r) {
        return pybind11::make_tuple(r.rows(), r.cols());
      });
  m.def("dot_resident", &torch_qpu::dot_resident, "vecs @ M.T for a ResidentMatrix M",
        pybind11::arg("vecs"), pybind11::arg("matrix"), pybind11::arg("num_qpus"));
  m.def("stats", &torch_qpu::stats, "kernel compile count, launches, pool capacities");
}
