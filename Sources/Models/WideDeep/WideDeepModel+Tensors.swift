import Kernels
import StreamRecNumerics
#if canImport(Glibc)
import Glibc
#endif

/// A named tensor in host memory: the model's export/import currency, independent of the file
/// format (the Checkpoint module writes these as safetensors).
public struct ModelTensor: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case float32([Float])
        case int32([Int32])
    }
    public let name: String
    public let shape: [Int]
    public let storage: Storage

    public init(name: String, shape: [Int], storage: Storage) {
        precondition(shape.reduce(1, *) == { switch storage { case .float32(let a): a.count; case .int32(let a): a.count } }(),
                     "tensor \(name): shape \(shape) does not match its element count")
        self.name = name
        self.shape = shape
        self.storage = storage
    }

    public var floats: [Float]? { if case .float32(let a) = storage { return a } else { return nil } }
    public var int32s: [Int32]? { if case .int32(let a) = storage { return a } else { return nil } }
}

/// A point-in-time copy of a model's parameters and optimizer state, taken with a few large
/// memcpys (cheap enough to take between training steps); turning it into tensors — sorting
/// rows by id, splitting values from optimizer state — happens later, off the training thread.
public struct WideDeepSnapshot: @unchecked Sendable {
    public let config: WideDeepConfig
    public let layout: ParameterLayout
    let params, adamM, adamV: [Float]
    let wideBiasLinear, wideBiasAccumulator: Float
    let idOfSlot: [Int32]
    let deepChunks, wideChunks: [FloatBuffer]

    /// Every parameter and optimizer state, sparse rows sorted by id so two replicas with the
    /// same parameters export identical bytes whatever order they created rows in.
    /// `includeOptimizer: false` gives what serving needs.
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        var out: [ModelTensor] = []
        for e in layout.entries {
            out.append(ModelTensor(name: e.name, shape: e.shape, storage: .float32(Array(params[e.offset..<(e.offset + e.count)]))))
            if includeOptimizer {
                out.append(ModelTensor(name: "optim.adam_m.\(e.name)", shape: e.shape, storage: .float32(Array(adamM[e.offset..<(e.offset + e.count)]))))
                out.append(ModelTensor(name: "optim.adam_v.\(e.name)", shape: e.shape, storage: .float32(Array(adamV[e.offset..<(e.offset + e.count)]))))
            }
        }
        let D = config.embeddingSize
        let slots = (0..<Int32(idOfSlot.count)).sorted { idOfSlot[Int($0)] < idOfSlot[Int($1)] }
        let n = slots.count
        out.append(ModelTensor(name: "sparse.ids", shape: [n], storage: .int32(slots.map { idOfSlot[Int($0)] })))
        func rows(_ chunks: [FloatBuffer], dim: Int, part: Int) -> [Float] {
            var a = [Float](); a.reserveCapacity(n * dim)
            for s in slots {
                a.append(contentsOf: UnsafeBufferPointer(start: RowStore.row(in: chunks, slot: s, part: part, dim: dim, states: 2), count: dim))
            }
            return a
        }
        out.append(ModelTensor(name: "deep.embedding.weight", shape: [n, D], storage: .float32(rows(deepChunks, dim: D, part: 0))))
        out.append(ModelTensor(name: "wide.weight", shape: [n], storage: .float32(rows(wideChunks, dim: 1, part: 0))))
        if includeOptimizer {
            out.append(ModelTensor(name: "optim.adam_m.deep.embedding.weight", shape: [n, D], storage: .float32(rows(deepChunks, dim: D, part: 1))))
            out.append(ModelTensor(name: "optim.adam_v.deep.embedding.weight", shape: [n, D], storage: .float32(rows(deepChunks, dim: D, part: 2))))
            out.append(ModelTensor(name: "optim.ftrl_linear.wide.weight", shape: [n], storage: .float32(rows(wideChunks, dim: 1, part: 1))))
            out.append(ModelTensor(name: "optim.ftrl_accum.wide.weight", shape: [n], storage: .float32(rows(wideChunks, dim: 1, part: 2))))
            out.append(ModelTensor(name: "optim.ftrl_state.wide.bias", shape: [2], storage: .float32([wideBiasLinear, wideBiasAccumulator])))
        }
        return out
    }
}

