import Logging
import Foundation
import StreamRecNumerics
import Models
import Features

/// `streamrec bench train`: steady-state training speed on pre-encoded in-memory batches,
/// compared with the sgemm throughput this same process reaches on the model's dominant GEMM.
public struct TrainBenchmarkResult: Codable, Sendable {
    public var preset: String
    public var batchSize: Int
    public var steps: Int
    public var seconds: Double
    public var samplesPerSecond: Double
    public var flopsPerSample: Int
    public var achievedGFLOPS: Double
    public var sgemmGFLOPS: Double
    public var sgemmShape: [Int]
    public var ratio: Double
    public var stepMilliseconds: Double
    public var residentBytes: Int
    public var modelStateBytes: Int
    public var memoryRatio: Double
    public var sparseRows: Int
    public var blasThreads: Int

    enum CodingKeys: String, CodingKey {
        case preset, steps, seconds, ratio
        case batchSize = "batch_size"
        case samplesPerSecond = "samples_per_s", flopsPerSample = "flops_per_sample"
        case achievedGFLOPS = "achieved_gflops", sgemmGFLOPS = "sgemm_gflops", sgemmShape = "sgemm_shape_mnk"
        case stepMilliseconds = "step_ms", residentBytes = "resident_bytes", modelStateBytes = "model_state_bytes"
        case memoryRatio = "memory_ratio", sparseRows = "sparse_rows", blasThreads = "blas_threads"
    }
}

/// Resident set size of this process, from /proc (0 where unavailable).
public func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let parts = s.split(separator: " ")
    guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// GFLOP/s of a row-major sgemm C[m×n] = A[m×k]·B[k×n], repeated for about `seconds`.
public func measureSGEMM(m: Int, n: Int, k: Int, seconds: Double = 1.5) -> Double {
    let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
    var rng = SplitMix64(seed: 1)
    for i in 0..<a.count { a[i] = rng.uniform(-1, 1) }
    for i in 0..<b.count { b[i] = rng.uniform(-1, 1) }
    BLAS.sgemm(.none, .none, m: m, n: n, k: k, a: a.pointer, b: b.pointer, c: c.pointer)  // warm-up
    var reps = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        BLAS.sgemm(.none, .none, m: m, n: n, k: k, a: a.pointer, b: b.pointer, c: c.pointer)
        reps += 1
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < seconds
    return 2.0 * Double(m) * Double(n) * Double(k) * Double(reps) / elapsed / 1e9
}

let benchCardinalities = [3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 1500, 2000, 3000, 4000, 5000,
                          6000, 8000, 10000, 12000, 15000, 18000, 20000, 22000, 25000, 30000]

/// Batches whose categorical fields walk through every id of `benchCardinalities` once.
func vocabularySweep(batchSize: Int, fieldCount: Int, _ body: (FeatureBatch) -> Void) {
    let dense = min(CriteoSchema.denseCount, fieldCount)
    var firstIds = [Int](), next = 64
    for c in benchCardinalities { firstIds.append(next); next += c }
    let rows = benchCardinalities.max()!
    var r = 0
    while r < rows {
        let n = min(batchSize, rows - r)
        var ids = [Int32](), w = [Float](), y = [Float]()
        for k in 0..<n {
            for f in 0..<fieldCount {
                if f < dense { ids.append(Int32(f)); w.append(0.5); continue }
                let j = (f - dense) % benchCardinalities.count
                ids.append(Int32(firstIds[j] + (r + k) % benchCardinalities[j])); w.append(1)
            }
            y.append(Float((r + k) % 4 == 0 ? 1 : 0))
        }
        body(FeatureBatch(fieldCount: fieldCount, ids: ids, weights: w, labels: y))
        r += n
    }
}

/// Criteo-like encoded batches: per-field cardinalities like the thresholded Criteo dictionary
/// (≈185k ids in all), values drawn log-uniformly so a few ids are hot and most are rare.
public func syntheticEncodedBatches(count: Int, batchSize: Int, fieldCount: Int = CriteoSchema.fieldCount, seed: UInt64 = 7) -> [FeatureBatch] {
    let cardinalities = benchCardinalities
    var rng = SplitMix64(seed: seed)
    var firstIds = [Int](), next = 64
    for c in cardinalities { firstIds.append(next); next += c }
    let dense = min(CriteoSchema.denseCount, fieldCount)
    return (0..<count).map { _ in
        var ids = [Int32](), w = [Float](), y = [Float]()
        ids.reserveCapacity(batchSize * fieldCount); w.reserveCapacity(batchSize * fieldCount)
        for _ in 0..<batchSize {
            for f in 0..<fieldCount {
                if f < dense {
                    ids.append(Int32(f)); w.append(Float(rng.nextDouble()))
                } else {
                    let j = (f - dense) % cardinalities.count
                    let v = Int(pow(Double(cardinalities[j]), rng.nextDouble())) - 1
                    ids.append(Int32(firstIds[j] + v)); w.append(1)
                }
            }
            y.append(rng.nextDouble() < 0.25 ? 1 : 0)
        }
        return FeatureBatch(fieldCount: fieldCount, ids: ids, weights: w, labels: y)
    }
}

