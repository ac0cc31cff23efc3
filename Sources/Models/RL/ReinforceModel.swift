import Foundation
import Kernels
import StreamRecNumerics
import Features

// REINFORCE with the off-policy and top-K corrections (Chen et al. 2019, "Top-K Off-Policy
// Correction for a REINFORCE Recommender System"), on the transitions of the behaviour pipeline.
//
// Per transition b (user u_b, state s_b = the H items before the action, action a_b, rewards
// r_b,0 … r_b,W−1 of the action and its next W−1 events in the session, 0 after it ended):
//
//   x   = [userRow(u) | itemRow(s_1) | … | itemRow(s_H)]        [B × (H+1)·D]   sparse rows, lazy Adam
//   a1  = ReLU(x · W1 + b1)                                       [B × hidden]
//   h   = a1 · W2 + b2 + w_r · Σ_{i>H−R} E[s_i]                   [B × D]   the recent-items path (R = recent_items)
//   z   = h · Eᵀ + bE                  column j scores item id j  [B × N]         E [N × D]
//   π   = softmax(z), items 0 (padding) and 1 (OOV) masked
//   zβ  = stop_gradient(h) · Fᵀ + bF;  β = softmax(zβ), same mask              F [N × D]
//   G_b = Σ_k γ^k · r_b,k                                        the discounted return
//   c_b = min(π(a_b|s_b) / β(a_b|s_b), weight_cap) · K·(1 − π(a_b|s_b))^(K−1) · G_b   (a constant)
//   loss = Σ_b c_b · (−log π(a_b|s_b)) / B  +  beta_loss_weight · Σ_b (−log β(a_b|s_b)) / B
//
// The recent-items path adds the policy's own output rows of the state's last R items to h, so
// z_j holds w_r · Σ_i E[s_i]·E[j]: an item–item similarity learned in the table every step trains
// (each step sends a gradient to every row of E), not only through the input rows a few steps touch.
// Next items that follow from the recently consumed ones (`gen behavior`'s planted model, and
// sessions generally) are learned from far fewer events (held-out NDCG@10 0.066 → 0.123).
//
// log π(a_b|s_b) and log β(a_b|s_b) are one value per sample, from row b and action a_b
// (`softmax_cross_entropy_forward`). β is the learned behaviour policy: it reads the policy's
// state vector h (as in the paper, a second softmax head on the shared state) but its gradient
// stops there, so it trains only its own head (E, bE and the MLP see nothing of it). The importance weight and the top-K factor are constants of the step.
//
// G_b is the paper's discounted return within the session, truncated at the batch's reward window
// W: the feature workers hold each event back until its W−1 successors' rewards are known (or
// its session ended), so a streaming batch carries the return's terms. W = 1 is the immediate
// reward alone. The model accepts whatever W a batch carries.
//
// Large catalogues: with more than `full_softmax_items` item ids, both softmaxes run over the
// step's candidates instead of every item — the batch's true items and `sampled_items` items drawn
// log-uniformly by id (ids are given in first-seen order, so low ids are roughly the popular
// ones), with the log-Q correction (`sampled_softmax_forward`). π(a|s) and β(a|s) in c_b are then
// the sampled estimates. E, bE, F and bF get gradients on the candidates' rows only, which travel
// as sparse rows (`policyItems`, `betaItems`) and are updated by lazy row-wise Adam; the fused
// dense buffer shrinks to the MLP. Progressive NDCG then ranks every item for the first
// `sampledNDCGRows` samples of each local batch (a full ranking is the metric's definition; B·C/N
// rows cost about what the sampled softmax does).
//
// Parameters: the dense ones (W1, b1, W2, b2, E, bE, F, bF) in one flat buffer cut by
// `layout` — Adam moments share it, and a data-parallel step allreduces the gradient buffer in
// one call. E, bE, F and bF have a row per item id; the model grows them to the largest item id
// seen (their capacity is a function of the item count only, so replicas that agree on the item
// count have the same layout). User and item input rows are sparse (`IdIndex` + `RowStore`),
// created on first sight from a hash of (seed, id), updated by lazy row-wise Adam.
//
// A step is `computeGradients` (forward, backward, sum-form gradients: the fused dense buffer
// and the touched rows as (unique ids, rows) lists) and `applyGradients` (divided by the step's
// samples over all participants). Between them a data-parallel trainer sums the dense buffer and
// concatenates the row lists across participants; repeats are merged in list order, so every
// replica applies the same bits.

/// Loss sums of one forward pass over a local batch.
public struct ReinforceLoss: Sendable, Equatable {
    /// Σ_b c_b · (−log π(a_b|s_b)).
    public var policyLossSum = 0.0
    /// Σ_b −log β(a_b|s_b) (before `beta_loss_weight`).
    public var betaLossSum = 0.0
    /// Σ_b NDCG@10 of the logged action under the policy's scores before the update.
    public var ndcgSum = 0.0
    /// Samples `ndcgSum` covers (all of them, or `sampledNDCGRows` per batch when sampled).
    public var ndcgCount = 0
    public var count = 0
    public init() {}
}

