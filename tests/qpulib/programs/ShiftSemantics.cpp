// Shifts and rotations by every kind of amount (negative, 0, >= 32), through the
// target emulator (emu) and the source interpreter (interpret). The QPU uses the low
// 5 bits of a shift/rotate amount and the low 4 bits of a vector-rotate amount;
// tests/qpulib/test_semantics.py checks each line against Python's model of that.
#include <stdint.h>
#include <stdio.h>
#include "QPULib.h"

static const int NUM_OPS = 5;

void shifts(Ptr<Int> x, Ptr<Int> s, Int r, Ptr<Int> out)
{
  Int a = *x;
  Int b = *s;
  *out = a << b;      out = out + 16;
  *out = a >> b;      out = out + 16;
  *out = shr(a, b);   out = out + 16;
  *out = ror(a, b);   out = out + 16;
  *out = rotate(a, r);
}

int main()
{
  const int32_t xs[16] = {-123456789, 1, 0x7fffffff, INT32_MIN, -1, 0x12345678, 5, -2,
                          0x0f0f0f0f, 3, -65536, 0x40000000, 77, -1000, 1 << 20, 6};
  const int32_t ss[16] = {-1, 0, 1, 31, 32, 33, -32, 100, -13, 5, 63, 64, 7, -40, 16, 2};
  const int rotations[3] = {3, -1, 17};
  auto k = compile(shifts);
  SharedArray<int> x(16), s(16), out(16 * NUM_OPS);
  for (int i = 0; i < 16; i++) { x[i] = xs[i]; s[i] = ss[i]; }
  const char* ops[NUM_OPS] = {"shl", "asr", "shr", "ror", "rotate"};
  for (int mode = 0; mode < 2; mode++) {
    for (int r = 0; r < 3; r++) {
      for (int i = 0; i < 16 * NUM_OPS; i++) out[i] = 0;
      if (mode == 0) k.emu(&x, &s, rotations[r], &out);
      else k.interpret(&x, &s, rotations[r], &out);
      for (int op = 0; op < NUM_OPS; op++) {
        printf("%s %d %s", mode == 0 ? "emu" : "interpret", rotations[r], ops[op]);
        for (int i = 0; i < 16; i++) printf(" %d", out[16 * op + i]);
        printf("\n");
      }
    }
  }
  printf("x");
  for (int i = 0; i < 16; i++) printf(" %d", xs[i]);
  printf("\ns");
  for (int i = 0; i < 16; i++) printf(" %d", ss[i]);
  printf("\n");
  return 0;
}
