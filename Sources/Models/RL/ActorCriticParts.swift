import Foundation
import Kernels
import StreamRecNumerics
import Features

// Parts shared by the actor-critic families (DDPG, BCQ): the sparse state rows, the dense
// parameter buffer with its item tables and target copy, the gradients of one update phase,
// and the next-item NDCG every RL family reports. REINFORCE shares the NDCG and the item-table
// capacity rule.
//
// An actor-critic step has two update phases, each with its own gradient exchange, because the
// actor's update must see the critic after the critic's update (DDPG, BCQ):
//
//   critic phase   gradients of the critics' parameters only (a dense range of the buffer)
//   actor phase    gradients of everything else: actor / generative model, the item tables, and
//                  the sparse user and item rows of the state
//
// Each parameter belongs to exactly one phase, so every parameter gets one Adam update per step
// and the two exchanges never overlap.

// MARK: - The model seam

/// The settings DDPG's and BCQ's shared parts read.
public protocol ActorCriticConfig: TransitionModelConfig {
    /// Adam for the actor phase (actor or generative model, item table, rows), and for the critics.
    var optimizer: AdamConfig { get }
    var criticOptimizer: AdamConfig { get }
    var tau: Float { get }
    var actorQWeight: Float { get }
    var fullSoftmaxItems: Int { get }
    var sampledItems: Int { get }
}

extension DDPGConfig: ActorCriticConfig {}
extension BCQConfig: ActorCriticConfig {}

/// An actor-critic model whose whole state is its dense parameters (with targets and Adam
/// moments) and its sparse state rows, updated in a critic and an actor phase: DDPG, BCQ.
public protocol ActorCriticParameters: AnyObject, Sendable {
    associatedtype Config: ActorCriticConfig
    /// `model_kind` of its checkpoints.
    static var modelKind: String { get }
    /// Bookkeeping floats of each phase's gradients (`PhaseGradients.extras`).
    static var criticExtras: Int { get }
    static var actorExtras: Int { get }
    init(config: Config)
    var config: Config { get }
    /// Optimizer steps applied so far.
    var step: Int { get set }
    /// N: items with a score (largest item id seen + 1). Table rows beyond it are capacity.
    var itemCount: Int { get }
    var dense: DenseParameters { get }
    /// The sparse user and item rows of the state.
    var rows: StateRows { get }
    /// The critic phase's range of the dense buffer, and the actor phase's (the rest).
    var criticRange: Range<Int> { get }
    var actorRange: Range<Int> { get }
    /// Grows the item tables so that item `maxId` has a score (no-op when it has). Data-parallel
    /// participants call it with the step's largest id over all of them first, so their layouts agree.
    func reserveItems(through maxId: Int32)
    /// The model's loss sums of a phase.
    associatedtype Loss
    /// Critic phase on a local batch: sum-form gradients of the critics in `g`; parameters do not change.
    func computeCriticGradients(_ batch: TransitionBatch, into g: PhaseGradients) -> Loss
    /// Actor phase on a local batch (after the critics' update), λ the critic term's scale.
    func computeActorGradients(_ batch: TransitionBatch, lambda: Float, into g: PhaseGradients) -> Loss
}

extension ActorCriticParameters {
    public var layout: ParameterLayout { dense.layout }
    public var params: FloatBuffer { dense.params }
    public var targets: FloatBuffer { dense.targets }
    /// Rows of the item tables (≥ `itemCount`).
    public var itemCapacity: Int { layout.entry(ActionItemTable.bias)!.shape[0] }

    /// True when the behaviour-cloning softmax runs over sampled candidates (more than
    /// `full_softmax_items` ids). A function of the item count, so replicas agree once
    /// `reserveItems` ran.
    public var usesSampledSoftmax: Bool { itemCount > config.fullSoftmaxItems }
    /// Floats of the actor phase's dense gradient: the actor range, or its part before the item
    /// tables when sampled (their candidates' rows travel as `PhaseGradients.itemRows`).
    public var actorDenseCount: Int {
        usesSampledSoftmax ? layout.entry(ActionItemTable.weight)!.offset - actorRange.lowerBound : actorRange.count
    }
    /// Progressive-NDCG rows of a local batch of B at step s under the sampled softmax.
    public func sampledNDCGRows(batch B: Int, step s: Int) -> Int {
        SampledCandidates.ndcgRows(batch: B, step: s, items: itemCount, sampledItems: config.sampledItems)
    }

    public func makeCriticGradients() -> PhaseGradients {
        PhaseGradients(denseCount: criticRange.count, extras: Self.criticExtras, embeddingSize: config.embeddingSize)
    }
    public func makeActorGradients() -> PhaseGradients {
        PhaseGradients(denseCount: actorDenseCount, extras: Self.actorExtras, embeddingSize: config.embeddingSize)
    }

    /// Applies critic gradients summed over `totalSamples` samples (Adam, the critics' rate).
    public func applyCriticGradients(_ g: PhaseGradients, totalSamples: Int) {
        guard totalSamples > 0 else { return }
        precondition(g.denseCount == criticRange.count, "critic gradients of another layout")
        dense.adam(criticRange, grads: g.dense.pointer, step: step + 1, optimizer: config.criticOptimizer,
                   scale: 1 / Float(totalSamples))
    }

    /// λ of the actor's critic term from the critic phase's mean |Q| over every participant's batch.
    public func actorQScale(meanAbsQ: Double) -> Float {
        config.actorQWeight / Float(max(meanAbsQ, 1e-3))
    }

