import Foundation
import StreamRecNumerics

// Row-wise softmax over N logits, for a policy over the item catalogue (REINFORCE, Chen et al.
// 2019). Optionally a list of `masked` columns is excluded from every row (e.g. item id 0, the
// padding, and 1, the OOV id, when column j scores item j): their logit counts as −∞, so their
// probability is exactly 0 and they receive no gradient. At least one column must stay unmasked.

/// Copies row `z[N]` to `y[N]` with masked columns at −∞; returns its max and Σ exp(y − max).
/// The max is subtracted before exp so that large logits cannot overflow.
@inline(__always)
private func maskedRowMaxSum(
    y: UnsafeMutablePointer<Float>, z: UnsafePointer<Float>,
    masked: UnsafePointer<Int32>?, M: Int, N: Int
) -> (max: Float, sum: Float) {
    y.update(from: z, count: N)
    if let masked { for m in 0..<M { y[Int(masked[m])] = -.infinity } }
    var mx = -Float.infinity
    for j in 0..<N { mx = max(mx, y[j]) }
    var sum: Float = 0
    for j in 0..<N { sum += exp(y[j] - mx) }  // exp(−∞) = 0 for masked columns
    return (mx, sum)
}

/// logp[B×N] = log softmax(logits[B×N]) per row; masked[M] columns get −∞.
public func log_softmax_forward(
    logp: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
    masked: UnsafePointer<Int32>?, M: Int, B: Int, N: Int
) {
    for b in 0..<B {
        let y = logp + b * N
        let (mx, sum) = maskedRowMaxSum(y: y, z: logits + b * N, masked: masked, M: M, N: N)
        let lse = mx + log(sum)
        for j in 0..<N { y[j] -= lse }
    }
}

/// Accumulates: dlogits[b,j] += dlogp[b,j] − p[b,j] · Σ_k dlogp[b,k], p = exp(logp), over the
/// unmasked columns only (a −∞ in `logp` marks a masked one, which gets no gradient).
public func log_softmax_backward(
    dlogits: UnsafeMutablePointer<Float>, dlogp: UnsafePointer<Float>, logp: UnsafePointer<Float>,
    B: Int, N: Int
) {
    for b in 0..<B {
        let g = dlogp + b * N, y = logp + b * N, dz = dlogits + b * N
        var s: Float = 0
        for j in 0..<N where y[j] != -.infinity { s += g[j] }
        for j in 0..<N where y[j] != -.infinity { dz[j] += g[j] - exp(y[j]) * s }
    }
}

/// Weighted softmax cross-entropy, fused so the backward is the short p − onehot.
/// probs[B×N] = softmax(logits[B×N]) (masked columns 0); logp[B] = log probs[b, actions[b]]:
/// exactly one value per sample, from its own row and action (the REINFORCE log π(a_b|s_b)).
/// Returns Σ_b w_b · (−logp[b]) (a sum: callers scale). `weights` nil means all 1.
/// An action must not be masked (its loss would be +∞).
public func softmax_cross_entropy_forward(
    probs: UnsafeMutablePointer<Float>, logp: UnsafeMutablePointer<Float>,
    logits: UnsafePointer<Float>, actions: UnsafePointer<Int32>, weights: UnsafePointer<Float>?,
    masked: UnsafePointer<Int32>?, M: Int, B: Int, N: Int
) -> Double {
    var total = 0.0
    for b in 0..<B {
        let p = probs + b * N, z = logits + b * N
        // The hot loop of a policy over the catalogue: vectorised max, exp and scale (SIMD8, see
        // VectorMath.swift); each exp computed once and kept.
        var mx = vmax(z, N)
        var actionMasked = false
        if let masked {
            var maskedHoldsMax = false
            for m in 0..<M {
                if z[Int(masked[m])] >= mx { maskedHoldsMax = true }
                if masked[m] == actions[b] { actionMasked = true }
            }
            if maskedHoldsMax {  // rare: the shift must come from an unmasked column
                mx = -.infinity
                for j in 0..<N {
                    var isMasked = false
                    for m in 0..<M where Int(masked[m]) == j { isMasked = true }
                    if !isMasked { mx = max(mx, z[j]) }
                }
            }
        }
        var sum = vexpShifted(out: p, z, shift: mx, N)
        if let masked {
            // Summed again without them: subtracting a masked column's share would cancel badly.
            for m in 0..<M { p[Int(masked[m])] = 0 }
            sum = vsum(p, N)
        }
        let lp = actionMasked ? -Float.infinity : z[Int(actions[b])] - mx - log(sum)   // a masked action's loss is +∞
        logp[b] = lp
        vscale(p, 1 / sum, N)
        total -= Double(weights?[b] ?? 1) * Double(lp)
    }
    return total
}

/// Accumulates: dlogits[b,:] += dloss · w_b · (probs[b,:] − onehot(actions[b])). Masked columns
/// have probability 0 and so get nothing.
public func softmax_cross_entropy_backward(
    dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
    actions: UnsafePointer<Int32>, weights: UnsafePointer<Float>?, dloss: Float, B: Int, N: Int
) {
    for b in 0..<B {
        let g = dloss * (weights?[b] ?? 1)
        if g == 0 { continue }
        let p = probs + b * N, dz = dlogits + b * N
        for j in 0..<N { dz[j] += g * p[j] }
        dz[Int(actions[b])] -= g
    }
}
