import Testing
import Foundation
@testable import Models
import StreamRecNumerics
import Features

// Double references for the actor-critic model tests (DDPG, BCQ): the networks written out on a
// flat parameter vector θ = [dense layout | user rows | item rows], so finite differences of a
// loss in Double can be compared with the models' analytic gradients.

enum DRef {
    /// y[O] = x·W + b with W at θ[w…] row-major [x.count × O], b at θ[b…] (nil: none).
    static func lin(_ θ: [Double], _ w: Int, _ b: Int?, _ x: [Double], _ O: Int) -> [Double] {
        var y = (0..<O).map { o in b.map { θ[$0 + o] } ?? 0 }
        for i in x.indices where x[i] != 0 {
            let r = w + i * O
            for o in 0..<O { y[o] += x[i] * θ[r + o] }
        }
        return y
    }
    static func relu(_ v: [Double]) -> [Double] { v.map { max($0, 0) } }
    static func tanh(_ v: [Double]) -> [Double] { v.map { Foundation.tanh($0) } }
    /// The item scores z_j = a·E_j + c_j, j < N, with E at θ[e…] [N × D] and c at θ[c…].
    static func scores(_ θ: [Double], e: Int, c: Int, _ a: [Double], N: Int) -> [Double] {
        let D = a.count
        return (0..<N).map { j in θ[c + j] + (0..<D).reduce(0.0) { $0 + a[$1] * θ[e + j * D + $1] } }
    }
    /// A sampled softmax's candidates: the step's drawn items and log Q of an item.
    typealias Candidates = (samples: [Int32], logQ: (Int32) -> Double)
    /// log softmax(z)[a] over the columns 2..<N (items 0 and 1 masked); with `candidates`, the
    /// sampled softmax's: over a and the drawn items except accidental hits, each logit
    /// corrected by −log Q.
    static func logSoftmax(_ z: [Double], _ a: Int, candidates: Candidates? = nil) -> Double {
        if let (samples, logQ) = candidates {
            let za = z[a] - logQ(Int32(a))
            var s = exp(za)
            for c in samples where Int(c) != a { s += exp(z[Int(c)] - logQ(c)) }
            return za - log(s)
        }
        var s = 0.0
        for j in 2..<z.count { s += exp(z[j]) }
        return z[a] - log(s)
    }
    /// A one-hidden-layer network on [x | y]: ReLU([x | y]·W1 + b1)·W2 + b2, offsets in θ.
    static func net(_ θ: [Double], w1: Int, b1: Int, w2: Int, b2: Int, _ x: [Double], _ y: [Double], hidden: Int, out: Int) -> [Double] {
        lin(θ, w2, b2, relu(lin(θ, w1, b1, x + y, hidden)), out)
    }
}

/// θ's layout for a batch: the dense parameters, then the rows of `userIds`, then of `itemIds`.
struct FlatRows {
    let total: Int, D: Int, H: Int
    let userIds: [Int32], itemIds: [Int32]

    func state(_ θ: [Double], _ batch: TransitionBatch, _ b: Int) -> [Double] {
        func row(_ ids: [Int32], base: Int, _ id: Int32) -> [Double] {
            guard let k = ids.firstIndex(of: id) else { return [Double](repeating: 0, count: D) }
            return Array(θ[(base + k * D)..<(base + (k + 1) * D)])
        }
        var x = row(userIds, base: total, batch.users[b])
        for i in 0..<H {
            let id = batch.states[b * H + i]
            x += id == 0 ? [Double](repeating: 0, count: D) : row(itemIds, base: total + userIds.count * D, id)
        }
        return x
    }

    static func flatten(_ params: FloatBuffer, total: Int, rows: StateRows, userIds: [Int32], itemIds: [Int32]) -> [Double] {
        var θ = (0..<total).map { Double(params[$0]) }
        let D = rows.dim
        for id in userIds { let r = rows.userRows.row(rows.userIndex.existingSlot(id)!); θ += (0..<D).map { Double(r[$0]) } }
        for id in itemIds { let r = rows.itemRows.row(rows.itemIndex.existingSlot(id)!); θ += (0..<D).map { Double(r[$0]) } }
        return θ
    }
}

/// Every analytic gradient (at the θ indices `indices`, in order) agrees with the finite
/// difference of `f`; returns the mismatches and how many analytic values were non-zero.
func finiteDifferenceMismatches(_ analytic: [Float], _ θ: [Double], indices: [Int], rel: Double = 2e-3, abs: Double = 2e-4,
                                _ f: ([Double]) -> Double) -> (bad: [String], nonZero: Int) {
    precondition(analytic.count == indices.count)
    var bad: [String] = [], nonZero = 0
    for (k, i) in indices.enumerated() {
        let num = numericGrad(θ, i, f)
        if !close(Double(analytic[k]), num, rel: rel, abs: abs) { bad.append("θ[\(i)]: \(analytic[k]) vs \(num)") }
        if analytic[k] != 0 { nonZero += 1 }
    }
    return (bad, nonZero)
}

/// B transitions over users 1…3 and items 2…7, H = 2, every third one ending a session.
func tinyActorCriticBatch(_ B: Int, seed: UInt64, items: ClosedRange<Int32> = 2...7) -> TransitionBatch {
    var t = tinyTransitions(B, seed: seed, items: items)
    for b in 0..<B where b % 3 == 1 { t.done[b] = true }
    return t
}

