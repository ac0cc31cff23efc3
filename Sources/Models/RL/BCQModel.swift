import Foundation
import Kernels
import StreamRecNumerics
import Features

// BCQ, continuous (Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement Learning without
// Exploration"; github.com/sfujim/BCQ), as DBRL runs it for recommendation, on the transitions of
// the behaviour pipeline — without DBRL's defects: the critics see the logged action, and
// recommendations are the items scored by the selected action, deterministically.
//
// Per transition b (user u, state s = the H items before the action, action item a, reward r):
//
//   x, x'   = the state [userRow(u) | itemRow(s_1) … itemRow(s_H)] and the next state   [B × S]
//   α_b     = E_{a_b}: the logged action is the logged item's row of the item table    [B × D]
//   VAE     encoder  h_e = ReLU(x·We_x + α·We_a + be);  μ_z = h_e·Wm + bm;  log σ = h_e·Ws + bs   [B × L]
//           z = μ_z + exp(clamp(log σ, −4, 15))·ε, ε ~ N(0, I)
//           decoder  dec(x, z) = ReLU(x·Wd_x + z·Wd_z + bd)·Wd2 + bd2                            [B × D]
//   ξ(x, α) = Φ·tanh(ReLU(x·Wp_x + α·Wp_a + bp)·Wp2 + bp2)    the perturbation, bounded to ±Φ
//   Q_k(x, α) = ReLU(x·V_k,x + α·V_k,a + d_k)·V_k,2 + d_k,2   twin critics, k = 1, 2
//
// The selected action (served, ranked in training's NDCG and by `scores(…)`): the decoder's mean
// action — z = 0, the centre of the prior — perturbed:
//
//   â0 = dec(x, 0),  ã = â0 + ξ(x, â0),  item j's score z_j = ã·E_j + bE_j    (items 0, 1 at −∞)
//
// BCQ's `select_action` decodes 100 random latents and takes the argmax of Q1; with z = 0 the
// selection is deterministic, so evaluation and serving give the same ranking for the same
// state every time. (The argmax over sampled actions remains in the critics' target.)
//
// One step, two update phases, each with its own gradient exchange:
//
//   critic:  n = target_samples latents z_i ~ clip(N(0, I), −0.5, 0.5), shared by the step's
//            transitions (one draw per step from (seed, step), so replicas draw the same):
//              â_i = dec(x', z_i),  ã_i = â_i + ξ'(x', â_i)
//              m_i = λ·min(Q1'(x', ã_i), Q2'(x', ã_i)) + (1 − λ)·max(…)
//              y   = r + γ(1 − done)·max_i m_i                                 (a constant)
//            L_C = Σ_b (Q1(x, α) − y)² + (Q2(x, α) − y)²       trains the two critics only
//   actor:   L_V = Σ_b ½‖dec(x, z) − α‖² + kl_weight·KL(N(μ_z, σ²) ‖ N(0, I))     the VAE
//            L_B = bc_weight · Σ_b −log softmax(z_b)[a_b]                         behaviour cloning
//            L_Q = −λ_a·Σ_b Q1(x, ã_b),  λ_a = actor_q_weight / max(mean|Q1(x, α)|, 10⁻³)
//            minimise L_V + L_B + L_Q in one update
//   targets: θ' ← τ·θ + (1 − τ)·θ' for the critics and ξ (the VAE has no target, as in BCQ)
//
// Which parameter learns from what:
//   - the critics from L_C; they read x and α with their gradients stopped;
//   - ξ from L_Q (through Q1, whose parameters get nothing; x and â0 stopped, as BCQ's actor
//     step updates only the actor) and from L_B;
//   - the VAE from L_V and from L_B (through â0: the served action is the decoder's);
//   - E, bE from L_B only (α is data to the VAE and the critics, so the action space cannot
//     collapse to make reconstruction trivial); the user and item rows from L_V and L_B.
// Order differs from BCQ's (VAE, critic, actor) in one respect: the VAE updates with the actor,
// after the critic, so the critic's target samples come from the VAE before the step's update.
//
// The noise: the target latents are drawn once per step from (seed, step); the VAE's ε per
// transition from (seed, step, user, time, action) — neither depends on how a batch is split.
//
// Large catalogues: beyond `full_softmax_items` item ids the behaviour-cloning softmax runs over
// the step's candidates with the log-Q correction, as REINFORCE's and DDPG's do
// (`BehaviorCloningHead`). L_B is the only term with a gradient into E, bE (the critics' and the
// VAE's α = E_a is stopped), so the table's gradient is the candidates' rows, sent as sparse rows
// and applied by lazy row-wise Adam; the actor phase's dense gradient stops before the table.
//
// Parameters: one flat buffer cut by `layout`: the critics, then ξ (the targets copy that prefix),
// then the VAE, then the item tables (which grow with the item count). Rows: `StateRows`.

