import Kernels
import StreamRecNumerics
import Features

// Wide&Deep (Cheng et al. 2016) as MindSpore's online-learning example trains it:
//   per field f of a row: id_f, weight w_f (normalised dense value, or 1 for a category)
//   wide  = bias + Σ_f wide[id_f] · w_f                                 (FTRL)
//   x0    = concat_f(emb[id_f] · w_f)            [F·D]                  (lazy Adam, row-wise)
//   deep  = Linear(ReLU(Linear(…ReLU(Linear(x0))…)))  → 1                (Adam)
//   p     = σ(wide + deep);  wide_loss = mean logloss;
//   deep_loss = wide_loss + l2 · Σ_touched rows ‖emb‖²/2
//
// Training a step is split in two so data-parallel training can sit in between:
// `computeGradients` (forward + backward on the local batch, in *sum* form) and
// `applyGradients` (scale by 1/total samples, optimizer updates). Dense gradients live in one
// flat buffer laid out by `denseLayout` (plus a trailing sample count) so one allreduce covers
// them all; sparse row gradients are (ids, rows) lists that can be concatenated across ranks.

/// Activations and scratch for batches of up to `capacity` rows. One per thread.
public final class WideDeepWorkspace: @unchecked Sendable {
    public let capacity: Int
    let slots: Int32Buffer
    let local: Int32Buffer
    let x0: FloatBuffer
    let activations: [FloatBuffer]
    let deepOut, wideOut, logits, dlogits: FloatBuffer
    /// Click probabilities of the last forward pass (first `batch.count` entries).
    public let probs: FloatBuffer
    let gradA, gradB: FloatBuffer

    public init(config: WideDeepConfig, capacity: Int) {
        self.capacity = capacity
        let F = config.fieldCount
        slots = Int32Buffer(capacity: capacity * F)
        local = Int32Buffer(capacity: capacity * F)
        x0 = FloatBuffer(count: capacity * config.deepInputWidth)
        activations = config.deepLayers.map { FloatBuffer(count: capacity * $0) }
        deepOut = FloatBuffer(count: capacity)
        wideOut = FloatBuffer(count: capacity)
        logits = FloatBuffer(count: capacity)
        probs = FloatBuffer(count: capacity)
        dlogits = FloatBuffer(count: capacity)
        // Backward alternates two buffers for input gradients, from the last layer down to x0:
        // size each for the widest gradient it will hold.
        // x0's gradient overwrites x0 itself (see computeGradients), so only hidden widths count.
        var sizes = [0, 0], which = 0
        for l in stride(from: config.deepLayers.count, through: 1, by: -1) {
            let inWidth = l == 0 ? config.deepInputWidth : config.deepLayers[l - 1]
            sizes[which] = max(sizes[which], inWidth)
            which ^= 1
        }
        gradA = FloatBuffer(count: capacity * max(sizes[0], 1))
        gradB = FloatBuffer(count: capacity * max(sizes[1], 1))
    }
}

/// One rank's gradients for one step, in sum form (not yet divided by the sample count).
public final class WideDeepGradients: @unchecked Sendable {
    /// `denseLayout.total` gradients, then three bookkeeping floats that ride along in the same
    /// allreduce: sample count, log-loss sum, l2 term. (Exact as floats for counts < 2^24.)
    public let dense: FloatBuffer
    public let denseCount: Int
    /// Unique ids the batch touched, in first-seen order.
    public var ids: [Int32] = []
    /// `ids.count × embeddingSize` deep embedding row gradients.
    public var deepRows: [Float] = []
    /// `ids.count` wide weight gradients.
    public var wideRows: [Float] = []

    public init(denseCount: Int) {
        self.denseCount = denseCount
        dense = FloatBuffer(count: denseCount + 3)
    }

    public var sampleCount: Int {
        get { Int(dense[denseCount]) }
        set { dense[denseCount] = Float(newValue) }
    }

