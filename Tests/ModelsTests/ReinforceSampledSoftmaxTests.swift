import Testing
import Foundation
@testable import Models
import StreamRecNumerics
import Features

// REINFORCE beyond `full_softmax_items`: both softmaxes over the step's candidates with the log-Q
// correction, the item tables' gradients as sparse rows. Checked against finite differences of
// the Double reference restricted to the same candidates, and for the data-parallel split.

func sampledReinforceConfig(sampled: Int = 5) -> ReinforceConfig {
    var c = tinyReinforceConfig()
    c.fullSoftmaxItems = 4     // the tiny batches' 8 item ids are beyond it
    c.sampledItems = sampled
    return c
}

/// The dense-layout gradient vector of a sampled step: the MLP's from `dense`, the item tables'
/// from the sparse rows (merged), zero elsewhere; then the input rows as in the full case.
func assembledGradient(_ model: ReinforceModel, _ g: ReinforceGradients) -> [Float] {
    let D = model.config.embeddingSize
    var out = [Float](repeating: 0, count: model.layout.total)
    for i in 0..<g.denseCount { out[i] = g.dense[i] }
    for (table, weight, bias) in [(g.policyItems, "policy.items.weight", "policy.items.bias"),
                                  (g.betaItems, "beta.items.weight", "beta.items.bias")] {
        let m = table.merged(), w = model.layout.entry(weight)!.offset, b = model.layout.entry(bias)!.offset
        for (u, id) in m.ids.enumerated() {
            for d in 0..<D { out[w + Int(id) * D + d] += m.parts[0][u * D + d] }
            out[b + Int(id)] += m.parts[1][u]
        }
    }
    return out + g.users.parts[0] + g.items.parts[0]
}

@Suite struct ReinforceSampledSoftmaxTests {
    @Test("sampled softmax: the whole model's gradient matches finite differences of the loss over the same candidates")
    func sampledGradientMatchesFiniteDifferences() {
        let config = sampledReinforceConfig()
        let model = ReinforceModel(config: config)
        let batch = tinyTransitions(6, seed: 3)
        let g = model.makeGradients()
        let loss = model.computeGradients(batch, into: g)
        #expect(model.itemCount == 8 && model.usesSampledSoftmax)
        #expect(g.denseCount == model.mlpCount, "the dense gradient is the MLP's only")
        let samples = model.lastSampledItems
        #expect(samples.count == 5 && samples.allSatisfy { (2..<8).contains($0) })
        // The policy's table also gets the rows the recent-items path read (each state's last item), after the candidates'.
        let recent = (0..<6).map { batch.states[$0 * 2 + 1] }.filter { $0 >= 2 }
        #expect(!recent.isEmpty && Set(g.betaItems.ids) == Set(samples + batch.actions))
        #expect(g.policyItems.ids == g.betaItems.ids + recent)
        #expect(loss.ndcgCount == 4 && g.ndcgCount == 4, "B·C/N = 6·6/8 rows of progressive NDCG")

        var ref = ReinforceReference(config: config, layout: model.layout, itemCount: model.itemCount,
                                     userIds: g.users.ids, itemIds: g.items.ids, batch: batch)
        ref.candidates = (samples, { log(ReinforceModel.proposalProbability($0, items: 8)) })
        let theta = flatParameters(model, userIds: g.users.ids, itemIds: g.items.ids)
        let at = ref.evaluate(theta, coef: nil, a1Beta: nil)
        let coef = ref.coefficients(logPi: at.logPi, logBeta: at.logBeta)
        let policySum = zip(coef, at.logPi).reduce(0.0) { $0 + $1.0 * -$1.1 }
        #expect(close(loss.policyLossSum, policySum, rel: 1e-4), "\(loss.policyLossSum) vs \(policySum)")
        #expect(close(loss.betaLossSum, at.logBeta.reduce(0, -), rel: 1e-4))

        let analytic = assembledGradient(model, g)
        #expect(analytic.count == theta.count)
        var bad: [String] = [], nonZero = 0
        for i in theta.indices {
            let num = numericGrad(theta, i) { ref.evaluate($0, coef: coef, a1Beta: at.a1).loss }
            if !close(Double(analytic[i]), num, rel: 2e-3, abs: 2e-4) { bad.append("θ[\(i)]: \(analytic[i]) vs \(num)") }
            if analytic[i] != 0 { nonZero += 1 }
        }
        #expect(bad.isEmpty, "\(bad.prefix(20))")
        #expect(nonZero > model.mlpCount / 2, "too few non-zero gradients (\(nonZero))")
        // An item neither drawn nor a true action gets nothing.
        let e = model.layout.entry("policy.items.weight")!
        for j in Set(2..<8).subtracting((samples + batch.actions).map(Int.init)) {
            #expect(analytic[e.offset + j * config.embeddingSize] == 0)
        }
    }

