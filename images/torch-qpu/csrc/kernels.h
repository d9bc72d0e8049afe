// QPU kernels for torch_qpu, written with QPULib's embedded DSL.
//
// These functions do not compute anything when called from C++: they *build*
// the kernel's syntax tree, which QPULib then compiles to QPU code (or runs in
// its emulator). Host side (module.cpp) compiles each kernel once per process.
//
// Shared conventions (the host guarantees them, see module.cpp):
//  * every buffer is zero-padded to a multiple of 16 floats (one QPU vector);
//    an exact multiple gets no extra vector;
//  * the number of QPUs in use never exceeds the number of work items
//    (16-wide slices for elementwise ops, matrix rows for dot products),
//    so every QPU owns at least one item and the first gather is in bounds;
//  * loads go through the TMU with gather/receive, one step ahead: at most
//    four requests are outstanding (two operands x two slices), within the
//    TMU's four-entry FIFO, and a "next" slice is only requested when it
//    exists, so no load ever reads past the end of a buffer.
#pragma once

#include <QPULib.h>

namespace torch_qpu::kernels {

enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2 };

template <BinaryOp Op>
inline FloatExpr apply(FloatExpr x, FloatExpr y) {
  if constexpr (Op == BinaryOp::Add) {
    return x + y;
  } else if constexpr (Op == BinaryOp::Sub) {
    return x - y;
  } else {
    return x * y;
  }
}

// out[i] = a[i] OP b[i] for i < n (n a multiple of 16).
// QPU q handles slices q, q + numQPUs, q + 2 numQPUs, ... (16 floats each).
template <BinaryOp Op>
void elementwise(Int n, Ptr<Float> a, Ptr<Float> b, Ptr<Float> out) {
  Int step = numQPUs() << 4;
  Int i = me() << 4;
  Ptr<Float> pa = a + i + index();
  Ptr<Float> pb = b + i + index();
  Ptr<Float> po = out + i + index();
  Float x, y;
  gather(pa);
  gather(pb);
  While(i + step < n)
    // Request the next slice before waiting for this one: the memory fetch
    // overlaps the arithmetic and the store.
    gather(pa + step);
    gather(pb + step);
    receive(x);
    receive(y);
    store(apply<Op>(x, y), po);
    pa = pa + step;
    pb = pb + step;
    po = po + step;
    i = i + step;
  End
  receive(x);
  receive(y);
  store(apply<Op>(x, y), po);
}

// Batched dot products: for every vector v < nvec (rows of `vecs`) and every
// matrix row r < nrows (rows of `mat`), the 16 lane-wise partial sums of
// vecs[v] . mat[r] go to out[(v * nrows + r) * 16 ...]; the host adds the 16
// partials. Rows are kp floats apart (kp a multiple of 16, kp >= 16); the
// vectors start vecOffset floats into `vecs`, the rows matOffset floats into
// `mat` (the host splits big products into several launches this way).
// QPU q handles matrix rows q, q + numQPUs, ...
// mv, mm and linear are all this kernel (mm uses the transposed right side),
// or dot_cols below when splitting by columns keeps more QPUs busy.
inline void dot_rows(Int nvec, Int nrows, Int kp, Int vecOffset, Int matOffset, Ptr<Float> vecs,
                     Ptr<Float> mat, Ptr<Float> out) {
  Int nq = numQPUs();
  // me() < 12 and kp < 2^24 keep this 24-bit multiply exact.
  Int firstRow = me() * kp;
  Int rowStep = kp * nq;
  Int outStep = nq << 4;
  Int outVecStep = nrows << 4;
  Ptr<Float> vecp = vecs + vecOffset + index();
  Ptr<Float> outVec = out + (me() << 4) + index();
  For(Int v = 0, v < nvec, v = v + 1)
    Ptr<Float> rowp = mat + matOffset + firstRow + index();
    Ptr<Float> outp = outVec;
    For(Int r = me(), r < nrows, r = r + nq)
      Ptr<Float> pm = rowp;
      Ptr<Float> pv = vecp;
      Float acc = 0.0f;
      Float x, y;
      gather(pm);
      gather(pv);
      For(Int k = 16, k < kp, k = k + 16)
        gather(pm + 16);
        gather(pv + 16);
        receive(x);
        receive(y);
        acc = acc + x * y;
        pm = pm + 16;
        pv = pv + 16;
      End
      receive(x);
      receive(y);
      acc = acc + x * y;
      store(acc, outp);
      outp = outp + outStep;
      rowp = rowp + rowStep;
    End
    vecp = vecp + kp;
    outVec = outVec + outVecStep;
  End
}

// Batched dot products split the other way, for few rows and long rows (an
// mv with fewer rows than QPUs): QPU q handles the 16-wide column slices
// q, q + numQPUs, ... of every (v, r) pair and writes its 16 partial sums to
// out[((v * nrows + r) * numQPUs + q) * 16 ...]; the host adds numQPUs x 16
// partials per output. Needs numQPUs <= kp / 16 (every QPU owns a slice).
// vecOffset, matOffset: as for dot_rows.
inline void dot_cols(Int nvec, Int nrows, Int kp, Int vecOffset, Int matOffset, Ptr<Float> vecs,
                     Ptr<Float> mat, Ptr<Float> out) {
  Int step = numQPUs() << 4;
  Int first = me() << 4;
  Ptr<Float> vecp = vecs + vecOffset + first + index();
  Ptr<Float> outp = out + first + index();
  For(Int v = 0, v < nvec, v = v + 1)
    Ptr<Float> rowp = mat + matOffset + first + index();
    For(Int r = 0, r < nrows, r = r + 1)
      Ptr<Float> pm = rowp;
      Ptr<Float> pv = vecp;
      Float acc = 0.0f;
      Float x, y;
      gather(pm);
      gather(pv);
      // k is where this QPU's next slice starts: fetch it only if it exists.
      For(Int k = first + step, k < kp, k = k + step)
        gather(pm + step);
        gather(pv + step);
        receive(x);
        receive(y);
        acc = acc + x * y;
        pm = pm + step;
        pv = pv + step;
      End
      receive(x);
      receive(y);
      acc = acc + x * y;
      store(acc, outp);
      outp = outp + step;
      rowp = rowp + kp;
    End
    vecp = vecp + kp;
  End
}

}  // namespace torch_qpu::kernels
