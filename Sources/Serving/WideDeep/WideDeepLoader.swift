// Loading a Wide&Deep checkpoint for serving.
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
//   - The replaced version is freed on a background thread at low priority (`BackgroundRelease`).
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
func loadForServing(_ dir: URL, previous: WideDeepServable?) throws -> LoadedForServing {
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
