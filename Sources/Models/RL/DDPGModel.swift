import Foundation
import Kernels
import StreamRecNumerics
import Features

// DDPG (Lillicrap et al. 2016) for next-item recommendation, on the transitions of the behaviour
// pipeline, with a behaviour-cloning term in item space so that the actor's scores rank what
// users do (DBRL's DDPG, trained on the critic alone, ranks no better than random).
//
// Per transition b (user u, state s = the H items before the action, action item a, reward r):
//
//   x    = [userRow(u) | itemRow(s_1) | … | itemRow(s_H)]    [B × S], S = (H+1)·D   sparse rows, lazy Adam
//   x'   = the same for s' = (s_2, …, s_H, a)                 (the next state; read only)
//   μ(x) = tanh(ReLU(x·W1 + b1)·W2 + b2)                     [B × D]   the actor's action vector
//   z_j  = μ(x)·E_j + bE_j                                    [B × N]   item j's score (E [N × D])
//   Q(x, α) = ReLU(x·V1x + α·V1a + d1)·V2 + d2                [B]       the critic
//
// The action taken is the logged item's row of the same table: α_b = E_{a_b}. The actor's
// scores, the progressive NDCG, `scores(…)` and serving all use z = μ(x)·Eᵀ + bE (a dot
// product; no cosine anywhere), with items 0 (padding) and 1 (OOV) at −∞.
//
// One step, two update phases, each with its own gradient exchange (DDPG's order):
//
//   critic:  y_b = r_b + γ(1 − done_b)·Q'(x'_b, μ'(x'_b))     target networks, a constant
//            L_C = Σ_b (Q(x_b, E_{a_b}) − y_b)²               trains V1, d1, V2, d2 only
//   actor:   λ   = actor_q_weight / max(mean_b |Q(x_b, E_{a_b})|, 10⁻³)   (TD3+BC's scale, from
//                  the critic phase's global batch, before its update: a constant)
//            L_A = Σ_b bc_weight·(−log softmax(z_b)[a_b]) − λ·Q(x_b, μ(x_b))   with the updated critic
//   targets: θ' ← τ·θ + (1 − τ)·θ' for the actor's and the critic's networks
//
// Which parameter learns from what (each has one Adam update per step):
//   - the critic (V1, d1, V2, d2) from L_C; it reads x and E_{a_b} with their gradients stopped;
//   - the actor (W1, b1, W2, b2) from both terms of L_A;
//   - the item table E, bE and the user and item rows from the behaviour-cloning term only: the
//     critic term's gradient stops at x (it moves the actor, not the state), and the critic never
//     moves the action space under the actor.
// The critic term pushes μ(x) toward directions with a higher expected return; the
// behaviour-cloning term keeps the logged item high among the actor's scores.
//
// Large catalogues: beyond `full_softmax_items` item ids the behaviour-cloning softmax runs over
// the step's candidates (the batch's logged items and `sampled_items` items drawn log-uniformly
// by id, log-Q corrected), as REINFORCE's does (`BehaviorCloningHead`, `SampledCandidates`).
// E and bE learn from that term alone, so their gradient lives on the candidates' rows: it
// travels as sparse rows (`PhaseGradients.itemRows`) and lazy row-wise Adam applies it; the actor
// phase's dense gradient shrinks to the actor. The progressive NDCG ranks every item for
// `sampledNDCGRows` samples of each local batch.
//
// Parameters: one flat buffer cut by `layout`, critic first, then the actor, then the item
// tables (which grow with the item count, as REINFORCE's: capacity a function of the count
// alone). The target networks are a copy of the buffer's prefix (critic and actor). The sparse
// rows are `StateRows`.

