import Foundation
import Models
import Features
import StreamRecNumerics

// The cost of one REINFORCE step as a function of the catalogue (issue 11, "Large catalogues"):
// a model whose item tables already span `items` ids, trained on in-memory transitions whose
// items are drawn Zipf-like (log-uniform by id) over the whole catalogue, with the full and with
// the sampled softmax. Nothing else runs: no parsing, no checkpoints.

public struct ReinforceStepResult: Codable, Sendable {
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
/// softmax forced to `sampled` or full whatever `config.fullSoftmaxItems` says.
public func runReinforceStepBenchmark(config: ReinforceConfig, items: Int, sampled: Bool, batchSize B: Int,
                                      steps: Int, seed: UInt64 = 7) -> ReinforceStepResult {
    var c = config
    c.fullSoftmaxItems = sampled ? 3 : Int.max
    let model = ReinforceModel(config: c)
    model.reserveItems(through: Int32(items - 1))
    var rng = SplitMix64(seed: seed)
    let logRange = log(Double(items - 1))
    func item() -> Int32 {
        let u = Double(rng.next() >> 11) * 0x1p-53
        return Int32(min(max(Int(exp(u * logRange)), 2), items - 1))
    }
    let H = c.historyLength
    let batches: [TransitionBatch] = (0..<(steps + 3)).map { _ in
        var t = TransitionBatch(historyLength: H)
        for _ in 0..<B {
            t.append(user: Int32(rng.next() % 100_000), state: (0..<H).map { _ in item() }, action: item(),
                     reward: 1, done: false, time: 0)
        }
        return t
    }
    let g = model.makeGradients()
    for b in batches.prefix(3) { model.trainStep(b, grads: g) }
    let start = Date()
    for b in batches.dropFirst(3) { model.trainStep(b, grads: g) }
    let seconds = Date().timeIntervalSince(start)
    return ReinforceStepResult(items: items, softmax: sampled ? "sampled" : "full",
                               configDefault: sampled == (items > config.fullSoftmaxItems), batchSize: B, steps: steps,
                               stepMilliseconds: seconds * 1000 / Double(steps),
                               transitionsPerSecond: Double(steps * B) / seconds)
}