extension WideDeepModel {
    public func snapshot() -> WideDeepSnapshot {
        precondition(trainable, "an inference-only model (WideDeepModel.forInference) has no optimizer state to snapshot")
        return WideDeepSnapshot(config: config, layout: denseLayout, params: params.toArray(), adamM: adamM.toArray(), adamV: adamV.toArray(),
                         wideBiasLinear: wideBiasLinear, wideBiasAccumulator: wideBiasAccumulator, idOfSlot: index.idOfSlot,
                         deepChunks: deepRows.copyChunks(), wideChunks: wideRows.copyChunks())
    }

    /// Every parameter and optimizer state as tensors (see `WideDeepSnapshot.exportTensors`).
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        snapshot().exportTensors(includeOptimizer: includeOptimizer)
    }

    /// Builds a model from exported tensors (optimizer state optional: without it, training
    /// would restart the moments; serving does not need them). `step` comes from the manifest.
    public static func load(config: WideDeepConfig, tensors: [String: ModelTensor], step: Int) throws -> WideDeepModel {
        try config.validate()
        let model = WideDeepModel(config: config)
        model.step = step
        func need(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = tensors[name] else { throw ModelError.incompatibleTensor("missing tensor \(name)") }
            guard t.shape == shape, let f = t.floats else {
                throw ModelError.incompatibleTensor("\(name) has shape \(t.shape), this config needs \(shape) (float32)")
            }
            return f
        }
        for e in model.denseLayout.entries {
            let v = try need(e.name, e.shape)
            for i in 0..<e.count { model.params[e.offset + i] = v[i] }
            if tensors["optim.adam_m.\(e.name)"] != nil {
                let m = try need("optim.adam_m.\(e.name)", e.shape), vv = try need("optim.adam_v.\(e.name)", e.shape)
                for i in 0..<e.count { model.adamM[e.offset + i] = m[i]; model.adamV[e.offset + i] = vv[i] }
            }
        }
        guard let ids = tensors["sparse.ids"]?.int32s else { throw ModelError.incompatibleTensor("missing tensor sparse.ids (int32)") }
        let n = ids.count, D = config.embeddingSize
        let deep = try need("deep.embedding.weight", [n, D]), wide = try need("wide.weight", [n])
        let hasOptim = tensors["optim.adam_m.deep.embedding.weight"] != nil
        let m = hasOptim ? try need("optim.adam_m.deep.embedding.weight", [n, D]) : []
        let v = hasOptim ? try need("optim.adam_v.deep.embedding.weight", [n, D]) : []
        let z = hasOptim ? try need("optim.ftrl_linear.wide.weight", [n]) : []
        let acc = hasOptim ? try need("optim.ftrl_accum.wide.weight", [n]) : []
        for (k, id) in ids.enumerated() {
            guard model.index.existingSlot(id) == nil else { throw ModelError.incompatibleTensor("sparse.ids repeats id \(id)") }
            let s = model.index.slot(id) { _, _ in model.deepRows.append(); model.wideRows.append() }
            let row = model.deepRows.row(s)
            for d in 0..<D { row[d] = deep[k * D + d] }
            model.wideRows.row(s)[0] = wide[k]
            if hasOptim {
                for d in 0..<D { model.deepRows.state(0, s)[d] = m[k * D + d]; model.deepRows.state(1, s)[d] = v[k * D + d] }
                model.wideRows.state(0, s)[0] = z[k]
                model.wideRows.state(1, s)[0] = acc[k]
            } else {
                model.wideRows.state(1, s)[0] = config.wideOptimizer.initialAccumulator
            }
        }
        if let st = tensors["optim.ftrl_state.wide.bias"]?.floats, st.count == 2 {
            model.wideBiasLinear = st[0]; model.wideBiasAccumulator = st[1]
        }
        return model
    }
}

