import Testing
import Foundation
@testable import Models
import Kernels
import StreamRecNumerics
import Features

// BCQ as a whole: the twin critics' gradient (clipped double-Q target over decoded, perturbed
// actions) and the actor phase's (VAE + behaviour cloning + the perturbation's critic term)
// against finite differences in Double, the stop-gradients, deterministic selection and one
// scoring everywhere, split batches, export/load.

func tinyBCQConfig(actorQWeight: Float = 0.5, tau: Float = 0.5) -> BCQConfig {
    var c = BCQConfig()
    c.historyLength = 2
    c.embeddingSize = 3
    c.hiddenSize = 4
    c.latentSize = 2
    c.targetSamples = 3
    c.phi = 0.3          // large, so the perturbation matters in the checks
    c.embeddingInitScale = 0.5
    c.actorQWeight = actorQWeight
    c.tau = tau
    c.gamma = 0.9
    c.seed = 7
    return c
}

/// BCQ's networks in Double at the offsets of a layout.
private struct BCQRef {
    let c: BCQConfig
    let l: ParameterLayout
    func o(_ n: String) -> Int { l.entry(n)!.offset }
    var D: Int { c.embeddingSize }
    var Hd: Int { c.hiddenSize }
    var L: Int { c.latentWidth }

    func net(_ θ: [Double], _ p: String, _ x: [Double], _ y: [Double], out: Int) -> [Double] {
        DRef.net(θ, w1: o("\(p).dense.0.weight"), b1: o("\(p).dense.0.bias"), w2: o("\(p).dense.1.weight"), b2: o("\(p).dense.1.bias"),
                 x, y, hidden: Hd, out: out)
    }
    func q(_ θ: [Double], _ k: Int, _ x: [Double], _ a: [Double]) -> Double { net(θ, "critic\(k)", x, a, out: 1)[0] }
    func dec(_ θ: [Double], _ x: [Double], _ z: [Double]) -> [Double] { net(θ, "vae.decoder", x, z, out: D) }
    func perturbed(_ θ: [Double], _ x: [Double], _ a: [Double]) -> [Double] {
        let u = DRef.tanh(net(θ, "perturb", x, a, out: D))
        return (0..<D).map { a[$0] + Double(c.phi) * u[$0] }
    }
    /// The selected action: dec(x, 0) perturbed.
    func selected(_ θ: [Double], _ x: [Double]) -> [Double] { perturbed(θ, x, dec(θ, x, [Double](repeating: 0, count: L))) }
    func encode(_ θ: [Double], _ x: [Double], _ a: [Double]) -> (mu: [Double], ls: [Double]) {
        let he = DRef.relu(DRef.lin(θ, o("vae.encoder.dense.0.weight"), o("vae.encoder.dense.0.bias"), x + a, Hd))
        return (DRef.lin(θ, o("vae.encoder.mean.weight"), o("vae.encoder.mean.bias"), he, L),
                DRef.lin(θ, o("vae.encoder.log_std.weight"), o("vae.encoder.log_std.bias"), he, L))
    }
}

@Suite struct BCQModelTests {
    func trainedModel(_ config: BCQConfig = tinyBCQConfig()) -> BCQModel {
        let model = BCQModel(config: config)
        model.trainStep(tinyActorCriticBatch(8, seed: 40), critic: model.makeCriticGradients(), actor: model.makeActorGradients())
        return model
    }

