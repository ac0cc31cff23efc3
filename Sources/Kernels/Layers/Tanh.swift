import Foundation

// Hyperbolic tangent: squashes an actor's output (DDPG) into [−1, 1].

/// out[N] = tanh(inp[N]); in place is allowed (out == inp).
public func tanh_forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
    for i in 0..<N { out[i] = tanh(inp[i]) }
}

/// Accumulates: dinp[N] += dout[N] · (1 − out²), from the forward *output* so the input need
/// not be kept.
public func tanh_backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                          out: UnsafePointer<Float>, N: Int) {
    for i in 0..<N {
        let y = out[i]
        dinp[i] += dout[i] * (1 - y * y)
    }
}
