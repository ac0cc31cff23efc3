// One loaded checkpoint, ready to answer predictions: the model, the checkpoint's own feature
// dictionaries and normalisation (through the shared `FeatureEncoder`), and a small pool of
// workspaces. Immutable once built; many requests use one concurrently. The server swaps whole
// `ServingModel`s (see `ModelSlot`), so a request keeps the version it started with, and ARC
// frees an old version when the last request holding it ends.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Checkpoint
import Features
import Models
import Training

/// An immutable, verified model version that serves predictions.
///
/// Thread safety: every method may be called from any thread concurrently. `predict` takes a
/// workspace from the pool for the duration of the call; the model itself is only read.
///
/// ```swift
/// let served = try ServingModel.load(directory: dir, maxRows: 1000)
/// let p = try served.predict(rows: [row])
/// ```
public final class ServingModel: Sendable {
    /// The checkpoint directory name, e.g. `step-000000000200`.
    public let version: String
    public let step: Int
    public let samplesTrained: Int
    public let metrics: [String: Double]
    public let directory: URL
    public let loadedAt: Date
    /// Wall time of load + verify + warm-up.
    public let loadSeconds: Double
    /// Size of `model.safetensors` on disk.
    public let modelFileBytes: Int
    public let model: WideDeepModel
    public let encoder: FeatureEncoder
    /// Rows a workspace holds; longer requests are split into chunks of this size.
    public let workspaceRows: Int
    let pool: WorkspacePool

    init(model: WideDeepModel, stats: FeatureStats, manifest: CheckpointManifest, directory: URL,
         workspaceRows: Int, loadSeconds: Double, modelFileBytes: Int, pool: WorkspacePool? = nil) {
        version = directory.lastPathComponent
        step = manifest.step
        samplesTrained = manifest.samplesTrained
        metrics = manifest.metrics
        self.directory = directory
        loadedAt = Date()
        self.loadSeconds = loadSeconds
        self.modelFileBytes = modelFileBytes
        self.model = model
        encoder = FeatureEncoder(stats: stats)
        self.workspaceRows = max(1, workspaceRows)
        self.pool = pool ?? WorkspacePool(config: model.config, rows: self.workspaceRows)
    }

    /// Verifies (sha256 of every file, structure, tensor shapes against the config) and loads
    /// the checkpoint at `directory`, then runs a warm-up prediction on a dummy row through the
    /// real request path. Throws with every problem it found; never returns a half-loaded model.
    /// Slow (reads and hashes every file): call it off the request path.
    ///
    /// Workspaces depend only on the model config, so a new version with the same config as
    /// `previous` shares its workspace pool: a swap allocates nothing on the request path.
    public static func load(directory: URL, workspaceRows: Int, previous: ServingModel? = nil) throws -> ServingModel {
        let start = ContinuousClock.now
        let (model, stats, manifest) = try loadForServing(directory)
        let fileBytes = (try? FileManager.default.attributesOfItem(
            atPath: directory.appendingPathComponent(CheckpointStore.modelFileName).path)[.size] as? Int) ?? 0
        // Warm-up: one dummy row (all dense missing, all categories empty), small workspace.
        let warmup = ServingModel(model: model, stats: stats, manifest: manifest, directory: directory,
                                  workspaceRows: 1, loadSeconds: 0, modelFileBytes: fileBytes)
        let p = warmup.predict(rows: [CriteoRow()])
        guard p.count == 1, p[0].isFinite, p[0] >= 0, p[0] <= 1 else {
            throw CheckpointLoadError("checkpoint \(directory.path): warm-up prediction gave \(p), not a probability; refusing it")
        }
        let shared = previous.flatMap { $0.model.config == model.config && $0.workspaceRows == max(1, workspaceRows) ? $0.pool : nil }
        let pool = shared ?? WorkspacePool(config: model.config, rows: max(1, workspaceRows))
        if shared == nil { pool.prewarm() }
        return ServingModel(model: model, stats: stats, manifest: manifest, directory: directory,
                            workspaceRows: workspaceRows, loadSeconds: (ContinuousClock.now - start).seconds,
                            modelFileBytes: fileBytes, pool: pool)
    }

    /// Encodes `rows` with the checkpoint's dictionaries and normalisation and returns one click
    /// probability per row, in order.
    public func predict(rows: [CriteoRow]) -> [Float] {
        let F = CriteoSchema.fieldCount
        var out: [Float] = []
        out.reserveCapacity(rows.count)
        var start = 0
        while start < rows.count {
            let n = min(workspaceRows, rows.count - start)
            var ids = [Int32](repeating: 0, count: n * F)
            var weights = [Float](repeating: 0, count: n * F)
            ids.withUnsafeMutableBufferPointer { idp in
                weights.withUnsafeMutableBufferPointer { wp in
                    for i in 0..<n {
                        encoder.encode(rows[start + i], ids: idp.baseAddress! + i * F, weights: wp.baseAddress! + i * F)
                    }
                }
            }
            let batch = FeatureBatch(fieldCount: F, ids: ids, weights: weights,
                                     labels: [Float](repeating: 0, count: n))
            let probs = pool.withWorkspace(rows: n) { model.predict(batch, workspace: $0) }
            out.append(contentsOf: probs)
            start += n
        }
        return out
    }