/// Loss sums of one step over a local batch (sum form; each phase fills its own).
public struct DDPGLoss: Sendable, Equatable {
    /// Σ_b (Q(x_b, E_{a_b}) − y_b)².
    public var criticLossSum = 0.0
    /// Σ_b |Q(x_b, E_{a_b})|, the critic phase's scale for λ.
    public var absQSum = 0.0
    /// Σ_b −log softmax(z_b)[a_b].
    public var bcLossSum = 0.0
    /// Σ_b Q(x_b, μ(x_b)) under the updated critic.
    public var actorQSum = 0.0
    /// Σ_b NDCG@10 of the logged item under the scores before the step's update.
    public var ndcgSum = 0.0
    /// Samples `ndcgSum` covers (all of them, or `sampledNDCGRows` per batch when sampled).
    public var ndcgCount = 0
    public var count = 0
    public init() {}
}

/// Activations and scratch, grown on demand (batch size, item capacity). One per model.
final class DDPGWorkspace {
    private(set) var batchCapacity = 0, itemCapacity = 0
    var x = FloatBuffer(count: 0), xn = FloatBuffer(count: 0), dx = FloatBuffer(count: 0)
    /// Actor hidden and output (online on x; target on x').
    var a1 = FloatBuffer(count: 0), act = FloatBuffer(count: 0), ta1 = FloatBuffer(count: 0), tact = FloatBuffer(count: 0)
    /// Critic hidden, Q, TD target, logged action rows E_{a_b}.
    var ch = FloatBuffer(count: 0), q = FloatBuffer(count: 0), y = FloatBuffer(count: 0), ea = FloatBuffer(count: 0)
    var dq = FloatBuffer(count: 0), dch = FloatBuffer(count: 0)
    var dactBC = FloatBuffer(count: 0), dactQ = FloatBuffer(count: 0), dh = FloatBuffer(count: 0), dhBC = FloatBuffer(count: 0)
    var da1 = FloatBuffer(count: 0), da1BC = FloatBuffer(count: 0)
    /// Scores [B × N] of `scores(…)` (training's are the behaviour-cloning head's).
    var logits = FloatBuffer(count: 0)

    func ensure(_ c: DDPGConfig, batch B: Int, items N: Int) {
        let D = c.embeddingSize, S = c.stateWidth, Hd = c.hiddenSize
        if B > batchCapacity {
            batchCapacity = B
            x = FloatBuffer(count: B * S); xn = FloatBuffer(count: B * S); dx = FloatBuffer(count: B * S)
            for k in [\DDPGWorkspace.a1, \.ta1, \.ch, \.dch, \.da1, \.da1BC] { self[keyPath: k] = FloatBuffer(count: B * Hd) }
            for k in [\DDPGWorkspace.act, \.tact, \.ea, \.dactBC, \.dactQ, \.dh, \.dhBC] { self[keyPath: k] = FloatBuffer(count: B * D) }
            for k in [\DDPGWorkspace.q, \.y, \.dq] { self[keyPath: k] = FloatBuffer(count: B) }
            itemCapacity = 0   // the [B × N] buffers below depend on B too
        }
        if N > itemCapacity {
            itemCapacity = N
            logits = FloatBuffer(count: batchCapacity * N)
        }
    }
}

public final class DDPGModel: BehaviorCloningModel, @unchecked Sendable {
    public static let ndcgCutoff = 10
    public static let modelKind = "ddpg"

    public let config: DDPGConfig
    public let dense: DenseParameters
    public private(set) var itemCount: Int
    public let rows: StateRows
    public var step = 0

    struct Offsets {
        var critic, actor: NetOffsets
        var e = 0, be = 0
        init(_ l: ParameterLayout) {
            critic = NetOffsets(l, prefix: "critic"); actor = NetOffsets(l, prefix: "actor")
            e = l.entry(ActionItemTable.weight)!.offset; be = l.entry(ActionItemTable.bias)!.offset
        }
    }
    private var offsets: Offsets
    let ws = DDPGWorkspace()
    /// The behaviour-cloning term and the progressive NDCG (full or sampled softmax).
    let bc: BehaviorCloningHead

