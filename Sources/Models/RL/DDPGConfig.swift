import Kernels

/// DDPG settings (`model:` with `kind: ddpg`; `configs/ddpg.yaml`). Shapes default to DBRL's:
/// H = 10 recent items, embeddings (and actions) of 32, hidden layers of 64.
public struct DDPGConfig: Codable, Sendable, Equatable {
    /// Items in a state (the transitions' history length; batches with another H are refused).
    public var historyLength: Int = 10
    /// Width of the user and item input rows, of the action vector and of the item action table.
    public var embeddingSize: Int = 32
    /// Width of the actor's and the critic's hidden layer.
    public var hiddenSize: Int = 64
    /// Adam's learning rate for the actor, the item action table and the embedding rows (one
    /// online pass: 3e-3 learns the planted data's ranking in a pass where 1e-3 is still short).
    public var learningRate: Float = 3e-3
    /// Adam's learning rate for the critic.
    public var criticLearningRate: Float = 1e-3
    /// Discount of the TD target r + γ(1 − done)·Q'(s', μ'(s')).
    public var gamma: Float = 0.99
    /// Soft target update: target ← τ·online + (1 − τ)·target after every step.
    public var tau: Float = 0.01
    /// Weight of the behaviour-cloning term: the softmax cross-entropy of the logged item under
    /// the actor's item scores μ(s)·E + bE (the term that makes the scores rank the logged item).
    public var bcWeight: Float = 1
    /// α of the actor's critic term −α·Q(s, μ(s)) / mean|Q| (TD3+BC's normalisation: the term's
    /// size does not depend on the scale of the rewards). 0 = behaviour cloning only.
    public var actorQWeight: Float = 0.1
    /// The behaviour-cloning softmax runs over every item while the catalogue has at most this
    /// many item ids; beyond, over each step's logged items and `sampled_items` items drawn from
    /// a proposal (sampled softmax with the log-Q correction), so a step's cost stops growing
    /// with the catalogue. The item table's gradients then travel as sparse rows.
    public var fullSoftmaxItems: Int = 5_000
    /// Items drawn per step for the sampled softmax (shared by the batch).
    public var sampledItems: Int = 1024
    /// User and item input rows start uniform in ±embedding_init_scale (deterministic per id and seed).
    public var embeddingInitScale: Float = 0.05
    /// Item action rows E_j start uniform in ±action_init_scale: large enough that dot products
    /// with an action vary from the first step (the scores' range), not only the biases.
    public var actionInitScale: Float = 1
    public var seed: UInt64 = 42

    public init() {}

    /// Adam for the actor phase (actor, item table, rows) and for the critic.
    public var optimizer: AdamConfig { AdamConfig(learningRate: learningRate) }
    public var criticOptimizer: AdamConfig { AdamConfig(learningRate: criticLearningRate) }

    /// Width of the state: the user's row and the H items' rows, concatenated.
    public var stateWidth: Int { (historyLength + 1) * embeddingSize }

    enum CodingKeys: String, CodingKey {
        case historyLength = "history_length", embeddingSize = "embedding_size", hiddenSize = "hidden_size"
        case learningRate = "learning_rate", criticLearningRate = "critic_learning_rate", gamma, tau
        case bcWeight = "bc_weight", actorQWeight = "actor_q_weight", embeddingInitScale = "embedding_init_scale"
        case fullSoftmaxItems = "full_softmax_items", sampledItems = "sampled_items"
        case actionInitScale = "action_init_scale", seed
    }

    /// Absent keys take the defaults above. `kind` (the family, in a config's `model:`) is ignored.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DDPGConfig()
        historyLength = try c.decodeIfPresent(Int.self, forKey: .historyLength) ?? d.historyLength
        embeddingSize = try c.decodeIfPresent(Int.self, forKey: .embeddingSize) ?? d.embeddingSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        criticLearningRate = try c.decodeIfPresent(Float.self, forKey: .criticLearningRate) ?? d.criticLearningRate
        gamma = try c.decodeIfPresent(Float.self, forKey: .gamma) ?? d.gamma
        tau = try c.decodeIfPresent(Float.self, forKey: .tau) ?? d.tau
        bcWeight = try c.decodeIfPresent(Float.self, forKey: .bcWeight) ?? d.bcWeight
        actorQWeight = try c.decodeIfPresent(Float.self, forKey: .actorQWeight) ?? d.actorQWeight
        fullSoftmaxItems = try c.decodeIfPresent(Int.self, forKey: .fullSoftmaxItems) ?? d.fullSoftmaxItems
        sampledItems = try c.decodeIfPresent(Int.self, forKey: .sampledItems) ?? d.sampledItems
        embeddingInitScale = try c.decodeIfPresent(Float.self, forKey: .embeddingInitScale) ?? d.embeddingInitScale
        actionInitScale = try c.decodeIfPresent(Float.self, forKey: .actionInitScale) ?? d.actionInitScale
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    }

    /// Rejects settings the model cannot run, with a message naming the setting.
    public func validate() throws {
        func fail(_ m: String) -> ModelError { .invalidConfig(m) }
        if historyLength <= 0 { throw fail("history_length must be positive (got \(historyLength))") }
        if embeddingSize <= 0 { throw fail("embedding_size must be positive (got \(embeddingSize))") }
        if hiddenSize <= 0 { throw fail("hidden_size must be positive (got \(hiddenSize))") }
        if !(learningRate > 0) { throw fail("learning_rate must be positive (got \(learningRate))") }
        if !(criticLearningRate > 0) { throw fail("critic_learning_rate must be positive (got \(criticLearningRate))") }
        if !(gamma >= 0 && gamma < 1) { throw fail("gamma must be in [0, 1) (got \(gamma)): the critic's TD target needs a discount below 1") }
        if !(tau > 0 && tau <= 1) { throw fail("tau must be in (0, 1] (got \(tau))") }
        if !(bcWeight >= 0) { throw fail("bc_weight must be non-negative (got \(bcWeight))") }
        if !(actorQWeight >= 0) { throw fail("actor_q_weight must be non-negative (got \(actorQWeight))") }
        if !(bcWeight > 0 || actorQWeight > 0) { throw fail("bc_weight and actor_q_weight are both 0: the actor would not learn") }
        if fullSoftmaxItems < 3 { throw fail("full_softmax_items must be at least 3 (got \(fullSoftmaxItems)): ids 0 and 1 are never scored") }
        if sampledItems < 1 { throw fail("sampled_items must be at least 1 (got \(sampledItems)): the sampled softmax needs negatives") }
        if !(embeddingInitScale >= 0) { throw fail("embedding_init_scale must be non-negative (got \(embeddingInitScale))") }
        if !(actionInitScale >= 0) { throw fail("action_init_scale must be non-negative (got \(actionInitScale))") }
    }
}