/// One participant's gradients for one step, in sum form.
public final class ReinforceGradients: @unchecked Sendable {
    /// Bookkeeping floats after the parameters' gradients, summed by the same allreduce: sample
    /// count, policy loss sum, β loss sum, progressive NDCG@10 sum and the samples it covers.
    public static let extras = 5
    /// `denseCount` gradients (the model's `layout`), then the extras.
    public private(set) var dense: FloatBuffer
    public private(set) var denseCount: Int
    /// User rows touched (width D), ids in first-seen order.
    public var users: SparseGradient
    /// Item input rows touched (width D), ids in first-seen order.
    public var items: SparseGradient
    /// Sampled softmax only: the candidates' rows of E | bE and of F | bF (widths D, 1); empty
    /// with the full softmax, whose item-table gradients are part of `dense`.
    public var policyItems: SparseGradient
    public var betaItems: SparseGradient

    public init(denseCount: Int, embeddingSize: Int) {
        self.denseCount = denseCount
        dense = FloatBuffer(count: denseCount + Self.extras)
        users = SparseGradient(widths: [embeddingSize])
        items = SparseGradient(widths: [embeddingSize])
        policyItems = SparseGradient(widths: [embeddingSize, 1])
        betaItems = SparseGradient(widths: [embeddingSize, 1])
    }

    /// Zeroes everything, reallocating the dense buffer when the layout grew.
    func prepare(denseCount n: Int) {
        if n != denseCount { dense = FloatBuffer(count: n + Self.extras); denseCount = n } else { dense.zero() }
        users.removeAll()
        items.removeAll()
        policyItems.removeAll()
        betaItems.removeAll()
    }

    public var sampleCount: Int {
        get { Int(dense[denseCount]) }
        set { dense[denseCount] = Float(newValue) }
    }
    public var policyLossSum: Float {
        get { dense[denseCount + 1] }
        set { dense[denseCount + 1] = newValue }
    }
    public var betaLossSum: Float {
        get { dense[denseCount + 2] }
        set { dense[denseCount + 2] = newValue }
    }
    public var ndcgSum: Float {
        get { dense[denseCount + 3] }
        set { dense[denseCount + 3] = newValue }
    }
    public var ndcgCount: Int {
        get { Int(dense[denseCount + 4]) }
        set { dense[denseCount + 4] = Float(newValue) }
    }
}

/// Activations and scratch, grown on demand (batch size, item count). One per model.
final class ReinforceWorkspace {
    private(set) var batchCapacity = 0, itemCapacity = 0
    var userLocal = Int32Buffer(capacity: 1), itemLocal = Int32Buffer(capacity: 1)
    var x = FloatBuffer(count: 0), a1 = FloatBuffer(count: 0), h = FloatBuffer(count: 0)
    var dx = FloatBuffer(count: 0), da1 = FloatBuffer(count: 0), dh = FloatBuffer(count: 0)
    /// Policy and β logits [B × N] (overwritten by their gradients in backward) and probabilities.
    var logits = FloatBuffer(count: 0), probs = FloatBuffer(count: 0)
    var betaLogits = FloatBuffer(count: 0), betaProbs = FloatBuffer(count: 0)
    var logpPi = FloatBuffer(count: 0), logpBeta = FloatBuffer(count: 0), coef = FloatBuffer(count: 0)
    /// Row gradients of the batch's unique users [B × D] and items [B·H × D].
    var dUserRows = FloatBuffer(count: 0), dItemRows = FloatBuffer(count: 0)
    /// Sampled softmax: β's discarded dh [B × D] and the progressive NDCG's full scores
    /// [sampledNDCGRows × N].
    var dhDiscarded: [Float] = [], ndcgScores: [Float] = []

    func ensure(_ c: ReinforceConfig, batch B: Int, items N: Int) {
        let D = c.embeddingSize, H = c.historyLength, Hd = c.hiddenSize
        if B > batchCapacity {
            batchCapacity = B
            userLocal = Int32Buffer(capacity: B); itemLocal = Int32Buffer(capacity: B * H)
            x = FloatBuffer(count: B * c.stateWidth); dx = FloatBuffer(count: B * c.stateWidth)
            a1 = FloatBuffer(count: B * Hd); da1 = FloatBuffer(count: B * Hd)
            h = FloatBuffer(count: B * D); dh = FloatBuffer(count: B * D)
            logpPi = FloatBuffer(count: B); logpBeta = FloatBuffer(count: B); coef = FloatBuffer(count: B)
            dUserRows = FloatBuffer(count: B * D); dItemRows = FloatBuffer(count: B * H * D)
            itemCapacity = 0   // the [B × N] buffers below depend on B too
        }
        if N > itemCapacity {
            itemCapacity = N
            logits = FloatBuffer(count: batchCapacity * N); probs = FloatBuffer(count: batchCapacity * N)
            betaLogits = FloatBuffer(count: batchCapacity * N); betaProbs = FloatBuffer(count: batchCapacity * N)
        }
    }
}