    @Test("sampled softmax: two halves' gradients, summed and concatenated, equal the whole batch's; the step applies them")
    func sampledSplitBatchEqualsWholeBatch() {
        let config = sampledReinforceConfig(sampled: 4)
        let batch = tinyTransitions(10, seed: 11, users: 4)
        func half(_ r: Range<Int>) -> TransitionBatch {
            var t = TransitionBatch(historyLength: batch.historyLength)
            for b in r { t.append(user: batch.users[b], state: batch.state(b), action: batch.actions[b], reward: batch.rewards[b], done: false, time: 0) }
            return t
        }
        let whole = ReinforceModel(config: config), a = ReinforceModel(config: config), b = ReinforceModel(config: config)
        for m in [whole, a, b] { m.reserveItems(through: ReinforceModel.largestItem(batch)!) }
        let gw = whole.makeGradients(), ga = a.makeGradients(), gb = b.makeGradients()
        whole.computeGradients(batch, into: gw)
        a.computeGradients(half(0..<5), into: ga)
        b.computeGradients(half(5..<10), into: gb)
        #expect(a.lastSampledItems == whole.lastSampledItems && b.lastSampledItems == whole.lastSampledItems)
        for i in 0..<gw.denseCount {
            #expect(close(Double(gw.dense[i]), Double(ga.dense[i] + gb.dense[i]), rel: 1e-4, abs: 1e-5), "dense[\(i)]")
        }
        // What the combiner leaves: the dense sums and the rows of both halves, in rank order.
        func join(_ x: SparseGradient, _ y: SparseGradient) -> SparseGradient {
            SparseGradient(widths: x.widths, ids: x.ids + y.ids, parts: zip(x.parts, y.parts).map { $0 + $1 })
        }
        let combined = ga
        combined.users = join(ga.users, gb.users); combined.items = join(ga.items, gb.items)
        combined.policyItems = join(ga.policyItems, gb.policyItems); combined.betaItems = join(ga.betaItems, gb.betaItems)
        for i in 0..<gw.denseCount { combined.dense[i] = ga.dense[i] + gb.dense[i] }
        let left = assembledGradient(whole, gw), right = assembledGradient(a, combined)
        // Row order of the inputs differs (first seen per half); the item tables' part is in place.
        for i in 0..<whole.layout.total {
            #expect(close(Double(left[i]), Double(right[i]), rel: 1e-4, abs: 1e-5), "θ[\(i)]")
        }
        // Applying the same combined gradients keeps the replicas identical, and moves only the
        // candidates' item rows.
        let before = a.params.toArray()
        combined.sampleCount = 10
        a.applyGradients(combined, totalSamples: 10); b.applyGradients(combined, totalSamples: 10)
        #expect(a.parameterDigest() == b.parameterDigest())
        let e = a.layout.entry("policy.items.weight")!, D = config.embeddingSize
        let touched = Set((whole.lastSampledItems + batch.actions).map(Int.init))
        for j in 2..<8 {
            let moved = (0..<D).contains { a.params[e.offset + j * D + $0] != before[e.offset + j * D + $0] }
            #expect(moved == touched.contains(j), "item \(j)")
        }
    }

    @Test("sampled softmax learns: β's loss on a batch falls over repeated steps, deterministically")
    func sampledTrainingLowersTheLoss() {
        var config = sampledReinforceConfig(sampled: 16)
        config.fullSoftmaxItems = 20
        let batch = tinyTransitions(32, seed: 13, items: 2...120)
        func run() -> (first: ReinforceLoss, last: ReinforceLoss, digest: UInt64) {
            let model = ReinforceModel(config: config)
            let g = model.makeGradients()
            let first = model.trainStep(batch, grads: g)
            #expect(model.usesSampledSoftmax)
            var last = first
            for _ in 0..<40 { last = model.trainStep(batch, grads: g) }
            return (first, last, model.parameterDigest())
        }
        let x = run(), y = run()
        #expect(x.digest == y.digest)
        #expect(x.last.betaLossSum < x.first.betaLossSum * 0.9, "\(x.first.betaLossSum) → \(x.last.betaLossSum)")
    }

    @Test("the proposal is a distribution over the item ids 2..<N; draws stay in range and favour low ids")
    func proposalIsADistribution() {
        for N in [3, 10, 1000] {
            let total = (2..<N).reduce(0.0) { $0 + ReinforceModel.proposalProbability(Int32($1), items: N) }
            #expect(abs(total - 1) < 1e-9, "N = \(N): Σ Q = \(total)")
        }
        var c = sampledReinforceConfig(sampled: 4000)
        c.fullSoftmaxItems = 10
        let model = ReinforceModel(config: c)
        model.reserveItems(through: 999)
        let draws = model.drawSamples(step: 3)
        #expect(draws.allSatisfy { $0 >= 2 && $0 < 1000 })
        #expect(draws == model.drawSamples(step: 3) && draws != model.drawSamples(step: 4))
        let low = draws.filter { $0 < 12 }.count
        let expected = (2..<12).reduce(0.0) { $0 + ReinforceModel.proposalProbability(Int32($1), items: 1000) } * 4000
        #expect(abs(Double(low) - expected) < 5 * expected.squareRoot(), "\(low) draws below 12, expected \(expected)")
    }

    @Test func sampledSettingsDecodeAndValidate() throws {
        let c = try JSONDecoder().decode(ReinforceConfig.self, from: Data(#"{"full_softmax_items": 500, "sampled_items": 64}"#.utf8))
        #expect(c.fullSoftmaxItems == 500 && c.sampledItems == 64)
        #expect(ReinforceConfig().fullSoftmaxItems == 5_000 && ReinforceConfig().sampledItems == 1024)
        var bad = c
        bad.sampledItems = 0
        #expect(throws: ModelError.self) { try bad.validate() }
    }
}
