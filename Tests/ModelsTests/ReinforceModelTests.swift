import Testing
import Foundation
@testable import Models
import StreamRecNumerics
import Features

// The REINFORCE model as a whole: its gradient against finite differences of its loss in Double
// (w and λ held constant as in the model; β's gradient stopped at the state), one log-probability
// per sample, and split-batch gradients that sum to the whole batch's.

func tinyReinforceConfig(betaLossWeight: Float = 1) -> ReinforceConfig {
    var c = ReinforceConfig()
    c.historyLength = 2
    c.embeddingSize = 3
    c.hiddenSize = 4
    c.embeddingInitScale = 0.5
    c.recentItems = 1          // the last of the two state items only
    c.recentWeight = 1.5
    c.betaLossWeight = betaLossWeight
    c.seed = 7
    return c
}

/// B transitions over users 1…`users` and the 6 items 2…7 (states padded with 0, with repeats).
/// With a reward window W > 1 each row holds 1…W rewards (the session ended after them), then zeros.
func tinyTransitions(_ B: Int, seed: UInt64, users: Int32 = 3, items: ClosedRange<Int32> = 2...7, H: Int = 2, window W: Int = 1) -> TransitionBatch {
    var rng = SplitMix64(seed: seed)
    var t = TransitionBatch(historyLength: H, rewardWindow: W)
    let n = UInt64(items.count)
    for _ in 0..<B {
        let state = (0..<H).map { _ in rng.next() % 4 == 0 ? TransitionBatch.paddingItem : items.lowerBound + Int32(rng.next() % n) }
        let user = 1 + Int32(rng.next() % UInt64(users)), action = items.lowerBound + Int32(rng.next() % n)
        let known = W == 1 ? 1 : 1 + Int(rng.next() % UInt64(W))
        let rewards = (0..<known).map { _ in Float([1, 2, 2, 3][Int(rng.next() % 4)]) }
        t.append(user: user, state: state, action: action, rewards: rewards, done: known < W, time: 0)
    }
    return t
}

/// The model's loss in Double from a flat parameter vector: the dense layout, then the rows of
/// `userIds`, then the rows of `itemIds`. `coef` (w·λ·r) and β's input `a1Beta` are constants, as
/// in the model. Returns the loss and, for the constants, π(a|s), β(a|s) and a1 per sample.
struct ReinforceReference {
    let config: ReinforceConfig
    let layout: ParameterLayout
    let itemCount: Int
    let userIds: [Int32], itemIds: [Int32]
    let batch: TransitionBatch
    /// Sampled softmax: the step's drawn items and log Q; nil for the full softmax.
    var candidates: (samples: [Int32], logQ: (Int32) -> Double)? = nil

    func offset(_ name: String) -> Int { layout.entry(name)!.offset }

    func evaluate(_ theta: [Double], coef: [Double]?, a1Beta: [[Double]]?) -> (loss: Double, logPi: [Double], logBeta: [Double], a1: [[Double]]) {
        let D = config.embeddingSize, H = config.historyLength, Hd = config.hiddenSize, N = itemCount, I = config.stateWidth
        let w1 = offset("policy.dense.0.weight"), b1 = offset("policy.dense.0.bias")
        let w2 = offset("policy.dense.1.weight"), b2 = offset("policy.dense.1.bias")
        let e = offset("policy.items.weight"), be = offset("policy.items.bias")
        let f = offset("beta.items.weight"), bf = offset("beta.items.bias")
        func row(_ ids: [Int32], base: Int, _ id: Int32) -> [Double] {
            guard let k = ids.firstIndex(of: id) else { return [Double](repeating: 0, count: D) }
            return Array(theta[(base + k * D)..<(base + (k + 1) * D)])
        }
        func logSoftmaxAt(_ z: [Double], _ a: Int) -> Double {
            if let (samples, logQ) = candidates {
                // The true item and every drawn one except accidental hits, each corrected by log Q.
                let za = z[a] - logQ(Int32(a))
                var s = exp(za)
                for c in samples where Int(c) != a { s += exp(z[Int(c)] - logQ(c)) }
                return za - log(s)
            }
            var s = 0.0
            for j in 2..<N { s += exp(z[j]) }
            return z[a] - log(s)
        }
        var loss = 0.0, logPi: [Double] = [], logBeta: [Double] = [], a1s: [[Double]] = []
        for b in 0..<batch.count {
            var x = row(userIds, base: layout.total, batch.users[b])
            for i in 0..<H {
                let id = batch.states[b * H + i]
                x += id == 0 ? [Double](repeating: 0, count: D) : row(itemIds, base: layout.total + userIds.count * D, id)
            }
            var a1 = (0..<Hd).map { o in theta[b1 + o] + (0..<I).reduce(0.0) { $0 + x[$1] * theta[w1 + $1 * Hd + o] } }
            a1 = a1.map { max($0, 0) }
            var h = (0..<D).map { o in theta[b2 + o] + (0..<Hd).reduce(0.0) { $0 + a1[$1] * theta[w2 + $1 * D + o] } }
            // The recent-items path: E's rows of the last R state items (ids with a row, not padding or OOV).
            for i in (H - config.recentItems)..<H {
                let id = Int(batch.states[b * H + i])
                if id < 2 || id >= N { continue }
                for o in 0..<D { h[o] += Double(config.recentWeight) * theta[e + id * D + o] }
            }
            let z = (0..<N).map { j in theta[be + j] + (0..<D).reduce(0.0) { $0 + h[$1] * theta[e + j * D + $1] } }
            let hB = a1Beta?[b] ?? h   // β reads the policy's state vector h, its gradient stopped
            let zb = (0..<N).map { j in theta[bf + j] + (0..<D).reduce(0.0) { $0 + hB[$1] * theta[f + j * D + $1] } }
            let a = Int(batch.actions[b])
            let lp = logSoftmaxAt(z, a), lb = logSoftmaxAt(zb, a)
            loss += (coef?[b] ?? 0) * -lp + Double(config.betaLossWeight) * -lb
            logPi.append(lp); logBeta.append(lb); a1s.append(h)
        }
        return (loss, logPi, logBeta, a1s)
    }