    /// Applies actor-phase gradients summed over `totalSamples` samples (Adam on the actor range,
    /// lazy Adam on the listed rows), ends the step and soft-updates the target networks.
    public func applyActorGradients(_ g: PhaseGradients, totalSamples: Int) {
        guard totalSamples > 0 else { return }
        precondition(g.denseCount == actorDenseCount,
                     "actor gradients for \(g.denseCount) parameters, the model needs \(actorDenseCount): grow every replica to the step's largest item id first (reserveItems)")
        step += 1
        let scale = 1 / Float(totalSamples), start = actorRange.lowerBound
        // Full softmax: item-table rows beyond itemCount get zero gradients and zero moments, so
        // stay unchanged. Sampled: the range before the tables here, the candidates' rows below.
        dense.adam(start..<(start + g.denseCount), grads: g.dense.pointer, step: step, optimizer: config.optimizer, scale: scale)
        dense.adamItemRows(g.itemRows, weight: layout.entry(ActionItemTable.weight)!.offset,
                           bias: layout.entry(ActionItemTable.bias)!.offset, dim: config.embeddingSize, step: step,
                           optimizer: config.optimizer, scale: scale)
        rows.apply(users: g.users, items: g.items, step: step, optimizer: config.optimizer, scale: scale)
        dense.softUpdateTargets(tau: config.tau)
    }

    /// Bytes of parameters, targets and optimizer state.
    public var parameterBytes: Int { (dense.params.count * 3 + dense.targetCount + rows.parameterFloats) * 4 }
}

/// The parts of the seam that stay inside the module.
protocol BehaviorCloningModel: ActorCriticParameters {
    /// The behaviour-cloning term and the progressive NDCG (full or sampled softmax).
    var bc: BehaviorCloningHead { get }
}

extension BehaviorCloningModel {
    /// The items a sampled step draws (log-uniform by id, from (seed, step)).
    func drawSamples(step s: Int) -> [Int32] { bc.drawSamples(step: s, items: itemCount) }
    /// The items the last sampled actor phase drew.
    var lastSampledItems: [Int32] { bc.lastSampledItems }
}

// MARK: - Item tables

/// The item action table E [N × D], bE [N] of DDPG and BCQ: the last entries of their layouts.
enum ActionItemTable {
    static let weight = "action.items.weight", bias = "action.items.bias"
    /// Names of the dense tensors with a row per item id.
    static let names: Set<String> = [weight, bias]

    /// Rows `range` of E (at `offset` in `params`, D wide) start uniform in ±scale, each from
    /// (seed, row): a function of the row alone, so growth gives every replica the same rows.
    static func initializeRows(_ range: Range<Int>, params p: FloatBuffer, offset: Int, D: Int, scale a: Float, seed: UInt64) {
        for j in range {
            var r = SplitMix64(seed: SplitMix64.mix(seed, UInt64(j)))
            for d in 0..<D { p[offset + j * D + d] = r.uniform(-a, a) }
        }
    }

    /// The scores z = A·Eᵀ + bE [B × N] of `scores(…)`, computed in `logits`, items 0 and 1 at −∞.
    static func scores(logits: UnsafeMutablePointer<Float>, action: UnsafePointer<Float>, params p: UnsafePointer<Float>,
                       layout: ParameterLayout, B: Int, N: Int, D: Int) -> [Float] {
        dot_scores_forward(scores: logits, A: action, E: p + layout.entry(weight)!.offset, bias: p + layout.entry(bias)!.offset,
                           B: B, N: N, D: D)
        var out = Array(UnsafeBufferPointer(start: logits, count: B * N))
        for b in 0..<B { for m in ItemTables.masked { out[b * N + Int(m)] = -.infinity } }
        return out
    }
}

// MARK: - Item table capacity

public enum ItemTables {
    /// Rows the item tables hold for `n` items: n rounded up to an eighth of the next power of
    /// two (at least 64), so growth is rare and the layout depends on the item count alone (every
    /// replica that agrees on the item count has the same layout).
    public static func capacity(forItems n: Int) -> Int {
        let pow2 = n <= 64 ? 64 : 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount)
        let granule = max(64, pow2 / 8)
        return (n + granule - 1) / granule * granule
    }

    /// Item ids never recommended nor scored: 0 pads a state, 1 is the item OOV id.
    public static let masked: [Int32] = [TransitionBatch.paddingItem, 1]

    /// The largest item id of a batch (actions and states), nil when empty.
    public static func largest(_ batch: TransitionBatch) -> Int32? {
        let a = batch.actions.max(), s = batch.states.max()
        switch (a, s) {
        case (let x?, let y?): return max(x, y)
        case (let x?, nil): return x
        case (nil, let y): return y
        }
    }
}

// MARK: - Next-item NDCG