public final class ReinforceModel: @unchecked Sendable {
    /// Item ids never recommended nor scored: 0 pads a state, 1 is the item OOV id.
    public static let maskedItems: [Int32] = [TransitionBatch.paddingItem, 1]
    /// The cutoff of the progressive NDCG.
    public static let ndcgCutoff = 10

    public let config: ReinforceConfig
    /// Dense parameters and their Adam moments (same layout). Item tables have `itemCapacity` rows.
    public private(set) var layout: ParameterLayout
    public private(set) var params, adamM, adamV: FloatBuffer
    /// N: columns of the policy (largest item id seen + 1). Rows of the item tables beyond it are
    /// capacity, never scored and never changed.
    public private(set) var itemCount: Int
    /// Sparse input rows (each with Adam m, v).
    public let userIndex = IdIndex(), itemIndex = IdIndex()
    public let userRows: RowStore, itemRows: RowStore
    /// Optimizer steps applied so far.
    public var step = 0

    struct Offsets {
        var w1 = 0, b1 = 0, w2 = 0, b2 = 0, e = 0, be = 0, f = 0, bf = 0
        init(_ l: ParameterLayout) {
            func o(_ n: String) -> Int { l.entry(n)!.offset }
            w1 = o("policy.dense.0.weight"); b1 = o("policy.dense.0.bias")
            w2 = o("policy.dense.1.weight"); b2 = o("policy.dense.1.bias")
            e = o("policy.items.weight"); be = o("policy.items.bias")
            f = o("beta.items.weight"); bf = o("beta.items.bias")
        }
    }
    private var offsets: Offsets
    private let ws = ReinforceWorkspace()
    private let userSet = BatchRowSet(), itemSet = BatchRowSet()
    /// The sampled softmax's candidates and the two heads' gathered rows (`SampledCandidates`).
    private let candidates = SampledCandidates(), policyHead = SampledHead(), betaHead = SampledHead()
    /// The items the last sampled step drew (for tests and the reference).
    internal private(set) var lastSampledItems: [Int32] = []
    /// Samples of a local batch of B whose progressive NDCG is computed at step `s` under the
    /// sampled softmax: ranking every item for R rows costs R·N, so R = B·C/N (C = 1 +
    /// sampled_items) keeps it near the sampled softmax's own cost (B·C) at any catalogue size;
    /// below one row per step, one row every ⌈N/(B·C)⌉ steps.
    public func sampledNDCGRows(batch B: Int, step s: Int) -> Int {
        SampledCandidates.ndcgRows(batch: B, step: s, items: itemCount, sampledItems: config.sampledItems)
    }

    /// True when the softmaxes run over sampled candidates (more than `full_softmax_items` ids).
    /// A function of the item count, so data-parallel replicas agree once `reserveItems` ran.
    public var usesSampledSoftmax: Bool { itemCount > config.fullSoftmaxItems }

    /// Parameters before the item tables (the MLP): the dense gradient under the sampled softmax.
    var mlpCount: Int { offsets.e }

    /// Floats of the dense gradient this step: every parameter, or the MLP's when sampled.
    public var denseGradientCount: Int { usesSampledSoftmax ? mlpCount : layout.total }

    /// The proposal of the sampled softmax: log-uniform over the item ids 2..<N (Zipf-like by
    /// id), Q(id) = log((k+2)/(k+1)) / log(M+1) with k = id − 2 and M = N − 2.
    public static func proposalProbability(_ id: Int32, items N: Int) -> Double {
        SampledCandidates.proposalProbability(id, items: N)
    }

    /// Names of the dense tensors with a row per item id.
    static let itemTables: Set<String> = ["policy.items.weight", "policy.items.bias", "beta.items.weight", "beta.items.bias"]
    // Hash tags of the per-id initial values (one stream per table) and of the sampler.
    private static let userTag: UInt64 = 0x05E7_0001, itemTag: UInt64 = 0x17E3_0002
    private static let policyItemTag: UInt64 = 0x0F7E_0003, betaItemTag: UInt64 = 0xBE7A_0004
    private static let samplerTag: UInt64 = 0x5A3F_0005

    public init(config: ReinforceConfig) {
        self.config = config
        itemCount = 2
        let cap = Self.itemCapacity(forItems: 2)
        let l = Self.makeLayout(config, itemCapacity: cap)
        layout = l
        offsets = Offsets(l)
        params = FloatBuffer(count: l.total)
        adamM = FloatBuffer(count: l.total)
        adamV = FloatBuffer(count: l.total)
        userRows = RowStore(dim: config.embeddingSize, states: 2)
        itemRows = RowStore(dim: config.embeddingSize, states: 2)
        // Glorot-uniform MLP weights from the seed, zero biases; item rows from (seed, id).
        var rng = SplitMix64(seed: config.seed)
        for name in ["policy.dense.0.weight", "policy.dense.1.weight"] {
            let e = layout.entry(name)!
            let limit = Float((6.0 / Double(e.shape[0] + e.shape[1])).squareRoot())
            for i in e.offset..<(e.offset + e.count) { params[i] = rng.uniform(-limit, limit) }
        }
        initializeItemRows(0..<cap)
    }