    /// Σ log loss over the samples (summed over ranks after an allreduce).
    public var logLossSum: Float {
        get { dense[denseCount + 1] }
        set { dense[denseCount + 1] = newValue }
    }

    /// The l2 term of `deep_loss` (summed over ranks after an allreduce).
    public var l2Term: Float {
        get { dense[denseCount + 2] }
        set { dense[denseCount + 2] = newValue }
    }
}

/// Loss sums of one forward pass over a local batch.
public struct StepLoss: Sendable {
    public var logLossSum: Double
    /// l2 · Σ ‖row‖²/2 over the unique deep embedding rows the batch touched.
    public var l2Term: Double
    public var count: Int
    public var wideLoss: Double { count > 0 ? logLossSum / Double(count) : 0 }
    public var deepLoss: Double { wideLoss + l2Term }

    public init(logLossSum: Double, l2Term: Double, count: Int) {
        self.logLossSum = logLossSum
        self.l2Term = l2Term
        self.count = count
    }
}

public final class WideDeepModel: @unchecked Sendable {
    public let config: WideDeepConfig
    public let denseLayout: ParameterLayout
    /// Dense parameters and their Adam moments (same layout).
    public let params, adamM, adamV: FloatBuffer
    /// FTRL state of the wide bias (its value lives in `params` at `wideBiasOffset`).
    public var wideBiasLinear: Float = 0
    public var wideBiasAccumulator: Float
    /// Sparse parameters: id → slot, deep rows (+ Adam m, v), wide weights (+ FTRL z, n).
    public let index = IdIndex()
    public let deepRows: RowStore
    public let wideRows: RowStore
    /// Optimizer steps applied so far.
    public var step = 0

    let deepParameterCount: Int
    let wideBiasOffset: Int
    private var stamp = Int32Buffer(capacity: 1024)
    private var localOf = Int32Buffer(capacity: 1024)
    private var epoch: Int32 = 0
    private var rowScratch: FloatBuffer

    /// False for a model built by `forInference(config:)`: it holds no optimizer state and can
    /// only predict.
    public let trainable: Bool

    public convenience init(config: WideDeepConfig) {
        self.init(config: config, trainable: true)
    }

    /// A model that can only predict: no Adam moments, no FTRL state, sparse rows of values only
    /// (a third of a trainable model's memory), and all parameters zero until loaded (see
    /// `reserveInferenceRows` and `registerInferenceIds`). Training calls on it stop the process.
    public static func forInference(config: WideDeepConfig) -> WideDeepModel {
        WideDeepModel(config: config, trainable: false)
    }

    private init(config: WideDeepConfig, trainable: Bool) {
        self.config = config
        self.trainable = trainable
        var layout = ParameterLayout()
        var width = config.deepInputWidth
        for (l, h) in (config.deepLayers + [1]).enumerated() {
            layout.add("deep.dense.\(l).weight", shape: [width, h])
            layout.add("deep.dense.\(l).bias", shape: [h])
            width = h
        }
        deepParameterCount = layout.total
        wideBiasOffset = layout.add("wide.bias", shape: [1]).offset
        denseLayout = layout
        params = FloatBuffer(count: layout.total)
        adamM = FloatBuffer(count: trainable ? layout.total : 0)
        adamV = FloatBuffer(count: trainable ? layout.total : 0)
        wideBiasAccumulator = config.wideOptimizer.initialAccumulator
        deepRows = RowStore(dim: config.embeddingSize, states: trainable ? 2 : 0)
        wideRows = RowStore(dim: 1, states: trainable ? 2 : 0)
        rowScratch = FloatBuffer(count: config.embeddingSize)
        if trainable { initializeDense() }
    }

    /// Glorot-uniform weights, zero biases, from the config's seed.
    private func initializeDense() {
        var rng = SplitMix64(seed: config.seed)
        for e in denseLayout.entries where e.name.hasSuffix(".weight") {
            let limit = Float((6.0 / Double(e.shape[0] + e.shape[1])).squareRoot())
            for i in e.offset..<(e.offset + e.count) { params[i] = rng.uniform(-limit, limit) }
        }
    }

