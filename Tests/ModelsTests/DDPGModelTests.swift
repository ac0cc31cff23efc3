import Testing
import Foundation
@testable import Models
import Kernels
import StreamRecNumerics
import Features

// DDPG as a whole: the critic's and the actor's gradients against finite differences of their
// losses in Double (the TD target, λ and the stopped inputs held constant as in the model), the
// stop-gradients, one scoring everywhere (training's NDCG, `scores`), split batches, growth,
// soft targets and export/load.

func tinyDDPGConfig(actorQWeight: Float = 0.5, tau: Float = 0.5) -> DDPGConfig {
    var c = DDPGConfig()
    c.historyLength = 2
    c.embeddingSize = 3
    c.hiddenSize = 4
    c.embeddingInitScale = 0.5
    c.actorQWeight = actorQWeight
    c.tau = tau
    c.gamma = 0.9
    c.seed = 7
    return c
}

/// The critic of a DDPG model in Double at offsets of `layout` in θ: Q(x, a).
private func ddpgQ(_ θ: [Double], _ l: ParameterLayout, _ x: [Double], _ a: [Double], hidden: Int) -> Double {
    func o(_ n: String) -> Int { l.entry(n)!.offset }
    return DRef.net(θ, w1: o("critic.dense.0.weight"), b1: o("critic.dense.0.bias"), w2: o("critic.dense.1.weight"),
                    b2: o("critic.dense.1.bias"), x, a, hidden: hidden, out: 1)[0]
}

/// The actor μ(x) in Double.
private func ddpgMu(_ θ: [Double], _ l: ParameterLayout, _ x: [Double], hidden: Int, D: Int) -> [Double] {
    func o(_ n: String) -> Int { l.entry(n)!.offset }
    return DRef.tanh(DRef.lin(θ, o("actor.dense.1.weight"), o("actor.dense.1.bias"),
                              DRef.relu(DRef.lin(θ, o("actor.dense.0.weight"), o("actor.dense.0.bias"), x, hidden)), D))
}

@Suite struct DDPGModelTests {
    /// A model whose targets differ from its online networks (one step with τ = 0.5).
    func trainedModel(_ config: DDPGConfig = tinyDDPGConfig()) -> DDPGModel {
        let model = DDPGModel(config: config)
        model.trainStep(tinyActorCriticBatch(8, seed: 40), critic: model.makeCriticGradients(), actor: model.makeActorGradients())
        return model
    }

    @Test("the critic's gradient matches finite differences of Σ (Q(x, E_a) − y)², y from the target networks")
    func criticGradientMatchesFiniteDifferences() {
        let config = tinyDDPGConfig()
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 3)
        let g = model.makeCriticGradients()
        let loss = model.computeCriticGradients(batch, into: g)
        #expect(g.sampleCount == 6 && g.users.ids.isEmpty && g.items.ids.isEmpty)
        let l = model.layout, B = batch.count, S = config.stateWidth, D = config.embeddingSize, Hd = config.hiddenSize
        #expect(model.targets.toArray() != Array(model.params.toArray().prefix(model.targets.count)), "targets should lag here")