    static func makeLayout(_ c: ReinforceConfig, itemCapacity n: Int) -> ParameterLayout {
        var l = ParameterLayout()
        l.add("policy.dense.0.weight", shape: [c.stateWidth, c.hiddenSize])
        l.add("policy.dense.0.bias", shape: [c.hiddenSize])
        l.add("policy.dense.1.weight", shape: [c.hiddenSize, c.embeddingSize])
        l.add("policy.dense.1.bias", shape: [c.embeddingSize])
        l.add("policy.items.weight", shape: [n, c.embeddingSize])
        l.add("policy.items.bias", shape: [n])
        l.add("beta.items.weight", shape: [n, c.embeddingSize])
        l.add("beta.items.bias", shape: [n])
        return l
    }

    /// Rows the item tables hold for `n` items (`ItemTables.capacity`, shared with DDPG and BCQ).
    public static func itemCapacity(forItems n: Int) -> Int { ItemTables.capacity(forItems: n) }

    /// Rows of the item tables (≥ `itemCount`).
    public var itemCapacity: Int { layout.entry("policy.items.bias")!.shape[0] }

    private func initializeItemRows(_ rows: Range<Int>) {
        let D = config.embeddingSize, a = config.embeddingInitScale
        for j in rows {
            var r1 = SplitMix64(seed: SplitMix64.mix(config.seed ^ Self.policyItemTag, UInt64(j)))
            for d in 0..<D { params[offsets.e + j * D + d] = r1.uniform(-a, a) }
            var r2 = SplitMix64(seed: SplitMix64.mix(config.seed ^ Self.betaItemTag, UInt64(j)))
            for d in 0..<D { params[offsets.f + j * D + d] = r2.uniform(-a, a) }
        }
    }

    /// Grows the item tables so that item `maxId` has a column (no-op when it has). Data-parallel
    /// participants call it with the step's largest id over all of them before computing, so their
    /// layouts stay equal.
    public func reserveItems(through maxId: Int32) {
        let n = Int(maxId) + 1
        guard n > itemCount else { return }
        let oldCap = itemCapacity, cap = Self.itemCapacity(forItems: n)
        if cap > oldCap {
            let newLayout = Self.makeLayout(config, itemCapacity: cap)
            let p = FloatBuffer(count: newLayout.total), m = FloatBuffer(count: newLayout.total), v = FloatBuffer(count: newLayout.total)
            // Row-major tables: the old rows are a prefix of the new entry.
            for e in newLayout.entries {
                let old = layout.entry(e.name)!
                for (src, dst) in [(params, p), (adamM, m), (adamV, v)] {
                    dst.pointer.advanced(by: e.offset).update(from: src.pointer.advanced(by: old.offset), count: old.count)
                }
            }
            layout = newLayout
            offsets = Offsets(newLayout)
            params = p; adamM = m; adamV = v
            initializeItemRows(oldCap..<cap)
        }
        itemCount = n
    }

    // MARK: - Sparse rows

    private func createRow(_ rows: RowStore, tag: UInt64, id: Int32) {
        let s = rows.append()
        let row = rows.row(s), a = config.embeddingInitScale
        var rng = SplitMix64(seed: SplitMix64.mix(config.seed ^ tag, UInt64(UInt32(bitPattern: id))))
        for d in 0..<config.embeddingSize { row[d] = rng.uniform(-a, a) }
    }

    @inline(__always) private func userSlotCreating(_ id: Int32) -> Int32 {
        userIndex.slot(id) { id, _ in createRow(userRows, tag: Self.userTag, id: id) }
    }

    @inline(__always) private func itemSlotCreating(_ id: Int32) -> Int32 {
        itemIndex.slot(id) { id, _ in createRow(itemRows, tag: Self.itemTag, id: id) }
    }

    // MARK: - Forward

    /// x, a1, h, z (and zβ with `beta`) for B transitions. Ids without a row read as zero rows.
    private func forward(users: UnsafePointer<Int32>, history: UnsafePointer<Int32>, B: Int, beta: Bool) {
        let c = config, D = c.embeddingSize, N = itemCount
        ws.ensure(c, batch: B, items: itemCapacity)   // [B × N] buffers: reallocated only when the tables grow
        forwardState(users: users, history: history, B: B)
        let p = UnsafePointer(params.pointer), o = offsets
        dot_scores_forward(scores: ws.logits.pointer, A: ws.h.pointer, E: p + o.e, bias: p + o.be, B: B, N: N, D: D)
        if beta {
            dot_scores_forward(scores: ws.betaLogits.pointer, A: ws.h.pointer, E: p + o.f, bias: p + o.bf, B: B, N: N, D: D)
        }
    }

