// Counting the scores ahead of one item: the inner loop of next-item NDCG (progressive
// validation ranks every logged item among N scores, B·N comparisons per step). No gradient.

/// How many of x[0..<n] exceed v (`orEqual`: are at least v). NaN counts as neither.
/// Eight lanes at a time; the result equals the plain loop's.
public func count_above(_ x: UnsafePointer<Float>, _ n: Int, _ v: Float, orEqual: Bool) -> Int {
    let vv = SIMD8<Float>(repeating: v), one = SIMD8<Int32>(repeating: 1), zero = SIMD8<Int32>(repeating: 0)
    var acc = zero
    var i = 0
    let raw = UnsafeRawPointer(x)
    if orEqual {
        while i + 8 <= n { acc &+= zero.replacing(with: one, where: raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) .>= vv); i += 8 }
    } else {
        while i + 8 <= n { acc &+= zero.replacing(with: one, where: raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) .> vv); i += 8 }
    }
    var count = Int(acc.wrappedSum())
    while i < n {
        if orEqual ? x[i] >= v : x[i] > v { count += 1 }
        i += 1
    }
    return count
}