    /// A new sparse row: deep values from a hash of (seed, id) so every replica and every
    /// visiting order produce the same numbers; wide weight 0; FTRL accumulator at its initial value.
    private func createRow(id: Int32) {
        let s1 = deepRows.append(), s2 = wideRows.append()
        precondition(s1 == s2)
        let row = deepRows.row(s1)
        var rng = SplitMix64(seed: SplitMix64.mix(config.seed ^ 0x5EED, UInt64(UInt32(bitPattern: id))))
        let a = config.embeddingInitScale
        for d in 0..<config.embeddingSize { row[d] = rng.uniform(-a, a) }
        wideRows.state(1, s2)[0] = config.wideOptimizer.initialAccumulator
    }

    @inline(__always)
    private func slotCreating(_ id: Int32) -> Int32 {
        index.slot(id) { id, _ in createRow(id: id) }
    }

    public var sparseRowCount: Int { index.count }

    // MARK: - Forward

    /// Forward over a batch; fills `ws.probs`. With `training`, unseen ids get fresh rows;
    /// otherwise they read as zero (inference never grows the model).
    @discardableResult
    public func forward(_ batch: FeatureBatch, workspace ws: WideDeepWorkspace, training: Bool) -> StepLoss {
        let B = batch.count, F = config.fieldCount, D = config.embeddingSize
        precondition(batch.fieldCount == F, "batch has \(batch.fieldCount) fields, model expects \(F)")
        precondition(B <= ws.capacity, "batch of \(B) rows exceeds workspace capacity \(ws.capacity)")
        if B == 0 { return StepLoss(logLossSum: 0, l2Term: 0, count: 0) }
        precondition(trainable || !training, "an inference-only model (WideDeepModel.forInference) cannot train")
        let slots = ws.slots.pointer
        batch.ids.withUnsafeBufferPointer { ids in
            for bf in 0..<(B * F) {
                slots[bf] = training ? slotCreating(ids[bf]) : (index.existingSlot(ids[bf]) ?? -1)
            }
        }
        let params = self.params.pointer
        let deepRows = self.deepRows, wideRows = self.wideRows
        batch.weights.withUnsafeBufferPointer { w in
            embedding_forward(out: ws.x0.pointer, slots: slots, weights: w.baseAddress!, B: B, F: F, D: D) { s in
                s >= 0 ? UnsafePointer(deepRows.row(s)) : nil
            }
            wide_forward(out: ws.wideOut.pointer, slots: slots, weights: w.baseAddress!,
                         bias: params[wideBiasOffset], B: B, F: F) { s in s >= 0 ? wideRows.row(s)[0] : 0 }
        }
        var inp = UnsafePointer(ws.x0.pointer), width = config.deepInputWidth
        for (l, h) in config.deepLayers.enumerated() {
            let W = denseLayout.entries[2 * l], b = denseLayout.entries[2 * l + 1]
            let out = ws.activations[l].pointer
            linear_forward(out: out, inp: inp, weight: params + W.offset, bias: params + b.offset, B: B, I: width, O: h)
            relu_forward(out: out, inp: out, N: B * h)
            inp = UnsafePointer(out); width = h
        }
        let last = config.deepLayers.count
        let W = denseLayout.entries[2 * last], bias = denseLayout.entries[2 * last + 1]
        linear_forward(out: ws.deepOut.pointer, inp: inp, weight: params + W.offset, bias: params + bias.offset,
                       B: B, I: width, O: 1)
        for b in 0..<B { ws.logits[b] = ws.wideOut[b] + ws.deepOut[b] }
        let lossSum = batch.labels.withUnsafeBufferPointer { y in
            sigmoid_cross_entropy_forward(probs: ws.probs.pointer, logits: ws.logits.pointer, labels: y.baseAddress!, B: B)
        }
        return StepLoss(logLossSum: lossSum, l2Term: 0, count: B)
    }