/// The actor phase's gradient over the actor range as one vector: the dense part, then (sampled
/// softmax) the item table's sparse rows, merged, added at their places; zero elsewhere.
func assembledActorGradient(_ g: PhaseGradients, layout l: ParameterLayout, range r: Range<Int>, D: Int) -> [Float] {
    var out = [Float](repeating: 0, count: r.count)
    for i in 0..<g.denseCount { out[i] = g.dense[i] }
    let m = g.itemRows.merged()
    let w = l.entry("action.items.weight")!.offset - r.lowerBound, b = l.entry("action.items.bias")!.offset - r.lowerBound
    for (u, id) in m.ids.enumerated() {
        for d in 0..<D { out[w + Int(id) * D + d] += m.parts[0][u * D + d] }
        out[b + Int(id)] += m.parts[1][u]
    }
    return out
}

/// The same config beyond `full_softmax_items` for the tiny batches' 8 item ids (sampled: true).
func sampledVariant(_ c: DDPGConfig, sampled: Bool, items: Int = 5) -> DDPGConfig {
    var c = c
    if sampled { c.fullSoftmaxItems = 4; c.sampledItems = items }
    return c
}
func sampledVariant(_ c: BCQConfig, sampled: Bool, items: Int = 5) -> BCQConfig {
    var c = c
    if sampled { c.fullSoftmaxItems = 4; c.sampledItems = items }
    return c
}

/// Two halves' sparse rows, concatenated and merged, hold the whole batch's rows (every part).
func expectJoinedRowsEqual(whole w: SparseGradient, _ x: SparseGradient, _ y: SparseGradient) {
    var joined = x
    joined.ids += y.ids
    for k in joined.parts.indices { joined.parts[k] += y.parts[k] }
    let merged = joined.merged()
    #expect(Set(merged.ids) == Set(w.ids) && merged.ids.count == w.ids.count)
    for (k, id) in merged.ids.enumerated() {
        guard let j = w.ids.firstIndex(of: id) else { continue }
        for (p, width) in w.widths.enumerated() {
            for d in 0..<width {
                #expect(close(Double(merged.parts[p][k * width + d]), Double(w.parts[p][j * width + d]), rel: 1e-4, abs: 1e-5), "row \(id)")
            }
        }
    }
}

/// Both phases' gradients of two halves of a batch, summed (dense) and concatenated (rows), equal
/// the whole batch's (sampled: the same draws on both halves). The actor's extras from
/// `ndcgExtra` on (the progressive NDCG: sampled, B·C/N rows of each local batch) are not
/// additive when sampled. `make` returns a model after a step.
func expectSplitBatchGradientsAdd<M: BehaviorCloningModel>(_ make: () -> M, sampled: Bool, ndcgExtra: Int, stateRows: Bool) {
    let batch = tinyActorCriticBatch(10, seed: 11)
    func half(_ r: Range<Int>) -> TransitionBatch {
        var t = TransitionBatch(historyLength: batch.historyLength)
        for b in r { t.append(user: batch.users[b], state: batch.state(b), action: batch.actions[b], reward: batch.rewards[b], done: batch.done[b], time: batch.times[b]) }
        return t
    }
    let whole = make(), a = make(), b = make()
    for m in [whole, a, b] { m.reserveItems(through: ItemTables.largest(batch)!) }
    let cw = whole.makeCriticGradients(), ca = a.makeCriticGradients(), cb = b.makeCriticGradients()
    _ = whole.computeCriticGradients(batch, into: cw)
    _ = a.computeCriticGradients(half(0..<5), into: ca)
    _ = b.computeCriticGradients(half(5..<10), into: cb)
    for i in 0..<(cw.denseCount + cw.extras) {
        #expect(close(Double(cw.dense[i]), Double(ca.dense[i] + cb.dense[i]), rel: 1e-4, abs: 1e-5), "critic dense[\(i)]")
    }
    let aw = whole.makeActorGradients(), aa = a.makeActorGradients(), ab = b.makeActorGradients()
    _ = whole.computeActorGradients(batch, lambda: 0.4, into: aw)
    _ = a.computeActorGradients(half(0..<5), lambda: 0.4, into: aa)
    _ = b.computeActorGradients(half(5..<10), lambda: 0.4, into: ab)
    #expect(whole.usesSampledSoftmax == sampled && aw.denseCount == whole.actorDenseCount)
    #expect(a.lastSampledItems == whole.lastSampledItems && b.lastSampledItems == whole.lastSampledItems)
    for i in 0..<(aw.denseCount + (sampled ? ndcgExtra : aw.extras)) {
        #expect(close(Double(aw.dense[i]), Double(aa.dense[i] + ab.dense[i]), rel: 1e-4, abs: 1e-5), "actor dense[\(i)]")
    }
    #expect(aw.itemRows.ids.isEmpty != sampled)
    expectJoinedRowsEqual(whole: aw.itemRows, aa.itemRows, ab.itemRows)
    guard stateRows else { return }
    for (w, x, y) in [(aw.users, aa.users, ab.users), (aw.items, aa.items, ab.items)] {
        var joined = x
        joined.ids += y.ids
        joined.parts[0] += y.parts[0]
        let merged = joined.merged(), D = whole.config.embeddingSize
        #expect(Set(merged.ids) == Set(w.ids) && merged.ids.count == w.ids.count)
        for (k, id) in merged.ids.enumerated() {
            let j = w.ids.firstIndex(of: id)!
            for d in 0..<D { #expect(close(Double(merged.parts[0][k * D + d]), Double(w.parts[0][j * D + d]), rel: 1e-4, abs: 1e-5)) }
        }
    }
}