/// Σ_b NDCG@k of action a_b ranked by scores[b, :] among every item except padding, OOV and the
/// state's items (the consumed items, as far as the state knows them). An action found in its
/// own state is consumed, so not ranked: 0. Ties rank the lower id first. scores[B×N], history[B×H].
public func nextItemNDCGSum(scores: UnsafePointer<Float>, actions: UnsafePointer<Int32>, history: UnsafePointer<Int32>,
                            B: Int, N: Int, H: Int, k K: Int = 10) -> Double {
    var sum = 0.0
    for b in 0..<B {
        let z = scores + b * N, a = Int(actions[b]), state = history + b * H
        var consumed = false
        for i in 0..<H where Int(state[i]) == a { consumed = true }
        if consumed || a < 2 || a >= N { continue }
        let za = z[a]
        @inline(__always) func ahead(_ j: Int) -> Bool { z[j] > za || (z[j] == za && j < a) }
        // Items ahead of a (the hot loop of progressive validation, B·N comparisons per step).
        var rank = 1 + vcountAhead(z, 2..<N, threshold: za, tieBefore: a)
        // State items are masked: take back those counted ahead (each distinct item once).
        for i in 0..<H {
            let s = Int(state[i])
            guard s >= 2, s < N, ahead(s) else { continue }
            var seen = false
            for k in 0..<i where Int(state[k]) == s { seen = true }
            if !seen { rank -= 1 }
        }
        sum += RankingMetrics.ndcg(rank: rank, k: K)
    }
    return sum
}

// MARK: - Behaviour cloning over the item table

/// The behaviour-cloning term DDPG and BCQ put on their item table, bc_weight · Σ_b −log
/// softmax(a_b·Eᵀ + bE)[a_b] (a_b the selected action, [B × D]), and the progressive NDCG@10 of
/// the same scores. Up to `full_softmax_items` ids the softmax runs over every item (items 0 and
/// 1 masked) and E's gradient is dense; beyond, over the step's candidates with the log-Q
/// correction (`SampledCandidates`), E's gradient on the candidates' rows as sparse rows, and the
/// NDCG on `SampledCandidates.ndcgRows` rows. E and bE learn from this term only: the critics
/// read the logged item's row E_{a_b} as their action with its gradient stopped, and BCQ's VAE
/// takes it as data, so a step touches no other row of the table.
final class BehaviorCloningHead {
    let dim: Int, fullSoftmaxItems: Int, sampledItems: Int
    /// The model's seed mixed with its sampler tag.
    let samplerSeed: UInt64
    private let candidates = SampledCandidates(), head = SampledHead()
    /// Full softmax: logits [B × N] (overwritten by their gradient in backward) and probabilities.
    private var logits = FloatBuffer(count: 0), probs = FloatBuffer(count: 0)
    private var logp: [Float] = [], ndcgScores: [Float] = []
    private var B = 0, N = 0, sampled = false
    /// The items the last sampled forward drew (for tests).
    private(set) var lastSampledItems: [Int32] = []

    init(dim: Int, fullSoftmaxItems: Int, sampledItems: Int, samplerSeed: UInt64) {
        self.dim = dim; self.fullSoftmaxItems = fullSoftmaxItems; self.sampledItems = sampledItems; self.samplerSeed = samplerSeed
    }

    /// True beyond `full_softmax_items` item ids: a function of the item count, which
    /// data-parallel replicas agree on before a step.
    func usesSampledSoftmax(items n: Int) -> Bool { n > fullSoftmaxItems }

    /// The samples the sampled softmax draws at `step` with n items.
    func drawSamples(step: Int, items n: Int) -> [Int32] {
        SampledCandidates.draw(seed: samplerSeed, step: step, items: n, count: sampledItems)
    }

    /// Forward on a local batch: Σ_b −log p(a_b), and the progressive NDCG sum with the samples it
    /// covers. `action` [B × D]; E [N × D] and bias [N] the item table's.
    func forward(_ batch: TransitionBatch, action: UnsafePointer<Float>, E: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                 items n: Int, step: Int, k: Int) -> (loss: Double, ndcgSum: Double, ndcgCount: Int) {
        let D = dim
        B = batch.count; N = n; sampled = usesSampledSoftmax(items: n)
        if logp.count < B { logp = [Float](repeating: 0, count: B) }
        if sampled {
            lastSampledItems = drawSamples(step: step, items: n)
            candidates.prepare(actions: batch.actions, samples: lastSampledItems, items: n)
            head.gather(candidates, weight: E, bias: bias, B: B, D: D)
            let loss = logp.withUnsafeMutableBufferPointer { head.forward(candidates, h: action, logp: $0.baseAddress!, B: B, D: D) }
            let R = SampledCandidates.ndcgRows(batch: B, step: step, items: n, sampledItems: sampledItems)
            let ndcg = SampledCandidates.ndcgSum(rows: R, scratch: &ndcgScores, A: action, E: E, bias: bias,
                                                 batch: batch, items: n, D: D, k: k)
            return (loss, ndcg, R)
        }
        if logits.count < B * n { logits = FloatBuffer(count: B * n); probs = FloatBuffer(count: B * n) }
        dot_scores_forward(scores: logits.pointer, A: action, E: E, bias: bias, B: B, N: n, D: D)
        var ndcg = 0.0, loss = 0.0
        batch.actions.withUnsafeBufferPointer { a in
            batch.states.withUnsafeBufferPointer { h in
                ndcg = nextItemNDCGSum(scores: logits.pointer, actions: a.baseAddress!, history: h.baseAddress!,
                                       B: B, N: n, H: batch.historyLength, k: k)
            }
            ItemTables.masked.withUnsafeBufferPointer { m in logp.withUnsafeMutableBufferPointer { lp in
                loss = softmax_cross_entropy_forward(probs: probs.pointer, logp: lp.baseAddress!, logits: logits.pointer,
                                                     actions: a.baseAddress!, weights: nil, masked: m.baseAddress!,
                                                     M: m.count, B: B, N: n)
            } }
        }
        return (loss, ndcg, B)
    }

