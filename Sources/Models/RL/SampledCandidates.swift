import Foundation
import Kernels
import StreamRecNumerics
import Features

// Large catalogues, shared by the RL families (REINFORCE, DDPG, BCQ): a softmax over an item table
// runs over every item while the catalogue has at most `full_softmax_items` item ids; beyond, over
// the step's candidates — the batch's true items and `sampled_items` items drawn log-uniformly by
// id (ids are given in first-seen order, so low ids are roughly the popular ones), shared by the
// batch — with the log-Q correction (`sampled_softmax_forward`). A step's cost then stops growing
// with the catalogue:
//
//   - the draw is fixed by (seed, step) and the item count, so every data-parallel replica draws
//     the same samples without talking (and the switch is a function of the item count, which
//     replicas agree on before a step);
//   - the table's gradient lives on the candidates' rows only: it travels as sparse rows
//     (widths [D, 1]: the weight row and the bias) through the same allgathervs as the input
//     rows, and lazy row-wise Adam updates those rows (`adamItemTableRows`); the fused dense
//     buffer shrinks to the parameters that are not item tables;
//   - progressive NDCG still ranks every item (the metric's definition), for the first
//     `ndcgRows` samples of each local batch: B·C/N rows cost about what the sampled softmax does.

/// One step's candidates of a sampled softmax: the distinct ids (true items first, in batch
/// order, then the drawn ones), each occurrence's local index and its proposal probability.
final class SampledCandidates {
    private let idSet = BatchRowSet()
    /// The items drawn this step, in draw order.
    private(set) var samples: [Int32] = []
    private(set) var trueLocal: [Int32] = [], sampledLocal: [Int32] = []
    private(set) var trueQ: [Float] = [], sampledQ: [Float] = []

    /// The distinct candidate ids, in first-seen order (the rows a step's gradient lists).
    var ids: [Int32] { idSet.slots }

    /// The proposal: log-uniform over the item ids 2..<N (Zipf-like by id),
    /// Q(id) = log((k+2)/(k+1)) / log(M+1) with k = id − 2 and M = N − 2.
    static func proposalProbability(_ id: Int32, items N: Int) -> Double {
        let k = Double(id - 2), M = Double(N - 2)
        return log((k + 2) / (k + 1)) / log(M + 1)
    }

    /// `count` log-uniform ids in 2..<N from a stream fixed by (`seed`, step): a replayed or
    /// replicated step draws the same ones. `seed` is the model's seed mixed with its sampler tag.
    static func draw(seed: UInt64, step s: Int, items N: Int, count: Int) -> [Int32] {
        let M = N - 2, logRange = log(Double(M + 1))
        var rng = SplitMix64(seed: SplitMix64.mix(seed, UInt64(s)))
        return (0..<count).map { _ in
            let u = Double(rng.next() >> 11) * 0x1p-53
            return Int32(min(max(Int(exp(u * logRange)) - 1, 0), M - 1) + 2)
        }
    }

    /// Samples of a local batch of B whose progressive NDCG is computed at step `s` under the
    /// sampled softmax: ranking every item for R rows costs R·N, so R = B·C/N (C = 1 +
    /// sampled_items) keeps it near the sampled softmax's own cost (B·C) at any catalogue size;
    /// below one row per step, one row every ⌈N/(B·C)⌉ steps.
    static func ndcgRows(batch B: Int, step s: Int, items: Int, sampledItems K: Int) -> Int {
        let work = B * (1 + K), N = max(items, 1)
        if work >= N { return min(B, work / N) }
        return s % ((N + work - 1) / work) == 0 ? min(B, 1) : 0
    }

    /// Σ NDCG@k of the first R samples' actions ranked by A·Eᵀ + bias over every item
    /// (`nextItemNDCGSum`), with `scratch` grown to [R × N].
    static func ndcgSum(rows R: Int, scratch: inout [Float], A: UnsafePointer<Float>, E: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>, batch: TransitionBatch, items N: Int, D: Int, k: Int) -> Double {
        guard R > 0 else { return 0 }
        if scratch.count < R * N { scratch = [Float](repeating: 0, count: R * N) }
        return scratch.withUnsafeMutableBufferPointer { z in
            dot_scores_forward(scores: z.baseAddress!, A: A, E: E, bias: bias, B: R, N: N, D: D)
            return batch.actions.withUnsafeBufferPointer { a in batch.states.withUnsafeBufferPointer { st in
                nextItemNDCGSum(scores: z.baseAddress!, actions: a.baseAddress!, history: st.baseAddress!,
                                B: R, N: N, H: batch.historyLength, k: k)
            } }
        }
    }