    /// Click probabilities for a batch (no training, no row creation).
    public func predict(_ batch: FeatureBatch, workspace: WideDeepWorkspace) -> [Float] {
        forward(batch, workspace: workspace, training: false)
        return Array(workspace.probs.buffer.prefix(batch.count))
    }

    // MARK: - Backward

    /// Forward and backward on a local batch. Leaves sum-form gradients in `grads`
    /// (dense, unique ids, row gradients, sample count). Does not change parameters.
    @discardableResult
    public func computeGradients(_ batch: FeatureBatch, workspace ws: WideDeepWorkspace,
                                 into grads: WideDeepGradients) -> StepLoss {
        var loss = forward(batch, workspace: ws, training: true)
        let B = batch.count, F = config.fieldCount, D = config.embeddingSize
        grads.dense.zero()
        grads.sampleCount = B
        grads.ids.removeAll(keepingCapacity: true)
        if B == 0 { grads.deepRows.removeAll(); grads.wideRows.removeAll(); return loss }

        // Unique ids of the batch, in first-seen order, and each (b, f)'s index among them.
        nextEpoch()
        let slots = ws.slots.pointer, local = ws.local.pointer
        var l2Sum = 0.0
        for bf in 0..<(B * F) {
            let s = Int(slots[bf])
            if stamp[s] != epoch {
                stamp[s] = epoch
                localOf[s] = Int32(grads.ids.count)
                grads.ids.append(index.idOfSlot[s])
                let row = deepRows.row(Int32(s))
                var sq: Float = 0
                for d in 0..<D { sq += row[d] * row[d] }
                l2Sum += Double(sq)
            }
            local[bf] = localOf[s]
        }
        loss.l2Term = Double(config.l2Coef) * l2Sum / 2
        grads.logLossSum = Float(loss.logLossSum)
        grads.l2Term = Float(loss.l2Term)
        let U = grads.ids.count
        // Reuse the arrays' storage step after step: no per-step allocation of U × D floats.
        grads.deepRows.removeAll(keepingCapacity: true)
        grads.deepRows.append(contentsOf: repeatElement(0, count: U * D))
        grads.wideRows.removeAll(keepingCapacity: true)
        grads.wideRows.append(contentsOf: repeatElement(0, count: U))

        let dense = grads.dense.pointer, params = self.params.pointer
        batch.labels.withUnsafeBufferPointer { y in
            sigmoid_cross_entropy_backward(dlogits: ws.dlogits.pointer, probs: ws.probs.pointer,
                                           labels: y.baseAddress!, scale: 1, B: B)
        }
        batch.weights.withUnsafeBufferPointer { w in
            dense[wideBiasOffset] = grads.wideRows.withUnsafeMutableBufferPointer { dw in
                wide_backward(dvalues: dw.baseAddress!, dout: ws.dlogits.pointer, local: local,
                              weights: w.baseAddress!, B: B, F: F)
            }
        }

        // Deep part, backward is forward reversed.
        let layers = config.deepLayers
        var dout = ws.dlogits.pointer, doutWidth = 1
        var dinp = ws.gradA, spare = ws.gradB
        for l in stride(from: layers.count, through: 0, by: -1) {
            let inWidth = l == 0 ? config.deepInputWidth : layers[l - 1]
            let inp = l == 0 ? ws.x0.pointer : ws.activations[l - 1].pointer
            let W = denseLayout.entries[2 * l], b = denseLayout.entries[2 * l + 1]
            if l == 0 {
                // x0 is last read by the weight gradient, so its own gradient can overwrite it
                // (saves a B × F·D buffer, the largest in the model).
                linear_backward(dinp: nil, dweight: dense + W.offset, dbias: dense + b.offset,
                                dout: dout, inp: inp, weight: params + W.offset, B: B, I: inWidth, O: doutWidth)
                BLAS.sgemm(.none, .transpose, m: B, n: inWidth, k: doutWidth, a: dout, b: params + W.offset,
                           beta: 0, c: ws.x0.pointer)
                dout = ws.x0.pointer
                break
            }
            dinp.slice(0, B * inWidth).update(repeating: 0)
            linear_backward(dinp: dinp.pointer, dweight: dense + W.offset, dbias: dense + b.offset,
                            dout: dout, inp: inp, weight: params + W.offset, B: B, I: inWidth, O: doutWidth)
            if l > 0 {
                relu_backward(dinp: dinp.pointer, dout: dinp.pointer, out: inp, N: B * inWidth)
            }
            dout = dinp.pointer; doutWidth = inWidth
            swap(&dinp, &spare)
        }
        batch.weights.withUnsafeBufferPointer { w in
            grads.deepRows.withUnsafeMutableBufferPointer { drows in
                embedding_backward(drows: drows.baseAddress!, dout: dout, local: local,
                                   weights: w.baseAddress!, B: B, F: F, D: D)
            }
        }
        return loss
    }