/// Loss sums of one step over a local batch (sum form; each phase fills its own).
public struct BCQLoss: Sendable, Equatable {
    /// Σ_b (Q1 − y)² + (Q2 − y)².
    public var criticLossSum = 0.0
    /// Σ_b |Q1(x_b, α_b)|, the critic phase's scale for λ_a.
    public var absQSum = 0.0
    /// Σ_b ½‖dec(x, z) − α‖² + kl_weight·KL.
    public var vaeLossSum = 0.0
    /// Σ_b −log softmax(z_b)[a_b].
    public var bcLossSum = 0.0
    /// Σ_b Q1(x_b, ã_b) under the updated critic.
    public var actorQSum = 0.0
    /// Σ_b NDCG@10 of the logged item under the scores before the step's update.
    public var ndcgSum = 0.0
    /// Samples `ndcgSum` covers (all of them, or `sampledNDCGRows` per batch when sampled).
    public var ndcgCount = 0
    public var count = 0
    public init() {}
}

/// Activations and scratch, grown on demand. One per model.
final class BCQWorkspace {
    private(set) var batchCapacity = 0, itemCapacity = 0, samples = 0
    var x = FloatBuffer(count: 0), xn = FloatBuffer(count: 0), dx = FloatBuffer(count: 0)
    // [B × Hd]
    var he = FloatBuffer(count: 0), base = FloatBuffer(count: 0), hdv = FloatBuffer(count: 0), hd0 = FloatBuffer(count: 0)
    var hp = FloatBuffer(count: 0), ch = FloatBuffer(count: 0), ch2 = FloatBuffer(count: 0), dhe = FloatBuffer(count: 0), dbase = FloatBuffer(count: 0)
    var dtmp = FloatBuffer(count: 0), dhp = FloatBuffer(count: 0), dhpBC = FloatBuffer(count: 0), dch = FloatBuffer(count: 0)
    // [B × L]
    var mu = FloatBuffer(count: 0), ls = FloatBuffer(count: 0), eps = FloatBuffer(count: 0), zv = FloatBuffer(count: 0)
    var dmu = FloatBuffer(count: 0), dls = FloatBuffer(count: 0), dzv = FloatBuffer(count: 0)
    // [B × D]
    var ea = FloatBuffer(count: 0), av = FloatBuffer(count: 0), a0 = FloatBuffer(count: 0), u = FloatBuffer(count: 0)
    var act = FloatBuffer(count: 0), dav = FloatBuffer(count: 0), da0 = FloatBuffer(count: 0), dactBC = FloatBuffer(count: 0)
    var dactQ = FloatBuffer(count: 0), du = FloatBuffer(count: 0), dg = FloatBuffer(count: 0), dgBC = FloatBuffer(count: 0)
    // [B]
    var q = FloatBuffer(count: 0), q2 = FloatBuffer(count: 0), y = FloatBuffer(count: 0), dq = FloatBuffer(count: 0)
    var kl = FloatBuffer(count: 0)
    // The target's n candidates per next state: [n·B × Hd], [n·B × D], [n·B], the latents [n × L], z·Wd_z [n × Hd].
    var nHd = FloatBuffer(count: 0), nHd2 = FloatBuffer(count: 0), nA = FloatBuffer(count: 0), nU = FloatBuffer(count: 0)
    var nQ1 = FloatBuffer(count: 0), nQ2 = FloatBuffer(count: 0), zt = FloatBuffer(count: 0), zW = FloatBuffer(count: 0)
    /// Scores [B × N] of `scores(…)` (training's are the behaviour-cloning head's).
    var logits = FloatBuffer(count: 0)

    func ensure(_ c: BCQConfig, batch B: Int, items N: Int) {
        let D = c.embeddingSize, S = c.stateWidth, Hd = c.hiddenSize, L = c.latentWidth, n = c.targetSamples
        if B > batchCapacity {
            batchCapacity = B
            x = FloatBuffer(count: B * S); xn = FloatBuffer(count: B * S); dx = FloatBuffer(count: B * S)
            for k in [\BCQWorkspace.he, \.base, \.hdv, \.hd0, \.hp, \.ch, \.ch2, \.dhe, \.dbase, \.dtmp, \.dhp, \.dhpBC, \.dch] {
                self[keyPath: k] = FloatBuffer(count: B * Hd)
            }
            for k in [\BCQWorkspace.mu, \.ls, \.eps, \.zv, \.dmu, \.dls, \.dzv] { self[keyPath: k] = FloatBuffer(count: B * L) }
            for k in [\BCQWorkspace.ea, \.av, \.a0, \.u, \.act, \.dav, \.da0, \.dactBC, \.dactQ, \.du, \.dg, \.dgBC] {
                self[keyPath: k] = FloatBuffer(count: B * D)
            }
            for k in [\BCQWorkspace.q, \.q2, \.y, \.dq, \.kl] { self[keyPath: k] = FloatBuffer(count: B) }
            nHd = FloatBuffer(count: n * B * Hd); nHd2 = FloatBuffer(count: n * B * Hd)
            nA = FloatBuffer(count: n * B * D); nU = FloatBuffer(count: n * B * D)
            nQ1 = FloatBuffer(count: n * B); nQ2 = FloatBuffer(count: n * B)
            zt = FloatBuffer(count: n * L); zW = FloatBuffer(count: n * Hd)
            itemCapacity = 0
        }
        if N > itemCapacity {
            itemCapacity = N
            logits = FloatBuffer(count: batchCapacity * N)
        }
    }
}

