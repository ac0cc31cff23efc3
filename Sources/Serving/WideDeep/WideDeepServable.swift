// One loaded Wide&Deep checkpoint, ready to answer predictions: the model, the checkpoint's own
// feature dictionaries and normalisation (through the shared `FeatureEncoder`), and a small pool
// of workspaces. Immutable once built; many requests use one concurrently. The server swaps whole
// versions (see `ModelSlot`), so a request keeps the version it started with, and ARC frees an
// old version when the last request holding it ends.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Checkpoint
import Features
import Models

/// An immutable, verified Wide&Deep version that serves predictions (`/v1/predict`).
///
/// Thread safety: every method may be called from any thread concurrently. `predict` takes a
/// workspace from the pool for the duration of the call; the model itself is only read.
///
/// ```swift
/// let served = try WideDeepServable.load(directory: dir, workspaceRows: 1000)
/// let p = served.predict(rows: [row])
/// ```
public final class WideDeepServable: ServableModel {
    public let info: ServableInfo
    /// Inference-only (`WideDeepModel.forInference`): parameters without optimizer state.
    public let model: WideDeepModel
    public let encoder: FeatureEncoder
    /// sha256 of the checkpoint's feature statistics file (from its verified manifest), if any.
    public let statsDigest: String?
    /// True when this version's dictionaries were taken from the version it replaced (its
    /// statistics file is byte-identical, by sha256) instead of being parsed again.
    public let reusedDictionary: Bool
    /// Rows a workspace holds; longer requests are split into chunks of this size.
    public let workspaceRows: Int
    let pool: WorkspacePool

    init(model: WideDeepModel, encoder: FeatureEncoder, statsDigest: String?, reusedDictionary: Bool,
         manifest: CheckpointManifest, directory: URL, workspaceRows: Int, loadSeconds: Double,
         modelFileBytes: Int, pool: WorkspacePool) {
        info = ServableInfo(manifest: manifest, directory: directory, loadSeconds: loadSeconds, modelFileBytes: modelFileBytes)
        self.model = model
        self.encoder = encoder
        self.statsDigest = statsDigest
        self.reusedDictionary = reusedDictionary
        self.workspaceRows = max(1, workspaceRows)
        self.pool = pool
    }

    /// The model's memory (parameters, rows, dictionaries the next version does not share) is
    /// given back on a background thread, not on the request thread that happened to drop the
    /// last reference: freeing tens of MB (munmap, page freeing, TLB shootdowns) and a large
    /// dictionary costs milliseconds a request should not wait for.
    deinit {
        BackgroundRelease.release([model, encoder])
    }

    /// Verifies and loads the checkpoint at `directory` (see `loadForServing`: every file's sha256
    /// and size, structure, tensor shapes against the config; `model.safetensors` is read once,
    /// hashed as it is read, straight into an inference-only model), then runs a warm-up
    /// prediction on a dummy row through the real request path. Throws with the problems it
    /// found; never returns a half-loaded model. Slow: call it off the request path.
    ///
    /// With `previous`: workspaces depend only on the model config, so a new version with the same
    /// config shares its workspace pool (a swap allocates nothing on the request path), and a
    /// byte-identical statistics file (same sha256) reuses its parsed dictionaries.
    public static func load(directory: URL, workspaceRows: Int, previous: WideDeepServable? = nil) throws -> WideDeepServable {
        let start = ContinuousClock.now
        let loaded = try loadForServing(directory, previous: previous)
        let rows = max(1, workspaceRows)
        let shared = previous.flatMap { $0.model.config == loaded.model.config && $0.workspaceRows == rows ? $0.pool : nil }
        let pool = shared ?? WorkspacePool(config: loaded.model.config, rows: rows)
        if shared == nil { pool.prewarm() }
        // Warm-up: one dummy row (all dense missing, all categories empty), through the same code
        // as a request (a small workspace from the pool; a shared pool has them parked already).
        let p = Self.predict(rows: [CriteoRow()], model: loaded.model, encoder: loaded.encoder, pool: pool, workspaceRows: rows)
        guard p.count == 1, p[0].isFinite, p[0] >= 0, p[0] <= 1 else {
            throw CheckpointLoadError("checkpoint \(directory.path): warm-up prediction gave \(p), not a probability; refusing it")
        }
        return WideDeepServable(model: loaded.model, encoder: loaded.encoder, statsDigest: loaded.statsDigest,
                            reusedDictionary: loaded.reusedDictionary, manifest: loaded.manifest, directory: directory,
                            workspaceRows: rows, loadSeconds: (ContinuousClock.now - start).seconds,
                            modelFileBytes: loaded.modelFileBytes, pool: pool)
    }

    /// Encodes `rows` with the checkpoint's dictionaries and normalisation and returns one click
    /// probability per row, in order.
    public func predict(rows: [CriteoRow]) -> [Float] {
        Self.predict(rows: rows, model: model, encoder: encoder, pool: pool, workspaceRows: workspaceRows)
    }

    static func predict(rows: [CriteoRow], model: WideDeepModel, encoder: FeatureEncoder, pool: WorkspacePool,
                        workspaceRows: Int) -> [Float] {
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
