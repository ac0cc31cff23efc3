import Testing
@testable import Models
import StreamRecNumerics
import Features

func tinyConfig() -> WideDeepConfig {
    var c = WideDeepConfig()
    c.fieldCount = 3
    c.embeddingSize = 4
    c.deepLayers = [6, 5]
    c.embeddingInitScale = 0.5
    return c
}

func randomBatch(_ B: Int, fields F: Int, ids: Int32 = 40, seed: UInt64) -> FeatureBatch {
    var rng = SplitMix64(seed: seed)
    let idv = (0..<(B * F)).map { _ in Int32(rng.next() % UInt64(ids)) }
    let w = (0..<(B * F)).map { _ in rng.uniform(0.2, 1) }
    let y = (0..<B).map { _ in Float(rng.next() % 2) }
    return FeatureBatch(fieldCount: F, ids: idv, weights: w, labels: y)
}

@Suite struct WideDeepModelTests {
    @Test func denseGradientsMatchFiniteDifferences() {
        let model = WideDeepModel(config: tinyConfig())
        let batch = randomBatch(6, fields: 3, seed: 1)
        let ws = model.makeWorkspace(capacity: 8), g = model.makeGradients()
        model.computeGradients(batch, workspace: ws, into: g)
        let h: Float = 1e-3
        var checked = 0, kinks = 0, bad: [String] = []
        let l0 = model.forward(batch, workspace: ws, training: true).logLossSum
        for i in 0..<model.denseLayout.total {
            let saved = model.params[i]
            model.params[i] = saved + h
            let lp = model.forward(batch, workspace: ws, training: true).logLossSum
            model.params[i] = saved - h
            let lm = model.forward(batch, workspace: ws, training: true).logLossSum
            model.params[i] = saved
            // A ReLU input within h of 0 makes the one-sided slopes disagree: not differentiable
            // there at this h, so skip (and count) it rather than compare against noise.
            let right = (lp - l0) / Double(h), left = (l0 - lm) / Double(h)
            if !close(right, left, rel: 0.1, abs: 1e-2) { kinks += 1; continue }
            let numeric = (lp - lm) / Double(2 * h)
            if !close(Double(g.dense[i]), numeric, rel: 3e-2, abs: 3e-3) { bad.append("param \(i): \(g.dense[i]) vs \(numeric)") }
            checked += 1
        }
        #expect(kinks * 10 < model.denseLayout.total, "too many kinks: \(kinks)")
        #expect(checked + kinks == model.denseLayout.total)
        #expect(bad.isEmpty, "\(bad)")
        #expect(g.sampleCount == 6)
    }

    @Test func sparseGradientsMatchFiniteDifferences() {
        let model = WideDeepModel(config: tinyConfig())
        let batch = randomBatch(6, fields: 3, ids: 8, seed: 2)
        let ws = model.makeWorkspace(capacity: 8), g = model.makeGradients()
        model.computeGradients(batch, workspace: ws, into: g)
        #expect(Set(g.ids) == Set(batch.ids))
        #expect(g.ids.count == Set(batch.ids).count)
        let h: Float = 1e-3, D = 4
        var bad: [String] = []
        for (u, id) in g.ids.enumerated() {
            let s = model.index.existingSlot(id)!
            for d in 0..<D {
                let p = model.deepRows.row(s) + d
                let saved = p.pointee
                p.pointee = saved + h
                let lp = model.forward(batch, workspace: ws, training: true).logLossSum
                p.pointee = saved - h
                let lm = model.forward(batch, workspace: ws, training: true).logLossSum
                p.pointee = saved
                let numeric = (lp - lm) / Double(2 * h)
                if !close(Double(g.deepRows[u * D + d]), numeric, rel: 3e-2, abs: 3e-3) { bad.append("deep id \(id)[\(d)]") }
            }
            let wp = model.wideRows.row(s)
            let saved = wp.pointee
            wp.pointee = saved + h
            let lp = model.forward(batch, workspace: ws, training: true).logLossSum
            wp.pointee = saved - h
            let lm = model.forward(batch, workspace: ws, training: true).logLossSum
            wp.pointee = saved
            if !close(Double(g.wideRows[u]), (lp - lm) / Double(2 * h), rel: 3e-2, abs: 3e-3) { bad.append("wide id \(id)") }
        }
        #expect(bad.isEmpty, "\(bad)")
    }