    // Hash tags of the per-id initial values (one stream per table).
    private static let userTag: UInt64 = 0xDD96_0001, itemTag: UInt64 = 0xDD96_0002, actionItemTag: UInt64 = 0xDD96_0003
    private static let samplerTag: UInt64 = 0xDD96_0004

    public init(config: DDPGConfig) {
        self.config = config
        itemCount = 2
        let cap = ItemTables.capacity(forItems: 2)
        let l = Self.makeLayout(config, itemCapacity: cap)
        dense = DenseParameters(layout: l, targetCount: l.entry(ActionItemTable.weight)!.offset)
        offsets = Offsets(l)
        rows = StateRows(dim: config.embeddingSize, seed: config.seed, initScale: config.embeddingInitScale,
                         userTag: Self.userTag, itemTag: Self.itemTag)
        bc = BehaviorCloningHead(dim: config.embeddingSize, fullSoftmaxItems: config.fullSoftmaxItems,
                                 sampledItems: config.sampledItems, samplerSeed: config.seed ^ Self.samplerTag)
        // Glorot-uniform weights from the seed, zero biases; targets start equal; item rows from (seed, id).
        var rng = SplitMix64(seed: config.seed)
        dense.initializeWeights(["critic.dense.0.weight", "critic.dense.1.weight", "actor.dense.0.weight", "actor.dense.1.weight"], rng: &rng)
        dense.copyTargets()
        initializeItemRows(0..<cap)
    }

    static func makeLayout(_ c: DDPGConfig, itemCapacity n: Int) -> ParameterLayout {
        let S = c.stateWidth, D = c.embeddingSize, Hd = c.hiddenSize
        var l = ParameterLayout()
        l.add("critic.dense.0.weight", shape: [S + D, Hd])   // rows 0..<S read x, rows S..<S+D the action
        l.add("critic.dense.0.bias", shape: [Hd])
        l.add("critic.dense.1.weight", shape: [Hd, 1])
        l.add("critic.dense.1.bias", shape: [1])
        l.add("actor.dense.0.weight", shape: [S, Hd])
        l.add("actor.dense.0.bias", shape: [Hd])
        l.add("actor.dense.1.weight", shape: [Hd, D])
        l.add("actor.dense.1.bias", shape: [D])
        l.add(ActionItemTable.weight, shape: [n, D])
        l.add(ActionItemTable.bias, shape: [n])
        return l
    }

    public var criticRange: Range<Int> { 0..<offsets.actor.w1 }
    public var actorRange: Range<Int> { offsets.actor.w1..<layout.total }

    private func initializeItemRows(_ range: Range<Int>) {
        ActionItemTable.initializeRows(range, params: dense.params, offset: offsets.e, D: config.embeddingSize,
                                       scale: config.actionInitScale, seed: config.seed ^ Self.actionItemTag)
    }

    public func reserveItems(through maxId: Int32) {
        let n = Int(maxId) + 1
        guard n > itemCount else { return }
        let oldCap = itemCapacity, cap = ItemTables.capacity(forItems: n)
        if cap > oldCap {
            dense.grow(to: Self.makeLayout(config, itemCapacity: cap))
            offsets = Offsets(dense.layout)
            initializeItemRows(oldCap..<cap)
        }
        itemCount = n
    }

    // MARK: - Forward pieces

    /// μ(x): a1 = ReLU(x·W1 + b1), act = tanh(a1·W2 + b2), with the parameters at `p` (online or target).
    private func actorForward(_ p: UnsafePointer<Float>, x: UnsafePointer<Float>, a1: UnsafeMutablePointer<Float>,
                              act: UnsafeMutablePointer<Float>, B: Int) {
        let c = config, o = offsets.actor, Hd = c.hiddenSize, D = c.embeddingSize
        linear_forward(out: a1, inp: x, weight: p + o.w1, bias: p + o.b1, B: B, I: c.stateWidth, O: Hd)
        relu_forward(out: a1, inp: a1, N: B * Hd)
        linear_forward(out: act, inp: a1, weight: p + o.w2, bias: p + o.b2, B: B, I: Hd, O: D)
        tanh_forward(out: act, inp: act, N: B * D)
    }