    /// x, a1 and the state vector h for B transitions (workspace ensured by the caller).
    private func forwardState(users: UnsafePointer<Int32>, history: UnsafePointer<Int32>, B: Int) {
        let c = config, D = c.embeddingSize, H = c.historyLength, Hd = c.hiddenSize
        let p = UnsafePointer(params.pointer), o = offsets
        let userIndex = self.userIndex, itemIndex = self.itemIndex, userRows = self.userRows, itemRows = self.itemRows
        state_gather_forward(out: ws.x.pointer, users: users, history: history, B: B, H: H, D: D,
                             userRow: { id in userIndex.existingSlot(id).map { UnsafePointer(userRows.row($0)) } },
                             itemRow: { id in itemIndex.existingSlot(id).map { UnsafePointer(itemRows.row($0)) } })
        linear_forward(out: ws.a1.pointer, inp: ws.x.pointer, weight: p + o.w1, bias: p + o.b1, B: B, I: c.stateWidth, O: Hd)
        relu_forward(out: ws.a1.pointer, inp: ws.a1.pointer, N: B * Hd)
        linear_forward(out: ws.h.pointer, inp: ws.a1.pointer, weight: p + o.w2, bias: p + o.b2, B: B, I: Hd, O: D)
        recent_items_forward(h: ws.h.pointer, E: p + o.e, history: history, B: B, H: H, R: c.recentItems, D: D,
                             N: itemCount, weight: c.recentWeight)
    }

    /// π and β over the items and each sample's log π(a_b|s_b), log β(a_b|s_b) (after `forward`).
    private func softmaxes(actions: UnsafePointer<Int32>, B: Int) {
        let N = itemCount
        Self.maskedItems.withUnsafeBufferPointer { masked in
            _ = softmax_cross_entropy_forward(probs: ws.probs.pointer, logp: ws.logpPi.pointer, logits: ws.logits.pointer,
                                              actions: actions, weights: nil, masked: masked.baseAddress!, M: masked.count, B: B, N: N)
            _ = softmax_cross_entropy_forward(probs: ws.betaProbs.pointer, logp: ws.logpBeta.pointer, logits: ws.betaLogits.pointer,
                                              actions: actions, weights: nil, masked: masked.baseAddress!, M: masked.count, B: B, N: N)
        }
    }

    /// The policy's scores z = h · Eᵀ + bE of every item for each (user, history) — the scores
    /// training uses, for ranking and serving. Row-major [B × itemCount]; column j is item id j;
    /// the masked items 0 and 1 score −∞. `histories` is [B × H], padded with 0 in front. Unknown
    /// ids read as zero rows; nothing is created.
    public func scores(users: [Int32], histories: [Int32]) -> [Float] {
        let B = users.count, H = config.historyLength, N = itemCount
        precondition(histories.count == B * H, "histories must be \(B) × \(H) item ids")
        if B == 0 { return [] }
        users.withUnsafeBufferPointer { u in
            histories.withUnsafeBufferPointer { h in forward(users: u.baseAddress!, history: h.baseAddress!, B: B, beta: false) }
        }
        var out = Array(UnsafeBufferPointer(start: ws.logits.pointer, count: B * N))
        for b in 0..<B { for m in Self.maskedItems { out[b * N + Int(m)] = -.infinity } }
        return out
    }

    /// log π(a_b|s_b) and log β(a_b|s_b) of each transition (one value per sample, from its own
    /// row and action); no training, nothing created. Actions must have columns (`reserveItems`).
    public func logProbabilities(_ batch: TransitionBatch) -> (policy: [Float], behavior: [Float]) {
        let B = batch.count
        precondition(batch.historyLength == config.historyLength)
        precondition(batch.actions.allSatisfy { $0 >= 2 && Int($0) < itemCount }, "actions need columns: reserveItems first")
        if B == 0 { return ([], []) }
        batch.users.withUnsafeBufferPointer { u in
            batch.states.withUnsafeBufferPointer { h in forward(users: u.baseAddress!, history: h.baseAddress!, B: B, beta: true) }
        }
        batch.actions.withUnsafeBufferPointer { softmaxes(actions: $0.baseAddress!, B: B) }
        return (Array(UnsafeBufferPointer(start: ws.logpPi.pointer, count: B)),
                Array(UnsafeBufferPointer(start: ws.logpBeta.pointer, count: B)))
    }

    /// Σ_b NDCG@10 of action a_b ranked by z_b (`nextItemNDCGSum`, shared by the RL families).
    private func ndcgSum(actions: UnsafePointer<Int32>, history: UnsafePointer<Int32>, B: Int) -> Double {
        nextItemNDCGSum(scores: ws.logits.pointer, actions: actions, history: history,
                        B: B, N: itemCount, H: config.historyLength, k: Self.ndcgCutoff)
    }

    // MARK: - Backward