    /// Workspaces currently parked in the pool (tests, metrics).
    public var pooledWorkspaces: Int { pool.parked }
}

/// Reuses `WideDeepWorkspace`s across requests: a request takes one (or makes one if none is
/// free) and gives it back; at most `keep` per size are parked. Two sizes: small requests (up to
/// `smallRows`) use small workspaces, so a 1-row request never zeroes a 1000-row workspace.
/// A workspace depends only on the config, so versions with the same config share one pool.
/// Safe from any thread.
final class WorkspacePool: Sendable {
    static let smallRows = 16
    let config: WideDeepConfig
    let rows: Int
    private let small = Mutex<[WideDeepWorkspace]>([])
    private let large = Mutex<[WideDeepWorkspace]>([])
    private let keep: Int

    init(config: WideDeepConfig, rows: Int, keep: Int = max(2, ProcessInfo.processInfo.activeProcessorCount * 2)) {
        self.config = config
        self.rows = rows
        self.keep = keep
    }

    /// Parks two small workspaces (called off the request path, when a version is loaded).
    func prewarm() {
        let n = min(rows, Self.smallRows)
        small.withLock { $0.append(contentsOf: (0..<2).map { _ in WideDeepWorkspace(config: config, capacity: n) }) }
    }

    func withWorkspace<R>(rows n: Int, _ body: (WideDeepWorkspace) -> R) -> R {
        let smallCapacity = min(rows, Self.smallRows)
        if n <= smallCapacity {
            let ws = small.withLock { $0.popLast() } ?? WideDeepWorkspace(config: config, capacity: smallCapacity)
            defer { small.withLock { if $0.count < keep { $0.append(ws) } } }
            return body(ws)
        }
        let ws = large.withLock { $0.popLast() } ?? WideDeepWorkspace(config: config, capacity: rows)
        defer { large.withLock { if $0.count < keep { $0.append(ws) } } }
        return body(ws)
    }

    var parked: Int { small.withLock { $0.count } + large.withLock { $0.count } }
}

/// Loads a checkpoint for serving: the same verification as `WideDeepCheckpoint.load(verify: true)`
/// (every file's sha256 and size, manifest, safetensors structure, model kind, tensor shapes
/// against the config), but it does not read the optimizer-state tensors (serving never uses
/// them) and gives their zero-filled memory back to the kernel, so a loaded version costs about
/// a third of `model.safetensors` and a reload stays well under 2× the model size.
func loadForServing(_ dir: URL) throws -> (WideDeepModel, FeatureStats, CheckpointManifest) {
    let problems = CheckpointStore.verify(dir)
    if !problems.isEmpty {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: " +
                                  problems.map(\.description).joined(separator: "; "))
    }
    let manifest = try CheckpointStore.loadManifest(dir)
    guard manifest.modelKind == WideDeepCheckpoint.modelKind else {
        throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, expected '\(WideDeepCheckpoint.modelKind)'")
    }
    let config = try JSONDecoder().decode(WideDeepConfig.self, from: JSONEncoder().encode(manifest.modelConfig))
    let model: WideDeepModel
    do {
        let file = try SafeTensorsFile(url: dir.appendingPathComponent(CheckpointStore.modelFileName))
        var tensors: [String: ModelTensor] = [:]
        for info in file.tensors where !info.name.hasPrefix("optim.") {
            switch info.dtype {
            case .f32: tensors[info.name] = ModelTensor(name: info.name, shape: info.shape, storage: .float32(try file.floats(info.name)))
            case .i32: tensors[info.name] = ModelTensor(name: info.name, shape: info.shape, storage: .int32(try file.int32s(info.name)))
            default: throw CheckpointLoadError("tensor \(info.name) has unsupported dtype \(info.dtype.rawValue)")
            }
        }
        model = try WideDeepModel.load(config: config, tensors: tensors, step: manifest.step)
    }
    releasePages(model.adamM.buffer)
    releasePages(model.adamV.buffer)
    let stats = try FeatureStats.read(from: dir.appendingPathComponent(manifest.dictionary ?? WideDeepCheckpoint.statsFileName))
    return (model, stats, manifest)
}

/// Returns the whole pages inside `buffer` to the kernel (they read back as zeros). Used for the
/// optimizer moments a serving model allocates but never touches.
private func releasePages(_ buffer: UnsafeMutableBufferPointer<Float>) {
    #if canImport(Glibc)
    guard let base = buffer.baseAddress else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + page - 1) / page * page
    let end = (Int(bitPattern: base) + buffer.count * MemoryLayout<Float>.stride) / page * page
    if end > start {
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
    }
    #endif
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