public final class BCQModel: BehaviorCloningModel, @unchecked Sendable {
    public static let ndcgCutoff = 10
    public static let modelKind = "bcq"

    public let config: BCQConfig
    public let dense: DenseParameters
    public private(set) var itemCount: Int
    public let rows: StateRows
    public var step = 0

    /// Each network's input is [x | second] (weight rows 0..<S read x): the action, or z for the decoder.
    struct Offsets {
        var q1, q2, p, enc, dec: NetOffsets
        var wm = 0, bm = 0, ws = 0, bs = 0, e = 0, be = 0
        init(_ l: ParameterLayout) {
            func o(_ n: String) -> Int { l.entry(n)!.offset }
            q1 = NetOffsets(l, prefix: "critic1"); q2 = NetOffsets(l, prefix: "critic2"); p = NetOffsets(l, prefix: "perturb")
            dec = NetOffsets(l, prefix: "vae.decoder")
            enc = NetOffsets(w1: o("vae.encoder.dense.0.weight"), b1: o("vae.encoder.dense.0.bias"), w2: 0, b2: 0)
            wm = o("vae.encoder.mean.weight"); bm = o("vae.encoder.mean.bias")
            ws = o("vae.encoder.log_std.weight"); bs = o("vae.encoder.log_std.bias")
            e = o(ActionItemTable.weight); be = o(ActionItemTable.bias)
        }
    }
    private var o: Offsets
    let ws = BCQWorkspace()
    /// The behaviour-cloning term and the progressive NDCG (full or sampled softmax).
    let bc: BehaviorCloningHead

    private static let userTag: UInt64 = 0xBC0_0001, itemTag: UInt64 = 0xBC0_0002, actionItemTag: UInt64 = 0xBC0_0003
    private static let targetNoiseTag: UInt64 = 0xBC0_0004, vaeNoiseTag: UInt64 = 0xBC0_0005, samplerTag: UInt64 = 0xBC0_0006
    /// BCQ's clip of the prior latents the decoder samples from.
    static let latentClip: Float = 0.5

    public init(config: BCQConfig) {
        self.config = config
        itemCount = 2
        let cap = ItemTables.capacity(forItems: 2)
        let l = Self.makeLayout(config, itemCapacity: cap)
        dense = DenseParameters(layout: l, targetCount: l.entry("vae.encoder.dense.0.weight")!.offset)
        o = Offsets(l)
        rows = StateRows(dim: config.embeddingSize, seed: config.seed, initScale: config.embeddingInitScale,
                         userTag: Self.userTag, itemTag: Self.itemTag)
        bc = BehaviorCloningHead(dim: config.embeddingSize, fullSoftmaxItems: config.fullSoftmaxItems,
                                 sampledItems: config.sampledItems, samplerSeed: config.seed ^ Self.samplerTag)
        var rng = SplitMix64(seed: config.seed)
        dense.initializeWeights(["critic1.dense.0.weight", "critic1.dense.1.weight", "critic2.dense.0.weight", "critic2.dense.1.weight",
                                 "perturb.dense.0.weight", "perturb.dense.1.weight", "vae.encoder.dense.0.weight",
                                 "vae.encoder.mean.weight", "vae.encoder.log_std.weight",
                                 "vae.decoder.dense.0.weight", "vae.decoder.dense.1.weight"], rng: &rng)
        dense.copyTargets()
        initializeItemRows(0..<cap)
    }

    static func makeLayout(_ c: BCQConfig, itemCapacity n: Int) -> ParameterLayout {
        let S = c.stateWidth, D = c.embeddingSize, Hd = c.hiddenSize, L = c.latentWidth
        var l = ParameterLayout()
        for (prefix, out) in [("critic1", 1), ("critic2", 1), ("perturb", D)] {
            l.add("\(prefix).dense.0.weight", shape: [S + D, Hd])   // rows 0..<S read x, the rest the action
            l.add("\(prefix).dense.0.bias", shape: [Hd])
            l.add("\(prefix).dense.1.weight", shape: [Hd, out])
            l.add("\(prefix).dense.1.bias", shape: [out])
        }
        l.add("vae.encoder.dense.0.weight", shape: [S + D, Hd])
        l.add("vae.encoder.dense.0.bias", shape: [Hd])
        l.add("vae.encoder.mean.weight", shape: [Hd, L])
        l.add("vae.encoder.mean.bias", shape: [L])
        l.add("vae.encoder.log_std.weight", shape: [Hd, L])
        l.add("vae.encoder.log_std.bias", shape: [L])
        l.add("vae.decoder.dense.0.weight", shape: [S + L, Hd])    // rows 0..<S read x, the rest z
        l.add("vae.decoder.dense.0.bias", shape: [Hd])
        l.add("vae.decoder.dense.1.weight", shape: [Hd, D])
        l.add("vae.decoder.dense.1.bias", shape: [D])
        l.add(ActionItemTable.weight, shape: [n, D])
        l.add(ActionItemTable.bias, shape: [n])
        return l
    }

