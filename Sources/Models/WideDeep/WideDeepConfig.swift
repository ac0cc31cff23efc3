import Kernels
/// Wide&Deep settings, as in MindSpore's online-learning `default_config.yaml`
/// (`configs/widedeep.yaml` holds the same values; the `small` preset shrinks the deep part).
public struct WideDeepConfig: Codable, Sendable, Equatable {
    public var fieldCount: Int = 39
    public var embeddingSize: Int = 80
    public var deepLayers: [Int] = [1024, 512, 256, 128]
    /// L2 on the deep embedding rows a step touches (part of `deep_loss`).
    public var l2Coef: Float = 8e-5
    public var deepOptimizer = AdamConfig(learningRate: 3.5e-4)
    public var embeddingOptimizer = AdamConfig(learningRate: 3.5e-4)
    public var wideOptimizer = FTRLConfig()
    /// Deep embedding rows start uniform in ±initScale (deterministic per id and seed).
    public var embeddingInitScale: Float = 0.05
    public var seed: UInt64 = 42

    public init() {}

    public static let large = WideDeepConfig()
    public static var small: WideDeepConfig {
        var c = WideDeepConfig()
        c.embeddingSize = 16
        c.deepLayers = [400, 400, 400]
        return c
    }

    public static func preset(_ name: String) -> WideDeepConfig? {
        switch name {
        case "large", "default": return .large
        case "small": return .small
        default: return nil
        }
    }

    /// Input width of the deep part: every field's embedding, concatenated.
    public var deepInputWidth: Int { fieldCount * embeddingSize }

    /// Multiply-adds of the dense layers per sample; forward is 2× this in FLOPs and a training
    /// step (forward, weight gradients, input gradients) 6×.
    public var denseMACsPerSample: Int {
        var width = deepInputWidth, macs = 0
        for h in deepLayers + [1] { macs += width * h; width = h }
        return macs
    }

    public var trainingFLOPsPerSample: Int { 6 * denseMACsPerSample }

    enum CodingKeys: String, CodingKey {
        case fieldCount = "field_count", embeddingSize = "embedding_size", deepLayers = "deep_layers"
        case l2Coef = "l2_coef", deepOptimizer = "deep_optimizer"
        case embeddingOptimizer = "embedding_optimizer", wideOptimizer = "wide_optimizer"
        case embeddingInitScale = "embedding_init_scale", seed
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = WideDeepConfig()
        fieldCount = try c.decodeIfPresent(Int.self, forKey: .fieldCount) ?? d.fieldCount
        embeddingSize = try c.decodeIfPresent(Int.self, forKey: .embeddingSize) ?? d.embeddingSize
        deepLayers = try c.decodeIfPresent([Int].self, forKey: .deepLayers) ?? d.deepLayers
        l2Coef = try c.decodeIfPresent(Float.self, forKey: .l2Coef) ?? d.l2Coef
        deepOptimizer = try c.decodeIfPresent(AdamConfig.self, forKey: .deepOptimizer) ?? d.deepOptimizer
        embeddingOptimizer = try c.decodeIfPresent(AdamConfig.self, forKey: .embeddingOptimizer) ?? d.embeddingOptimizer
        wideOptimizer = try c.decodeIfPresent(FTRLConfig.self, forKey: .wideOptimizer) ?? d.wideOptimizer
        embeddingInitScale = try c.decodeIfPresent(Float.self, forKey: .embeddingInitScale) ?? d.embeddingInitScale
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    }

    /// Rejects shapes the model cannot run, with a message naming the setting.
    public func validate() throws {
        func fail(_ m: String) -> ModelError { .invalidConfig(m) }
        if fieldCount <= 0 { throw fail("field_count must be positive (got \(fieldCount))") }
        if embeddingSize <= 0 { throw fail("embedding_size must be positive (got \(embeddingSize))") }
        if deepLayers.isEmpty || deepLayers.contains(where: { $0 <= 0 }) {
            throw fail("deep_layers must be a non-empty list of positive widths (got \(deepLayers))")
        }
        if !(deepOptimizer.learningRate > 0) || !(embeddingOptimizer.learningRate > 0) || !(wideOptimizer.learningRate > 0) {
            throw fail("learning rates must be positive")
        }
    }
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case incompatibleTensor(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): return "invalid model config: \(m)"
        case .incompatibleTensor(let m): return "incompatible model tensors: \(m)"
        }
    }
}