        // The TD target in Double from the target networks and the model's next states.
        let t = model.targets.toArray().map(Double.init)
        let θ0 = model.params.toArray().map(Double.init)
        let e = l.entry("action.items.weight")!.offset
        var y: [Double] = [], xs: [[Double]] = [], eas: [[Double]] = []
        for b in 0..<B {
            let xn = (0..<S).map { Double(model.ws.xn[b * S + $0]) }
            let q = ddpgQ(t, l, xn, ddpgMu(t, l, xn, hidden: Hd, D: D), hidden: Hd)
            y.append(Double(batch.reward(b)) + (batch.done[b] ? 0 : Double(config.gamma) * q))
            xs.append((0..<S).map { Double(model.ws.x[b * S + $0]) })
            eas.append(Array(θ0[(e + Int(batch.actions[b]) * D)..<(e + (Int(batch.actions[b]) + 1) * D)]))
        }
        func criticLoss(_ θ: [Double]) -> Double {
            (0..<B).reduce(0.0) { s, b in let d = ddpgQ(θ, l, xs[b], eas[b], hidden: Hd) - y[b]; return s + d * d }
        }
        #expect(close(loss.criticLossSum, criticLoss(θ0), rel: 1e-4), "\(loss.criticLossSum) vs \(criticLoss(θ0))")
        let absQ = (0..<B).reduce(0.0) { $0 + abs(ddpgQ(θ0, l, xs[$1], eas[$1], hidden: Hd)) }
        #expect(close(loss.absQSum, absQ, rel: 1e-4))
        let r = model.criticRange
        let fd = finiteDifferenceMismatches(Array(g.dense.buffer[0..<r.count]), θ0, indices: Array(r), criticLoss)
        #expect(fd.bad.isEmpty, "\(fd.bad.prefix(20))")
        #expect(fd.nonZero > r.count / 2, "too few non-zero critic gradients (\(fd.nonZero) of \(r.count))")
    }

    @Test("the actor phase's gradient (BC cross-entropy − λ·Q(x, μ(x)), critic fixed, Q's gradient stopped at x) matches finite differences (full softmax; sampled softmax over the same candidates)",
          arguments: [false, true])
    func actorGradientMatchesFiniteDifferences(sampled: Bool) {
        let config = sampledVariant(tinyDDPGConfig(), sampled: sampled)
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 5)
        let g = model.makeActorGradients()
        let lambda: Float = 0.7
        let loss = model.computeActorGradients(batch, lambda: lambda, into: g)
        #expect(g.sampleCount == 6 && model.usesSampledSoftmax == sampled)
        let candidates: DRef.Candidates? = sampled
            ? (model.lastSampledItems, { log(SampledCandidates.proposalProbability($0, items: model.itemCount)) }) : nil
        let touched = Set((sampled ? model.lastSampledItems + batch.actions : (2..<Int32(model.itemCount)).map { $0 }).map(Int.init))
        if sampled {
            #expect(g.denseCount == model.actorDenseCount && g.denseCount < model.actorRange.count, "the dense gradient stops before E")
            #expect(model.lastSampledItems.count == 5 && Set(g.itemRows.ids.map(Int.init)) == touched)
            #expect(loss.ndcgCount == 4 && g[extra: 4] == 4, "B·C/N = 6·6/8 rows of progressive NDCG")
        } else {
            #expect(g.itemRows.ids.isEmpty && loss.ndcgCount == 6)
        }
        #expect(Set(g.users.ids) == Set(batch.users) && Set(g.items.ids) == Set(batch.states.filter { $0 != 0 }))
        let l = model.layout, B = batch.count, D = config.embeddingSize, Hd = config.hiddenSize, N = model.itemCount
        let flat = FlatRows(total: l.total, D: D, H: config.historyLength, userIds: g.users.ids, itemIds: g.items.ids)
        let θ0 = FlatRows.flatten(model.params, total: l.total, rows: model.rows, userIds: g.users.ids, itemIds: g.items.ids)
        let e = l.entry("action.items.weight")!.offset, c = l.entry("action.items.bias")!.offset
        let xbar = (0..<B).map { flat.state(θ0, batch, $0) }
        func terms(_ θ: [Double]) -> (bc: Double, q: Double) {
            var bc = 0.0, q = 0.0
            for b in 0..<B {
                let mu = ddpgMu(θ, l, flat.state(θ, batch, b), hidden: Hd, D: D)
                bc -= DRef.logSoftmax(DRef.scores(θ, e: e, c: c, mu, N: N), Int(batch.actions[b]), candidates: candidates)
                // The critic term: x stopped, the critic's parameters constant (θ0).
                q += ddpgQ(θ0, l, xbar[b], ddpgMu(θ, l, xbar[b], hidden: Hd, D: D), hidden: Hd)
            }
            return (bc, q)
        }
        let at = terms(θ0)
        #expect(close(loss.bcLossSum, at.bc, rel: 1e-4) && close(loss.actorQSum, at.q, rel: 1e-4, abs: 1e-4),
                "\(loss.bcLossSum) vs \(at.bc), \(loss.actorQSum) vs \(at.q)")
        let r = model.actorRange
        let indices = Array(r) + Array(l.total..<θ0.count)
        let actor = assembledActorGradient(g, layout: l, range: r, D: D)
        let analytic = actor + g.users.parts[0] + g.items.parts[0]
        let fd = finiteDifferenceMismatches(analytic, θ0, indices: indices) { θ in
            let t = terms(θ)
            return Double(config.bcWeight) * t.bc - Double(lambda) * t.q
        }
        #expect(fd.bad.isEmpty, "\(fd.bad.prefix(20))")
        let live = indices.count - (model.itemCapacity - touched.count) * (D + 1)
        #expect(fd.nonZero > live * 3 / 4, "too few non-zero gradients (\(fd.nonZero) of \(live))")
        // Capacity rows beyond the item count, the masked items 0, 1 (and, sampled, items neither
        // drawn nor logged) get exactly nothing.
        for j in (0..<model.itemCapacity) where !touched.contains(j) {
            for d in 0..<D { #expect(actor[e - r.lowerBound + j * D + d] == 0) }
        }
    }

    @Test("the critic term moves the actor only: E, bE and the rows learn from behaviour cloning alone")
    func criticTermStopsAtTheState() {
        let batch = tinyActorCriticBatch(8, seed: 9)
        var grads: [PhaseGradients] = []
        var ranges: [String: Range<Int>] = [:]
        for lambda: Float in [0, 0.5, 2] {
            let model = trainedModel()
            let g = model.makeActorGradients()
            model.computeActorGradients(batch, lambda: lambda, into: g)
            grads.append(g)
            for e in model.layout.entries where !e.name.hasPrefix("critic.") {
                ranges[e.name] = (e.offset - model.actorRange.lowerBound)..<(e.offset - model.actorRange.lowerBound + e.count)
            }
        }
        for (name, r) in ranges {
            let a = Array(grads[0].dense.buffer[r]), b = Array(grads[1].dense.buffer[r]), c = Array(grads[2].dense.buffer[r])
            if name.hasPrefix("actor.") { #expect(a != b && b != c, "\(name) ignores the critic term") }
            else { #expect(a == b && b == c, "\(name) moved with the critic term's weight") }
        }
        #expect(grads[0].users.parts == grads[1].users.parts && grads[0].items.parts == grads[2].items.parts)
    }

    @Test("one scoring: scores(…) = μ(x)·Eᵀ + bE (a dot product), and training's progressive NDCG ranks by the same scores")
    func oneScoringEverywhere() {
        let config = tinyDDPGConfig()
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 13)
        let N = model.itemCount, D = config.embeddingSize
        let scores = model.scores(users: batch.users, histories: batch.states)
        let mu = model.actions(users: batch.users, histories: batch.states)
        let tensors = Dictionary(uniqueKeysWithValues: model.exportTensors().map { ($0.name, $0) })
        let E = tensors["action.items.weight"]!.floats!, c = tensors["action.items.bias"]!.floats!
        for b in 0..<batch.count {
            #expect(scores[b * N] == -.infinity && scores[b * N + 1] == -.infinity)
            for j in 2..<N {
                let dot = (0..<D).reduce(Double(c[j])) { $0 + Double(mu[b * D + $1]) * Double(E[j * D + $1]) }
                #expect(close(Double(scores[b * N + j]), dot, rel: 1e-5, abs: 1e-6), "item \(j) of row \(b)")
            }
        }
        // The actor phase's NDCG sum (before any update) is the NDCG of these scores.
        let expected = scores.withUnsafeBufferPointer { s in
            batch.actions.withUnsafeBufferPointer { a in
                batch.states.withUnsafeBufferPointer { h in
                    nextItemNDCGSum(scores: s.baseAddress!, actions: a.baseAddress!, history: h.baseAddress!, B: batch.count, N: N, H: 2)
                }
            }
        }
        let loss = model.computeActorGradients(batch, lambda: 0.3, into: model.makeActorGradients())
        #expect(expected > 0 && close(loss.ndcgSum, expected, rel: 1e-9), "\(loss.ndcgSum) vs \(expected)")
    }

    @Test("both phases' gradients of two halves, summed (dense) and concatenated (rows), equal the whole batch's (full softmax; sampled, the same draws on both halves)",
          arguments: [false, true])
    func splitBatchGradientsEqualWholeBatch(sampled: Bool) {
        let config = sampledVariant(tinyDDPGConfig(), sampled: sampled, items: 4)
        expectSplitBatchGradientsAdd({ trainedModel(config) }, sampled: sampled, ndcgExtra: 3, stateRows: true)
    }

    @Test("a step updates the critic, then the actor, then moves the targets by τ; growth keeps targets and values")
    func stepOrderTargetsAndGrowth() {
        let config = tinyDDPGConfig(tau: 0.25)
        let model = DDPGModel(config: config)
        #expect(model.targets.toArray() == Array(model.params.toArray().prefix(model.targets.count)), "targets start as copies")
        let before = model.targets.toArray()
        model.trainStep(tinyActorCriticBatch(8, seed: 21), critic: model.makeCriticGradients(), actor: model.makeActorGradients())
        let online = model.params.toArray(), after = model.targets.toArray()
        for i in after.indices { #expect(close(Double(after[i]), Double(0.25 * online[i] + 0.75 * before[i]), rel: 1e-6, abs: 1e-7)) }
        #expect(model.step == 1)
        // Growth: the targets and every old value stay; the layout depends on the item count only.
        let grown = DDPGModel(config: config), direct = DDPGModel(config: config)
        for top: Int32 in [9, 63, 64, 70, 150] { grown.reserveItems(through: top) }
        direct.reserveItems(through: 150)
        #expect(grown.layout.entries == direct.layout.entries && grown.parameterDigest() == direct.parameterDigest())
        #expect(grown.targets.toArray() == DDPGModel(config: config).targets.toArray())
        #expect(grown.itemCount == 151 && grown.itemCapacity == ItemTables.capacity(forItems: 151))
    }

    @Test("export and load reproduce the model (targets and Adam included), its scores and its next step bit for bit")
    func exportLoadRoundTrip() throws {
        let config = tinyDDPGConfig()
        let model = DDPGModel(config: config)
        let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
        model.trainStep(tinyActorCriticBatch(8, seed: 31), critic: gc, actor: ga)
        model.trainStep(tinyActorCriticBatch(8, seed: 32, items: 2...40), critic: gc, actor: ga)
        let tensors = Dictionary(uniqueKeysWithValues: model.exportTensors().map { ($0.name, $0) })
        #expect(tensors["action.items.weight"]?.shape == [model.itemCount, 3] && tensors["target.actor.dense.0.weight"] != nil)
        #expect(tensors["target.action.items.weight"] == nil && tensors["optim.adam_m.critic.dense.0.weight"] != nil)
        let loaded = try DDPGModel.load(config: config, tensors: tensors, step: model.step)
        #expect(loaded.parameterDigest() == model.parameterDigest() && loaded.layout.entries == model.layout.entries)
        let probe = tinyActorCriticBatch(4, seed: 33, items: 2...40)
        #expect(loaded.scores(users: probe.users, histories: probe.states) == model.scores(users: probe.users, histories: probe.states))
        let next = tinyActorCriticBatch(8, seed: 34, items: 2...45)
        model.trainStep(next, critic: gc, actor: ga)
        loaded.trainStep(next, critic: loaded.makeCriticGradients(), actor: loaded.makeActorGradients())
        #expect(loaded.parameterDigest() == model.parameterDigest())
        var wrong = tensors
        wrong["actor.dense.0.weight"] = ModelTensor(name: "actor.dense.0.weight", shape: [1], storage: .float32([0]))
        #expect(throws: ModelError.self) { try DDPGModel.load(config: config, tensors: wrong, step: 1) }
    }

    @Test("training on one batch raises its NDCG and lowers its BC loss; deterministic given the seed")
    func trainingLearnsDeterministically() {
        let batch = tinyActorCriticBatch(16, seed: 17)
        func run() -> (first: DDPGLoss, last: DDPGLoss, digest: UInt64) {
            let model = DDPGModel(config: tinyDDPGConfig(actorQWeight: 0.1, tau: 0.01))
            let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
            let first = model.trainStep(batch, critic: gc, actor: ga)
            var last = first
            for _ in 0..<60 { last = model.trainStep(batch, critic: gc, actor: ga) }
            return (first, last, model.parameterDigest())
        }
        let a = run(), b = run()
        #expect(a.digest == b.digest && a.last == b.last)
        #expect(a.last.bcLossSum < a.first.bcLossSum && a.last.ndcgSum >= a.first.ndcgSum, "\(a.first) → \(a.last)")
        #expect(a.last.criticLossSum.isFinite)
    }

    @Test func configDecodesSnakeCaseWithDefaultsAndValidates() throws {
        let json = #"{"kind": "ddpg", "history_length": 5, "tau": 0.05, "actor_q_weight": 0.2, "critic_learning_rate": 0.002}"#
        let c = try JSONDecoder().decode(DDPGConfig.self, from: Data(json.utf8))
        #expect(c.historyLength == 5 && c.tau == 0.05 && c.actorQWeight == 0.2 && c.criticLearningRate == 0.002)
        #expect(c.embeddingSize == 32 && c.hiddenSize == 64 && c.gamma == 0.99 && c.bcWeight == 1 && c.seed == 42)
        #expect(try JSONDecoder().decode(DDPGConfig.self, from: JSONEncoder().encode(c)) == c)
        #expect(c.fullSoftmaxItems == 5_000 && c.sampledItems == 1024, "REINFORCE's defaults")
        let large = try JSONDecoder().decode(DDPGConfig.self, from: Data(#"{"full_softmax_items": 500, "sampled_items": 64}"#.utf8))
        #expect(large.fullSoftmaxItems == 500 && large.sampledItems == 64)
        for bad in [#"{"sampled_items": 0}"#, #"{"full_softmax_items": 2}"#] {
            let d = try JSONDecoder().decode(DDPGConfig.self, from: Data(bad.utf8))
            #expect(throws: ModelError.self, "\(bad)") { try d.validate() }
        }
        for bad in [#"{"tau": 0}"#, #"{"gamma": 1}"#, #"{"bc_weight": 0, "actor_q_weight": 0}"#, #"{"hidden_size": 0}"#] {
            let d = try JSONDecoder().decode(DDPGConfig.self, from: Data(bad.utf8))
            #expect(throws: ModelError.self, "\(bad)") { try d.validate() }
        }
    }
}