public func runTrainBenchmark(config: WideDeepConfig, preset: String, batchSize: Int = 1000,
                              steps: Int, warmupSteps: Int = 3, batchPool: Int = 16) -> TrainBenchmarkResult {
    let batches = syntheticEncodedBatches(count: batchPool, batchSize: batchSize, fieldCount: config.fieldCount)
    let model = WideDeepModel(config: config)
    let ws = model.makeWorkspace(capacity: batchSize), grads = model.makeGradients()
    // Sweep the whole vocabulary once first, so memory is measured at the steady state of a
    // model that has seen every id of a Criteo-sized dictionary, then warm up on the pool.
    vocabularySweep(batchSize: batchSize, fieldCount: config.fieldCount) { batch in
        model.trainStep(batch, workspace: ws, grads: grads)
    }
    for i in 0..<warmupSteps { model.trainStep(batches[i % batchPool], workspace: ws, grads: grads) }
    let start = DispatchTime.now().uptimeNanoseconds
    for i in 0..<steps { model.trainStep(batches[i % batchPool], workspace: ws, grads: grads) }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let rss = residentBytes()
    let shape = [batchSize, config.deepLayers[0], config.deepInputWidth]
    let sgemm = measureSGEMM(m: shape[0], n: shape[1], k: shape[2])
    let sps = Double(steps * batchSize) / seconds
    let achieved = sps * Double(config.trainingFLOPsPerSample) / 1e9
    return TrainBenchmarkResult(
        preset: preset, batchSize: batchSize, steps: steps, seconds: seconds, samplesPerSecond: sps,
        flopsPerSample: config.trainingFLOPsPerSample, achievedGFLOPS: achieved, sgemmGFLOPS: sgemm,
        sgemmShape: shape, ratio: achieved / sgemm, stepMilliseconds: seconds * 1000 / Double(steps),
        residentBytes: rss, modelStateBytes: model.parameterBytes,
        memoryRatio: Double(rss) / Double(model.parameterBytes), sparseRows: model.sparseRowCount,
        blasThreads: BLAS.threads)
}

// MARK: - Data-parallel benchmark (run under mpirun)

import Cluster
import Checkpoint

public struct ParallelBenchmarkResult: Codable, Sendable {
    public var preset: String
    public var ranks: Int
    public var batchSizePerRank: Int
    public var steps: Int
    public var seconds: Double
    public var samplesPerSecond: Double
    public var stepMilliseconds: Double
    public var communicationShare: Double
    /// sgemm GFLOP/s of one rank while every rank runs sgemm at the same time.
    public var sgemmGFLOPSPerRankConcurrent: Double
    public var sgemmGFLOPSTotal: Double
    public var checkpointWriteSeconds: Double
    public var checkpointStallSeconds: Double
    public var checkpointStallSteps: Double
    public var checkpointBytes: Int
    /// Time the trainer thread spends taking the in-memory snapshot (the only blocking part).
    public var checkpointSnapshotSeconds: Double

    enum CodingKeys: String, CodingKey {
        case preset, ranks, steps, seconds
        case batchSizePerRank = "batch_size_per_rank", samplesPerSecond = "samples_per_s", stepMilliseconds = "step_ms"
        case communicationShare = "communication_share"
        case sgemmGFLOPSPerRankConcurrent = "sgemm_gflops_per_rank_concurrent", sgemmGFLOPSTotal = "sgemm_gflops_total"
        case checkpointWriteSeconds = "checkpoint_write_s", checkpointStallSeconds = "checkpoint_stall_s"
        case checkpointStallSteps = "checkpoint_stall_steps", checkpointBytes = "checkpoint_bytes"
        case checkpointSnapshotSeconds = "checkpoint_snapshot_s"
    }
}