    /// Backward of weight · the forward's loss: accumulates into dAction [B × D]; the item table's
    /// gradient into dE [N × D] and dBias [N] (full softmax: pointers into the dense gradient),
    /// or appended to `rows` (sampled: the candidates' rows, widths [D, 1]).
    func backward(_ batch: TransitionBatch, weight: Float, dAction: UnsafeMutablePointer<Float>, action: UnsafePointer<Float>,
                  E: UnsafePointer<Float>, dE: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
                  rows: inout SparseGradient) {
        let D = dim
        if sampled {
            head.backward(candidates, dh: dAction, h: action, weights: nil, dloss: weight, B: B, D: D)
            head.append(candidates, to: &rows, D: D)
            return
        }
        batch.actions.withUnsafeBufferPointer { a in
            logits.slice(0, B * N).update(repeating: 0)
            softmax_cross_entropy_backward(dlogits: logits.pointer, probs: probs.pointer, actions: a.baseAddress!,
                                           weights: nil, dloss: weight, B: B, N: N)
        }
        dot_scores_backward(dA: dAction, dE: dE, dbias: dBias, dscores: logits.pointer, A: action, E: E, B: B, N: N, D: D)
    }
}

// MARK: - Sparse state rows

/// The user and item input rows a state is gathered from: `IdIndex` + `RowStore` (with Adam m, v),
/// a row created on first sight from a hash of (seed, id), updated by lazy row-wise Adam.
///
/// A row is created only for ids whose gradient the step lists (the batch's users and state
/// items), so every replica creates the same rows. Rows that are only read — the action's row in
/// the next state, which feeds the constant TD target — are not created: an id without a row
/// reads as its initial value, which is exactly what a created, never-updated row holds; so the
/// target does not depend on how the batch was split across replicas.
public final class StateRows: @unchecked Sendable {
    public let dim: Int
    let seed: UInt64, initScale: Float, userTag: UInt64, itemTag: UInt64
    public let userIndex = IdIndex(), itemIndex = IdIndex()
    public let userRows: RowStore, itemRows: RowStore
    private let userSet = BatchRowSet(), itemSet = BatchRowSet()
    private var userLocal = Int32Buffer(capacity: 1), itemLocal = Int32Buffer(capacity: 1)
    private var nextHistory: [Int32] = []
    private var dUserRows = FloatBuffer(count: 0), dItemRows = FloatBuffer(count: 0)
    private var scratchRow: FloatBuffer

    init(dim: Int, seed: UInt64, initScale: Float, userTag: UInt64, itemTag: UInt64) {
        self.dim = dim; self.seed = seed; self.initScale = initScale; self.userTag = userTag; self.itemTag = itemTag
        userRows = RowStore(dim: dim, states: 2)
        itemRows = RowStore(dim: dim, states: 2)
        scratchRow = FloatBuffer(count: dim)
    }

    private func initialRow(_ out: UnsafeMutablePointer<Float>, tag: UInt64, id: Int32) {
        var rng = SplitMix64(seed: SplitMix64.mix(seed ^ tag, UInt64(UInt32(bitPattern: id))))
        for d in 0..<dim { out[d] = rng.uniform(-initScale, initScale) }
    }

    @inline(__always) private func userSlotCreating(_ id: Int32) -> Int32 {
        userIndex.slot(id) { id, _ in let s = userRows.append(); initialRow(userRows.row(s), tag: userTag, id: id) }
    }

    @inline(__always) private func itemSlotCreating(_ id: Int32) -> Int32 {
        itemIndex.slot(id) { id, _ in let s = itemRows.append(); initialRow(itemRows.row(s), tag: itemTag, id: id) }
    }

    /// Creates the rows of the batch's users and state items and records each occurrence's index
    /// among the batch's unique rows (for `collectGradients`).
    func prepare(_ batch: TransitionBatch) {
        let B = batch.count, H = batch.historyLength
        if userLocal.capacity < B { userLocal = Int32Buffer(capacity: B) }
        if itemLocal.capacity < B * H { itemLocal = Int32Buffer(capacity: B * H) }
        userSet.reset(); itemSet.reset()
        let ul = userLocal.pointer, il = itemLocal.pointer
        for b in 0..<B { ul[b] = userSet.local(userSlotCreating(batch.users[b])) }
        for k in 0..<(B * H) {
            let id = batch.states[k]
            il[k] = id == TransitionBatch.paddingItem ? 0 : itemSet.local(itemSlotCreating(id))
        }
    }

    /// x[B×(H+1)·D] = [user row | H item rows]; padding reads as a zero row. `initialForMissing`:
    /// an id without a row reads as its initial value (training's targets), else as zeros
    /// (scoring: an id the model never trained on contributes nothing).
    func gather(into x: UnsafeMutablePointer<Float>, users: UnsafePointer<Int32>, history: UnsafePointer<Int32>,
                B: Int, H: Int, initialForMissing: Bool) {
        let userIndex = self.userIndex, itemIndex = self.itemIndex, userRows = self.userRows, itemRows = self.itemRows
        let scratch = scratchRow.pointer
        state_gather_forward(out: x, users: users, history: history, B: B, H: H, D: dim,
                             userRow: { id in
                                 if let s = userIndex.existingSlot(id) { return UnsafePointer(userRows.row(s)) }
                                 guard initialForMissing else { return nil }
                                 self.initialRow(scratch, tag: self.userTag, id: id); return UnsafePointer(scratch)
                             },
                             itemRow: { id in
                                 if let s = itemIndex.existingSlot(id) { return UnsafePointer(itemRows.row(s)) }
                                 guard initialForMissing else { return nil }
                                 self.initialRow(scratch, tag: self.itemTag, id: id); return UnsafePointer(scratch)
                             })
    }