    @Test("the twin critics' gradient matches finite differences; the target is λ·min + (1 − λ)·max over n decoded, perturbed actions")
    func criticGradientMatchesFiniteDifferences() {
        let config = tinyBCQConfig()
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 3)
        let g = model.makeCriticGradients()
        let loss = model.computeCriticGradients(batch, into: g)
        let ref = BCQRef(c: config, l: model.layout)
        let B = batch.count, S = config.stateWidth, D = config.embeddingSize, L = config.latentWidth, n = config.targetSamples
        let t = model.targets.toArray().map(Double.init), θ0 = model.params.toArray().map(Double.init)
        var zt = [Float](repeating: 0, count: n * L)
        zt.withUnsafeMutableBufferPointer { model.targetLatents(step: model.step + 1, into: $0.baseAddress!) }
        #expect(zt.allSatisfy { abs($0) <= 0.5 } && Set(zt).count > 1)
        let e = model.layout.entry("action.items.weight")!.offset
        var y: [Double] = [], xs: [[Double]] = [], eas: [[Double]] = []
        for b in 0..<B {
            let xn = (0..<S).map { Double(model.ws.xn[b * S + $0]) }
            var best = -Double.infinity
            for i in 0..<n {
                let z = (0..<L).map { Double(zt[i * L + $0]) }
                let a = ref.perturbed(t, xn, ref.dec(θ0, xn, z))   // online decoder, target perturbation
                let q1 = ref.q(t, 1, xn, a), q2 = ref.q(t, 2, xn, a), lam = Double(config.lambda)
                best = max(best, lam * min(q1, q2) + (1 - lam) * max(q1, q2))
            }
            y.append(Double(batch.reward(b)) + (batch.done[b] ? 0 : Double(config.gamma) * best))
            xs.append((0..<S).map { Double(model.ws.x[b * S + $0]) })
            eas.append(Array(θ0[(e + Int(batch.actions[b]) * D)..<(e + (Int(batch.actions[b]) + 1) * D)]))
        }
        func criticLoss(_ θ: [Double]) -> Double {
            (0..<B).reduce(0.0) { s, b in
                let d1 = ref.q(θ, 1, xs[b], eas[b]) - y[b], d2 = ref.q(θ, 2, xs[b], eas[b]) - y[b]
                return s + d1 * d1 + d2 * d2
            }
        }
        #expect(close(loss.criticLossSum, criticLoss(θ0), rel: 1e-4), "\(loss.criticLossSum) vs \(criticLoss(θ0))")
        #expect(close(loss.absQSum, (0..<B).reduce(0.0) { $0 + abs(ref.q(θ0, 1, xs[$1], eas[$1])) }, rel: 1e-4))
        let r = model.criticRange
        let fd = finiteDifferenceMismatches(Array(g.dense.buffer[0..<r.count]), θ0, indices: Array(r), criticLoss)
        #expect(fd.bad.isEmpty, "\(fd.bad.prefix(20))")
        #expect(fd.nonZero > r.count / 2, "too few non-zero critic gradients (\(fd.nonZero) of \(r.count))")
        // The critics see the logged action: the weights reading it have gradients.
        for k in 1...2 {
            let w = model.layout.entry("critic\(k).dense.0.weight")!
            let actionRows = (w.offset + S * config.hiddenSize)..<(w.offset + w.count)
            #expect(actionRows.contains { g.dense[$0] != 0 }, "critic\(k) ignores the action")
        }
    }

    @Test("the actor phase's gradient (VAE + behaviour cloning of the selected action − λ·Q1 through ξ) matches finite differences (full softmax; sampled softmax over the same candidates)",
          arguments: [false, true])
    func actorGradientMatchesFiniteDifferences(sampled: Bool) {
        let config = sampledVariant(tinyBCQConfig(), sampled: sampled)
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 5)
        let g = model.makeActorGradients()
        let lambda: Float = 0.7
        let loss = model.computeActorGradients(batch, lambda: lambda, into: g)
        #expect(model.usesSampledSoftmax == sampled)
        let candidates: DRef.Candidates? = sampled
            ? (model.lastSampledItems, { log(SampledCandidates.proposalProbability($0, items: model.itemCount)) }) : nil
        let touched = Set((sampled ? model.lastSampledItems + batch.actions : (2..<Int32(model.itemCount)).map { $0 }).map(Int.init))
        if sampled {
            #expect(g.denseCount == model.actorDenseCount && g.denseCount < model.actorRange.count, "the dense gradient stops before E")
            #expect(model.lastSampledItems.count == 5 && Set(g.itemRows.ids.map(Int.init)) == touched)
            #expect(loss.ndcgCount == 4 && g[extra: 5] == 4, "B·C/N = 6·6/8 rows of progressive NDCG")
        } else {
            #expect(g.itemRows.ids.isEmpty && loss.ndcgCount == 6)
        }
        let ref = BCQRef(c: config, l: model.layout)
        let l = model.layout, B = batch.count, D = config.embeddingSize, L = config.latentWidth, N = model.itemCount
        let flat = FlatRows(total: l.total, D: D, H: config.historyLength, userIds: g.users.ids, itemIds: g.items.ids)
        let θ0 = FlatRows.flatten(model.params, total: l.total, rows: model.rows, userIds: g.users.ids, itemIds: g.items.ids)
        let e = l.entry("action.items.weight")!.offset, c = l.entry("action.items.bias")!.offset
        var eps = [Float](repeating: 0, count: B * L)
        eps.withUnsafeMutableBufferPointer { model.vaeNoise(batch, step: model.step + 1, into: $0.baseAddress!) }
        let xbar = (0..<B).map { flat.state(θ0, batch, $0) }
        let ebar = (0..<B).map { b in Array(θ0[(e + Int(batch.actions[b]) * D)..<(e + (Int(batch.actions[b]) + 1) * D)]) }
        let a0bar = xbar.map { ref.dec(θ0, $0, [Double](repeating: 0, count: L)) }
        func terms(_ θ: [Double]) -> (vae: Double, bc: Double, q: Double) {
            var vae = 0.0, bc = 0.0, q = 0.0
            for b in 0..<B {
                let x = flat.state(θ, batch, b)
                let (mu, ls) = ref.encode(θ, x, ebar[b])
                let s = ls.map { min(max($0, -4), 15) }
                let z = (0..<L).map { mu[$0] + exp(s[$0]) * Double(eps[b * L + $0]) }
                let ahat = ref.dec(θ, x, z)
                var recon = 0.0, kl = 0.0
                for d in 0..<D { let err: Double = ahat[d] - ebar[b][d]; recon += 0.5 * err * err }
                for k in 0..<L {
                    let term: Double = 1 + 2 * s[k] - mu[k] * mu[k] - exp(2 * s[k])
                    kl -= 0.5 * term
                }
                vae += recon + Double(config.klWeight) * kl
                bc -= DRef.logSoftmax(DRef.scores(θ, e: e, c: c, ref.selected(θ, x), N: N), Int(batch.actions[b]), candidates: candidates)
                // The critic term: x and dec(x, 0) stopped, Q1's parameters constant; ξ live.
                q += ref.q(θ0, 1, xbar[b], ref.perturbed(θ, xbar[b], a0bar[b]))
            }
            return (vae, bc, q)
        }
        let at = terms(θ0)
        #expect(close(loss.vaeLossSum, at.vae, rel: 1e-4) && close(loss.bcLossSum, at.bc, rel: 1e-4)
                && close(loss.actorQSum, at.q, rel: 1e-4, abs: 1e-4), "\(loss) vs \(at)")
        let r = model.actorRange
        let indices = Array(r) + Array(l.total..<θ0.count)
        let actor = assembledActorGradient(g, layout: l, range: r, D: D)
        let analytic = actor + g.users.parts[0] + g.items.parts[0]
        let fd = finiteDifferenceMismatches(analytic, θ0, indices: indices) { θ in
            let t = terms(θ)
            return t.vae + Double(config.bcWeight) * t.bc - Double(lambda) * t.q
        }
        #expect(fd.bad.isEmpty, "\(fd.bad.prefix(20))")
        // Every live coordinate (not capacity, not a masked item's, not — sampled — an item
        // neither drawn nor logged) should have a gradient here; those get exactly nothing.
        let live = indices.count - (model.itemCapacity - touched.count) * (D + 1)
        #expect(fd.nonZero > live * 3 / 4, "too few non-zero gradients (\(fd.nonZero) of \(live))")
        for j in (0..<model.itemCapacity) where !touched.contains(j) {
            for d in 0..<D { #expect(actor[e - r.lowerBound + j * D + d] == 0) }
        }
    }

    @Test("what learns from what: the critic term moves ξ only; behaviour cloning reaches E; the VAE never moves E")
    func stopGradients() {
        let batch = tinyActorCriticBatch(8, seed: 9)
        func grads(_ config: BCQConfig, lambda: Float) -> (PhaseGradients, ParameterLayout, Int) {
            let model = trainedModel(config)
            let g = model.makeActorGradients()
            model.computeActorGradients(batch, lambda: lambda, into: g)
            return (g, model.layout, model.actorRange.lowerBound)
        }
        let (g0, layout, start) = grads(tinyBCQConfig(), lambda: 0)
        let (g1, _, _) = grads(tinyBCQConfig(), lambda: 2)
        var vaeOnly = tinyBCQConfig()
        vaeOnly.bcWeight = 0
        let (gv, _, _) = grads(vaeOnly, lambda: 0)
        for e in layout.entries where !e.name.hasPrefix("critic") {
            let r = (e.offset - start)..<(e.offset - start + e.count)
            let a = Array(g0.dense.buffer[r]), b = Array(g1.dense.buffer[r]), v = Array(gv.dense.buffer[r])
            if e.name.hasPrefix("perturb.") { #expect(a != b, "\(e.name) ignores the critic term") }
            else { #expect(a == b, "\(e.name) moved with the critic term's weight") }
            if e.name.hasPrefix("action.items") { #expect(v.allSatisfy { $0 == 0 } && a.contains { $0 != 0 }, "\(e.name)") }
            if e.name.hasPrefix("perturb.") { #expect(v.allSatisfy { $0 == 0 }, "\(e.name) learns from the VAE") }
            if e.name.hasPrefix("vae.") { #expect(v.contains { $0 != 0 }, "\(e.name) does not learn from the VAE loss") }
        }
        #expect(g0.users.parts == g1.users.parts && g0.items.parts == g1.items.parts)
    }

    @Test("selection is deterministic and scored by a dot product: scores(…) = ã·Eᵀ + bE, ã = dec(x, 0) + ξ; training's NDCG uses it")
    func deterministicSelectionOneScoring() {
        let config = tinyBCQConfig()
        let model = trainedModel(config)
        let batch = tinyActorCriticBatch(6, seed: 13)
        let N = model.itemCount, D = config.embeddingSize
        let scores = model.scores(users: batch.users, histories: batch.states)
        #expect(scores == model.scores(users: batch.users, histories: batch.states))
        let act = model.actions(users: batch.users, histories: batch.states)
        let tensors = Dictionary(uniqueKeysWithValues: model.exportTensors().map { ($0.name, $0) })
        let E = tensors["action.items.weight"]!.floats!, c = tensors["action.items.bias"]!.floats!
        // ã from the Double reference on the model's own state rows.
        let ref = BCQRef(c: config, l: model.layout)
        let θ = model.params.toArray().map(Double.init)
        for b in 0..<batch.count {
            // Unknown ids read as zero rows.
            func row(_ store: RowStore, _ slot: Int32?) -> [Double] {
                slot.map { s in (0..<D).map { Double(store.row(s)[$0]) } } ?? [Double](repeating: 0, count: D)
            }
            var x = row(model.rows.userRows, model.rows.userIndex.existingSlot(batch.users[b]))
            for i in 0..<2 {
                let id = batch.states[b * 2 + i]
                x += row(model.rows.itemRows, id == 0 ? nil : model.rows.itemIndex.existingSlot(id))
            }
            let want = ref.selected(θ, x)
            for d in 0..<D { #expect(close(Double(act[b * D + d]), want[d], rel: 1e-5, abs: 1e-6)) }
            #expect(scores[b * N] == -.infinity && scores[b * N + 1] == -.infinity)
            for j in 2..<N {
                let dot = (0..<D).reduce(Double(c[j])) { $0 + Double(act[b * D + $1]) * Double(E[j * D + $1]) }
                #expect(close(Double(scores[b * N + j]), dot, rel: 1e-5, abs: 1e-6))
            }
        }
        let expected = scores.withUnsafeBufferPointer { s in
            batch.actions.withUnsafeBufferPointer { a in
                batch.states.withUnsafeBufferPointer { h in
                    nextItemNDCGSum(scores: s.baseAddress!, actions: a.baseAddress!, history: h.baseAddress!, B: batch.count, N: N, H: 2)
                }
            }
        }
        let loss = model.computeActorGradients(batch, lambda: 0.3, into: model.makeActorGradients())
        #expect(expected > 0 && close(loss.ndcgSum, expected, rel: 1e-9))
    }

    @Test("both phases' gradients of two halves, summed, equal the whole batch's (the noise does not depend on the split) (full softmax; sampled, the same draws on both halves)",
          arguments: [false, true])
    func splitBatchGradientsEqualWholeBatch(sampled: Bool) {
        let config = sampledVariant(tinyBCQConfig(), sampled: sampled, items: 4)
        expectSplitBatchGradientsAdd({ trainedModel(config) }, sampled: sampled, ndcgExtra: 4, stateRows: false)
    }

    @Test("export and load reproduce the model (targets and Adam included), its scores and its next step bit for bit")
    func exportLoadRoundTrip() throws {
        let config = tinyBCQConfig()
        let model = BCQModel(config: config)
        let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
        model.trainStep(tinyActorCriticBatch(8, seed: 31), critic: gc, actor: ga)
        model.trainStep(tinyActorCriticBatch(8, seed: 32, items: 2...40), critic: gc, actor: ga)
        let tensors = Dictionary(uniqueKeysWithValues: model.exportTensors().map { ($0.name, $0) })
        #expect(tensors["target.perturb.dense.0.weight"] != nil && tensors["target.critic2.dense.1.bias"] != nil)
        #expect(tensors["target.vae.decoder.dense.0.weight"] == nil && tensors["vae.encoder.log_std.weight"]?.shape == [4, 2])
        let loaded = try BCQModel.load(config: config, tensors: tensors, step: model.step)
        #expect(loaded.parameterDigest() == model.parameterDigest())
        let probe = tinyActorCriticBatch(4, seed: 33, items: 2...40)
        #expect(loaded.scores(users: probe.users, histories: probe.states) == model.scores(users: probe.users, histories: probe.states))
        let next = tinyActorCriticBatch(8, seed: 34, items: 2...45)
        model.trainStep(next, critic: gc, actor: ga)
        loaded.trainStep(next, critic: loaded.makeCriticGradients(), actor: loaded.makeActorGradients())
        #expect(loaded.parameterDigest() == model.parameterDigest())
    }

    @Test("training on one batch lowers its VAE and BC losses; deterministic given the seed")
    func trainingLearnsDeterministically() {
        let batch = tinyActorCriticBatch(16, seed: 17)
        func run() -> (first: BCQLoss, last: BCQLoss, digest: UInt64) {
            let model = BCQModel(config: tinyBCQConfig(actorQWeight: 0.1, tau: 0.01))
            let gc = model.makeCriticGradients(), ga = model.makeActorGradients()
            let first = model.trainStep(batch, critic: gc, actor: ga)
            var last = first
            for _ in 0..<60 { last = model.trainStep(batch, critic: gc, actor: ga) }
            return (first, last, model.parameterDigest())
        }
        let a = run(), b = run()
        #expect(a.digest == b.digest && a.last == b.last)
        #expect(a.last.bcLossSum < a.first.bcLossSum && a.last.vaeLossSum < a.first.vaeLossSum, "\(a.first) → \(a.last)")
    }

    @Test func configDecodesSnakeCaseWithDefaultsAndValidates() throws {
        let json = #"{"kind": "bcq", "lambda": 0.5, "phi": 0.1, "target_samples": 4, "latent_size": 8}"#
        let c = try JSONDecoder().decode(BCQConfig.self, from: Data(json.utf8))
        #expect(c.lambda == 0.5 && c.phi == 0.1 && c.targetSamples == 4 && c.latentWidth == 8)
        #expect(c.historyLength == 10 && c.embeddingSize == 32 && c.tau == 0.005 && c.klWeight == 0.5)
        #expect(BCQConfig().latentWidth == 64)
        #expect(try JSONDecoder().decode(BCQConfig.self, from: JSONEncoder().encode(c)) == c)
        #expect(c.fullSoftmaxItems == 5_000 && c.sampledItems == 1024, "REINFORCE's defaults")
        let large = try JSONDecoder().decode(BCQConfig.self, from: Data(#"{"full_softmax_items": 500, "sampled_items": 64}"#.utf8))
        #expect(large.fullSoftmaxItems == 500 && large.sampledItems == 64)
        for bad in [#"{"sampled_items": 0}"#, #"{"full_softmax_items": 2}"#] {
            let d = try JSONDecoder().decode(BCQConfig.self, from: Data(bad.utf8))
            #expect(throws: ModelError.self, "\(bad)") { try d.validate() }
        }
        for bad in [#"{"lambda": 1.5}"#, #"{"target_samples": 0}"#, #"{"phi": -1}"#, #"{"latent_size": -2}"#] {
            let d = try JSONDecoder().decode(BCQConfig.self, from: Data(bad.utf8))
            #expect(throws: ModelError.self, "\(bad)") { try d.validate() }
        }
    }
}