    /// Q(x, α) into q[B], hidden into ch, with the critic's parameters at `p` (online or target).
    private func criticForward(_ p: UnsafePointer<Float>, x: UnsafePointer<Float>, action: UnsafePointer<Float>,
                               ch: UnsafeMutablePointer<Float>, q: UnsafeMutablePointer<Float>, B: Int) {
        critic_forward(q: q, h: ch, x: x, action: action, p: p, net: offsets.critic, B: B, S: config.stateWidth,
                       D: config.embeddingSize, Hd: config.hiddenSize)
    }

    /// The actor's scores of every item for each (user, history): z = μ(x)·Eᵀ + bE — what training
    /// ranks, the progressive NDCG and serving use. Row-major [B × itemCount], column j = item id j;
    /// items 0 and 1 score −∞. `histories` is [B × H], padded with 0 in front. Unknown ids read as
    /// zero rows; nothing is created.
    public func scores(users: [Int32], histories: [Int32]) -> [Float] {
        let B = users.count, H = config.historyLength, N = itemCount
        precondition(histories.count == B * H, "histories must be \(B) × \(H) item ids")
        if B == 0 { return [] }
        ws.ensure(config, batch: B, items: itemCapacity)
        users.withUnsafeBufferPointer { u in
            histories.withUnsafeBufferPointer { h in
                rows.gather(into: ws.x.pointer, users: u.baseAddress!, history: h.baseAddress!, B: B, H: H, initialForMissing: false)
            }
        }
        let p = UnsafePointer(dense.params.pointer)
        actorForward(p, x: ws.x.pointer, a1: ws.a1.pointer, act: ws.act.pointer, B: B)
        return ActionItemTable.scores(logits: ws.logits.pointer, action: ws.act.pointer, params: p, layout: layout, B: B, N: N,
                                      D: config.embeddingSize)
    }

    /// The actor's action vectors μ(x) [B × D] (no training, nothing created).
    public func actions(users: [Int32], histories: [Int32]) -> [Float] {
        let B = users.count, H = config.historyLength
        precondition(histories.count == B * H, "histories must be \(B) × \(H) item ids")
        if B == 0 { return [] }
        ws.ensure(config, batch: B, items: itemCapacity)
        users.withUnsafeBufferPointer { u in
            histories.withUnsafeBufferPointer { h in
                rows.gather(into: ws.x.pointer, users: u.baseAddress!, history: h.baseAddress!, B: B, H: H, initialForMissing: false)
            }
        }
        actorForward(dense.params.pointer, x: ws.x.pointer, a1: ws.a1.pointer, act: ws.act.pointer, B: B)
        return Array(UnsafeBufferPointer(start: ws.act.pointer, count: B * config.embeddingSize))
    }

    // MARK: - Critic phase

    /// Extras of the critic phase's gradients: sample count, Σ (Q − y)², Σ |Q|.
    public static let criticExtras = 3
    /// Extras of the actor phase's: sample count, Σ BC loss, Σ Q(x, μ(x)), Σ NDCG@10, the samples
    /// the NDCG covers.
    public static let actorExtras = 5

    /// Begins a step on a local batch: grows the item tables to its largest id (data-parallel
    /// callers first grow to the step's largest over all participants), creates its rows.
    private func begin(_ batch: TransitionBatch) {
        precondition(batch.historyLength == config.historyLength,
                     "a batch with history length \(batch.historyLength), the model has \(config.historyLength)")
        if let top = ItemTables.largest(batch) { reserveItems(through: top) }
        ws.ensure(config, batch: batch.count, items: 0)   // training's scores live in `bc`
        rows.prepare(batch)
    }

