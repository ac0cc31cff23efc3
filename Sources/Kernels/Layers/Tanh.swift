import Foundation
import StreamRecNumerics

// Hyperbolic tangent: squashes an actor's output (DDPG) into [−1, 1].

/// out[N] = tanh(inp[N]); in place is allowed (out == inp). Eight lanes at a time (`vtanh`:
/// libm's tanhf was a tenth of a BCQ step).
public func tanh_forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
    vtanh(out: out, inp, N)
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