    /// The state x and the next state x' (the state shifted by one, then the action) of a batch.
    func gatherStates(_ batch: TransitionBatch, x: UnsafeMutablePointer<Float>, next: UnsafeMutablePointer<Float>?) {
        let B = batch.count, H = batch.historyLength
        batch.users.withUnsafeBufferPointer { u in
            batch.states.withUnsafeBufferPointer { h in gather(into: x, users: u.baseAddress!, history: h.baseAddress!, B: B, H: H, initialForMissing: true) }
            guard let next else { return }
            nextHistory.removeAll(keepingCapacity: true)
            for b in 0..<B { nextHistory += batch.state(b).dropFirst(); nextHistory.append(batch.actions[b]) }
            nextHistory.withUnsafeBufferPointer { h in gather(into: next, users: u.baseAddress!, history: h.baseAddress!, B: B, H: H, initialForMissing: true) }
        }
    }

    /// Sums dx[B×(H+1)·D] into the batch's unique rows (after `prepare`) and appends them to the
    /// gradient lists (ids in first-seen order).
    func collectGradients(dx: UnsafePointer<Float>, batch: TransitionBatch, users: inout SparseGradient, items: inout SparseGradient) {
        let B = batch.count, H = batch.historyLength, D = dim
        let U = userSet.slots.count, I = itemSet.slots.count
        if dUserRows.count < U * D { dUserRows = FloatBuffer(count: max(U * D, B * D)) }
        if dItemRows.count < I * D { dItemRows = FloatBuffer(count: max(I * D, B * H * D)) }
        dUserRows.slice(0, U * D).update(repeating: 0)
        dItemRows.slice(0, I * D).update(repeating: 0)
        batch.states.withUnsafeBufferPointer { h in
            state_gather_backward(duserRows: dUserRows.pointer, ditemRows: dItemRows.pointer, dout: dx,
                                  userLocal: userLocal.pointer, itemLocal: itemLocal.pointer, history: h.baseAddress!, B: B, H: H, D: D)
        }
        users.ids.append(contentsOf: userSet.slots.lazy.map { self.userIndex.idOfSlot[Int($0)] })
        users.parts[0].append(contentsOf: UnsafeBufferPointer(start: dUserRows.pointer, count: U * D))
        items.ids.append(contentsOf: itemSet.slots.lazy.map { self.itemIndex.idOfSlot[Int($0)] })
        items.parts[0].append(contentsOf: UnsafeBufferPointer(start: dItemRows.pointer, count: I * D))
    }

    /// Lazy Adam on the listed rows (repeats merged in list order; unseen ids get their rows first).
    func apply(users: SparseGradient, items: SparseGradient, step: Int, optimizer: AdamConfig, scale: Float) {
        applyRows(users.merged(), rows: userRows, slot: userSlotCreating, step: step, optimizer: optimizer, scale: scale)
        applyRows(items.merged(), rows: itemRows, slot: itemSlotCreating, step: step, optimizer: optimizer, scale: scale)
    }

    private func applyRows(_ grad: SparseGradient, rows: RowStore, slot: (Int32) -> Int32, step: Int, optimizer: AdamConfig, scale: Float) {
        let D = dim
        grad.parts[0].withUnsafeBufferPointer { src in
            for (u, id) in grad.ids.enumerated() {
                let s = slot(id)
                adam_update(params: rows.row(s), grads: src.baseAddress! + u * D, m: rows.state(0, s), v: rows.state(1, s),
                            count: D, step: step, config: optimizer, gradScale: scale)
            }
        }
    }

    /// Floats held (values and Adam state).
    var parameterFloats: Int { (userIndex.count + itemIndex.count) * dim * 3 }

    // MARK: Tensors

    struct Snapshot: @unchecked Sendable {
        let dim: Int
        let userIds, itemIds: [Int32]
        let userChunks, itemChunks: [FloatBuffer]

        /// `user.ids`, `user.embedding.weight`, `item.ids`, `item.embedding.weight` (+ Adam state),
        /// rows sorted by id so replicas export the same bytes whatever order they created rows in.
        func exportTensors(includeOptimizer: Bool) -> [ModelTensor] {
            var out: [ModelTensor] = []
            let D = dim
            for (table, ids, chunks) in [("user", userIds, userChunks), ("item", itemIds, itemChunks)] {
                let slots = (0..<Int32(ids.count)).sorted { ids[Int($0)] < ids[Int($1)] }
                out.append(ModelTensor(name: "\(table).ids", shape: [slots.count], storage: .int32(slots.map { ids[Int($0)] })))
                for (part, name) in [(0, "\(table).embedding.weight"), (1, "optim.adam_m.\(table).embedding.weight"),
                                     (2, "optim.adam_v.\(table).embedding.weight")] where part == 0 || includeOptimizer {
                    var a = [Float](); a.reserveCapacity(slots.count * D)
                    for s in slots {
                        a.append(contentsOf: UnsafeBufferPointer(start: RowStore.row(in: chunks, slot: s, part: part, dim: D, states: 2), count: D))
                    }
                    out.append(ModelTensor(name: name, shape: [slots.count, D], storage: .float32(a)))
                }
            }
            return out
        }
    }

    func snapshot() -> Snapshot {
        Snapshot(dim: dim, userIds: userIndex.idOfSlot, itemIds: itemIndex.idOfSlot,
                 userChunks: userRows.copyChunks(), itemChunks: itemRows.copyChunks())
    }