    /// Critic phase on a local batch: the TD target from the target networks, the critic's
    /// squared error, its sum-form gradient (critic range only) in `g`. Parameters do not change.
    @discardableResult
    public func computeCriticGradients(_ batch: TransitionBatch, into g: PhaseGradients) -> DDPGLoss {
        let c = config, B = batch.count, D = c.embeddingSize, Hd = c.hiddenSize, S = c.stateWidth
        begin(batch)
        g.prepare(denseCount: criticRange.count)
        var loss = DDPGLoss()
        if B == 0 { return loss }
        rows.gatherStates(batch, x: ws.x.pointer, next: ws.xn.pointer)
        let p = UnsafePointer(dense.params.pointer), t = UnsafePointer(dense.targets.pointer), o = offsets

        // y = r + γ(1 − done)·Q'(x', μ'(x')): the target networks, a constant.
        actorForward(t, x: ws.xn.pointer, a1: ws.ta1.pointer, act: ws.tact.pointer, B: B)
        criticForward(t, x: ws.xn.pointer, action: ws.tact.pointer, ch: ws.ch.pointer, q: ws.y.pointer, B: B)
        // One-step TD: the immediate reward (column 0 of the batch's window); the bootstrap covers the rest.
        for b in 0..<B { ws.y[b] = batch.reward(b) + (batch.done[b] ? 0 : c.gamma * ws.y[b]) }

        // Q(x, E_a) for the logged actions (the action taken is the logged item's row).
        let ea = ws.ea.pointer
        for b in 0..<B { (ea + b * D).update(from: p + o.e + Int(batch.actions[b]) * D, count: D) }
        criticForward(p, x: ws.x.pointer, action: ea, ch: ws.ch.pointer, q: ws.q.pointer, B: B)
        loss.criticLossSum = weighted_mse_forward(q: ws.q.pointer, y: ws.y.pointer, weights: nil, B: B)
        for b in 0..<B { loss.absQSum += Double(abs(ws.q[b])) }
        loss.count = B

        // Backward into the critic only (x and E_a are inputs with stopped gradients).
        ws.dq.slice(0, B).update(repeating: 0)
        weighted_mse_backward(dq: ws.dq.pointer, q: ws.q.pointer, y: ws.y.pointer, weights: nil, dloss: 1, B: B)
        critic_backward(dp: g.dense.pointer, dh: ws.dch.pointer, dq: ws.dq.pointer, h: ws.ch.pointer, x: ws.x.pointer, action: ea,
                        p: p, net: o.critic, B: B, S: S, D: D, Hd: Hd)   // the critic range starts at 0
        g[extra: 0] = Float(B)
        g[extra: 1] = Float(loss.criticLossSum)
        g[extra: 2] = Float(loss.absQSum)
        return loss
    }

    // MARK: - Actor phase

