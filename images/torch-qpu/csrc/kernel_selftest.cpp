// Stand-alone check of the QPU kernels without torch: runs each kernel on
// awkward sizes and QPU counts and compares with a plain C++ loop.
//
// Build (emulation mode, any CPU; also handy under QEMU for armhf/arm64), from
// images/torch-qpu:
//   g++ -std=c++17 -O1 -DEMULATION_MODE -I PREFIX/include/qpulib -I csrc
//       csrc/kernel_selftest.cpp -L PREFIX/lib -lqpu -Wl,-rpath,PREFIX/lib
// On a Pi with a qpu-mode QPULib use -DQPU_MODE and run as root.
//
// `kernel_selftest --edge CASE` (emulation mode only) places one input
// buffer flush against the end of QPULib's emulator heap, so that a kernel
// reading past the end of that buffer reads past the end of a heap
// allocation: with QPULib and this program built with -fsanitize=address,
// AddressSanitizer then reports it. CASE: ew (elementwise), rows-mat,
// rows-vec, cols-mat, cols-vec. scripts/kernel_overread_check.sh runs them.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "kernels.h"

namespace {

using torch_qpu::kernels::BinaryOp;
using Buffer = SharedArray<float>;
using EwKernel = Kernel<Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;
using DotKernel = Kernel<Int, Int, Int, Int, Int, Ptr<Float>, Ptr<Float>, Ptr<Float>>;

int failures = 0;

void expect_close(const char* what, int case_id, float got, float want, float scale) {
  if (std::fabs(got - want) > 1e-5f * scale + 1e-6f) {
    std::printf("MISMATCH %s case %d: got %g want %g\n", what, case_id, got, want);
    ++failures;
  }
}

float value(int i, int salt) {
  return static_cast<float>((i * 7 + salt * 13) % 23) / 8.0f - 1.0f;
}

// Emulation mode: allocate a filler so that the next allocation of `words`
// words ends one word before the heap's end (QPULib refuses to use the last
// word). Returns the filler, which must outlive the test.
std::unique_ptr<Buffer> leave_room_for(uint32_t words) {
#ifdef EMULATION_MODE
  Buffer probe(1);  // makes sure the heap exists
  const uint32_t free_words = EMULATOR_HEAP_SIZE - emuHeapEnd;
  return std::make_unique<Buffer>(free_words - words - 1);
#else
  (void)words;
  return nullptr;
#endif
}

// out = a + b; with last_b the b buffer is allocated flush with the heap end.
void check_elementwise(EwKernel& kernel, int n, int nq, bool last_b) {
  const int padded = (n + 15) / 16 * 16;
  auto a = std::make_unique<Buffer>(padded);
  auto out = std::make_unique<Buffer>(padded);
  auto filler = last_b ? leave_room_for(padded) : nullptr;
  auto b = std::make_unique<Buffer>(padded);
  for (int i = 0; i < padded; i++) {
    (*a)[i] = i < n ? value(i, 1) : 0.0f;
    (*b)[i] = i < n ? value(i, 2) : 0.0f;
  }
  kernel.setNumQPUs(nq);
  kernel.call(padded, a.get(), b.get(), out.get());
  for (int i = 0; i < n; i++) {
    expect_close("add", n * 100 + nq, (*out)[i], value(i, 1) + value(i, 2), 1.0f);
  }
}

enum class Last { None, Mat, Vec };

void check_dot(DotKernel& kernel, bool columns, int nvec, int nrows, int k, int nq, Last last) {
  const int kp = (k + 15) / 16 * 16;
  const int groups = columns ? nq : 1;
  auto out = std::make_unique<Buffer>(nvec * nrows * groups * 16);
  std::unique_ptr<Buffer> vecs, mat, filler;
  if (last != Last::Vec) vecs = std::make_unique<Buffer>(nvec * kp);
  if (last != Last::Mat) mat = std::make_unique<Buffer>(nrows * kp);
  if (last == Last::Vec) {
    filler = leave_room_for(nvec * kp);
    vecs = std::make_unique<Buffer>(nvec * kp);
  }
  if (last == Last::Mat) {
    filler = leave_room_for(nrows * kp);
    mat = std::make_unique<Buffer>(nrows * kp);
  }
  for (int v = 0; v < nvec; v++) {
    for (int i = 0; i < kp; i++) (*vecs)[v * kp + i] = i < k ? value(i, v) : 0.0f;
  }
  for (int r = 0; r < nrows; r++) {
    for (int i = 0; i < kp; i++) (*mat)[r * kp + i] = i < k ? value(i + r, 5) : 0.0f;
  }
  kernel.setNumQPUs(nq);
  kernel.call(nvec, nrows, kp, 0, 0, vecs.get(), mat.get(), out.get());
  for (int v = 0; v < nvec; v++) {
    for (int r = 0; r < nrows; r++) {
      float want = 0.0f, scale = 0.0f, got = 0.0f;
      for (int i = 0; i < k; i++) {
        want += value(i, v) * value(i + r, 5);
        scale += std::fabs(value(i, v) * value(i + r, 5));
      }
      for (int j = 0; j < groups * 16; j++) got += (*out)[(v * nrows + r) * groups * 16 + j];
      expect_close(columns ? "dot_cols" : "dot_rows", nvec * 1000 + nrows * 10 + nq, got, want,
                   scale);
    }
  }
}

int finish() {
  std::printf("kernel selftest: %s\n", failures ? "FAILED" : "all kernels match");
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  EwKernel add(&torch_qpu::kernels::elementwise<BinaryOp::Add>);
  DotKernel rows(&torch_qpu::kernels::dot_rows);
  DotKernel cols(&torch_qpu::kernels::dot_cols);
  if (argc == 3 && std::strcmp(argv[1], "--edge") == 0) {
    const std::string which = argv[2];
    // Sizes that are exact multiples of 16 (no padding to hide an over-read)
    // and several slices per QPU.
    if (which == "ew") {
      check_elementwise(add, 16 * 12 * 3, 12, true);
    } else if (which == "rows-mat" || which == "rows-vec") {
      check_dot(rows, false, 2, 24, 64, 12, which == "rows-mat" ? Last::Mat : Last::Vec);
    } else if (which == "cols-mat" || which == "cols-vec") {
      check_dot(cols, true, 2, 3, 16 * 12 * 2, 12, which == "cols-mat" ? Last::Mat : Last::Vec);
    } else {
      std::fprintf(stderr, "unknown edge case %s\n", which.c_str());
      return 2;
    }
    return finish();
  }
  for (int n : {1, 15, 16, 17, 200, 1000}) {
    for (int nq : {1, 3, 12}) {
      if (nq <= (n + 15) / 16) check_elementwise(add, n, nq, false);
    }
  }
  for (int nq : {1, 4, 12}) {
    check_dot(rows, false, 2, 13, 37, nq, Last::None);
    check_dot(cols, true, 2, 3, 300, nq, Last::None);
  }
  return finish();
}
