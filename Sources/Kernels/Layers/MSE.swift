// Weighted squared error for critics (DDPG, BCQ): q regresses on a bootstrapped target y that
// is held constant (computed from target networks), so only q gets a gradient.

/// Returns Σ_b w_b · (q[b] − y[b])² for q[B], y[B], weights[B] (nil means 1).
public func weighted_mse_forward(
    q: UnsafePointer<Float>, y: UnsafePointer<Float>, weights: UnsafePointer<Float>?, B: Int
) -> Double {
    var total = 0.0
    for b in 0..<B {
        let e = Double(q[b]) - Double(y[b])
        total += Double(weights?[b] ?? 1) * e * e
    }
    return total
}

/// Accumulates: dq[B] += dloss · 2 · w_b · (q[b] − y[b]).
public func weighted_mse_backward(
    dq: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, y: UnsafePointer<Float>,
    weights: UnsafePointer<Float>?, dloss: Float, B: Int
) {
    for b in 0..<B { dq[b] += 2 * dloss * (weights?[b] ?? 1) * (q[b] - y[b]) }
}