    private func nextEpoch() {
        epoch &+= 1
        if epoch == Int32.max { epoch = 1; for i in 0..<stamp.capacity { stamp[i] = 0 } }
        stamp.ensure(index.count + 1)
        localOf.ensure(index.count + 1)
    }

    // MARK: - Update

    /// Applies gradients summed over `totalSamples` samples (one rank's, or every rank's after
    /// allreduce/allgatherv). Sparse lists may repeat an id (several ranks touched it): the
    /// repeats are summed in list order first, so every replica computes identical values.
    public func applyGradients(dense: UnsafeMutableBufferPointer<Float>, ids: [Int32],
                               deepRowGrads: [Float], wideRowGrads: [Float], totalSamples: Int) {
        precondition(trainable, "an inference-only model (WideDeepModel.forInference) cannot train")
        guard totalSamples > 0 else { return }
        precondition(dense.count >= denseLayout.total)
        precondition(deepRowGrads.count == ids.count * config.embeddingSize, "deep row gradients must be ids × embedding size")
        precondition(deepRowGrads.count == ids.count * config.embeddingSize && wideRowGrads.count == ids.count)
        step += 1
        let scale = 1 / Float(totalSamples)
        adam_update(params: params.pointer, grads: dense.baseAddress!, m: adamM.pointer, v: adamV.pointer,
                    count: deepParameterCount, step: step, config: config.deepOptimizer, gradScale: scale)
        ftrl_update(weight: &params[wideBiasOffset], linear: &wideBiasLinear, accumulator: &wideBiasAccumulator,
                    grad: dense[wideBiasOffset] * scale, config: config.wideOptimizer)

        // Merge repeated ids (several ranks touched the same row) in list order. With no
        // repeats (one process) the input lists are used as they are.
        let D = config.embeddingSize
        var uniqueSlots: [Int32] = []
        uniqueSlots.reserveCapacity(ids.count)
        for id in ids { _ = slotCreating(id) }
        nextEpoch()
        var repeats: [(k: Int, u: Int)] = []
        for (k, id) in ids.enumerated() {
            let s = Int(index.existingSlot(id)!)
            if stamp[s] != epoch {
                stamp[s] = epoch
                localOf[s] = Int32(uniqueSlots.count)
                uniqueSlots.append(Int32(s))
            } else {
                repeats.append((k, Int(localOf[s])))
            }
        }
        var mergedDeep = deepRowGrads, mergedWide = wideRowGrads
        if !repeats.isEmpty {
            // Compact: first occurrences in order, then add each repeat onto its first occurrence.
            var firstOf = [Int](repeating: -1, count: uniqueSlots.count)
            for (k, id) in ids.enumerated() {
                let u = Int(localOf[Int(index.existingSlot(id)!)])
                if firstOf[u] == -1 { firstOf[u] = k }
            }
            mergedDeep = [Float](); mergedDeep.reserveCapacity(uniqueSlots.count * D)
            mergedWide = [Float](); mergedWide.reserveCapacity(uniqueSlots.count)
            for k in firstOf {
                mergedDeep.append(contentsOf: deepRowGrads[(k * D)..<((k + 1) * D)])
                mergedWide.append(wideRowGrads[k])
            }
            for (k, u) in repeats {
                for d in 0..<D { mergedDeep[u * D + d] += deepRowGrads[k * D + d] }
                mergedWide[u] += wideRowGrads[k]
            }
        }

        let l2 = config.l2Coef, g = rowScratch.pointer
        mergedDeep.withUnsafeBufferPointer { md in
            for (u, s) in uniqueSlots.enumerated() {
                let row = deepRows.row(s)
                for d in 0..<D { g[d] = md[u * D + d] * scale + l2 * row[d] }
                adam_update(params: row, grads: g, m: deepRows.state(0, s), v: deepRows.state(1, s),
                            count: D, step: step, config: config.embeddingOptimizer)
                ftrl_update(weight: &wideRows.row(s)[0], linear: &wideRows.state(0, s)[0],
                            accumulator: &wideRows.state(1, s)[0], grad: mergedWide[u] * scale,
                            config: config.wideOptimizer)
            }
        }
    }