    /// Forward and backward on a local batch; leaves sum-form gradients in `g` (fused dense
    /// buffer with the extras, unique user and item rows). Parameters do not change, but unseen
    /// ids get their rows and the item tables grow to the batch's largest item id (data-parallel
    /// callers grow them to the step's largest id first: see `reserveItems`).
    @discardableResult
    public func computeGradients(_ batch: TransitionBatch, into g: ReinforceGradients) -> ReinforceLoss {
        let c = config, B = batch.count, H = c.historyLength, D = c.embeddingSize, Hd = c.hiddenSize
        precondition(batch.historyLength == H, "a batch with history length \(batch.historyLength), the model has \(H)")
        if let top = Self.largestItem(batch) { reserveItems(through: top) }
        g.prepare(denseCount: denseGradientCount)
        var loss = ReinforceLoss()
        if B == 0 { return loss }
        let sampled = usesSampledSoftmax
        ws.ensure(c, batch: B, items: sampled ? 0 : itemCapacity)

        // The batch's rows: created on first sight; each occurrence's index among the unique ones.
        userSet.reset(); itemSet.reset()
        let userLocal = ws.userLocal.pointer, itemLocal = ws.itemLocal.pointer
        for b in 0..<B { userLocal[b] = userSet.local(userSlotCreating(batch.users[b])) }
        for k in 0..<(B * H) {
            let id = batch.states[k]
            itemLocal[k] = id == TransitionBatch.paddingItem ? 0 : itemSet.local(itemSlotCreating(id))
        }

        // Forward to the state vector h; the heads, their coefficients and their backward leave dh.
        batch.users.withUnsafeBufferPointer { u in
            batch.states.withUnsafeBufferPointer { h in forwardState(users: u.baseAddress!, history: h.baseAddress!, B: B) }
        }
        if sampled { sampledHeads(batch, into: g, loss: &loss) } else { fullHeads(batch, into: g, loss: &loss) }
        loss.count = B
        g.sampleCount = B
        g.policyLossSum = Float(loss.policyLossSum)
        g.betaLossSum = Float(loss.betaLossSum)
        g.ndcgSum = Float(loss.ndcgSum)
        g.ndcgCount = loss.ndcgCount

        // The MLP and the input rows, backward from dh.
        let p = UnsafePointer(params.pointer), dp = g.dense.pointer, o = offsets
        ws.da1.slice(0, B * Hd).update(repeating: 0)
        linear_backward(dinp: ws.da1.pointer, dweight: dp + o.w2, dbias: dp + o.b2, dout: ws.dh.pointer,
                        inp: ws.a1.pointer, weight: p + o.w2, B: B, I: Hd, O: D)
        relu_backward(dinp: ws.da1.pointer, dout: ws.da1.pointer, out: ws.a1.pointer, N: B * Hd)
        ws.dx.slice(0, B * c.stateWidth).update(repeating: 0)
        linear_backward(dinp: ws.dx.pointer, dweight: dp + o.w1, dbias: dp + o.b1, dout: ws.da1.pointer,
                        inp: ws.x.pointer, weight: p + o.w1, B: B, I: c.stateWidth, O: Hd)
        let U = userSet.slots.count, I = itemSet.slots.count
        ws.dUserRows.slice(0, U * D).update(repeating: 0)
        ws.dItemRows.slice(0, I * D).update(repeating: 0)
        batch.states.withUnsafeBufferPointer { h in
            state_gather_backward(duserRows: ws.dUserRows.pointer, ditemRows: ws.dItemRows.pointer, dout: ws.dx.pointer,
                                  userLocal: userLocal, itemLocal: itemLocal, history: h.baseAddress!, B: B, H: H, D: D)
        }
        g.users.ids.append(contentsOf: userSet.slots.lazy.map { self.userIndex.idOfSlot[Int($0)] })
        g.users.parts[0].append(contentsOf: UnsafeBufferPointer(start: ws.dUserRows.pointer, count: U * D))
        g.items.ids.append(contentsOf: itemSet.slots.lazy.map { self.itemIndex.idOfSlot[Int($0)] })
        g.items.parts[0].append(contentsOf: UnsafeBufferPointer(start: ws.dItemRows.pointer, count: I * D))
        return loss
    }

    /// The REINFORCE coefficients c_b from ws.logpPi, ws.logpBeta into ws.coef, and the loss
    /// sums: constants of the step (no gradient flows through them).
    private func coefficients(_ batch: TransitionBatch, loss: inout ReinforceLoss) {
        let K = Double(config.topK), cap = Double(config.weightCap)
        for b in 0..<batch.count {
            let lp = Double(ws.logpPi[b]), lb = Double(ws.logpBeta[b])
            let weight = min(exp(lp - lb), cap)
            let topK = K * pow(1 - exp(lp), K - 1)
            let coef = Float(weight * topK * Double(batch.discountedReturn(b, gamma: config.gamma)))
            ws.coef[b] = coef
            loss.policyLossSum += Double(coef) * -lp
            loss.betaLossSum += -lb
        }
    }