    /// Loads rows exported by `Snapshot.exportTensors` into empty stores (optimizer state optional).
    func load(_ tensors: [String: ModelTensor], hasOptimizer: Bool) throws {
        let D = dim
        func need(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = tensors[name] else { throw ModelError.incompatibleTensor("missing tensor \(name)") }
            guard t.shape == shape, let f = t.floats else {
                throw ModelError.incompatibleTensor("\(name) has shape \(t.shape), this config needs \(shape) (float32)")
            }
            return f
        }
        for (table, index, rows) in [("user", userIndex, userRows), ("item", itemIndex, itemRows)] {
            guard let ids = tensors["\(table).ids"]?.int32s else { throw ModelError.incompatibleTensor("missing tensor \(table).ids (int32)") }
            let n = ids.count
            let values = try need("\(table).embedding.weight", [n, D])
            let m = hasOptimizer ? try need("optim.adam_m.\(table).embedding.weight", [n, D]) : []
            let v = hasOptimizer ? try need("optim.adam_v.\(table).embedding.weight", [n, D]) : []
            for (k, id) in ids.enumerated() {
                guard id >= 0 else { throw ModelError.incompatibleTensor("\(table).ids holds a negative id \(id)") }
                guard index.existingSlot(id) == nil else { throw ModelError.incompatibleTensor("\(table).ids repeats id \(id)") }
                let s = index.slot(id) { _, _ in rows.append() }
                for d in 0..<D { rows.row(s)[d] = values[k * D + d] }
                if hasOptimizer {
                    for d in 0..<D { rows.state(0, s)[d] = m[k * D + d]; rows.state(1, s)[d] = v[k * D + d] }
                }
            }
        }
    }
}

// MARK: - Dense parameters

/// The dense parameters of an actor-critic model in one buffer cut by a layout (Adam moments
/// share it), plus the target networks: a copy of the layout's first `targetCount` floats (the
/// networks with targets come first in every layout, so growth of the item tables, which come
/// last, never moves them). Public as a type only: its API stays inside the module.
public final class DenseParameters {
    private(set) var layout: ParameterLayout
    private(set) var params, adamM, adamV: FloatBuffer
    /// Target copies of params[0..<targetCount].
    let targets: FloatBuffer
    let targetCount: Int

    init(layout: ParameterLayout, targetCount: Int) {
        self.layout = layout
        self.targetCount = targetCount
        params = FloatBuffer(count: layout.total)
        adamM = FloatBuffer(count: layout.total)
        adamV = FloatBuffer(count: layout.total)
        targets = FloatBuffer(count: targetCount)
    }

    func offset(_ name: String) -> Int { layout.entry(name)!.offset }

    /// Glorot-uniform values for the named weight matrices (in order, from one stream), zero elsewhere.
    func initializeWeights(_ names: [String], rng: inout SplitMix64) {
        for name in names {
            let e = layout.entry(name)!
            let limit = Float((6.0 / Double(e.shape[0] + e.shape[1])).squareRoot())
            for i in e.offset..<(e.offset + e.count) { params[i] = rng.uniform(-limit, limit) }
        }
    }

    /// Targets ← online (τ = 1).
    func copyTargets() { targets.pointer.update(from: params.pointer, count: targetCount) }

    /// Targets ← τ·online + (1 − τ)·targets.
    func softUpdateTargets(tau: Float) {
        soft_update(target: targets.pointer, online: params.pointer, tau: tau, count: targetCount)
    }

    /// Moves to a layout with the same entries, each with at least as many rows: old values (and
    /// moments) are copied as row-major prefixes; new rows are zero until the caller fills them.
    func grow(to newLayout: ParameterLayout) {
        precondition(newLayout.entries.map(\.name) == layout.entries.map(\.name), "growth keeps the entries")
        let p = FloatBuffer(count: newLayout.total), m = FloatBuffer(count: newLayout.total), v = FloatBuffer(count: newLayout.total)
        for e in newLayout.entries {
            let old = layout.entry(e.name)!
            precondition(e.count >= old.count && (e.offset >= targetCount || e.offset == old.offset), "targeted entries never move")
            for (src, dst) in [(params, p), (adamM, m), (adamV, v)] {
                dst.pointer.advanced(by: e.offset).update(from: src.pointer.advanced(by: old.offset), count: old.count)
            }
        }
        layout = newLayout
        params = p; adamM = m; adamV = v
    }

    /// Adam on params[range] with the gradients g[0..<range.count] (a phase's buffer).
    func adam(_ range: Range<Int>, grads: UnsafePointer<Float>, step: Int, optimizer: AdamConfig, scale: Float) {
        adam_update(params: params.pointer + range.lowerBound, grads: grads, m: adamM.pointer + range.lowerBound,
                    v: adamV.pointer + range.lowerBound, count: range.count, step: step, config: optimizer, gradScale: scale)
    }

    /// Lazy Adam on the listed rows of an item table (`adamItemTableRows`).
    func adamItemRows(_ g: SparseGradient, weight: Int, bias: Int, dim: Int, step: Int, optimizer: AdamConfig, scale: Float) {
        adamItemTableRows(g, params: params.pointer, m: adamM.pointer, v: adamV.pointer, weight: weight, bias: bias,
                          D: dim, step: step, optimizer: optimizer, scale: scale)
    }

    /// Every entry (item tables cut to `itemCount` rows), its Adam moments, and the targets as
    /// `target.<name>`.
    struct Snapshot: @unchecked Sendable {
        let layout: ParameterLayout
        let targetCount: Int
        let params, adamM, adamV, targets: [Float]
        let itemTables: Set<String>
        let itemCount: Int