    /// The critic phase's range of the dense buffer (both critics), and the actor phase's (the rest).
    public var criticRange: Range<Int> { 0..<o.p.w1 }
    public var actorRange: Range<Int> { o.p.w1..<layout.total }

    private func initializeItemRows(_ range: Range<Int>) {
        ActionItemTable.initializeRows(range, params: dense.params, offset: o.e, D: config.embeddingSize,
                                       scale: config.actionInitScale, seed: config.seed ^ Self.actionItemTag)
    }

    public func reserveItems(through maxId: Int32) {
        let n = Int(maxId) + 1
        guard n > itemCount else { return }
        let oldCap = itemCapacity, cap = ItemTables.capacity(forItems: n)
        if cap > oldCap {
            dense.grow(to: Self.makeLayout(config, itemCapacity: cap))
            o = Offsets(dense.layout)
            initializeItemRows(oldCap..<cap)
        }
        itemCount = n
    }

    // MARK: - Noise

    /// The step's n target latents [n × L], clip(N(0, 1), ±0.5), from (seed, step).
    func targetLatents(step s: Int, into z: UnsafeMutablePointer<Float>) {
        var rng = SplitMix64(seed: SplitMix64.mix(config.seed ^ Self.targetNoiseTag, UInt64(s)))
        for i in 0..<(config.targetSamples * config.latentWidth) {
            z[i] = min(max(Float(rng.normal()), -Self.latentClip), Self.latentClip)
        }
    }

    /// The VAE's ε [B × L] for a step: each transition's from (seed, step, user, time, action).
    func vaeNoise(_ batch: TransitionBatch, step s: Int, into eps: UnsafeMutablePointer<Float>) {
        let L = config.latentWidth
        let base = SplitMix64.mix(config.seed ^ Self.vaeNoiseTag, UInt64(s))
        for b in 0..<batch.count {
            var key = SplitMix64.mix(base, UInt64(UInt32(bitPattern: batch.users[b])))
            key = SplitMix64.mix(key, UInt64(bitPattern: batch.times[b]))
            key = SplitMix64.mix(key, UInt64(UInt32(bitPattern: batch.actions[b])))
            var rng = SplitMix64(seed: key)
            for l in 0..<L { eps[b * L + l] = Float(rng.normal()) }
        }
    }

    // MARK: - Forward pieces

    /// The served action for x: base = x·Wd_x + bd (pre-activation), hd0 = ReLU(base), â0 = hd0·Wd2 + bd2,
    /// hp = ReLU(x·Wp_x + â0·Wp_a + bp), u = tanh(hp·Wp2 + bp2), ã = â0 + Φ·u.
    private func selectedAction(_ p: UnsafePointer<Float>, B: Int) {
        let c = config, Hd = c.hiddenSize, S = c.stateWidth, D = c.embeddingSize
        linear_forward(out: ws.base.pointer, inp: ws.x.pointer, weight: p + o.dec.w1, bias: p + o.dec.b1, B: B, I: S, O: Hd)
        relu_forward(out: ws.hd0.pointer, inp: ws.base.pointer, N: B * Hd)
        linear_forward(out: ws.a0.pointer, inp: ws.hd0.pointer, weight: p + o.dec.w2, bias: p + o.dec.b2, B: B, I: Hd, O: D)
        linear_forward(out: ws.hp.pointer, inp: ws.x.pointer, weight: p + o.p.w1, bias: p + o.p.b1, B: B, I: S, O: Hd)
        linear_accumulate_forward(out: ws.hp.pointer, inp: ws.a0.pointer, weight: p + o.p.w1 + S * Hd, B: B, I: D, O: Hd)
        relu_forward(out: ws.hp.pointer, inp: ws.hp.pointer, N: B * Hd)
        linear_forward(out: ws.u.pointer, inp: ws.hp.pointer, weight: p + o.p.w2, bias: p + o.p.b2, B: B, I: Hd, O: D)
        tanh_forward(out: ws.u.pointer, inp: ws.u.pointer, N: B * D)
        for i in 0..<(B * D) { ws.act[i] = ws.a0[i] + c.phi * ws.u[i] }
    }

    private func gatherForScoring(users: [Int32], histories: [Int32]) -> Int {
        let B = users.count, H = config.historyLength
        precondition(histories.count == B * H, "histories must be \(B) × \(H) item ids")
        ws.ensure(config, batch: max(B, 1), items: itemCapacity)
        users.withUnsafeBufferPointer { u in
            histories.withUnsafeBufferPointer { h in
                if B > 0 { rows.gather(into: ws.x.pointer, users: u.baseAddress!, history: h.baseAddress!, B: B, H: H, initialForMissing: false) }
            }
        }
        return B
    }

