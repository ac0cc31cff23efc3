#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@inline(__always) func Foundation_log(_ x: Double) -> Double { log(x) }
@inline(__always) func Foundation_cos(_ x: Double) -> Double { cos(x) }

/// Numerically stable logistic function.
@inline(__always)
public func sigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}

/// log(1 + exp(x)) without overflow.
@inline(__always)
public func softplus(_ x: Float) -> Float {
    x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x))
}

/// Binary cross-entropy of a logit against a 0/1 label: softplus(z) − y·z (stable form).
@inline(__always)
public func logLoss(logit z: Float, label y: Float) -> Float {
    softplus(z) - y * z
}