// MARK: - In-memory state transfer (MPI broadcast to new or restarted ranks)

extension ModelTensor {
    /// A compact byte blob of tensors: used to broadcast a model's whole state from rank 0.
    /// Layout: "SRMT" u32 count, then per tensor: u32 name length, name, u8 kind (0 f32, 1 i32),
    /// u32 rank, i64 dims…, raw little-endian elements.
    public static func serialize(_ tensors: [ModelTensor]) -> [UInt8] {
        var out: [UInt8] = Array("SRMT".utf8)
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out.append(contentsOf: $0) } }
        func i64(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { out.append(contentsOf: $0) } }
        u32(tensors.count)
        for t in tensors {
            let name = Array(t.name.utf8)
            u32(name.count); out.append(contentsOf: name)
            switch t.storage {
            case .float32(let a):
                out.append(0); u32(t.shape.count); t.shape.forEach(i64)
                a.withUnsafeBytes { out.append(contentsOf: $0) }
            case .int32(let a):
                out.append(1); u32(t.shape.count); t.shape.forEach(i64)
                a.withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    public static func deserialize(_ bytes: [UInt8]) throws -> [ModelTensor] {
        var pos = 0
        func need(_ n: Int) throws { if pos + n > bytes.count { throw ModelError.incompatibleTensor("state blob truncated at byte \(pos)") } }
        func u32() throws -> Int {
            try need(4); defer { pos += 4 }
            return Int(UInt32(bytes[pos]) | UInt32(bytes[pos + 1]) << 8 | UInt32(bytes[pos + 2]) << 16 | UInt32(bytes[pos + 3]) << 24)
        }
        func i64() throws -> Int {
            try need(8); var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[pos + k]) << (8 * UInt64(k)) }
            pos += 8
            return Int(Int64(bitPattern: v))
        }
        try need(4)
        guard Array(bytes[0..<4]) == Array("SRMT".utf8) else { throw ModelError.incompatibleTensor("state blob has a bad magic") }
        pos = 4
        let count = try u32()
        var out: [ModelTensor] = []
        for _ in 0..<count {
            let n = try u32(); try need(n)
            let name = String(decoding: bytes[pos..<(pos + n)], as: UTF8.self); pos += n
            try need(1); let kind = bytes[pos]; pos += 1
            let rank = try u32()
            var shape: [Int] = []
            for _ in 0..<rank { shape.append(try i64()) }
            let elements = shape.reduce(1, *)
            guard elements >= 0 else { throw ModelError.incompatibleTensor("tensor \(name) has a negative dimension") }
            try need(elements * 4)
            let raw = bytes[pos..<(pos + elements * 4)]; pos += elements * 4
            switch kind {
            case 0:
                let a = [Float](unsafeUninitializedCapacity: elements) { buf, c in
                    raw.withUnsafeBytes { _ = memcpy(buf.baseAddress!, $0.baseAddress!, elements * 4) }; c = elements }
                out.append(ModelTensor(name: name, shape: shape, storage: .float32(a)))
            case 1:
                let a = [Int32](unsafeUninitializedCapacity: elements) { buf, c in
                    raw.withUnsafeBytes { _ = memcpy(buf.baseAddress!, $0.baseAddress!, elements * 4) }; c = elements }
                out.append(ModelTensor(name: name, shape: shape, storage: .int32(a)))
            default:
                throw ModelError.incompatibleTensor("tensor \(name) has unknown kind \(kind)")
            }
        }
        return out
    }
}

extension WideDeepModel {
    /// FNV-1a (64-bit) over every exported tensor's name and bytes, sparse rows in id order:
    /// equal on two replicas exactly when their parameters and optimizer state are bit-identical.
    public func parameterDigest() -> UInt64 { ModelTensor.digest(exportTensors(includeOptimizer: true)) }
}
