// Loading a checkpoint for serving, and giving an old version's memory back.
//
// A hot reload runs while the server answers requests on the same few cores, so the loader does
// as little work and touches as little memory as it can:
//   - `model.safetensors` is read once, front to back, with read(2) (`SafeTensorsStream`): every
//     byte is hashed as it arrives and compared with the manifest at the end; the parameters go
//     straight into an inference-only model (`WideDeepModel.forInference`: no Adam moments, no
//     FTRL state, rows without optimizer slots); optimizer tensors only pass through a 1 MiB
//     scratch buffer for the hash. Nothing is mapped (mapped pages count as resident), nothing
//     is copied through intermediate arrays.
//   - The statistics file is verified (sha256) like every other file; when it is byte-identical
//     to the previous version's, the previous version's parsed dictionaries are reused.
//   - The replaced version is freed on a background thread at low priority, after which glibc is
//     asked to return free heap memory to the kernel (`malloc_trim`).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Checkpoint
import Features
import Models

/// What `loadForServing` hands back.
struct LoadedForServing {
    let model: WideDeepModel
    let encoder: FeatureEncoder
    let statsDigest: String?
    let reusedDictionary: Bool
    let manifest: CheckpointManifest
    let modelFileBytes: Int
}

/// Verifies and loads the checkpoint at `dir` for serving: every file's size and sha256 against
/// the manifest (model.safetensors hashed while it is read), the manifest, the safetensors
/// structure (the same validating header parser as `SafeTensorsFile`), the model kind, and every
/// tensor's dtype and shape against the config — the same checks as
/// `WideDeepCheckpoint.load(verify: true)`. Throws `CheckpointLoadError` naming every problem.
func loadForServing(_ dir: URL, previous: ServingModel?) throws -> LoadedForServing {
    let modelName = CheckpointStore.modelFileName
    let problems = CheckpointStore.verify(dir, digestCheckedByCaller: [modelName])
    if !problems.isEmpty {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: " +
                                  problems.map(\.description).joined(separator: "; "))
    }
    let manifest = try CheckpointStore.loadManifest(dir)
    guard manifest.modelKind == WideDeepCheckpoint.modelKind else {
        throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, expected '\(WideDeepCheckpoint.modelKind)'")
    }
    let config = try JSONDecoder().decode(WideDeepConfig.self, from: JSONEncoder().encode(manifest.modelConfig))
    do { try config.validate() } catch {
        throw CheckpointLoadError("checkpoint \(dir.path): \(error)")
    }
    guard let expected = manifest.files[modelName] else {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: \(modelName): required file is not listed in the manifest")
    }

    let model = WideDeepModel.forInference(config: config)
    model.step = manifest.step
    var ids = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 0)
    defer { ids.deallocate() }
    let digest: FileDigest
    do {
        digest = try SafeTensorsStream.read(url: dir.appendingPathComponent(modelName), plan: { header in
            let (destinations, rows) = try servingPlan(header, model: model)
            ids.deallocate()
            ids = .allocate(capacity: rows)
            var all = destinations
            all["sparse.ids"] = .into([UnsafeMutableRawBufferPointer(ids)])
            return all
        })
    } catch let error as CheckpointLoadError {
        throw CheckpointLoadError("checkpoint \(dir.path): \(error.description)")
    } catch {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: \(modelName): \(error)")
    }
    if digest.bytes != expected.bytes {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: \(modelName): size is \(digest.bytes) bytes, manifest says \(expected.bytes)")
    }
    if digest.sha256 != expected.sha256.lowercased() {
        throw CheckpointLoadError("checkpoint \(dir.path) failed verification: \(modelName): sha256 is \(digest.sha256), "
                                  + "manifest says \(expected.sha256): the file is corrupted")
    }
    do {
        try model.registerInferenceIds(UnsafeBufferPointer(ids))
    } catch {
        throw CheckpointLoadError("checkpoint \(dir.path): \(error)")
    }

    let statsName = manifest.dictionary ?? WideDeepCheckpoint.statsFileName
    // Verified above: the file on disk has exactly this digest. Only a digest the manifest lists counts.
    let statsDigest = manifest.files[statsName]?.sha256.lowercased()
    let encoder: FeatureEncoder
    let reused: Bool
    if let statsDigest, let previous, previous.statsDigest == statsDigest {
        encoder = previous.encoder
        reused = true
    } else {
        encoder = FeatureEncoder(stats: try FeatureStats.read(from: dir.appendingPathComponent(statsName)))
        reused = false
    }
    return LoadedForServing(model: model, encoder: encoder, statsDigest: statsDigest, reusedDictionary: reused,
                            manifest: manifest, modelFileBytes: digest.bytes)
}