    /// Starts a step: the batch's true items, then the drawn ones.
    func prepare(actions: [Int32], samples drawn: [Int32], items N: Int) {
        samples = drawn
        idSet.reset()
        trueLocal.removeAll(keepingCapacity: true); sampledLocal.removeAll(keepingCapacity: true)
        trueQ.removeAll(keepingCapacity: true); sampledQ.removeAll(keepingCapacity: true)
        for a in actions {
            trueLocal.append(idSet.local(a)); trueQ.append(Float(Self.proposalProbability(a, items: N)))
        }
        for s in drawn {
            sampledLocal.append(idSet.local(s)); sampledQ.append(Float(Self.proposalProbability(s, items: N)))
        }
    }
}

/// One item table's part of a sampled softmax over the step's candidates: their gathered rows
/// [U × D] and biases [U], the probabilities [B × C], and the rows' gradients.
final class SampledHead {
    private(set) var rows: [Float] = [], bias: [Float] = []
    private(set) var dRows: [Float] = [], dBias: [Float] = []
    private(set) var probs: [Float] = []

    /// Zeroes `a`'s first n floats, growing it when short.
    static func zeroed(_ a: inout [Float], _ n: Int) {
        if a.count < n { a = [Float](repeating: 0, count: n) } else { a.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
    }

    /// Gathers the candidates' rows of the table (weight [N × D] and bias at the pointers) and
    /// zeroes the gradients, for a batch of B.
    func gather(_ c: SampledCandidates, weight: UnsafePointer<Float>, bias b: UnsafePointer<Float>, B: Int, D: Int) {
        let ids = c.ids, U = ids.count
        Self.zeroed(&rows, U * D); Self.zeroed(&dRows, U * D); Self.zeroed(&bias, U); Self.zeroed(&dBias, U)
        Self.zeroed(&probs, B * (1 + c.samples.count))
        for (u, id) in ids.enumerated() {
            let j = Int(id)
            for d in 0..<D { rows[u * D + d] = weight[j * D + d] }
            bias[u] = b[j]
        }
    }

    /// The sampled softmax of h[B × D] over the candidates: probabilities, logp[b] = log p(true
    /// item of b); returns Σ_b −logp[b].
    @discardableResult
    func forward(_ c: SampledCandidates, h: UnsafePointer<Float>, logp: UnsafeMutablePointer<Float>, B: Int, D: Int) -> Double {
        c.trueLocal.withUnsafeBufferPointer { tl in c.sampledLocal.withUnsafeBufferPointer { sl in
        c.trueQ.withUnsafeBufferPointer { tq in c.sampledQ.withUnsafeBufferPointer { sq in
            sampled_softmax_forward(probs: &probs, logp: logp, h: h, rows: rows, bias: bias,
                                    trueLocal: tl.baseAddress!, sampledLocal: sl.baseAddress!, trueQ: tq.baseAddress!,
                                    sampledQ: sq.baseAddress!, weights: nil, B: B, K: c.samples.count, D: D)
        } } } }
    }

    /// Backward of dloss · Σ_b w_b · (−logp[b]): accumulates into dh[B × D] and the rows' gradients.
    func backward(_ c: SampledCandidates, dh: UnsafeMutablePointer<Float>, h: UnsafePointer<Float>,
                  weights: UnsafePointer<Float>?, dloss: Float, B: Int, D: Int) {
        c.trueLocal.withUnsafeBufferPointer { tl in c.sampledLocal.withUnsafeBufferPointer { sl in
            sampled_softmax_backward(dh: dh, drows: &dRows, dbias: &dBias, probs: probs, h: h, rows: rows,
                                     trueLocal: tl.baseAddress!, sampledLocal: sl.baseAddress!, weights: weights,
                                     dloss: dloss, B: B, K: c.samples.count, D: D)
        } }
    }

    /// Appends the candidates' row gradients to a sparse gradient of widths [D, 1].
    func append(_ c: SampledCandidates, to g: inout SparseGradient, D: Int) {
        let U = c.ids.count
        g.ids.append(contentsOf: c.ids)
        g.parts[0].append(contentsOf: dRows.prefix(U * D))
        g.parts[1].append(contentsOf: dBias.prefix(U))
    }
}

/// Lazy Adam on the listed rows of a dense item table (weight rows of width D at `weight`, their
/// biases at `bias`, moments at the same offsets of m and v); repeats merged in list order.
func adamItemTableRows(_ g: SparseGradient, params: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
                       v: UnsafeMutablePointer<Float>, weight w: Int, bias bo: Int, D: Int, step: Int,
                       optimizer opt: AdamConfig, scale: Float) {
    guard !g.ids.isEmpty else { return }
    let grad = g.merged()
    grad.parts[0].withUnsafeBufferPointer { rows in grad.parts[1].withUnsafeBufferPointer { bias in
        for (u, id) in grad.ids.enumerated() {
            let j = Int(id)
            adam_update(params: params + w + j * D, grads: rows.baseAddress! + u * D, m: m + w + j * D,
                        v: v + w + j * D, count: D, step: step, config: opt, gradScale: scale)
            adam_update(params: params + bo + j, grads: bias.baseAddress! + u, m: m + bo + j,
                        v: v + bo + j, count: 1, step: step, config: opt, gradScale: scale)
        }
    } }
}
