import StreamRecNumerics

// Fully connected layer, row-major: weight is [I × O] so out = inp · weight + bias.

/// out[B×O] = inp[B×I] · weight[I×O] + bias[O]
public func linear_forward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    B: Int, I: Int, O: Int
) {
    if B == 0 { return }
    for b in 0..<B { (out + b * O).update(from: bias, count: O) }
    if O == 1 {
        // A 1-column GEMM is a dot product per row; skip BLAS call overhead and packing.
        for b in 0..<B {
            var acc: Float = 0
            let row = inp + b * I
            for i in 0..<I { acc += row[i] * weight[i] }
            out[b] += acc
        }
        return
    }
    if B <= 2 {
        // Inference on one or two rows: sgemm would pack the whole weight matrix per call;
        // a vector-matrix product streams it once.
        for b in 0..<B { BLAS.vecmat(m: I, n: O, x: inp + b * I, a: weight, beta: 1, y: out + b * O) }
        return
    }
    BLAS.sgemm(.none, .none, m: B, n: O, k: I, a: inp, b: weight, beta: 1, c: out)
}

/// Accumulates (+=): dweight[I×O] += inpᵀ · dout, dbias[O] += Σ_b dout[b],
/// and, when `dinp` is given, dinp[B×I] += dout · weightᵀ. Each of the three may be nil when
/// that gradient is not wanted (an actor's loss reaching through a critic it does not train
/// wants only dinp; the action half of a split input has no bias; data needs no dinp).
public func linear_backward(
    dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
    dbias: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    B: Int, I: Int, O: Int
) {
    if B == 0 { return }
    if let dbias {
        for b in 0..<B {
            let row = dout + b * O
            for o in 0..<O { dbias[o] += row[o] }
        }
    }
    if O == 1 {
        for b in 0..<B {
            let g = dout[b]
            if let dweight {
                let x = inp + b * I
                for i in 0..<I { dweight[i] += x[i] * g }
            }
            if let dinp {
                let dx = dinp + b * I
                for i in 0..<I { dx[i] += g * weight[i] }
            }
        }
        return
    }
    if let dweight { BLAS.sgemm(.transpose, .none, m: I, n: O, k: B, a: inp, b: dout, beta: 1, c: dweight) }
    if let dinp {
        BLAS.sgemm(.none, .transpose, m: B, n: I, k: O, a: dout, b: weight, beta: 1, c: dinp)
    }
}

/// out[B×O] += inp[B×I] · weight[I×O] (no bias): the second half of a layer whose input is a
/// concatenation [x | y], computed as x·W_x + b, then += y·W_y — W_x and W_y are the first I_x and
/// the last I_y rows of the layer's [I_x + I_y × O] weight, so no concatenated copy is built, and
/// a part shared by several rows (a state scored with n candidate actions) is computed once.
/// Its backward is `linear_backward` with `dbias` nil.
public func linear_accumulate_forward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    B: Int, I: Int, O: Int
) {
    if B == 0 || I == 0 { return }
    if O == 1 {
        for b in 0..<B {
            var acc: Float = 0
            let row = inp + b * I
            for i in 0..<I { acc += row[i] * weight[i] }
            out[b] += acc
        }
        return
    }
    if B <= 2 {
        for b in 0..<B { BLAS.vecmat(m: I, n: O, x: inp + b * I, a: weight, beta: 1, y: out + b * O) }
        return
    }
    BLAS.sgemm(.none, .none, m: B, n: O, k: I, a: inp, b: weight, beta: 1, c: out)
}

/// out[(n·B)×O]: n copies of base[B×O], block after block (the shared part of n candidates per
/// row, before `linear_accumulate_forward` adds each candidate's part).
public func repeat_rows_forward(out: UnsafeMutablePointer<Float>, base: UnsafePointer<Float>, n: Int, B: Int, O: Int) {
    for i in 0..<n { (out + i * B * O).update(from: base, count: B * O) }
}

/// Accumulates: dbase[B×O] += Σ_i dout[i-th block of B rows] (the backward of `repeat_rows_forward`).
public func repeat_rows_backward(dbase: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, n: Int, B: Int, O: Int) {
    for i in 0..<n {
        let src = dout + i * B * O
        for k in 0..<(B * O) { dbase[k] += src[k] }
    }
}