    /// The selected action's scores of every item for each (user, history): z = ã·Eᵀ + bE with
    /// ã = dec(x, 0) + ξ(x, dec(x, 0)) — deterministic; what training's NDCG and serving rank.
    /// Row-major [B × itemCount]; items 0 and 1 score −∞. Unknown ids read as zero rows.
    public func scores(users: [Int32], histories: [Int32]) -> [Float] {
        let B = gatherForScoring(users: users, histories: histories), N = itemCount
        if B == 0 { return [] }
        let p = UnsafePointer(dense.params.pointer)
        selectedAction(p, B: B)
        return ActionItemTable.scores(logits: ws.logits.pointer, action: ws.act.pointer, params: p, layout: layout, B: B, N: N,
                                      D: config.embeddingSize)
    }

    /// The selected actions ã [B × D] (no training, nothing created).
    public func actions(users: [Int32], histories: [Int32]) -> [Float] {
        let B = gatherForScoring(users: users, histories: histories)
        if B == 0 { return [] }
        selectedAction(dense.params.pointer, B: B)
        return Array(UnsafeBufferPointer(start: ws.act.pointer, count: B * config.embeddingSize))
    }

    // MARK: - Critic phase

    /// Extras of the critic phase: sample count, Σ critic loss, Σ |Q1|.
    public static let criticExtras = 3
    /// Extras of the actor phase: sample count, Σ VAE loss, Σ BC loss, Σ Q1(x, ã), Σ NDCG@10, the
    /// samples the NDCG covers.
    public static let actorExtras = 6

    private func begin(_ batch: TransitionBatch) {
        precondition(batch.historyLength == config.historyLength,
                     "a batch with history length \(batch.historyLength), the model has \(config.historyLength)")
        if let top = ItemTables.largest(batch) { reserveItems(through: top) }
        ws.ensure(config, batch: max(batch.count, 1), items: 0)   // training's scores live in `bc`
        rows.prepare(batch)
    }

    /// Critic phase on a local batch: the clipped double-Q target over n decoded and perturbed
    /// actions per next state (target networks, online VAE), both critics' squared errors on the
    /// logged action, their sum-form gradient (critic range) in `g`. Parameters do not change.
    @discardableResult
    public func computeCriticGradients(_ batch: TransitionBatch, into g: PhaseGradients) -> BCQLoss {
        let c = config, B = batch.count, D = c.embeddingSize, Hd = c.hiddenSize, S = c.stateWidth
        let L = c.latentWidth, n = c.targetSamples, nB = n * B
        begin(batch)
        g.prepare(denseCount: criticRange.count)
        var loss = BCQLoss()
        if B == 0 { return loss }
        rows.gatherStates(batch, x: ws.x.pointer, next: ws.xn.pointer)
        let p = UnsafePointer(dense.params.pointer), t = UnsafePointer(dense.targets.pointer)

        // n candidate actions per next state: â_i = dec(x', z_i). The x' part of the decoder's first
        // layer is computed once and shared by the n candidates; z_i is the same for every row of
        // block i, so its part is one [Hd] vector per block.
        targetLatents(step: step + 1, into: ws.zt.pointer)
        linear_forward(out: ws.base.pointer, inp: ws.xn.pointer, weight: p + o.dec.w1, bias: p + o.dec.b1, B: B, I: S, O: Hd)
        ws.zW.slice(0, n * Hd).update(repeating: 0)
        linear_accumulate_forward(out: ws.zW.pointer, inp: ws.zt.pointer, weight: p + o.dec.w1 + S * Hd, B: n, I: L, O: Hd)
        for i in 0..<n {
            let blk = ws.nHd.pointer + i * B * Hd, zw = ws.zW.pointer + i * Hd
            for b in 0..<B { for k in 0..<Hd { blk[b * Hd + k] = max(ws.base[b * Hd + k] + zw[k], 0) } }
        }
        linear_forward(out: ws.nA.pointer, inp: ws.nHd.pointer, weight: p + o.dec.w2, bias: p + o.dec.b2, B: nB, I: Hd, O: D)
        // ã_i = â_i + ξ'(x', â_i) (target perturbation).
        linear_forward(out: ws.base.pointer, inp: ws.xn.pointer, weight: t + o.p.w1, bias: t + o.p.b1, B: B, I: S, O: Hd)
        repeat_rows_forward(out: ws.nHd.pointer, base: ws.base.pointer, n: n, B: B, O: Hd)
        linear_accumulate_forward(out: ws.nHd.pointer, inp: ws.nA.pointer, weight: t + o.p.w1 + S * Hd, B: nB, I: D, O: Hd)
        relu_forward(out: ws.nHd.pointer, inp: ws.nHd.pointer, N: nB * Hd)
        linear_forward(out: ws.nU.pointer, inp: ws.nHd.pointer, weight: t + o.p.w2, bias: t + o.p.b2, B: nB, I: Hd, O: D)
        tanh_forward(out: ws.nU.pointer, inp: ws.nU.pointer, N: nB * D)
        for i in 0..<(nB * D) { ws.nA[i] += c.phi * ws.nU[i] }
        // Q1', Q2' of every candidate.
        for (net, out) in [(o.q1, ws.nQ1), (o.q2, ws.nQ2)] {
            linear_forward(out: ws.base.pointer, inp: ws.xn.pointer, weight: t + net.w1, bias: t + net.b1, B: B, I: S, O: Hd)
            repeat_rows_forward(out: ws.nHd.pointer, base: ws.base.pointer, n: n, B: B, O: Hd)
            linear_accumulate_forward(out: ws.nHd.pointer, inp: ws.nA.pointer, weight: t + net.w1 + S * Hd, B: nB, I: D, O: Hd)
            relu_forward(out: ws.nHd.pointer, inp: ws.nHd.pointer, N: nB * Hd)
            linear_forward(out: out.pointer, inp: ws.nHd.pointer, weight: t + net.w2, bias: t + net.b2, B: nB, I: Hd, O: 1)
        }
        // y = r + γ(1 − done)·max_i [λ·min + (1 − λ)·max].
        for b in 0..<B {
            var best = -Float.infinity
            for i in 0..<n {
                let a = ws.nQ1[i * B + b], bq = ws.nQ2[i * B + b]
                best = max(best, c.lambda * min(a, bq) + (1 - c.lambda) * max(a, bq))
            }
            // One-step TD: the immediate reward (column 0 of the batch's window).
            ws.y[b] = batch.reward(b) + (batch.done[b] ? 0 : c.gamma * best)
        }

        // Both critics on the logged action α = E_a.
        let ea = ws.ea.pointer
        for b in 0..<B { (ea + b * D).update(from: p + o.e + Int(batch.actions[b]) * D, count: D) }
        let dp = g.dense.pointer   // the critic range starts at 0
        for (net, q, h) in [(o.q1, ws.q, ws.ch), (o.q2, ws.q2, ws.ch2)] {
            critic_forward(q: q.pointer, h: h.pointer, x: ws.x.pointer, action: ea, p: p, net: net, B: B, S: S, D: D, Hd: Hd)
            loss.criticLossSum += weighted_mse_forward(q: q.pointer, y: ws.y.pointer, weights: nil, B: B)
            ws.dq.slice(0, B).update(repeating: 0)
            weighted_mse_backward(dq: ws.dq.pointer, q: q.pointer, y: ws.y.pointer, weights: nil, dloss: 1, B: B)
            critic_backward(dp: dp, dh: ws.dch.pointer, dq: ws.dq.pointer, h: h.pointer, x: ws.x.pointer, action: ea, p: p,
                            net: net, B: B, S: S, D: D, Hd: Hd)
        }
        for b in 0..<B { loss.absQSum += Double(abs(ws.q[b])) }
        loss.count = B
        g[extra: 0] = Float(B)
        g[extra: 1] = Float(loss.criticLossSum)
        g[extra: 2] = Float(loss.absQSum)
        return loss
    }

