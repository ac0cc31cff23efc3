import Kernels

/// REINFORCE settings (`model:` with `kind: reinforce`; `configs/reinforce.yaml`). The shapes
/// default to DBRL's: H = 10 recent items, embeddings of 32, a hidden layer of 64.
public struct ReinforceConfig: Codable, Sendable, Equatable {
    /// Items in a state (the transitions' history length; batches with another H are refused).
    public var historyLength: Int = 10
    /// Width of the user and item input embeddings and of the policy's output vector.
    public var embeddingSize: Int = 32
    /// Width of the policy's hidden layer (β reads it, with its gradient stopped).
    public var hiddenSize: Int = 64
    /// Adam's learning rate for the dense parameters (the MLP and the output item tables).
    public var learningRate: Float = 3e-3
    /// Adam's learning rate for the user and item input rows. A row is updated only in the steps
    /// that touch it, a few dozen times in a pass, so it takes larger steps than the dense MLP
    /// (1e-2 vs 3e-3: held-out NDCG@10 +18 % over three seeds, docs/BENCHMARKS.md).
    public var embeddingLearningRate: Float = 1e-2
    /// γ: discount of the return within a session, G = Σ_k γ^k r_k over the batch's reward window
    /// (see `ReinforceModel`).
    public var gamma: Float = 0.99
    /// K of the top-K correction λ = K·(1 − π(a|s))^(K−1) (1 = plain REINFORCE).
    public var topK: Int = 10
    /// Cap on the importance weight π(a|s)/β(a|s). 1 (never up-weight) learns fastest in one
    /// pass on `gen behavior` data (docs/BENCHMARKS.md); the paper's larger caps are noisier.
    public var weightCap: Float = 1
    /// Weight of β's cross-entropy in the step's loss (it trains only β's head).
    public var betaLossWeight: Float = 1
    /// The softmaxes run over every item while the catalogue has at most this many item ids;
    /// beyond, over each step's true items and `sampled_items` items drawn from a proposal
    /// (sampled softmax with the log-Q correction), so a step's cost stops growing with the
    /// catalogue. The item tables' gradients then travel as sparse rows.
    public var fullSoftmaxItems: Int = 5_000
    /// Items drawn per step for the sampled softmax (shared by the batch).
    public var sampledItems: Int = 1024
    /// The recent-items path: the state vector h gets `recent_weight` × the policy's output item
    /// rows of the state's last `recent_items` items, so an item's score holds its similarity to
    /// what the user just consumed in the table every step trains (0 = off). On `gen behavior`
    /// data: held-out NDCG@10 0.066 → 0.123 (3 seeds; docs/BENCHMARKS.md).
    public var recentItems: Int = 3
    public var recentWeight: Float = 2
    /// Embedding rows and output item rows start uniform in ±init_scale (deterministic per id and seed).
    public var embeddingInitScale: Float = 0.05
    public var seed: UInt64 = 42

    public init() {}

    /// Adam for every parameter.
    public var optimizer: AdamConfig { AdamConfig(learningRate: learningRate) }

    /// Adam for the user and item input rows.
    public var embeddingOptimizer: AdamConfig { AdamConfig(learningRate: embeddingLearningRate) }

    /// Width of the policy's input: the user's row and the H items' rows, concatenated.
    public var stateWidth: Int { (historyLength + 1) * embeddingSize }

    enum CodingKeys: String, CodingKey {
        case historyLength = "history_length", embeddingSize = "embedding_size", hiddenSize = "hidden_size"
        case learningRate = "learning_rate", embeddingLearningRate = "embedding_learning_rate", gamma, topK = "top_k", weightCap = "weight_cap"
        case fullSoftmaxItems = "full_softmax_items", sampledItems = "sampled_items"
        case recentItems = "recent_items", recentWeight = "recent_weight"
        case betaLossWeight = "beta_loss_weight", embeddingInitScale = "embedding_init_scale", seed
    }

    /// Absent keys take the defaults above. `kind` (the family, in a config's `model:`) is ignored.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ReinforceConfig()
        historyLength = try c.decodeIfPresent(Int.self, forKey: .historyLength) ?? d.historyLength
        embeddingSize = try c.decodeIfPresent(Int.self, forKey: .embeddingSize) ?? d.embeddingSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        embeddingLearningRate = try c.decodeIfPresent(Float.self, forKey: .embeddingLearningRate) ?? d.embeddingLearningRate
        gamma = try c.decodeIfPresent(Float.self, forKey: .gamma) ?? d.gamma
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        weightCap = try c.decodeIfPresent(Float.self, forKey: .weightCap) ?? d.weightCap
        betaLossWeight = try c.decodeIfPresent(Float.self, forKey: .betaLossWeight) ?? d.betaLossWeight
        fullSoftmaxItems = try c.decodeIfPresent(Int.self, forKey: .fullSoftmaxItems) ?? d.fullSoftmaxItems
        sampledItems = try c.decodeIfPresent(Int.self, forKey: .sampledItems) ?? d.sampledItems
        recentItems = try c.decodeIfPresent(Int.self, forKey: .recentItems) ?? d.recentItems
        recentWeight = try c.decodeIfPresent(Float.self, forKey: .recentWeight) ?? d.recentWeight
        embeddingInitScale = try c.decodeIfPresent(Float.self, forKey: .embeddingInitScale) ?? d.embeddingInitScale
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    }

    /// Rejects settings the model cannot run, with a message naming the setting.
    public func validate() throws {
        func fail(_ m: String) -> ModelError { .invalidConfig(m) }
        if historyLength <= 0 { throw fail("history_length must be positive (got \(historyLength))") }
        if embeddingSize <= 0 { throw fail("embedding_size must be positive (got \(embeddingSize))") }
        if hiddenSize <= 0 { throw fail("hidden_size must be positive (got \(hiddenSize))") }
        if !(learningRate > 0) { throw fail("learning_rate must be positive (got \(learningRate))") }
        if !(embeddingLearningRate > 0) { throw fail("embedding_learning_rate must be positive (got \(embeddingLearningRate))") }
        if !(gamma >= 0 && gamma <= 1) { throw fail("gamma must be in [0, 1] (got \(gamma))") }
        if topK < 1 { throw fail("top_k must be at least 1 (got \(topK))") }
        if !(weightCap > 0) { throw fail("weight_cap must be positive (got \(weightCap))") }
        if !(betaLossWeight >= 0) { throw fail("beta_loss_weight must be non-negative (got \(betaLossWeight))") }
        if fullSoftmaxItems < 3 { throw fail("full_softmax_items must be at least 3 (got \(fullSoftmaxItems))") }
        if sampledItems < 1 { throw fail("sampled_items must be at least 1 (got \(sampledItems))") }
        if recentItems < 0 || recentItems > historyLength {
            throw fail("recent_items must be in 0…history_length (\(historyLength)) (got \(recentItems))")
        }
        if !recentWeight.isFinite { throw fail("recent_weight must be a finite number (got \(recentWeight))") }
        if !(embeddingInitScale >= 0) { throw fail("embedding_init_scale must be non-negative (got \(embeddingInitScale))") }
    }
}