    /// Actor phase on a local batch (after the critic's update): progressive NDCG@10 of the
    /// scores before any update of the step, the behaviour-cloning cross-entropy and −λ·Q(x, μ(x))
    /// under the current critic, their sum-form gradient (actor range and rows) in `g`.
    @discardableResult
    public func computeActorGradients(_ batch: TransitionBatch, lambda: Float, into g: PhaseGradients) -> DDPGLoss {
        let c = config, B = batch.count, D = c.embeddingSize, Hd = c.hiddenSize, S = c.stateWidth
        begin(batch)
        g.prepare(denseCount: actorDenseCount)
        var loss = DDPGLoss()
        if B == 0 { return loss }
        rows.gatherStates(batch, x: ws.x.pointer, next: nil)
        let p = UnsafePointer(dense.params.pointer), o = offsets

        // μ(x) and the item scores; neither the actor nor the rows nor E changed in the critic
        // phase, so these are the scores before the step's update (progressive validation).
        actorForward(p, x: ws.x.pointer, a1: ws.a1.pointer, act: ws.act.pointer, B: B)
        let head = bc.forward(batch, action: ws.act.pointer, E: p + o.e, bias: p + o.be, items: itemCount, step: step, k: Self.ndcgCutoff)
        loss.bcLossSum = head.loss; loss.ndcgSum = head.ndcgSum; loss.ndcgCount = head.ndcgCount
        let useQ = lambda != 0
        if useQ {
            criticForward(p, x: ws.x.pointer, action: ws.act.pointer, ch: ws.ch.pointer, q: ws.q.pointer, B: B)
            for b in 0..<B { loss.actorQSum += Double(ws.q[b]) }
        }
        loss.count = B

        // Backward. The behaviour-cloning stream reaches E, bE, the actor and x; the critic
        // stream reaches the actor only.
        let dp = g.dense.pointer - actorRange.lowerBound   // gradient of params[i] at dp[i] (dense part)
        let full = !usesSampledSoftmax
        ws.dactBC.slice(0, B * D).update(repeating: 0)
        bc.backward(batch, weight: c.bcWeight, dAction: ws.dactBC.pointer, action: ws.act.pointer, E: p + o.e,
                    dE: full ? dp + o.e : nil, dBias: full ? dp + o.be : nil, rows: &g.itemRows)
        ws.dhBC.slice(0, B * D).update(repeating: 0)
        tanh_backward(dinp: ws.dhBC.pointer, dout: ws.dactBC.pointer, out: ws.act.pointer, N: B * D)
        ws.dh.pointer.update(from: ws.dhBC.pointer, count: B * D)
        if useQ {
            // d(−λ·Q)/dμ through the critic (its parameters get nothing here).
            critic_action_backward(dAction: ws.dactQ.pointer, dq: ws.dq.pointer, dh: ws.dch.pointer, h: ws.ch.pointer,
                                   action: ws.act.pointer, p: p, net: o.critic, lambda: lambda, B: B, S: S, D: D, Hd: Hd)
            tanh_backward(dinp: ws.dh.pointer, dout: ws.dactQ.pointer, out: ws.act.pointer, N: B * D)
        }
        // The actor's parameters from both streams (dh), x from the behaviour-cloning one (dhBC).
        two_stream_backward(dx: ws.dx.pointer, dp: dp, dh: ws.da1.pointer, dhInput: ws.da1BC.pointer, dOut: ws.dh.pointer,
                            dOutInput: useQ ? ws.dhBC.pointer : nil, h: ws.a1.pointer, x: ws.x.pointer, p: p, net: o.actor,
                            B: B, S: S, Hd: Hd, O: D)
        rows.collectGradients(dx: ws.dx.pointer, batch: batch, users: &g.users, items: &g.items)
        g[extra: 0] = Float(B)
        g[extra: 1] = Float(loss.bcLossSum)
        g[extra: 2] = Float(loss.actorQSum)
        g[extra: 3] = Float(loss.ndcgSum)
        g[extra: 4] = Float(loss.ndcgCount)
        return loss
    }

    /// One single-process step: critic phase, actor phase, targets.
    @discardableResult
    public func trainStep(_ batch: TransitionBatch, critic gc: PhaseGradients, actor ga: PhaseGradients) -> DDPGLoss {
        var loss = computeCriticGradients(batch, into: gc)
        applyCriticGradients(gc, totalSamples: batch.count)
        let a = computeActorGradients(batch, lambda: actorQScale(meanAbsQ: loss.absQSum / Double(max(batch.count, 1))), into: ga)
        applyActorGradients(ga, totalSamples: batch.count)
        loss.bcLossSum = a.bcLossSum; loss.actorQSum = a.actorQSum; loss.ndcgSum = a.ndcgSum; loss.ndcgCount = a.ndcgCount
        return loss
    }
}