    // MARK: - Actor phase

    /// Actor phase on a local batch (after the critics' update): progressive NDCG@10 of the
    /// selected action's scores before any update of the step, the VAE loss, the
    /// behaviour-cloning cross-entropy and −λ_a·Q1(x, ã); their sum-form gradient (actor range
    /// and rows) in `g`.
    @discardableResult
    public func computeActorGradients(_ batch: TransitionBatch, lambda: Float, into g: PhaseGradients) -> BCQLoss {
        let c = config, B = batch.count, D = c.embeddingSize, Hd = c.hiddenSize, S = c.stateWidth, L = c.latentWidth
        begin(batch)
        g.prepare(denseCount: actorDenseCount)
        var loss = BCQLoss()
        if B == 0 { return loss }
        rows.gatherStates(batch, x: ws.x.pointer, next: nil)
        let p = UnsafePointer(dense.params.pointer)
        let ea = ws.ea.pointer
        for b in 0..<B { (ea + b * D).update(from: p + o.e + Int(batch.actions[b]) * D, count: D) }

        // The selected action and its scores (nothing of them changed in the critic phase: the
        // scores before the step's update, for progressive validation).
        selectedAction(p, B: B)
        let head = bc.forward(batch, action: ws.act.pointer, E: p + o.e, bias: p + o.be, items: itemCount, step: step, k: Self.ndcgCutoff)
        loss.bcLossSum = head.loss; loss.ndcgSum = head.ndcgSum; loss.ndcgCount = head.ndcgCount

        // The VAE on (x, α): encoder, reparameterised latent, decoder (sharing base = x·Wd_x + bd).
        linear_forward(out: ws.he.pointer, inp: ws.x.pointer, weight: p + o.enc.w1, bias: p + o.enc.b1, B: B, I: S, O: Hd)
        linear_accumulate_forward(out: ws.he.pointer, inp: ea, weight: p + o.enc.w1 + S * Hd, B: B, I: D, O: Hd)
        relu_forward(out: ws.he.pointer, inp: ws.he.pointer, N: B * Hd)
        linear_forward(out: ws.mu.pointer, inp: ws.he.pointer, weight: p + o.wm, bias: p + o.bm, B: B, I: Hd, O: L)
        linear_forward(out: ws.ls.pointer, inp: ws.he.pointer, weight: p + o.ws, bias: p + o.bs, B: B, I: Hd, O: L)
        vaeNoise(batch, step: step + 1, into: ws.eps.pointer)
        reparameterize_forward(z: ws.zv.pointer, mu: ws.mu.pointer, logStd: ws.ls.pointer, eps: ws.eps.pointer, N: B * L)
        ws.hdv.pointer.update(from: ws.base.pointer, count: B * Hd)
        linear_accumulate_forward(out: ws.hdv.pointer, inp: ws.zv.pointer, weight: p + o.dec.w1 + S * Hd, B: B, I: L, O: Hd)
        relu_forward(out: ws.hdv.pointer, inp: ws.hdv.pointer, N: B * Hd)
        linear_forward(out: ws.av.pointer, inp: ws.hdv.pointer, weight: p + o.dec.w2, bias: p + o.dec.b2, B: B, I: Hd, O: D)
        let recon = vae_reconstruction_forward(xhat: ws.av.pointer, x: ea, N: B * D)
        let kl = vae_kl_forward(kl: ws.kl.pointer, mu: ws.mu.pointer, logStd: ws.ls.pointer, B: B, L: L)
        loss.vaeLossSum = recon + Double(c.klWeight) * kl

        let useQ = lambda != 0
        if useQ {
            critic_forward(q: ws.q.pointer, h: ws.ch.pointer, x: ws.x.pointer, action: ws.act.pointer, p: p, net: o.q1,
                           B: B, S: S, D: D, Hd: Hd)
            for b in 0..<B { loss.actorQSum += Double(ws.q[b]) }
        }
        loss.count = B

        // Backward.
        let dp = g.dense.pointer - actorRange.lowerBound   // gradient of params[i] at dp[i] (dense part)
        // Behaviour cloning: dz → dã (BC stream), dE, dbE (dense, or the candidates' rows).
        let full = !usesSampledSoftmax
        ws.dactBC.slice(0, B * D).update(repeating: 0)
        bc.backward(batch, weight: c.bcWeight, dAction: ws.dactBC.pointer, action: ws.act.pointer, E: p + o.e,
                    dE: full ? dp + o.e : nil, dBias: full ? dp + o.be : nil, rows: &g.itemRows)
        // ã = â0 + Φ·u: the BC stream reaches u (ξ) and â0 (the decoder) and x; the critic
        // stream reaches ξ's parameters only.
        for i in 0..<(B * D) { ws.du[i] = c.phi * ws.dactBC[i] }
        ws.dgBC.slice(0, B * D).update(repeating: 0)
        tanh_backward(dinp: ws.dgBC.pointer, dout: ws.du.pointer, out: ws.u.pointer, N: B * D)
        ws.dg.pointer.update(from: ws.dgBC.pointer, count: B * D)
        if useQ {
            critic_action_backward(dAction: ws.dactQ.pointer, dq: ws.dq.pointer, dh: ws.dch.pointer, h: ws.ch.pointer,
                                   action: ws.act.pointer, p: p, net: o.q1, lambda: lambda, B: B, S: S, D: D, Hd: Hd)
            for i in 0..<(B * D) { ws.du[i] = c.phi * ws.dactQ[i] }
            tanh_backward(dinp: ws.dg.pointer, dout: ws.du.pointer, out: ws.u.pointer, N: B * D)
        }
        // ξ's parameters from both streams (dg); its inputs from the BC stream (dgBC).
        let dhpState = two_stream_backward(dx: ws.dx.pointer, dp: dp, dh: ws.dhp.pointer, dhInput: ws.dhpBC.pointer,
                                           dOut: ws.dg.pointer, dOutInput: useQ ? ws.dgBC.pointer : nil, h: ws.hp.pointer,
                                           x: ws.x.pointer, p: p, net: o.p, B: B, S: S, Hd: Hd, O: D)
        linear_backward(dinp: nil, dweight: dp + o.p.w1 + S * Hd, dbias: nil, dout: ws.dhp.pointer,
                        inp: ws.a0.pointer, weight: p + o.p.w1 + S * Hd, B: B, I: D, O: Hd)
        // dâ0 = the direct path of ã plus the path through ξ's input.
        ws.da0.pointer.update(from: ws.dactBC.pointer, count: B * D)
        linear_backward(dinp: ws.da0.pointer, dweight: nil, dbias: nil, dout: dhpState,
                        inp: ws.a0.pointer, weight: p + o.p.w1 + S * Hd, B: B, I: D, O: Hd)
        // Decoder, mean pass (z = 0): dbase from hd0 = ReLU(base).
        ws.dbase.slice(0, B * Hd).update(repeating: 0)
        linear_backward(dinp: ws.dbase.pointer, dweight: dp + o.dec.w2, dbias: dp + o.dec.b2, dout: ws.da0.pointer,
                        inp: ws.hd0.pointer, weight: p + o.dec.w2, B: B, I: Hd, O: D)
        relu_backward(dinp: ws.dbase.pointer, dout: ws.dbase.pointer, out: ws.hd0.pointer, N: B * Hd)
        // Decoder, VAE pass: d(½‖â − α‖²) → hdv → its pre-activation (base + z·Wd_z).
        ws.dav.slice(0, B * D).update(repeating: 0)
        vae_reconstruction_backward(dxhat: ws.dav.pointer, xhat: ws.av.pointer, x: ea, dloss: 1, N: B * D)
        ws.dtmp.slice(0, B * Hd).update(repeating: 0)
        linear_backward(dinp: ws.dtmp.pointer, dweight: dp + o.dec.w2, dbias: dp + o.dec.b2, dout: ws.dav.pointer,
                        inp: ws.hdv.pointer, weight: p + o.dec.w2, B: B, I: Hd, O: D)
        relu_backward(dinp: ws.dtmp.pointer, dout: ws.dtmp.pointer, out: ws.hdv.pointer, N: B * Hd)
        for i in 0..<(B * Hd) { ws.dbase[i] += ws.dtmp[i] }
        ws.dzv.slice(0, B * L).update(repeating: 0)
        linear_backward(dinp: ws.dzv.pointer, dweight: dp + o.dec.w1 + S * Hd, dbias: nil, dout: ws.dtmp.pointer,
                        inp: ws.zv.pointer, weight: p + o.dec.w1 + S * Hd, B: B, I: L, O: Hd)
        linear_backward(dinp: ws.dx.pointer, dweight: dp + o.dec.w1, dbias: dp + o.dec.b1, dout: ws.dbase.pointer,
                        inp: ws.x.pointer, weight: p + o.dec.w1, B: B, I: S, O: Hd)
        // The latent: reparameterisation and KL, then the encoder (α is data: no gradient).
        ws.dmu.slice(0, B * L).update(repeating: 0); ws.dls.slice(0, B * L).update(repeating: 0)
        reparameterize_backward(dmu: ws.dmu.pointer, dlogStd: ws.dls.pointer, dz: ws.dzv.pointer, logStd: ws.ls.pointer,
                                eps: ws.eps.pointer, N: B * L)
        vae_kl_backward(dmu: ws.dmu.pointer, dlogStd: ws.dls.pointer, mu: ws.mu.pointer, logStd: ws.ls.pointer,
                        dloss: c.klWeight, B: B, L: L)
        ws.dhe.slice(0, B * Hd).update(repeating: 0)
        linear_backward(dinp: ws.dhe.pointer, dweight: dp + o.wm, dbias: dp + o.bm, dout: ws.dmu.pointer,
                        inp: ws.he.pointer, weight: p + o.wm, B: B, I: Hd, O: L)
        linear_backward(dinp: ws.dhe.pointer, dweight: dp + o.ws, dbias: dp + o.bs, dout: ws.dls.pointer,
                        inp: ws.he.pointer, weight: p + o.ws, B: B, I: Hd, O: L)
        relu_backward(dinp: ws.dhe.pointer, dout: ws.dhe.pointer, out: ws.he.pointer, N: B * Hd)
        linear_backward(dinp: ws.dx.pointer, dweight: dp + o.enc.w1, dbias: dp + o.enc.b1, dout: ws.dhe.pointer,
                        inp: ws.x.pointer, weight: p + o.enc.w1, B: B, I: S, O: Hd)
        linear_backward(dinp: nil, dweight: dp + o.enc.w1 + S * Hd, dbias: nil, dout: ws.dhe.pointer,
                        inp: ea, weight: p + o.enc.w1 + S * Hd, B: B, I: D, O: Hd)
        rows.collectGradients(dx: ws.dx.pointer, batch: batch, users: &g.users, items: &g.items)
        g[extra: 0] = Float(B)
        g[extra: 1] = Float(loss.vaeLossSum)
        g[extra: 2] = Float(loss.bcLossSum)
        g[extra: 3] = Float(loss.actorQSum)
        g[extra: 4] = Float(loss.ndcgSum)
        g[extra: 5] = Float(loss.ndcgCount)
        return loss
    }

    /// One single-process step: critic phase, actor phase, targets.
    @discardableResult
    public func trainStep(_ batch: TransitionBatch, critic gc: PhaseGradients, actor ga: PhaseGradients) -> BCQLoss {
        var loss = computeCriticGradients(batch, into: gc)
        applyCriticGradients(gc, totalSamples: batch.count)
        let a = computeActorGradients(batch, lambda: actorQScale(meanAbsQ: loss.absQSum / Double(max(batch.count, 1))), into: ga)
        applyActorGradients(ga, totalSamples: batch.count)
        loss.vaeLossSum = a.vaeLossSum; loss.bcLossSum = a.bcLossSum; loss.actorQSum = a.actorQSum; loss.ndcgSum = a.ndcgSum
        loss.ndcgCount = a.ndcgCount
        return loss
    }
}