    @Test func lossDecreasesOnAFixedBatch() {
        var c = tinyConfig()
        c.deepOptimizer.learningRate = 1e-2
        c.embeddingOptimizer.learningRate = 1e-2
        let model = WideDeepModel(config: c)
        let batch = randomBatch(32, fields: 3, ids: 30, seed: 3)
        let ws = model.makeWorkspace(capacity: 32), g = model.makeGradients()
        let first = model.trainStep(batch, workspace: ws, grads: g).wideLoss
        var last = first
        for _ in 0..<200 { last = model.trainStep(batch, workspace: ws, grads: g).wideLoss }
        #expect(last < first * 0.5, "loss \(first) → \(last)")
        #expect(model.step == 201)
    }

    @Test func trainingIsDeterministicGivenASeed() {
        func run() -> [Float] {
            let model = WideDeepModel(config: tinyConfig())
            let ws = model.makeWorkspace(capacity: 16), g = model.makeGradients()
            for s in 0..<10 { model.trainStep(randomBatch(16, fields: 3, seed: UInt64(s)), workspace: ws, grads: g) }
            return model.params.toArray() + (0..<model.index.count).flatMap { s in
                Array(UnsafeBufferPointer(start: model.deepRows.row(Int32(s)), count: 4))
            }
        }
        #expect(run() == run())
    }