/// Checks every tensor the model needs against its config and says where each one's bytes go:
/// dense parameters straight into `model.params`, embedding and wide rows straight into reserved
/// rows (which `reserveInferenceRows` creates here). Returns the destinations and the row count.
private func servingPlan(_ header: SafeTensorsStream.Header, model: WideDeepModel)
    throws -> (destinations: [String: SafeTensorsStream.Destination], rows: Int) {
    func need(_ name: String, _ dtype: TensorDType, _ shape: [Int]?) throws -> TensorInfo {
        guard let info = header.info(name) else {
            throw CheckpointLoadError("incompatible model tensors: missing tensor \(name)")
        }
        guard info.dtype == dtype, shape == nil || info.shape == shape! else {
            throw CheckpointLoadError("incompatible model tensors: \(name) is \(info.dtype.rawValue)\(info.shape), "
                                      + "this config needs \(dtype.rawValue)\(shape ?? info.shape)")
        }
        return info
    }
    var destinations: [String: SafeTensorsStream.Destination] = [:]
    let params = model.params.pointer
    for e in model.denseLayout.entries {
        _ = try need(e.name, .f32, e.shape)
        destinations[e.name] = .into([UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(start: params + e.offset, count: e.count))])
    }
    let idsInfo = try need("sparse.ids", .i32, nil)
    guard idsInfo.shape.count == 1 else {
        throw CheckpointLoadError("incompatible model tensors: sparse.ids has shape \(idsInfo.shape), expected one dimension")
    }
    let n = idsInfo.shape[0], D = model.config.embeddingSize
    _ = try need("deep.embedding.weight", .f32, [n, D])
    _ = try need("wide.weight", .f32, [n])
    model.reserveInferenceRows(n)
    destinations["deep.embedding.weight"] = .into(model.deepRows.contiguousSegments(rows: 0..<n).map { UnsafeMutableRawBufferPointer($0) })
    destinations["wide.weight"] = .into(model.wideRows.contiguousSegments(rows: 0..<n).map { UnsafeMutableRawBufferPointer($0) })
    return (destinations, n)
}

/// Frees replaced model versions off the request path (see `ServingModel.deinit`).
enum BackgroundRelease {
    /// Holds the parts until the release thread drops them.
    private final class Parts: Sendable {
        let parts = Mutex<(WideDeepModel, FeatureEncoder)?>(nil)
    }

    private static let counters = Mutex<(released: Int, offCallerThread: Int)>((0, 0))
    /// Releases completed so far, and how many of them ran on another thread than the one that
    /// dropped the version (tests).
    static var completed: (released: Int, offCallerThread: Int) { counters.withLock { $0 } }

    static func release(model: WideDeepModel, encoder: FeatureEncoder) {
        let box = Parts()
        box.parts.withLock { $0 = (model, encoder) }
        nonisolated(unsafe) let caller = Thread.current
        let thread = Thread {
            lowerThisThreadsPriority()
            // The model and any dictionary no other version shares are freed here.
            box.parts.withLock { $0 = nil }
            returnFreeMemoryToKernel()
            let off = Thread.current !== caller
            counters.withLock { $0.released += 1; if off { $0.offCallerThread += 1 } }
        }
        thread.name = "serving-release"
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// Asks glibc to give free heap memory back to the kernel (freed chunks below the mmap threshold
/// stay in the heap otherwise, and count as resident until reused).
func returnFreeMemoryToKernel() {
    _ = GlibcMalloc.trim?(0)
}

/// glibc's malloc tuning calls (not in Swift's Glibc module: they live in <malloc.h>), looked up
/// once with dlsym; nil on other C libraries, where both calls are skipped.
private enum GlibcMalloc {
    typealias TrimFunction = @convention(c) (Int) -> Int32
    typealias OptFunction = @convention(c) (Int32, Int32) -> Int32
    /// `M_MMAP_THRESHOLD` from <malloc.h>.
    static let mmapThreshold: Int32 = -3

    static let trim: TrimFunction? = symbol("malloc_trim")
    static let opt: OptFunction? = symbol("mallopt")

    private static func symbol<F>(_ name: String) -> F? {
        #if canImport(Glibc)
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: F.self)
        #else
        return nil
        #endif
    }
}

/// Makes glibc give large freed blocks straight back to the kernel: fixes the mmap threshold at
/// 128 KiB. Left dynamic (the default), glibc raises the threshold to the size of the largest
/// mmapped block freed so far (up to 32 MiB), so after the first reload the next version's
/// buffers (parameters, 4096-row chunks) come from the heap, and when that version is replaced
/// its memory stays resident as free heap. Called once by `streamrec serve` at start-up.
public func configureAllocatorForServing() {
    _ = GlibcMalloc.opt?(GlibcMalloc.mmapThreshold, 128 * 1024)
}
