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
/// and, when `dinp` is given, dinp[B×I] += dout · weightᵀ.
public func linear_backward(
    dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    B: Int, I: Int, O: Int
) {
    if B == 0 { return }
    for b in 0..<B {
        let row = dout + b * O
        for o in 0..<O { dbias[o] += row[o] }
    }
    if O == 1 {
        for b in 0..<B {
            let g = dout[b]
            let x = inp + b * I
            for i in 0..<I { dweight[i] += x[i] * g }
            if let dinp {
                let dx = dinp + b * I
                for i in 0..<I { dx[i] += g * weight[i] }
            }
        }
        return
    }
    BLAS.sgemm(.transpose, .none, m: I, n: O, k: B, a: inp, b: dout, beta: 1, c: dweight)
    if let dinp {
        BLAS.sgemm(.none, .transpose, m: B, n: I, k: O, a: dout, b: weight, beta: 1, c: dinp)
    }
}
