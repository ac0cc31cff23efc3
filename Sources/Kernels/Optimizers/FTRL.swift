/// FTRL-Proximal (McMahan et al. 2013) with learning-rate power −0.5, as TensorFlow and
/// MindSpore implement it. Per coordinate it keeps an accumulator n (Σg², starting at
/// `initialAccumulator`) and a linear term z.
public struct FTRLConfig: Codable, Sendable, Equatable {
    public var learningRate: Float
    public var l1: Float
    public var l2: Float
    public var initialAccumulator: Float

    public init(learningRate: Float = 5e-2, l1: Float = 1e-8, l2: Float = 1e-8, initialAccumulator: Float = 1) {
        self.learningRate = learningRate
        self.l1 = l1
        self.l2 = l2
        self.initialAccumulator = initialAccumulator
    }

    enum CodingKeys: String, CodingKey {
        case learningRate = "learning_rate", l1, l2
        case initialAccumulator = "initial_accumulator"
    }
}

/// One FTRL step for one coordinate:
/// n' = n + g²; z += g − (√n' − √n)/α · w; w = |z| ≤ l1 ? 0 : (sign(z)·l1 − z) / (√n'/α + 2·l2).
@inline(__always)
public func ftrl_update(weight w: inout Float, linear z: inout Float, accumulator n: inout Float,
                        grad g: Float, config c: FTRLConfig) {
    let nNew = n + g * g
    let sigma = (nNew.squareRoot() - n.squareRoot()) / c.learningRate
    z += g - sigma * w
    n = nNew
    if abs(z) <= c.l1 {
        w = 0
    } else {
        let sign: Float = z < 0 ? -1 : 1
        w = (sign * c.l1 - z) / (nNew.squareRoot() / c.learningRate + 2 * c.l2)
    }
}
