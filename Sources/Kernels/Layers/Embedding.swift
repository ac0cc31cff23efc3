// Field embeddings: each of the F fields of a row looks up the row of its id and scales it by
// the field's weight (normalised dense value, or 1 for a category).

/// out[B×F×D]: out[b, f, :] = rows[slots[b,f]] · weights[b,f].
/// `row(slot)` returns the D floats of a slot.
@inline(__always)
public func embedding_forward(
    out: UnsafeMutablePointer<Float>, slots: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
    B: Int, F: Int, D: Int, row: (Int32) -> UnsafePointer<Float>?
) {
    for bf in 0..<(B * F) {
        let dst = out + bf * D
        guard let src = row(slots[bf]) else {
            dst.update(repeating: 0, count: D)  // an id the model has never trained: zero
            continue
        }
        let w = weights[bf]
        for d in 0..<D { dst[d] = src[d] * w }
    }
}

/// Accumulates (+=) the gradient of each looked-up row: drows[local[b,f], :] += dout[b,f,:] · w.
/// `local[b,f]` is the index of the (b,f) id among the batch's unique ids.
public func embedding_backward(
    drows: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    local: UnsafePointer<Int32>, weights: UnsafePointer<Float>, B: Int, F: Int, D: Int
) {
    for bf in 0..<(B * F) {
        let w = weights[bf]
        if w == 0 { continue }
        let src = dout + bf * D
        let dst = drows + Int(local[bf]) * D
        for d in 0..<D { dst[d] += src[d] * w }
    }
}

/// Wide (linear) part: out[b] = bias + Σ_f value(slot[b,f]) · w[b,f].
public func wide_forward(
    out: UnsafeMutablePointer<Float>, slots: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
    bias: Float, B: Int, F: Int, value: (Int32) -> Float
) {
    for b in 0..<B {
        var acc = bias
        for f in 0..<F { acc += value(slots[b * F + f]) * weights[b * F + f] }
        out[b] = acc
    }
}

/// Accumulates: dvalues[local[b,f]] += dout[b] · w[b,f]; returns Σ_b dout[b] (the bias gradient).
public func wide_backward(
    dvalues: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    local: UnsafePointer<Int32>, weights: UnsafePointer<Float>, B: Int, F: Int
) -> Float {
    var dbias: Float = 0
    for b in 0..<B {
        let g = dout[b]
        dbias += g
        for f in 0..<F { dvalues[Int(local[b * F + f])] += g * weights[b * F + f] }
    }
    return dbias
}
