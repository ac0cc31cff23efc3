extension AdamConfig {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? 0.9
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? 0.999
        epsilon = try c.decodeIfPresent(Float.self, forKey: .epsilon) ?? 1e-8
    }
}

extension FTRLConfig {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = FTRLConfig()
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        l1 = try c.decodeIfPresent(Float.self, forKey: .l1) ?? d.l1
        l2 = try c.decodeIfPresent(Float.self, forKey: .l2) ?? d.l2
        initialAccumulator = try c.decodeIfPresent(Float.self, forKey: .initialAccumulator) ?? d.initialAccumulator
    }
}
