import ArgumentParser
import Foundation
import StreamRecNumerics
import Training
import Cluster
import Models

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure StreamRec's speed (see docs/BENCHMARKS.md).",
        subcommands: [BenchTrain.self, FeaturizeBench.self, BenchRL.self])
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training throughput on pre-encoded in-memory batches vs this machine's sgemm.",
        discussion: """
        Prints samples/s, the model's training FLOPs per sample (6 × dense multiply-adds: \
        forward, weight gradients, input gradients), the sgemm GFLOP/s this process reaches on \
        the model's largest GEMM (batch × first layer × input width), and their ratio.
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Timed training steps.")
    var steps: Int = 20

    @Option(help: "OpenBLAS threads (the targets are for 1).")
    var threads: Int = 1

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let cfg = try model.load()
        try cfg.train.validate()
        BLAS.setThreads(threads)
        if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil { return try runParallel(cfg) }
        let result = runTrainBenchmark(config: cfg.model, preset: model.preset ?? "large",
                                       batchSize: cfg.train.batchSize, steps: steps)
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(result), as: UTF8.self))
        } else {
            print(String(format: """
            preset %@  batch %d  steps %d  blas threads %d
            samples/s          %.0f
            flops/sample       %d
            achieved GFLOP/s   %.2f
            sgemm GFLOP/s      %.2f  (m×n×k = %@)
            ratio              %.3f
            step               %.1f ms
            resident           %.1f MiB  (model+optimizer state %.1f MiB, ratio %.2f, %d sparse rows)
            """, result.preset, result.batchSize, result.steps, result.blasThreads, result.samplesPerSecond,
                         result.flopsPerSample, result.achievedGFLOPS, result.sgemmGFLOPS,
                         result.sgemmShape.map(String.init).joined(separator: "×"), result.ratio,
                         result.stepMilliseconds, Double(result.residentBytes) / 1048576,
                         Double(result.modelStateBytes) / 1048576, result.memoryRatio, result.sparseRows))
        }
    }
}

extension BenchTrain {
    /// Under mpirun: data-parallel steps through the real MPI exchange; rank 0 prints.
    func runParallel(_ cfg: ConfigFile) throws {
        _ = try MPI.initialize(required: .funneled)
        defer { try? MPI.finalize() }
        let world = try MPI.world()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-bench-ckpt-\(getpid())")
        let r = try runParallelTrainBenchmark(config: cfg.model, preset: model.preset ?? "large", batchSize: cfg.train.batchSize,
                                              steps: steps, communicator: world, checkpointDir: dir)
        guard world.rank == 0 else { return }
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
        } else {
            print(String(format: """
            preset %@  ranks %d  batch %d per rank  steps %d
            samples/s            %.0f
            step                 %.1f ms   (communication %.1f%%)
            sgemm GFLOP/s        %.1f per rank with all ranks running (%.1f total)
            checkpoint           %.2f s to write %.1f MiB in the background; snapshot %.3f s (%.2f steps);
                                 training slowed by %.3f s in all (%.2f steps) while the writer ran
            """, r.preset, r.ranks, r.batchSizePerRank, r.steps, r.samplesPerSecond, r.stepMilliseconds,
                         100 * r.communicationShare, r.sgemmGFLOPSPerRankConcurrent, r.sgemmGFLOPSTotal,
                         r.checkpointWriteSeconds, Double(r.checkpointBytes) / 1048576, r.checkpointSnapshotSeconds,
                         r.checkpointSnapshotSeconds * 1000 / r.stepMilliseconds, r.checkpointStallSeconds, r.checkpointStallSteps))
        }
    }
}

struct BenchRL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rl",
        abstract: "An RL family's step cost (REINFORCE, DDPG, BCQ) against the catalogue size, full and sampled softmax.",
        discussion: """
        For each --items N: a model of the config's family (model.kind: reinforce, ddpg or bcq) \
        whose item tables span N ids, in-memory transitions with items drawn Zipf-like over all N, \
        single-process steps with the full softmax and with the sampled softmax (whatever \
        full_softmax_items says; the row the config would pick is marked). \
        Example: streamrec bench rl --config configs/ddpg.yaml --items 2000 --items 200000 \
        ("bench reinforce" is the same command).
        """,
        aliases: ["reinforce"])

    @OptionGroup var model: ModelOptions

    @Option(help: "Item counts to measure (repeatable).")
    var items: [Int] = [2000, 200_000]

    @Option(help: "Timed steps per row.")
    var steps: Int = 30

    @Flag(help: "Print one JSON array instead of a table.")
    var json = false

    func run() throws {
        let cfg = try model.load()
        let rl: RLStepModel
        if let c = cfg.config(ReinforceConfig.self) { rl = .reinforce(c) }
        else if let c = cfg.config(DDPGConfig.self) { rl = .ddpg(c) }
        else if let c = cfg.config(BCQConfig.self) { rl = .bcq(c) }
        else {
            throw ValidationError("--config \(model.config) has model.kind '\(cfg.kind)'; bench rl needs a reinforce, ddpg or bcq config (configs/reinforce.yaml, ddpg.yaml, bcq.yaml)")
        }
        guard items.allSatisfy({ $0 >= 3 }) else { throw ValidationError("--items must be at least 3 (2 ids are padding and OOV)") }
        guard steps > 0 else { throw ValidationError("--steps must be positive") }
        BLAS.setThreads(1)
        var rows: [RLStepResult] = []
        for n in items {
            for sampled in [false, true] {
                rows.append(runRLStepBenchmark(model: rl, items: n, sampled: sampled, batchSize: cfg.train.batchSize, steps: steps))
            }
        }
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
            return
        }
        print("\(rl.family), batch \(cfg.train.batchSize), \(steps) steps, 1 process, full_softmax_items \(rl.fullSoftmaxItems), sampled_items \(rl.sampledItems)")
        print("items     softmax  step ms  transitions/s")
        for r in rows {
            print(String(format: "%-9d %-8@ %7.2f  %13.0f%@", r.items, r.softmax, r.stepMilliseconds, r.transitionsPerSecond,
                         r.configDefault ? "   <- the config's choice" : ""))
        }
        let picked = rows.filter(\.configDefault)
        if let first = picked.first, let last = picked.last, picked.count > 1 {
            print(String(format: "step at %d items / step at %d items (the config's choices): %.2f×",
                         last.items, first.items, last.stepMilliseconds / first.stepMilliseconds))
        }
    }
}