/// Every rank trains on its own synthetic batches through the real MPI exchange; rank 0 also
/// writes one checkpoint in the background mid-run to measure its cost and the stall it causes.
public func runParallelTrainBenchmark(config: WideDeepConfig, preset: String, batchSize: Int, steps: Int,
                                      communicator comm: Communicator, checkpointDir: URL) throws -> ParallelBenchmarkResult {
    let batches = syntheticEncodedBatches(count: 16, batchSize: batchSize, fieldCount: config.fieldCount,
                                          seed: 7 &+ UInt64(comm.rank) &* 7919)
    let model = WideDeepModel(config: config)
    let ws = model.makeWorkspace(capacity: batchSize), grads = model.makeGradients()
    let exchange = MPICollectives(communicator: comm)
    let combiner = WideDeepGradientCombiner(embeddingSize: config.embeddingSize)
    func step(_ batch: FeatureBatch) throws -> (comm: Double, total: Double) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try exchange.agree(StepSignals(samples: batch.count, active: 1))
        model.computeGradients(batch, workspace: ws, into: grads)
        let t1 = DispatchTime.now().uptimeNanoseconds
        try combiner.combine(grads, over: exchange)
        let t2 = DispatchTime.now().uptimeNanoseconds
        model.applyGradients(dense: grads.dense.buffer, ids: grads.ids, deepRowGrads: grads.deepRows,
                             wideRowGrads: grads.wideRows, totalSamples: grads.sampleCount)
        let t3 = DispatchTime.now().uptimeNanoseconds
        return (Double(t2 - t1) / 1e9, Double(t3 - t0) / 1e9)
    }
    // Warm up (and touch most of the vocabulary).
    var sweepError: Error?
    vocabularySweep(batchSize: batchSize, fieldCount: config.fieldCount) { b in
        if sweepError == nil { do { _ = try step(b) } catch { sweepError = error } }
    }
    if let sweepError { throw sweepError }
    try comm.barrier()
    var commSeconds = 0.0, stepTimes: [Double] = []
    let start = DispatchTime.now().uptimeNanoseconds
    for i in 0..<steps {
        let (c, t) = try step(batches[i % batches.count])
        commSeconds += c
        stepTimes.append(t)
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let meanStep = seconds / Double(steps)

    // Checkpoint cost: rank 0 snapshots on the trainer thread (a stall for everyone, since
    // steps are synchronous), then training continues while the write runs in the background;
    // the extra time of those steps over the mean step is the rest of the stall.
    var stall = 0.0, write = 0.0, bytes = 0, snapshotSeconds = 0.0
    let store = CheckpointStore(directory: checkpointDir, keep: 1)
    let writer = CheckpointWriter(store: store, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
    let s0 = DispatchTime.now().uptimeNanoseconds
    if comm.rank == 0 {
        try? FileManager.default.removeItem(at: checkpointDir)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let snap = WideDeepCheckpoint.snapshot(model: model, stats: FeatureStatsBuilder().build(minFrequency: 1),
                                               record: .init(step: model.step, samplesTrained: 0, wallTimeSeconds: seconds))
        snapshotSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        writer.submit(snap)
    }
    var during = 0, i = steps
    while true {
        let done = comm.rank == 0 && writer.isIdle
        if try exchange.agree(StepSignals(stop: done ? 1 : 0)).stop > 0 { break }
        _ = try step(batches[i % batches.count]); i += 1; during += 1
    }
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - s0) / 1e9
    stall = max(0, elapsed - Double(during) * meanStep)
    if comm.rank == 0 {
        try writer.finish()
        write = writer.written.last?.seconds ?? 0
        if let url = writer.written.last?.url {
            bytes = (try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent("model.safetensors").path)[.size] as? Int) ?? 0
        }
        try? FileManager.default.removeItem(at: checkpointDir)
    }
    stall = try comm.allreduce(stall, .max)
    try comm.barrier()
    // sgemm with every rank running it at once: what the machine gives N processes.
    let shape = [batchSize, config.deepLayers[0], config.deepInputWidth]
    let sgemm = measureSGEMM(m: shape[0], n: shape[1], k: shape[2], seconds: 2)
    let sgemmTotal = try comm.allreduce(sgemm, .sum)
    let sgemmMean = sgemmTotal / Double(comm.size)
    let commMax = try comm.allreduce(commSeconds, .max)
    return ParallelBenchmarkResult(
        preset: preset, ranks: comm.size, batchSizePerRank: batchSize, steps: steps, seconds: seconds,
        samplesPerSecond: Double(steps * batchSize * comm.size) / seconds, stepMilliseconds: meanStep * 1000,
        communicationShare: commMax / seconds, sgemmGFLOPSPerRankConcurrent: sgemmMean, sgemmGFLOPSTotal: sgemmTotal,
        checkpointWriteSeconds: write, checkpointStallSeconds: stall, checkpointStallSteps: stall / meanStep,
        checkpointBytes: bytes, checkpointSnapshotSeconds: snapshotSeconds)
}