    /// Both heads over every item (after `forwardState`): softmaxes, progressive NDCG, the
    /// coefficients, then backward into the dense E, bE, F, bF gradients and dh.
    private func fullHeads(_ batch: TransitionBatch, into g: ReinforceGradients, loss: inout ReinforceLoss) {
        let B = batch.count, D = config.embeddingSize, N = itemCount
        let p = UnsafePointer(params.pointer), dp = g.dense.pointer, o = offsets
        dot_scores_forward(scores: ws.logits.pointer, A: ws.h.pointer, E: p + o.e, bias: p + o.be, B: B, N: N, D: D)
        dot_scores_forward(scores: ws.betaLogits.pointer, A: ws.h.pointer, E: p + o.f, bias: p + o.bf, B: B, N: N, D: D)
        batch.actions.withUnsafeBufferPointer { a in
            softmaxes(actions: a.baseAddress!, B: B)
            // Progressive validation: the scores before this step's update.
            batch.states.withUnsafeBufferPointer { h in loss.ndcgSum = ndcgSum(actions: a.baseAddress!, history: h.baseAddress!, B: B) }
        }
        loss.ndcgCount = B
        coefficients(batch, loss: &loss)

        // Backward is forward reversed. Logit gradients overwrite the logits (last read above).
        batch.actions.withUnsafeBufferPointer { a in
            // β's head: its gradient stops at h (dA: nil), so only F and bF learn from it.
            ws.betaLogits.slice(0, B * N).update(repeating: 0)
            softmax_cross_entropy_backward(dlogits: ws.betaLogits.pointer, probs: ws.betaProbs.pointer, actions: a.baseAddress!,
                                           weights: nil, dloss: config.betaLossWeight, B: B, N: N)
            dot_scores_backward(dA: nil, dE: dp + o.f, dbias: dp + o.bf, dscores: ws.betaLogits.pointer,
                                A: ws.h.pointer, E: p + o.f, B: B, N: N, D: D)
            // The policy: dz = c_b · (π_b − onehot(a_b)).
            ws.logits.slice(0, B * N).update(repeating: 0)
            softmax_cross_entropy_backward(dlogits: ws.logits.pointer, probs: ws.probs.pointer, actions: a.baseAddress!,
                                           weights: ws.coef.pointer, dloss: 1, B: B, N: N)
        }
        ws.dh.slice(0, B * D).update(repeating: 0)
        dot_scores_backward(dA: ws.dh.pointer, dE: dp + o.e, dbias: dp + o.be, dscores: ws.logits.pointer,
                            A: ws.h.pointer, E: p + o.e, B: B, N: N, D: D)
        // The recent-items path: h read E's rows of the state's last items.
        batch.states.withUnsafeBufferPointer { s in
            recent_items_backward(dE: dp + o.e, dh: ws.dh.pointer, history: s.baseAddress!, B: B, H: config.historyLength,
                                  R: config.recentItems, D: D, N: N, weight: config.recentWeight)
        }
    }

    /// The items a sampled step draws: `sampled_items` log-uniform ids in 2..<N, from a stream
    /// fixed by (seed, step), so a replayed step draws the same ones (`SampledCandidates.draw`).
    func drawSamples(step s: Int) -> [Int32] {
        SampledCandidates.draw(seed: config.seed ^ Self.samplerTag, step: s, items: itemCount, count: config.sampledItems)
    }

    /// Both heads over the step's candidates (the batch's true items and the drawn ones, after
    /// `forwardState`): sampled softmaxes with the log-Q correction, progressive NDCG on the first
    /// rows, the coefficients, then backward into the candidates' sparse rows and dh.
    private func sampledHeads(_ batch: TransitionBatch, into g: ReinforceGradients, loss: inout ReinforceLoss) {
        let B = batch.count, D = config.embeddingSize, N = itemCount
        let samples = drawSamples(step: step)
        lastSampledItems = samples
        candidates.prepare(actions: batch.actions, samples: samples, items: N)
        let p = UnsafePointer(params.pointer), o = offsets, h = UnsafePointer(ws.h.pointer)
        policyHead.gather(candidates, weight: p + o.e, bias: p + o.be, B: B, D: D)
        betaHead.gather(candidates, weight: p + o.f, bias: p + o.bf, B: B, D: D)
        policyHead.forward(candidates, h: h, logp: ws.logpPi.pointer, B: B, D: D)
        betaHead.forward(candidates, h: h, logp: ws.logpBeta.pointer, B: B, D: D)

        // Progressive validation ranks every item, for the first rows only.
        let R = sampledNDCGRows(batch: B, step: step)
        loss.ndcgSum = SampledCandidates.ndcgSum(rows: R, scratch: &ws.ndcgScores, A: h, E: p + o.e, bias: p + o.be,
                                                 batch: batch, items: N, D: D, k: Self.ndcgCutoff)
        loss.ndcgCount = R
        coefficients(batch, loss: &loss)

        // Backward: β's rows (its dh discarded: the gradient stops at h), then the policy's rows and dh.
        ws.dh.slice(0, B * D).update(repeating: 0)
        SampledHead.zeroed(&ws.dhDiscarded, B * D)
        ws.dhDiscarded.withUnsafeMutableBufferPointer { discard in
            betaHead.backward(candidates, dh: discard.baseAddress!, h: h, weights: nil, dloss: config.betaLossWeight, B: B, D: D)
        }
        policyHead.backward(candidates, dh: ws.dh.pointer, h: h, weights: ws.coef.pointer, dloss: 1, B: B, D: D)
        policyHead.append(candidates, to: &g.policyItems, D: D)
        appendRecentItemRows(batch, dh: ws.dh.pointer, to: &g.policyItems)
        betaHead.append(candidates, to: &g.betaItems, D: D)
    }

