import Foundation
import Models
import Features
import StreamRecNumerics

// The cost of one RL step as a function of the catalogue (issue 11, "Large catalogues"), for
// REINFORCE, DDPG or BCQ: a model whose item tables already span `items` ids, trained on
// in-memory transitions whose items are drawn Zipf-like (log-uniform by id) over the whole
// catalogue, with the full and with the sampled softmax. Nothing else runs: no parsing, no
// checkpoints, no collectives (an actor-critic step is its two phases, single-process).

/// A family's config for the step benchmark.
public enum RLStepModel: Sendable {
    case reinforce(ReinforceConfig), ddpg(DDPGConfig), bcq(BCQConfig)

    public var family: String {
        switch self { case .reinforce: "reinforce"; case .ddpg: "ddpg"; case .bcq: "bcq" }
    }
    public var fullSoftmaxItems: Int {
        switch self { case .reinforce(let c): c.fullSoftmaxItems; case .ddpg(let c): c.fullSoftmaxItems; case .bcq(let c): c.fullSoftmaxItems }
    }
    public var sampledItems: Int {
        switch self { case .reinforce(let c): c.sampledItems; case .ddpg(let c): c.sampledItems; case .bcq(let c): c.sampledItems }
    }
    var historyLength: Int {
        switch self { case .reinforce(let c): c.historyLength; case .ddpg(let c): c.historyLength; case .bcq(let c): c.historyLength }
    }

    /// A fresh model with the softmax forced (sampled: full_softmax_items 3; full: never sampled)
    /// and its tables grown to `items` ids; returns its single-process step.
    func makeStep(sampled: Bool, items: Int) -> (TransitionBatch) -> Void {
        let full = sampled ? 3 : Int.max, top = Int32(items - 1)
        switch self {
        case .reinforce(var c):
            c.fullSoftmaxItems = full
            let model = ReinforceModel(config: c)
            model.reserveItems(through: top)
            let g = model.makeGradients()
            return { model.trainStep($0, grads: g) }
        case .ddpg(var c):
            c.fullSoftmaxItems = full
            let model = DDPGModel(config: c)
            model.reserveItems(through: top)
            let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
            return { model.trainStep($0, critic: gc, actor: ga) }
        case .bcq(var c):
            c.fullSoftmaxItems = full
            let model = BCQModel(config: c)
            model.reserveItems(through: top)
            let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
            return { model.trainStep($0, critic: gc, actor: ga) }
        }
    }
}

public struct RLStepResult: Codable, Sendable {
    public var family: String
    public var items: Int
    /// "full" or "sampled".
    public var softmax: String
    /// Whether `full_softmax_items` of the config picks this softmax at this item count.
    public var configDefault: Bool
    public var batchSize: Int
    public var steps: Int
    public var stepMilliseconds: Double
    public var transitionsPerSecond: Double
}

/// Times `steps` single-process steps (after 3 untimed ones) at `items` item ids, with the
/// softmax forced to `sampled` or full whatever the config's `full_softmax_items` says.
public func runRLStepBenchmark(model m: RLStepModel, items: Int, sampled: Bool, batchSize B: Int,
                               steps: Int, seed: UInt64 = 7) -> RLStepResult {
    let step = m.makeStep(sampled: sampled, items: items)
    var rng = SplitMix64(seed: seed)
    let logRange = log(Double(items - 1))
    func item() -> Int32 {
        let u = Double(rng.next() >> 11) * 0x1p-53
        return Int32(min(max(Int(exp(u * logRange)), 2), items - 1))
    }
    let H = m.historyLength
    let batches: [TransitionBatch] = (0..<(steps + 3)).map { _ in
        var t = TransitionBatch(historyLength: H)
        for _ in 0..<B {
            t.append(user: Int32(rng.next() % 100_000), state: (0..<H).map { _ in item() }, action: item(),
                     reward: 1, done: false, time: 0)
        }
        return t
    }
    for b in batches.prefix(3) { step(b) }
    let start = Date()
    for b in batches.dropFirst(3) { step(b) }
    let seconds = Date().timeIntervalSince(start)
    return RLStepResult(family: m.family, items: items, softmax: sampled ? "sampled" : "full",
                        configDefault: sampled == (items > m.fullSoftmaxItems), batchSize: B, steps: steps,
                        stepMilliseconds: seconds * 1000 / Double(steps),
                        transitionsPerSecond: Double(steps * B) / seconds)
}
