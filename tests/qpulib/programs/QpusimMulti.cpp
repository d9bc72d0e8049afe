// qpusim: kernels whose work is split over N QPUs (argv[1], 1..12), each QPU with its own
// VPM column and DMA setup (QPULib's `*p` loads/stores) or its own TMU gathers. Prints the
// results and the emulated cycles of each launch (qpusim_last_cycles()); test_qpusim.py
// checks them against Python.
#include <stdio.h>
#include <stdlib.h>
#include "QPULib.h"

// GCD of 16 pairs per QPU, through DMA loads and stores (vertical VPM access).
void gcd(Ptr<Int> p, Ptr<Int> q, Ptr<Int> r)
{
  Int offset = me() << 4;
  p = p + offset; q = q + offset; r = r + offset;
  Int a = *p;
  Int b = *q;
  While (any(a != b))
    Where (a > b)
      a = a-b;
    End
    Where (a < b)
      b = b-a;
    End
  End
  *r = a;
}

// out[i] = 3*x[i] + y[i] over n elements, QPUs interleaved by 16-element blocks; two
// gathers in flight per loop (as QPULib's Rot3D example), stores through DMA.
void axpy(Int n, Ptr<Int> x, Ptr<Int> y, Ptr<Int> out)
{
  Int inc = numQPUs() << 4;
  Int start = (me() << 4) + index();
  Ptr<Int> p = x + start;
  Ptr<Int> q = y + start;
  Ptr<Int> o = out + (me() << 4);
  gather(p); gather(q);
  Int a, b;
  For (Int i = 0, i < n, i = i+inc)
    gather(p+inc); gather(q+inc);
    receive(a); receive(b);
    store(a*3 + b, o);
    p = p+inc; q = q+inc; o = o+inc;
  End
  receive(a); receive(b);
}

int main(int argc, char** argv)
{
  int nqpus = argc > 1 ? atoi(argv[1]) : 1;
  int blocks = 4;  // 16-element blocks per QPU for axpy
  int n = nqpus * 16;
  int m = n * blocks;

  auto k1 = compile(gcd);
  k1.setNumQPUs(nqpus);
  SharedArray<int> a(n), b(n), r(n);
  srand(1);
  for (int i = 0; i < n; i++) {
    a[i] = 100 + rand() % 900;
    b[i] = 100 + rand() % 900;
    r[i] = -1;
  }
  k1(&a, &b, &r);
  unsigned long long gcdCycles = qpusim_last_cycles();
  for (int i = 0; i < n; i++) printf("gcd %d %d %d %d\n", i, a[i], b[i], r[i]);

  auto k2 = compile(axpy);
  k2.setNumQPUs(nqpus);
  // +inc padding: the loop's last gathers read one block past the end
  SharedArray<int> x(m + n), y(m + n), out(m);
  // x >= 0: Int * is the QPU's 24-bit multiply
  for (int i = 0; i < m + n; i++) { x[i] = i * 7 + 5; y[i] = 1000 - i; }
  for (int i = 0; i < m; i++) out[i] = 0;
  k2(m, &x, &y, &out);
  unsigned long long axpyCycles = qpusim_last_cycles();
  for (int i = 0; i < m; i++) printf("axpy %d %d\n", i, out[i]);

  printf("cycles gcd %llu\n", gcdCycles);
  printf("cycles axpy %llu\n", axpyCycles);
  printf("seconds axpy %.9f\n", qpusim_last_seconds(250.0));
  return 0;
}
