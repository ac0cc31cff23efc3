import Foundation
import StreamRecNumerics

/// Adam hyper-parameters. `epsilon` is added to √v̂ as in the original paper.
public struct AdamConfig: Codable, Sendable, Equatable {
    public var learningRate: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    enum CodingKeys: String, CodingKey {
        case learningRate = "learning_rate", beta1, beta2, epsilon
    }

    /// Step size with both bias corrections folded in, for step t ≥ 1.
    @inline(__always)
    func correctedRate(step t: Int) -> Float {
        let b1 = 1 - pow(Double(beta1), Double(t))
        let b2 = 1 - pow(Double(beta2), Double(t))
        return Float(Double(learningRate) * b2.squareRoot() / b1)
    }
}

/// One Adam step over `count` parameters: m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
/// p ← p − α_t · m / (√v + ε·√(1−β2^t)), α_t = lr·√(1−β2^t)/(1−β1^t)
/// (algebraically the paper's p − lr·m̂/(√v̂ + ε)).
public func adam_update(
    params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>,
    m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
    count: Int, step t: Int, config c: AdamConfig, gradScale: Float = 1
) {
    let rate = c.correctedRate(step: t)
    let eps = Float(Double(c.epsilon) * (1 - pow(Double(c.beta2), Double(t))).squareRoot())
    let b1 = c.beta1, b2 = c.beta2, nb1 = 1 - c.beta1, nb2 = 1 - c.beta2
    // Eight lanes at a time: the same operations in the same order as the scalar tail (IEEE
    // sqrt and division are correctly rounded in both), so the result does not depend on where
    // a row starts — a dense table and its rows updated one by one get the same bits.
    var i = 0
    while i + 8 <= count {
        let pp = UnsafeMutableRawPointer(params + i), mp = UnsafeMutableRawPointer(m + i), vp = UnsafeMutableRawPointer(v + i)
        let g = UnsafeRawPointer(grads + i).loadUnaligned(as: SIMD8<Float>.self) * gradScale
        let mi = b1 * mp.loadUnaligned(as: SIMD8<Float>.self) + nb1 * g
        let vi = b2 * vp.loadUnaligned(as: SIMD8<Float>.self) + nb2 * g * g
        mp.storeBytes(of: mi, as: SIMD8<Float>.self)
        vp.storeBytes(of: vi, as: SIMD8<Float>.self)
        pp.storeBytes(of: pp.loadUnaligned(as: SIMD8<Float>.self) - rate * mi / (sqrt8(vi) + eps), as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        defer { i += 1 }
        let g = grads[i] * gradScale
        let mi = b1 * m[i] + nb1 * g
        let vi = b2 * v[i] + nb2 * g * g
        m[i] = mi
        v[i] = vi
        params[i] -= rate * mi / (sqrt1(vi) + eps)
    }
}
