// Smoke test for an installed libqpu: doubles 32 floats on the QPUs (or the
// emulator) and checks the sum. Built and run by selftest.sh.
#include <QPULib.h>

#include <cstdio>

static void double_kernel(Int n, Ptr<Float> in, Ptr<Float> out) {
  Ptr<Float> p = in + index();
  Ptr<Float> q = out + index();
  For (Int i = 0, i < n, i = i + 16)
    Float x = *p;
    store(x * 2.0f, q);
    p = p + 16;
    q = q + 16;
  End
}

int main() {
  constexpr int n = 32;
  auto kernel = compile(double_kernel);
  SharedArray<float> in(n), out(n);
  for (int i = 0; i < n; i++) {
    in[i] = static_cast<float>(i);
    out[i] = 0.0f;
  }
  kernel(n, &in, &out);
  float sum = 0.0f;
  for (int i = 0; i < n; i++) sum += out[i];
  std::printf("qpulib selftest: sum=%g (expected 992)\n", sum);
  return sum == 992.0f ? 0 : 1;
}