    /// c_b = min(π/β, cap) · K·(1 − π)^(K−1) · G_b, G_b = Σ_k γ^k · rewards[b, k] (by hand, in Double).
    func coefficients(logPi: [Double], logBeta: [Double]) -> [Double] {
        let K = Double(config.topK), W = batch.rewardWindow
        return (0..<batch.count).map { b in
            var g = 0.0
            for k in 0..<W { g += pow(Double(config.gamma), Double(k)) * Double(batch.rewards[b * W + k]) }
            return min(exp(logPi[b] - logBeta[b]), Double(config.weightCap)) * K * pow(1 - exp(logPi[b]), K - 1) * g
        }
    }
}

func flatParameters(_ model: ReinforceModel, userIds: [Int32], itemIds: [Int32]) -> [Double] {
    var theta = (0..<model.layout.total).map { Double(model.params[$0]) }
    let D = model.config.embeddingSize
    for id in userIds { let r = model.userRows.row(model.userIndex.existingSlot(id)!); theta += (0..<D).map { Double(r[$0]) } }
    for id in itemIds { let r = model.itemRows.row(model.itemIndex.existingSlot(id)!); theta += (0..<D).map { Double(r[$0]) } }
    return theta
}

@Suite struct ReinforceModelTests {
    @Test("the whole model's gradient (every dense parameter, every touched row) matches finite differences of its loss in Double, with the discounted return of any reward window",
          arguments: [1, 4])
    func gradientMatchesFiniteDifferences(window: Int) {
        var config = tinyReinforceConfig()
        config.gamma = 0.9
        let model = ReinforceModel(config: config)
        let batch = tinyTransitions(6, seed: 3, window: window)
        if window > 1 { #expect(batch.rewards.contains(0) && (0..<6).contains { batch.rewardRow($0).allSatisfy { $0 > 0 } }) }
        let g = model.makeGradients()
        let loss = model.computeGradients(batch, into: g)
        #expect(model.itemCount == 8 && g.sampleCount == 6)
        #expect(Set(g.users.ids) == Set(batch.users) && g.users.ids.count == Set(batch.users).count)
        #expect(Set(g.items.ids) == Set(batch.states.filter { $0 != 0 }))

        let ref = ReinforceReference(config: config, layout: model.layout, itemCount: model.itemCount,
                                     userIds: g.users.ids, itemIds: g.items.ids, batch: batch)
        let theta = flatParameters(model, userIds: g.users.ids, itemIds: g.items.ids)
        // The step's constants, from the Double forward at θ.
        let at = ref.evaluate(theta, coef: nil, a1Beta: nil)
        let coef = ref.coefficients(logPi: at.logPi, logBeta: at.logBeta)
        #expect(coef.contains { $0 > 1 }, "the corrections should matter here: \(coef)")
        let policySum = zip(coef, at.logPi).reduce(0.0) { $0 + $1.0 * -$1.1 }
        #expect(close(loss.policyLossSum, policySum, rel: 1e-4), "\(loss.policyLossSum) vs \(policySum)")
        #expect(close(loss.betaLossSum, at.logBeta.reduce(0, -), rel: 1e-4))

        var analytic = Array(g.dense.buffer.prefix(model.layout.total))
        analytic += g.users.parts[0] + g.items.parts[0]
        #expect(analytic.count == theta.count)
        var bad: [String] = [], checked = 0
        for i in theta.indices {
            let num = numericGrad(theta, i) { ref.evaluate($0, coef: coef, a1Beta: at.a1).loss }
            if !close(Double(analytic[i]), num, rel: 2e-3, abs: 2e-4) { bad.append("θ[\(i)]: \(analytic[i]) vs \(num)") }
            if analytic[i] != 0 { checked += 1 }
        }
        #expect(bad.isEmpty, "\(bad.prefix(20))")
        // Every live coordinate (not capacity, not a masked item's) has a gradient here.
        let perItem = 2 + 2 * config.embeddingSize
        let live = theta.count - (model.itemCapacity - model.itemCount + 2) * perItem
        #expect(checked > live * 3 / 4, "too few non-zero gradients (\(checked) of \(live))")
        // Capacity rows beyond the item count (and the masked items 0, 1) get exactly nothing.
        let e = model.layout.entry("policy.items.weight")!
        for j in [0, 1] + Array(model.itemCount..<model.itemCapacity) {
            for d in 0..<config.embeddingSize { #expect(g.dense[e.offset + j * config.embeddingSize + d] == 0) }
        }
    }

    @Test("a reward window weighs each transition by its discounted return: the same gradient as W = 1 with reward G_b")
    func returnsEqualTheirOneColumnBatch() {
        var config = tinyReinforceConfig()
        config.gamma = 0.5
        let windowed = tinyTransitions(8, seed: 21, window: 3)
        var one = TransitionBatch(historyLength: windowed.historyLength)
        for b in 0..<windowed.count {
            let r = windowed.rewardRow(b).map { $0 }
            let g = r[0] + 0.5 * r[1] + 0.25 * r[2]   // exact in Float: small integers and powers of two
            one.append(user: windowed.users[b], state: windowed.state(b), action: windowed.actions[b], reward: g, done: windowed.done[b], time: 0)
        }
        var digests: [UInt64] = []
        for batch in [windowed, one] {
            let model = ReinforceModel(config: config)
            for _ in 0..<3 { model.trainStep(batch, grads: model.makeGradients()) }
            digests.append(model.parameterDigest())
        }
        #expect(digests[0] == digests[1])
        // γ = 0 is the immediate reward alone.
        config.gamma = 0
        var firsts = TransitionBatch(historyLength: windowed.historyLength)
        for b in 0..<windowed.count {
            firsts.append(user: windowed.users[b], state: windowed.state(b), action: windowed.actions[b], reward: windowed.reward(b), done: false, time: 0)
        }
        digests = []
        for batch in [windowed, firsts] {
            let model = ReinforceModel(config: config)
            model.trainStep(batch, grads: model.makeGradients())
            digests.append(model.parameterDigest())
        }
        #expect(digests[0] == digests[1])
    }

    @Test("β's loss trains only β's head: the policy's and the state's gradients do not depend on its weight")
    func betaGradientStopsAtTheState() {
        let batch = tinyTransitions(8, seed: 5)
        var grads: [ReinforceGradients] = [], layouts: [ParameterLayout] = []
        for w in [Float(1), 3, 0] {
            let model = ReinforceModel(config: tinyReinforceConfig(betaLossWeight: w))
            let g = model.makeGradients()
            model.computeGradients(batch, into: g)
            grads.append(g); layouts.append(model.layout)
        }
        let layout = layouts[0]
        for e in layout.entries {
            let a = Array(grads[0].dense.buffer[e.offset..<(e.offset + e.count)])
            let b = Array(grads[1].dense.buffer[e.offset..<(e.offset + e.count)])
            let z = Array(grads[2].dense.buffer[e.offset..<(e.offset + e.count)])
            if e.name.hasPrefix("beta.") {
                #expect(a != b, "\(e.name) ignores β's loss weight")
                #expect(z.allSatisfy { $0 == 0 }, "\(e.name) learns with β's loss weight 0")
            } else {
                #expect(a == b && a == z, "\(e.name)'s gradient changed with β's loss weight")
            }
        }
        #expect(grads[0].users.parts == grads[1].users.parts && grads[0].users.parts == grads[2].users.parts)
        #expect(grads[0].items.parts == grads[1].items.parts && grads[0].items.parts == grads[2].items.parts)
    }

    @Test("log π(a_b|s_b): one value per sample, from its own row of scores and its own action")
    func perSampleLogProbabilities() {
        let config = tinyReinforceConfig()
        let model = ReinforceModel(config: config)
        let batch = tinyTransitions(5, seed: 9)
        model.trainStep(batch, grads: model.makeGradients())   // rows exist, parameters not at their start
        let (logPi, logBeta) = model.logProbabilities(batch)
        #expect(logPi.count == 5 && logBeta.count == 5)
        let N = model.itemCount, H = config.historyLength
        let scores = model.scores(users: batch.users, histories: batch.states)
        #expect(scores.count == 5 * N)
        for b in 0..<5 {
            let z = scores[(b * N)..<((b + 1) * N)].map(Double.init)
            #expect(z[0] == -.infinity && z[1] == -.infinity)
            let lse = log((2..<N).reduce(0.0) { $0 + exp(z[$1]) })
            let a = Int(batch.actions[b])
            #expect(close(Double(logPi[b]), z[a] - lse, rel: 1e-5, abs: 1e-5), "sample \(b)")
            for other in 2..<N where other != a {
                #expect(!close(Double(logPi[b]), z[other] - lse, rel: 1e-6, abs: 1e-7), "sample \(b) matches action \(other)")
            }
            // The sample alone gives the same value: nothing of the other rows enters it.
            var alone = TransitionBatch(historyLength: H)
            alone.append(user: batch.users[b], state: batch.state(b), action: batch.actions[b], reward: 1, done: false, time: 0)
            let single = model.logProbabilities(alone)
            #expect(close(Double(single.policy[0]), Double(logPi[b]), rel: 1e-6, abs: 1e-6))
            #expect(close(Double(single.behavior[0]), Double(logBeta[b]), rel: 1e-6, abs: 1e-6))
        }
    }

    @Test("gradients of two halves, summed (dense) and concatenated (rows, merged in order), equal the whole batch's")
    func splitBatchGradientsEqualWholeBatch() {
        let config = tinyReinforceConfig()
        let batch = tinyTransitions(10, seed: 11, users: 4)
        func half(_ r: Range<Int>) -> TransitionBatch {
            var t = TransitionBatch(historyLength: batch.historyLength)
            for b in r { t.append(user: batch.users[b], state: batch.state(b), action: batch.actions[b], reward: batch.rewards[b], done: false, time: 0) }
            return t
        }
        let whole = ReinforceModel(config: config), a = ReinforceModel(config: config), b = ReinforceModel(config: config)
        let top = ReinforceModel.largestItem(batch)!
        for m in [whole, a, b] { m.reserveItems(through: top) }
        let gw = whole.makeGradients(), ga = a.makeGradients(), gb = b.makeGradients()
        whole.computeGradients(batch, into: gw)
        a.computeGradients(half(0..<5), into: ga)
        b.computeGradients(half(5..<10), into: gb)
        #expect(ga.denseCount == gw.denseCount && gb.denseCount == gw.denseCount)
        for i in 0..<(gw.denseCount + ReinforceGradients.extras) {
            #expect(close(Double(gw.dense[i]), Double(ga.dense[i] + gb.dense[i]), rel: 1e-4, abs: 1e-5), "dense[\(i)]")
        }
        for (w, x, y) in [(gw.users, ga.users, gb.users), (gw.items, ga.items, gb.items)] {
            var joined = x
            joined.ids += y.ids
            joined.parts[0] += y.parts[0]
            let merged = joined.merged()
            #expect(Set(merged.ids) == Set(w.ids) && merged.ids.count == w.ids.count)
            let D = config.embeddingSize
            for (k, id) in merged.ids.enumerated() {
                let j = w.ids.firstIndex(of: id)!
                for d in 0..<D {
                    #expect(close(Double(merged.parts[0][k * D + d]), Double(w.parts[0][j * D + d]), rel: 1e-4, abs: 1e-5))
                }
            }
        }
    }

    @Test("the item tables grow to the largest item id; the layout and values depend on the item count only")
    func itemTablesGrowDeterministically() {
        let config = tinyReinforceConfig()
        let stepwise = ReinforceModel(config: config), direct = ReinforceModel(config: config)
        for top: Int32 in [9, 63, 64, 70, 150] { stepwise.reserveItems(through: top) }
        direct.reserveItems(through: 150)
        #expect(stepwise.itemCount == 151 && direct.itemCount == 151)
        #expect(stepwise.itemCapacity == ReinforceModel.itemCapacity(forItems: 151) && stepwise.itemCapacity >= 151)
        #expect(stepwise.layout.entries == direct.layout.entries)
        #expect(stepwise.params.toArray() == direct.params.toArray())
        #expect(stepwise.parameterDigest() == direct.parameterDigest())
        var last = 0
        for n in 2...5000 {
            let c = ReinforceModel.itemCapacity(forItems: n)
            #expect(c >= n && c >= last && c <= max(64, n + n / 4 + 64), "capacity \(c) for \(n)")
            last = c
        }
    }

    @Test("a step lowers the loss on its batch; training is deterministic given the seed")
    func trainingLowersTheLossDeterministically() {
        let batch = tinyTransitions(16, seed: 13)
        func run() -> (first: ReinforceLoss, last: ReinforceLoss, digest: UInt64) {
            let model = ReinforceModel(config: tinyReinforceConfig())
            let g = model.makeGradients()
            let first = model.trainStep(batch, grads: g)
            var last = first
            for _ in 0..<30 { last = model.trainStep(batch, grads: g) }
            return (first, last, model.parameterDigest())
        }
        let a = run(), b = run()
        #expect(a.digest == b.digest && a.last == b.last)
        #expect(a.last.betaLossSum < a.first.betaLossSum)
        // The policy's cross-entropy on the logged actions falls (its coefficients move too).
        #expect(a.last.ndcgSum >= a.first.ndcgSum)
    }

    @Test("export and load reproduce the model, its scores and its next step bit for bit")
    func exportLoadRoundTrip() throws {
        let config = tinyReinforceConfig()
        let model = ReinforceModel(config: config)
        let g = model.makeGradients()
        model.trainStep(tinyTransitions(8, seed: 21), grads: g)
        model.trainStep(tinyTransitions(8, seed: 22, items: 2...40), grads: g)
        let tensors = Dictionary(uniqueKeysWithValues: model.exportTensors().map { ($0.name, $0) })
        #expect(model.itemCount > 30 && model.itemCapacity == 64)
        #expect(tensors["policy.items.weight"]?.shape == [model.itemCount, 3] && tensors["beta.items.bias"]?.shape == [model.itemCount])
        let loaded = try ReinforceModel.load(config: config, tensors: tensors, step: model.step)
        #expect(loaded.parameterDigest() == model.parameterDigest())
        #expect(loaded.layout.entries == model.layout.entries)
        let probe = tinyTransitions(4, seed: 23, users: 6, items: 2...40)
        #expect(loaded.scores(users: probe.users, histories: probe.states) == model.scores(users: probe.users, histories: probe.states))
        let next = tinyTransitions(8, seed: 24, items: 2...45)
        model.trainStep(next, grads: g)
        loaded.trainStep(next, grads: loaded.makeGradients())
        #expect(loaded.parameterDigest() == model.parameterDigest())
        var wrong = tensors
        wrong["policy.dense.0.weight"] = ModelTensor(name: "policy.dense.0.weight", shape: [1], storage: .float32([0]))
        #expect(throws: ModelError.self) { try ReinforceModel.load(config: config, tensors: wrong, step: 1) }
    }

    @Test func configDecodesSnakeCaseWithDefaultsAndValidates() throws {
        let json = #"{"kind": "reinforce", "history_length": 5, "top_k": 3, "weight_cap": 4.5, "learning_rate": 0.01}"#
        let c = try JSONDecoder().decode(ReinforceConfig.self, from: Data(json.utf8))
        #expect(c.historyLength == 5 && c.topK == 3 && c.weightCap == 4.5 && c.learningRate == 0.01)
        #expect(c.embeddingSize == 32 && c.hiddenSize == 64 && c.gamma == 0.99 && c.seed == 42)
        let back = try JSONDecoder().decode(ReinforceConfig.self, from: JSONEncoder().encode(c))
        #expect(back == c)
        #expect(c.recentItems == 3 && c.recentWeight == 2)
        var bad = c
        bad.topK = 0
        #expect(throws: ModelError.self) { try bad.validate() }
        bad = c
        bad.recentItems = 6   // more than history_length 5
        #expect(throws: ModelError.self) { try bad.validate() }
        bad.recentItems = 0   // off
        try bad.validate()
    }
}
