// Vectorised row operations for the policies' softmax over the item catalogue: its exp dominated
// a REINFORCE step (one libm expf per item per sample). SIMD8 lanes; each function is checked
// against its scalar definition in Tests/NumericsTests/VectorMathTests.swift.

import COpenBLAS

/// √x per lane, correctly rounded (the same bits as Float.squareRoot()), in sqrtps instructions:
/// the standard library's square roots go through libm's errno path one lane at a time.
@inline(__always)
public func sqrt8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    var r = SIMD8<Float>()
    for k in 0..<8 { r[k] = streamrec_sqrtf(x[k]) }
    return r
}

/// √x without the errno branch (see `sqrt8`).
@inline(__always)
public func sqrt1(_ x: Float) -> Float { streamrec_sqrtf(x) }

/// e^x per lane, Cephes' expf (Cody–Waite reduction by ln 2, degree-6 polynomial): relative error
/// below 2 ulp on [−87.3, 88.7]; lanes below −87.3 (−∞ included) give exactly 0.
/// Only lane-wise +, −, ×, compares, selects and bit casts: the generic SIMD conversions and
/// roundings of the standard library are not vectorised (they cost more than libm's expf).
@inline(__always)
public func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let lo = SIMD8<Float>(repeating: -87.33654), hi = SIMD8<Float>(repeating: 88.72283)
    var v = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // n = round(v·log2e) by the 1.5·2^23 trick: adding it leaves n in the low mantissa bits.
    let magic = SIMD8<Float>(repeating: 12582912)
    let shifted = v * 1.44269504088896341 + magic
    let fx = shifted - magic
    let n = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    v = v - fx * 0.693359375
    v = v + fx * 2.12194440e-4
    var y = SIMD8<Float>(repeating: 1.9875691500e-4)
    y = y * v + 1.3981999507e-3
    y = y * v + 8.3334519073e-3
    y = y * v + 4.1665795894e-2
    y = y * v + 1.6666665459e-1
    y = y * v + 5.0000001201e-1
    y = y * (v * v) + v + 1
    let scale = unsafeBitCast((n &+ 127) &<< 23, to: SIMD8<Float>.self)
    return (y * scale).replacing(with: 0, where: x .< lo)
}

/// max of x[0..<n] (−∞ when n = 0).
/// tanh per lane, Cephes' tanhf: x + x³·P(x²) for |x| ≤ 0.625, else ±(1 − 2/(e^{2|x|} + 1)) with
/// `exp8`; relative error below 4e-7 (tested against Double tanh). NaN stays NaN; ±∞ gives ±1.
@inline(__always)
public func tanh8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let negative = x .< 0
    let a = x.replacing(with: -x, where: negative)
    let large = 1 - 2 / (exp8(a + a) + 1)
    let z = x * x
    var p = SIMD8<Float>(repeating: -5.70498872745e-3)
    p = p * z + 2.06390887954e-2
    p = p * z - 5.37397155531e-2
    p = p * z + 1.33314422036e-1
    p = p * z - 3.33332819422e-1
    let small = p * z * x + x
    return small.replacing(with: large.replacing(with: -large, where: negative), where: a .> 0.625)
}

/// out[j] = tanh(x[j]) for j < n (`tanh8`). `out` may be `x`.
@inline(__always)
public func vtanh(out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    var j = 0
    while j + 8 <= n {
        UnsafeMutableRawPointer(out + j).storeBytes(of: tanh8(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)), as: SIMD8<Float>.self)
        j += 8
    }
    if j < n {
        var tail = SIMD8<Float>(repeating: 0)
        for k in 0..<(n - j) { tail[k] = x[j + k] }
        let t = tanh8(tail)
        for k in 0..<(n - j) { out[j + k] = t[k] }
    }
}

@inline(__always)
public func vmax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var j = 0
    var m8 = SIMD8<Float>(repeating: -.infinity)
    while j + 8 <= n {
        let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
        m8 = m8.replacing(with: v, where: v .> m8)
        j += 8
    }
    var m = m8.max()
    while j < n { m = max(m, x[j]); j += 1 }
    return m
}

/// out[j] = e^(x[j] − shift) for j < n; returns Σ out[j]. `out` may be `x`.
@inline(__always)
public func vexpShifted(out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, shift: Float, _ n: Int) -> Float {
    var j = 0
    var s8 = SIMD8<Float>(repeating: 0)
    let sh = SIMD8<Float>(repeating: shift)
    while j + 8 <= n {
        let e = exp8(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) - sh)
        UnsafeMutableRawPointer(out + j).storeBytes(of: e, as: SIMD8<Float>.self)
        s8 += e
        j += 8
    }
    var s = s8.sum()
    if j < n {
        var tail = SIMD8<Float>(repeating: -.infinity)
        for k in 0..<(n - j) { tail[k] = x[j + k] - shift }
        let e = exp8(tail)
        for k in 0..<(n - j) { out[j + k] = e[k] }
        s += e.sum()
    }
    return s
}

/// Σ x[j] for j < n.
@inline(__always)
public func vsum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var j = 0
    var s8 = SIMD8<Float>(repeating: 0)
    while j + 8 <= n { s8 += UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self); j += 8 }
    var s = s8.sum()
    while j < n { s += x[j]; j += 1 }
    return s
}

/// x[j] *= a for j < n.
@inline(__always)
public func vscale(_ x: UnsafeMutablePointer<Float>, _ a: Float, _ n: Int) {
    var j = 0
    while j + 8 <= n {
        let p = UnsafeMutableRawPointer(x + j)
        p.storeBytes(of: p.loadUnaligned(as: SIMD8<Float>.self) * a, as: SIMD8<Float>.self)
        j += 8
    }
    while j < n { x[j] *= a; j += 1 }
}

/// #{j in range: x[j] > t} + #{j in range, j < tieBefore: x[j] == t}: the items ranked ahead of
/// one scoring t at column tieBefore (ties rank the lower column first).
@inline(__always)
public func vcountAhead(_ x: UnsafePointer<Float>, _ range: Range<Int>, threshold t: Float, tieBefore: Int) -> Int {
    var count = 0
    var j = range.lowerBound
    let t8 = SIMD8<Float>(repeating: t)
    var c8 = SIMD8<Int32>(repeating: 0)
    let lane = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
    let tie = SIMD8<Int32>(repeating: Int32(clamping: tieBefore))
    while j + 8 <= range.upperBound {
        let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
        let idx = lane &+ Int32(truncatingIfNeeded: j)
        // A true lane of a mask is all ones (−1 as Int32): subtracting counts it.
        let greater = unsafeBitCast(v .> t8, to: SIMD8<Int32>.self)
        let tied = unsafeBitCast(v .== t8, to: SIMD8<Int32>.self) & unsafeBitCast(idx .< tie, to: SIMD8<Int32>.self)
        c8 &-= greater | tied
        j += 8
    }
    count = Int(c8.wrappedSum())
    while j < range.upperBound {
        if x[j] > t || (x[j] == t && j < tieBefore) { count += 1 }
        j += 1
    }
    return count
}