        func exportTensors(includeOptimizer: Bool) -> [ModelTensor] {
            var out: [ModelTensor] = []
            for e in layout.entries {
                var shape = e.shape
                if itemTables.contains(e.name) { shape[0] = itemCount }
                let n = shape.reduce(1, *), r = e.offset..<(e.offset + n)
                out.append(ModelTensor(name: e.name, shape: shape, storage: .float32(Array(params[r]))))
                if e.offset < targetCount {
                    out.append(ModelTensor(name: "target.\(e.name)", shape: shape, storage: .float32(Array(targets[r]))))
                }
                if includeOptimizer {
                    out.append(ModelTensor(name: "optim.adam_m.\(e.name)", shape: shape, storage: .float32(Array(adamM[r]))))
                    out.append(ModelTensor(name: "optim.adam_v.\(e.name)", shape: shape, storage: .float32(Array(adamV[r]))))
                }
            }
            return out
        }
    }

    func snapshot(itemTables: Set<String>, itemCount: Int) -> Snapshot {
        Snapshot(layout: layout, targetCount: targetCount, params: params.toArray(), adamM: adamM.toArray(),
                 adamV: adamV.toArray(), targets: targets.toArray(), itemTables: itemTables, itemCount: itemCount)
    }

    /// Loads what `Snapshot.exportTensors` wrote (the layout already grown to the item count).
    /// Without `target.*` tensors the targets start as copies of the online networks; without
    /// `optim.*` Adam restarts.
    func load(_ tensors: [String: ModelTensor], itemTables: Set<String>, itemCount: Int) throws {
        func need(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = tensors[name] else { throw ModelError.incompatibleTensor("missing tensor \(name)") }
            guard t.shape == shape, let f = t.floats else {
                throw ModelError.incompatibleTensor("\(name) has shape \(t.shape), this config needs \(shape) (float32)")
            }
            return f
        }
        let first = layout.entries[0].name
        let hasOptim = tensors["optim.adam_m.\(first)"] != nil, hasTargets = tensors["target.\(first)"] != nil
        for e in layout.entries {
            var shape = e.shape
            if itemTables.contains(e.name) { shape[0] = itemCount }
            for (name, buffer) in [(e.name, params), ("optim.adam_m.\(e.name)", adamM), ("optim.adam_v.\(e.name)", adamV)]
            where name == e.name || hasOptim {
                let v = try need(name, shape)
                for i in v.indices { buffer[e.offset + i] = v[i] }
            }
        }
        if hasTargets {
            for e in layout.entries where e.offset < targetCount {
                let v = try need("target.\(e.name)", e.shape)
                for i in v.indices { targets[e.offset + i] = v[i] }
            }
        } else {
            copyTargets()
        }
    }
}

// MARK: - Gradients of one phase

/// One participant's gradients of one update phase, in sum form: the phase's dense range of the
/// layout (`denseCount` floats), then `extras` bookkeeping floats summed by the same allreduce
/// (sample count first, then the phase's loss sums), and the touched user and item rows (the
/// actor phase only; empty in the critic phase). Beyond `full_softmax_items` the actor phase's
/// dense range stops before the item tables, whose candidates' rows are in `itemRows`.
public final class PhaseGradients: @unchecked Sendable {
    public let extras: Int
    public private(set) var dense: FloatBuffer
    public private(set) var denseCount: Int
    public var users: SparseGradient
    public var items: SparseGradient
    /// Sampled softmax only: the candidates' rows of the item table E | bE (widths D, 1); empty
    /// with the full softmax, whose item-table gradient is part of `dense`.
    public var itemRows: SparseGradient

    init(denseCount: Int, extras: Int, embeddingSize: Int) {
        self.extras = extras
        self.denseCount = denseCount
        dense = FloatBuffer(count: denseCount + extras)
        users = SparseGradient(widths: [embeddingSize])
        items = SparseGradient(widths: [embeddingSize])
        itemRows = SparseGradient(widths: [embeddingSize, 1])
    }

    /// Zeroes everything, reallocating the dense buffer when the phase's range changed.
    func prepare(denseCount n: Int) {
        if n != denseCount { dense = FloatBuffer(count: n + extras); denseCount = n } else { dense.zero() }
        users.removeAll()
        items.removeAll()
        itemRows.removeAll()
    }

    /// Bookkeeping float `k` (0 = the sample count).
    public subscript(extra k: Int) -> Float {
        get { dense[denseCount + k] }
        set { dense[denseCount + k] = newValue }
    }

    public var sampleCount: Int { Int(self[extra: 0]) }
}

// MARK: - One-hidden-layer networks

/// Offsets in the dense buffer of a network ReLU(in·W1 + b1)·W2 + b2 (`<prefix>.dense.{0,1}.*`).
/// A critic's or ξ's input is [x | α]: W1's rows 0..<S read x, rows S..<S+D the action.
struct NetOffsets {
    var w1 = 0, b1 = 0, w2 = 0, b2 = 0

    init(w1: Int, b1: Int, w2: Int, b2: Int) { self.w1 = w1; self.b1 = b1; self.w2 = w2; self.b2 = b2 }

    init(_ l: ParameterLayout, prefix: String) {
        func o(_ n: String) -> Int { l.entry(n)!.offset }
        self.init(w1: o("\(prefix).dense.0.weight"), b1: o("\(prefix).dense.0.bias"),
                  w2: o("\(prefix).dense.1.weight"), b2: o("\(prefix).dense.1.bias"))
    }
}