    /// The recent-items path's gradient on E under the sampled softmax: a row (weight · dh_b, bias
    /// gradient 0) per state item it read, after the candidates' rows (repeats merge in list order,
    /// as `recent_items_backward` sums them in the dense case).
    private func appendRecentItemRows(_ batch: TransitionBatch, dh: UnsafePointer<Float>, to g: inout SparseGradient) {
        let c = config, B = batch.count, H = c.historyLength, D = c.embeddingSize, N = itemCount, w = c.recentWeight
        guard c.recentItems > 0 else { return }
        for b in 0..<B {
            for i in max(H - c.recentItems, 0)..<H {
                let id = batch.states[b * H + i]
                guard id >= 2, Int(id) < N else { continue }
                g.ids.append(id)
                for d in 0..<D { g.parts[0].append(w * dh[b * D + d]) }
                g.parts[1].append(0)
            }
        }
    }

    /// The largest item id of a batch (actions and states), nil when empty.
    public static func largestItem(_ batch: TransitionBatch) -> Int32? { ItemTables.largest(batch) }

    // MARK: - Update

    /// Applies gradients summed over `totalSamples` samples (one participant's, or every one's
    /// after the allreduce and the allgathervs): Adam on the dense buffer, lazy Adam on the rows
    /// listed (repeated ids merged in list order; unseen ids get their deterministic rows first).
    public func applyGradients(_ g: ReinforceGradients, totalSamples: Int) {
        guard totalSamples > 0 else { return }
        precondition(g.denseCount == denseGradientCount,
                     "gradients for \(g.denseCount) dense parameters, the model needs \(denseGradientCount): grow every replica to the step's largest item id first (reserveItems)")
        step += 1
        let scale = 1 / Float(totalSamples), opt = config.optimizer
        // Full softmax: rows of the item tables beyond itemCount get zero gradients and zero
        // moments, so stay unchanged. Sampled: the MLP prefix here, the candidates' rows below.
        adam_update(params: params.pointer, grads: g.dense.pointer, m: adamM.pointer, v: adamV.pointer,
                    count: g.denseCount, step: step, config: opt, gradScale: scale)
        applyRows(g.users.merged(), rows: userRows, slot: userSlotCreating, scale: scale)
        applyRows(g.items.merged(), rows: itemRows, slot: itemSlotCreating, scale: scale)
        applyItemTableRows(g.policyItems, weight: offsets.e, bias: offsets.be, scale: scale)
        applyItemTableRows(g.betaItems, weight: offsets.f, bias: offsets.bf, scale: scale)
    }

    /// Lazy Adam on rows of a dense item table (`adamItemTableRows`, shared with DDPG and BCQ).
    private func applyItemTableRows(_ grad: SparseGradient, weight w: Int, bias bo: Int, scale: Float) {
        adamItemTableRows(grad, params: params.pointer, m: adamM.pointer, v: adamV.pointer, weight: w, bias: bo,
                          D: config.embeddingSize, step: step, optimizer: config.optimizer, scale: scale)
    }

    private func applyRows(_ grad: SparseGradient, rows: RowStore, slot: (Int32) -> Int32, scale: Float) {
        let D = config.embeddingSize, opt = config.embeddingOptimizer
        grad.parts[0].withUnsafeBufferPointer { src in
            for (u, id) in grad.ids.enumerated() {
                let s = slot(id)
                adam_update(params: rows.row(s), grads: src.baseAddress! + u * D, m: rows.state(0, s), v: rows.state(1, s),
                            count: D, step: step, config: opt, gradScale: scale)
            }
        }
    }

    /// One single-process step: compute and apply.
    @discardableResult
    public func trainStep(_ batch: TransitionBatch, grads: ReinforceGradients) -> ReinforceLoss {
        let loss = computeGradients(batch, into: grads)
        applyGradients(grads, totalSamples: batch.count)
        return loss
    }

    public func makeGradients() -> ReinforceGradients {
        ReinforceGradients(denseCount: denseGradientCount, embeddingSize: config.embeddingSize)
    }

    /// Bytes of parameters and optimizer state.
    public var parameterBytes: Int { (params.count + userIndex.count * config.embeddingSize + itemIndex.count * config.embeddingSize) * 4 * 3 }
}