    /// Two halves computed separately and applied together (as two data-parallel ranks would,
    /// with repeated ids) equal one step over the whole batch, up to float summation order.
    @Test func splitBatchGradientsEqualWholeBatch() {
        let whole = WideDeepModel(config: tinyConfig()), split = WideDeepModel(config: tinyConfig())
        let batch = randomBatch(10, fields: 3, ids: 12, seed: 4)
        let ws = whole.makeWorkspace(capacity: 10)
        whole.trainStep(batch, workspace: ws, grads: whole.makeGradients())

        func half(_ r: Range<Int>) -> FeatureBatch {
            FeatureBatch(fieldCount: 3, ids: Array(batch.ids[(r.lowerBound * 3)..<(r.upperBound * 3)]),
                         weights: Array(batch.weights[(r.lowerBound * 3)..<(r.upperBound * 3)]),
                         labels: Array(batch.labels[r]))
        }
        let g1 = split.makeGradients(), g2 = split.makeGradients()
        let ws2 = split.makeWorkspace(capacity: 10)
        split.computeGradients(half(0..<4), workspace: ws2, into: g1)
        split.computeGradients(half(4..<10), workspace: ws2, into: g2)
        for i in 0..<g1.dense.count { g1.dense[i] += g2.dense[i] }
        #expect(g1.sampleCount == 10)
        split.applyGradients(dense: g1.dense.buffer, ids: g1.ids + g2.ids, deepRowGrads: g1.deepRows + g2.deepRows,
                             wideRowGrads: g1.wideRows + g2.wideRows, totalSamples: 10)
        for i in 0..<whole.params.count { #expect(abs(whole.params[i] - split.params[i]) < 1e-5) }
        for id in Set(batch.ids) {
            let a = whole.deepRows.row(whole.index.existingSlot(id)!), b = split.deepRows.row(split.index.existingSlot(id)!)
            for d in 0..<4 { #expect(abs(a[d] - b[d]) < 1e-5) }
            #expect(abs(whole.wideRows.row(whole.index.existingSlot(id)!)[0] - split.wideRows.row(split.index.existingSlot(id)!)[0]) < 1e-5)
        }
    }

    @Test func predictionNeverCreatesRows() {
        let model = WideDeepModel(config: tinyConfig())
        let ws = model.makeWorkspace(capacity: 4)
        let p = model.predict(randomBatch(4, fields: 3, seed: 5), workspace: ws)
        #expect(model.index.count == 0)
        #expect(p.count == 4 && p.allSatisfy { $0 > 0 && $0 < 1 })
    }

    @Test func flopsPerSampleOfTheLargeConfig() {
        // 3120·1024 + 1024·512 + 512·256 + 256·128 + 128·1 multiply-adds.
        #expect(WideDeepConfig.large.denseMACsPerSample == 3_883_136)
        #expect(WideDeepConfig.large.trainingFLOPsPerSample == 6 * 3_883_136)
    }
}

@Suite struct WideDeepTensorTests {
    @Test func exportLoadRoundTripContinuesIdentically() throws {
        let a = WideDeepModel(config: tinyConfig())
        let ws = a.makeWorkspace(capacity: 8), g = a.makeGradients()
        for s in 0..<5 { a.trainStep(randomBatch(8, fields: 3, seed: UInt64(s)), workspace: ws, grads: g) }
        let tensors = Dictionary(uniqueKeysWithValues: a.exportTensors().map { ($0.name, $0) })
        let b = try WideDeepModel.load(config: tinyConfig(), tensors: tensors, step: a.step)
        #expect(b.exportTensors() == a.exportTensors())
        // Training both on the same next batch keeps them identical (optimizer state restored).
        let next = randomBatch(8, fields: 3, seed: 99)
        a.trainStep(next, workspace: ws, grads: g)
        b.trainStep(next, workspace: b.makeWorkspace(capacity: 8), grads: b.makeGradients())
        #expect(b.exportTensors() == a.exportTensors())
    }

    @Test func inferenceModelFilledInPlacePredictsLikeTheTrainedModel() throws {
        // More than one 4096-row chunk, so the contiguous segments cross a chunk boundary.
        let a = WideDeepModel(config: tinyConfig())
        let big = randomBatch(2000, fields: 3, ids: 20_000, seed: 5)
        a.trainStep(big, workspace: a.makeWorkspace(capacity: 2000), grads: a.makeGradients())
        #expect(a.sparseRowCount > 4096)
        let tensors = Dictionary(uniqueKeysWithValues: a.exportTensors(includeOptimizer: false).map { ($0.name, $0) })

        let b = WideDeepModel.forInference(config: tinyConfig())
        #expect(!b.trainable && b.adamM.count == 0 && b.adamV.count == 0)
        for e in b.denseLayout.entries {
            let v = tensors[e.name]!.floats!
            for i in 0..<e.count { b.params[e.offset + i] = v[i] }
        }
        let ids = tensors["sparse.ids"]!.int32s!, n = ids.count
        b.reserveInferenceRows(n)
        let segments = b.deepRows.contiguousSegments(rows: 0..<n)
        #expect(segments.count == (n + 4095) / 4096)
        var k = 0
        for seg in segments { for i in 0..<seg.count { seg[i] = tensors["deep.embedding.weight"]!.floats![k]; k += 1 } }
        #expect(k == n * 4)
        k = 0
        for seg in b.wideRows.contiguousSegments(rows: 0..<n) { for i in 0..<seg.count { seg[i] = tensors["wide.weight"]!.floats![k]; k += 1 } }
        try ids.withUnsafeBufferPointer { try b.registerInferenceIds($0) }
        #expect(b.sparseRowCount == n)
        // A third of the trainable model's memory.
        #expect(b.parameterBytes * 3 == a.parameterBytes)

        // Seen ids and ids neither model has (read as zero rows) alike.
        let probe = randomBatch(64, fields: 3, ids: 30_000, seed: 6)
        #expect(b.predict(probe, workspace: b.makeWorkspace(capacity: 64)) == a.predict(probe, workspace: a.makeWorkspace(capacity: 64)))
    }

    @Test func inferenceIdsMustBeUniqueAndFitTheReservedRows() {
        let m = WideDeepModel.forInference(config: tinyConfig())
        m.reserveInferenceRows(3)
        #expect(throws: ModelError.self) { try [Int32(1), 2, 1].withUnsafeBufferPointer { try m.registerInferenceIds($0) } }
        let fresh = WideDeepModel.forInference(config: tinyConfig())
        fresh.reserveInferenceRows(2)
        #expect(throws: ModelError.self) { try [Int32(1), 2, 3].withUnsafeBufferPointer { try fresh.registerInferenceIds($0) } }
        #expect(throws: ModelError.self) { try [Int32(-4)].withUnsafeBufferPointer { try fresh.registerInferenceIds($0) } }
    }

    @Test func loadRejectsAMismatchedShape() {
        let a = WideDeepModel(config: tinyConfig())
        let tensors = Dictionary(uniqueKeysWithValues: a.exportTensors().map { ($0.name, $0) })
        var other = tinyConfig(); other.deepLayers = [7, 5]
        #expect(throws: ModelError.self) { try WideDeepModel.load(config: other, tensors: tensors, step: 0) }
    }
}