/// A critic Q(x, α) = ReLU(x·W1x + α·W1a + b1)·W2 + b2: q [B], hidden h [B × Hd]; x [B × S],
/// action [B × D]; the parameters at p + net's offsets (online or target).
func critic_forward(q: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                    action: UnsafePointer<Float>, p: UnsafePointer<Float>, net n: NetOffsets, B: Int, S: Int, D: Int, Hd: Int) {
    linear_forward(out: h, inp: x, weight: p + n.w1, bias: p + n.b1, B: B, I: S, O: Hd)
    linear_accumulate_forward(out: h, inp: action, weight: p + n.w1 + S * Hd, B: B, I: D, O: Hd)
    relu_forward(out: h, inp: h, N: B * Hd)
    linear_forward(out: q, inp: h, weight: p + n.w2, bias: p + n.b2, B: B, I: Hd, O: 1)
}

/// Backward of `critic_forward` from dq [B] into the critic's parameters only (dp + net's
/// offsets; x and the action are inputs with stopped gradients). dh [B × Hd] is scratch.
func critic_backward(dp: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>, dq: UnsafePointer<Float>,
                     h: UnsafePointer<Float>, x: UnsafePointer<Float>, action: UnsafePointer<Float>, p: UnsafePointer<Float>,
                     net n: NetOffsets, B: Int, S: Int, D: Int, Hd: Int) {
    dh.update(repeating: 0, count: B * Hd)
    linear_backward(dinp: dh, dweight: dp + n.w2, dbias: dp + n.b2, dout: dq, inp: h, weight: p + n.w2, B: B, I: Hd, O: 1)
    relu_backward(dinp: dh, dout: dh, out: h, N: B * Hd)
    linear_backward(dinp: nil, dweight: dp + n.w1, dbias: dp + n.b1, dout: dh, inp: x, weight: p + n.w1, B: B, I: S, O: Hd)
    linear_backward(dinp: nil, dweight: dp + n.w1 + S * Hd, dbias: nil, dout: dh, inp: action, weight: p + n.w1 + S * Hd,
                    B: B, I: D, O: Hd)
}

/// dAction [B × D] (overwritten) = d(−λ·Σ_b Q(x_b, α_b))/dα through a critic whose forward left
/// its hidden activations in h; the critic's parameters get nothing. dq [B], dh [B × Hd] scratch.
func critic_action_backward(dAction: UnsafeMutablePointer<Float>, dq: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
                            h: UnsafePointer<Float>, action: UnsafePointer<Float>, p: UnsafePointer<Float>, net n: NetOffsets,
                            lambda: Float, B: Int, S: Int, D: Int, Hd: Int) {
    dq.update(repeating: -lambda, count: B)
    dh.update(repeating: 0, count: B * Hd)
    linear_backward(dinp: dh, dweight: nil, dbias: nil, dout: dq, inp: h, weight: p + n.w2, B: B, I: Hd, O: 1)
    relu_backward(dinp: dh, dout: dh, out: h, N: B * Hd)
    dAction.update(repeating: 0, count: B * D)
    linear_backward(dinp: dAction, dweight: nil, dbias: nil, dout: dh, inp: action, weight: p + n.w1 + S * Hd, B: B, I: D, O: Hd)
}

/// Backward of a network's output fed by two streams (the actor's or ξ's): dOut [B × O], every
/// stream, trains W1 (its x rows), b1, W2, b2; dOutInput, the streams allowed to reach the
/// inputs (nil: all of them), gives dx [B × S] (overwritten). Returns the hidden gradient of
/// that stream, for inputs beyond x. h [B × Hd] the forward's hidden activations; dh and
/// dhInput [B × Hd] scratch.
@discardableResult
func two_stream_backward(dx: UnsafeMutablePointer<Float>, dp: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
                         dhInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, dOutInput: UnsafePointer<Float>?,
                         h: UnsafePointer<Float>, x: UnsafePointer<Float>, p: UnsafePointer<Float>, net n: NetOffsets,
                         B: Int, S: Int, Hd: Int, O: Int) -> UnsafeMutablePointer<Float> {
    linear_backward(dinp: nil, dweight: dp + n.w2, dbias: dp + n.b2, dout: dOut, inp: h, weight: p + n.w2, B: B, I: Hd, O: O)
    dh.update(repeating: 0, count: B * Hd)
    linear_backward(dinp: dh, dweight: nil, dbias: nil, dout: dOut, inp: h, weight: p + n.w2, B: B, I: Hd, O: O)
    relu_backward(dinp: dh, dout: dh, out: h, N: B * Hd)
    linear_backward(dinp: nil, dweight: dp + n.w1, dbias: dp + n.b1, dout: dh, inp: x, weight: p + n.w1, B: B, I: S, O: Hd)
    var dhState = dh
    if let dOutInput {
        dhInput.update(repeating: 0, count: B * Hd)
        linear_backward(dinp: dhInput, dweight: nil, dbias: nil, dout: dOutInput, inp: h, weight: p + n.w2, B: B, I: Hd, O: O)
        relu_backward(dinp: dhInput, dout: dhInput, out: h, N: B * Hd)
        dhState = dhInput
    }
    dx.update(repeating: 0, count: B * S)
    linear_backward(dinp: dx, dweight: nil, dbias: nil, dout: dhState, inp: x, weight: p + n.w1, B: B, I: S, O: Hd)
    return dhState
}