    /// One single-process training step: compute and apply.
    @discardableResult
    public func trainStep(_ batch: FeatureBatch, workspace: WideDeepWorkspace, grads: WideDeepGradients) -> StepLoss {
        let loss = computeGradients(batch, workspace: workspace, into: grads)
        applyGradients(dense: grads.dense.buffer, ids: grads.ids, deepRowGrads: grads.deepRows,
                       wideRowGrads: grads.wideRows, totalSamples: batch.count)
        return loss
    }

    public func makeGradients() -> WideDeepGradients { WideDeepGradients(denseCount: denseLayout.total) }
    public func makeWorkspace(capacity: Int) -> WideDeepWorkspace { WideDeepWorkspace(config: config, capacity: capacity) }

    /// Bytes of parameters plus optimizer state (dense and sparse); parameters only for an
    /// inference-only model.
    public var parameterBytes: Int {
        let copies = trainable ? 3 : 1
        return params.count * 4 * copies + index.count * (config.embeddingSize + 1) * copies * 4
    }

    // MARK: - Loading an inference-only model in place

    /// Appends `n` zero rows (slots `sparseRowCount ..< sparseRowCount + n`) to an inference-only
    /// model, so a loader can write row values straight into `deepRows.row(s)` / `wideRows.row(s)`
    /// before the ids are known. Follow with `registerInferenceIds`.
    public func reserveInferenceRows(_ n: Int) {
        precondition(!trainable, "reserveInferenceRows is for WideDeepModel.forInference models")
        precondition(index.count == deepRows.count, "register the ids of reserved rows before reserving more")
        for _ in 0..<n { deepRows.append(); wideRows.append() }
    }

    /// Gives reserved rows their ids: the k-th id gets the k-th unregistered slot. Throws if an id
    /// repeats or is negative, or if there are more ids than reserved rows.
    public func registerInferenceIds(_ ids: UnsafeBufferPointer<Int32>) throws(ModelError) {
        precondition(!trainable, "registerInferenceIds is for WideDeepModel.forInference models")
        guard index.count + ids.count <= deepRows.count else {
            throw .incompatibleTensor("\(ids.count) ids for \(deepRows.count - index.count) reserved rows")
        }
        for id in ids {
            guard id >= 0 else { throw .incompatibleTensor("sparse.ids holds a negative id \(id)") }
            guard index.existingSlot(id) == nil else { throw .incompatibleTensor("sparse.ids repeats id \(id)") }
            _ = index.slot(id) { _, _ in }
        }
    }
}
