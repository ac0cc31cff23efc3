import StreamRecNumerics

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

extension WideDeepModel {
    /// Every parameter and optimizer state, sparse rows sorted by id so two replicas with the
    /// same parameters export identical bytes whatever order they created rows in.
    /// `includeOptimizer: false` gives what serving needs.
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        var out: [ModelTensor] = []
        for e in denseLayout.entries {
            out.append(ModelTensor(name: e.name, shape: e.shape, storage: .float32(Array(params.slice(e.offset, e.count)))))
            if includeOptimizer {
                out.append(ModelTensor(name: "optim.adam_m.\(e.name)", shape: e.shape, storage: .float32(Array(adamM.slice(e.offset, e.count)))))
                out.append(ModelTensor(name: "optim.adam_v.\(e.name)", shape: e.shape, storage: .float32(Array(adamV.slice(e.offset, e.count)))))
            }
        }
        let D = config.embeddingSize
        let slots = (0..<Int32(index.count)).sorted { index.idOfSlot[Int($0)] < index.idOfSlot[Int($1)] }
        let n = slots.count
        out.append(ModelTensor(name: "sparse.ids", shape: [n], storage: .int32(slots.map { index.idOfSlot[Int($0)] })))
        func rows(_ dim: Int, _ store: RowStore, _ part: (Int32) -> UnsafeMutablePointer<Float>) -> [Float] {
            var a = [Float](); a.reserveCapacity(n * dim)
            for s in slots { a.append(contentsOf: UnsafeBufferPointer(start: part(s), count: dim)) }
            return a
        }
        out.append(ModelTensor(name: "deep.embedding.weight", shape: [n, D], storage: .float32(rows(D, deepRows) { self.deepRows.row($0) })))
        out.append(ModelTensor(name: "wide.weight", shape: [n], storage: .float32(rows(1, wideRows) { self.wideRows.row($0) })))
        if includeOptimizer {
            out.append(ModelTensor(name: "optim.adam_m.deep.embedding.weight", shape: [n, D], storage: .float32(rows(D, deepRows) { self.deepRows.state(0, $0) })))
            out.append(ModelTensor(name: "optim.adam_v.deep.embedding.weight", shape: [n, D], storage: .float32(rows(D, deepRows) { self.deepRows.state(1, $0) })))
            out.append(ModelTensor(name: "optim.ftrl_linear.wide.weight", shape: [n], storage: .float32(rows(1, wideRows) { self.wideRows.state(0, $0) })))
            out.append(ModelTensor(name: "optim.ftrl_accum.wide.weight", shape: [n], storage: .float32(rows(1, wideRows) { self.wideRows.state(1, $0) })))
            out.append(ModelTensor(name: "optim.ftrl_state.wide.bias", shape: [2], storage: .float32([wideBiasLinear, wideBiasAccumulator])))
        }
        return out
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
