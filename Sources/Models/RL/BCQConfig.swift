import Kernels

/// BCQ settings (`model:` with `kind: bcq`; `configs/bcq.yaml`). Shapes default to DBRL's
/// (H = 10, embeddings and actions of 32, hidden 64); the BCQ constants to Fujimoto et al.'s
/// (λ = 0.75, Φ = 0.05, 10 sampled actions per next state, latent = 2 × action width).
public struct BCQConfig: Codable, Sendable, Equatable {
    /// Items in a state (the transitions' history length; batches with another H are refused).
    public var historyLength: Int = 10
    /// Width of the user and item input rows, of the action vector and of the item action table.
    public var embeddingSize: Int = 32
    /// Width of every network's hidden layer (VAE encoder and decoder, perturbation, critics).
    public var hiddenSize: Int = 64
    /// Width of the VAE's latent z (0 = 2 × embedding_size, as BCQ).
    public var latentSize: Int = 0
    /// Adam's learning rate for the VAE, the perturbation network, the item table and the rows.
    public var learningRate: Float = 3e-3
    /// Adam's learning rate for the twin critics.
    public var criticLearningRate: Float = 1e-3
    /// Discount of the TD target.
    public var gamma: Float = 0.99
    /// Soft target update: target ← τ·online + (1 − τ)·target after every step.
    public var tau: Float = 0.005
    /// λ of the clipped double-Q target: λ·min(Q1', Q2') + (1 − λ)·max(Q1', Q2').
    public var lambda: Float = 0.75
    /// Φ: the perturbation ξ(s, a) is bounded to ±Φ per coordinate.
    public var phi: Float = 0.05
    /// Actions decoded (and perturbed) per next state for the TD target; the best by the target
    /// critics counts.
    public var targetSamples: Int = 10
    /// Weight of the KL term in the VAE's loss ½‖â − a‖² + kl_weight·KL (BCQ: 0.5).
    public var klWeight: Float = 0.5
    /// Weight of the behaviour-cloning term: the softmax cross-entropy of the logged item under the
    /// served action's item scores (what makes the scores rank what users do). The VAE's
    /// reconstruction sums D squared errors per transition, the cross-entropy is one term: at 1
    /// the decoder follows the reconstruction alone and ranks little better than popularity.
    public var bcWeight: Float = 10
    /// α of the perturbation network's critic term −α·Q1(s, ã) / mean|Q1| (TD3+BC's scale).
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

    public var optimizer: AdamConfig { AdamConfig(learningRate: learningRate) }
    public var criticOptimizer: AdamConfig { AdamConfig(learningRate: criticLearningRate) }

    /// Width of the state: the user's row and the H items' rows, concatenated.
    public var stateWidth: Int { (historyLength + 1) * embeddingSize }
    /// The latent width in use.
    public var latentWidth: Int { latentSize > 0 ? latentSize : 2 * embeddingSize }

    enum CodingKeys: String, CodingKey {
        case historyLength = "history_length", embeddingSize = "embedding_size", hiddenSize = "hidden_size"
        case latentSize = "latent_size", learningRate = "learning_rate", criticLearningRate = "critic_learning_rate"
        case gamma, tau, lambda, phi, targetSamples = "target_samples", klWeight = "kl_weight"
        case bcWeight = "bc_weight", actorQWeight = "actor_q_weight", embeddingInitScale = "embedding_init_scale"
        case fullSoftmaxItems = "full_softmax_items", sampledItems = "sampled_items"
        case actionInitScale = "action_init_scale", seed
    }

    /// Absent keys take the defaults above. `kind` (the family, in a config's `model:`) is ignored.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = BCQConfig()
        historyLength = try c.decodeIfPresent(Int.self, forKey: .historyLength) ?? d.historyLength
        embeddingSize = try c.decodeIfPresent(Int.self, forKey: .embeddingSize) ?? d.embeddingSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        latentSize = try c.decodeIfPresent(Int.self, forKey: .latentSize) ?? d.latentSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        criticLearningRate = try c.decodeIfPresent(Float.self, forKey: .criticLearningRate) ?? d.criticLearningRate
        gamma = try c.decodeIfPresent(Float.self, forKey: .gamma) ?? d.gamma
        tau = try c.decodeIfPresent(Float.self, forKey: .tau) ?? d.tau
        lambda = try c.decodeIfPresent(Float.self, forKey: .lambda) ?? d.lambda
        phi = try c.decodeIfPresent(Float.self, forKey: .phi) ?? d.phi
        targetSamples = try c.decodeIfPresent(Int.self, forKey: .targetSamples) ?? d.targetSamples
        klWeight = try c.decodeIfPresent(Float.self, forKey: .klWeight) ?? d.klWeight
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
        if latentSize < 0 { throw fail("latent_size must be positive, or 0 for 2 × embedding_size (got \(latentSize))") }
        if !(learningRate > 0) { throw fail("learning_rate must be positive (got \(learningRate))") }
        if !(criticLearningRate > 0) { throw fail("critic_learning_rate must be positive (got \(criticLearningRate))") }
        if !(gamma >= 0 && gamma < 1) { throw fail("gamma must be in [0, 1) (got \(gamma)): the critics' TD target needs a discount below 1") }
        if !(tau > 0 && tau <= 1) { throw fail("tau must be in (0, 1] (got \(tau))") }
        if !(lambda >= 0 && lambda <= 1) { throw fail("lambda must be in [0, 1] (got \(lambda))") }
        if !(phi >= 0) { throw fail("phi must be non-negative (got \(phi))") }
        if targetSamples < 1 { throw fail("target_samples must be at least 1 (got \(targetSamples))") }
        if !(klWeight >= 0) { throw fail("kl_weight must be non-negative (got \(klWeight))") }
        if !(bcWeight >= 0) { throw fail("bc_weight must be non-negative (got \(bcWeight))") }
        if !(actorQWeight >= 0) { throw fail("actor_q_weight must be non-negative (got \(actorQWeight))") }
        if fullSoftmaxItems < 3 { throw fail("full_softmax_items must be at least 3 (got \(fullSoftmaxItems)): ids 0 and 1 are never scored") }
        if sampledItems < 1 { throw fail("sampled_items must be at least 1 (got \(sampledItems)): the sampled softmax needs negatives") }
        if !(embeddingInitScale >= 0) { throw fail("embedding_init_scale must be non-negative (got \(embeddingInitScale))") }
        if !(actionInitScale >= 0) { throw fail("action_init_scale must be non-negative (got \(actionInitScale))") }
    }
}
