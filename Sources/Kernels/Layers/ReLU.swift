/// out[N] = max(0, inp[N]); in place is allowed (out == inp).
public func relu_forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
    for i in 0..<N { out[i] = max(inp[i], 0) }
}

/// dinp[N] = dout[N] · [out > 0], from the forward *output* (positive exactly where the input
/// was); writes rather than accumulates, so it may run in place on dout.
public func relu_backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                          out: UnsafePointer<Float>, N: Int) {
    for i in 0..<N { dinp[i] = out[i] > 0 ? dout[i] : 0 }
}
