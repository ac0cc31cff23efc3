import StreamRecNumerics

// REINFORCE ↔ tensors: the checkpoint's and a joiner's currency.
//
//   policy.dense.{0,1}.weight|bias     the MLP
//   policy.items.weight [N × D], .bias [N]         E, bE (N = itemCount: capacity rows are not exported)
//   beta.items.weight [N × hidden], .bias [N]      F, bF
//   user.ids [U] (int32, sorted), user.embedding.weight [U × D]
//   item.ids [I] (int32, sorted), item.embedding.weight [I × D]
//   optim.adam_m.<name>, optim.adam_v.<name> for each of them

/// A point-in-time copy of a REINFORCE model (a few memcpys between steps); turning it into
/// tensors — sorting rows by id — happens later, off the training thread.
public struct ReinforceSnapshot: @unchecked Sendable {
    public let config: ReinforceConfig
    public let step: Int
    let layout: ParameterLayout
    let itemCount: Int
    let params, adamM, adamV: [Float]
    let userIds, itemIds: [Int32]
    let userChunks, itemChunks: [FloatBuffer]

    /// Every parameter (and optimizer state), rows sorted by id, so replicas with the same
    /// parameters export the same bytes whatever order they created rows in.
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        var out: [ModelTensor] = []
        for e in layout.entries {
            // Item tables: the first itemCount rows (row-major, so a prefix).
            var shape = e.shape
            if ReinforceModel.itemTables.contains(e.name) { shape[0] = itemCount }
            let n = shape.reduce(1, *)
            out.append(ModelTensor(name: e.name, shape: shape, storage: .float32(Array(params[e.offset..<(e.offset + n)]))))
            if includeOptimizer {
                out.append(ModelTensor(name: "optim.adam_m.\(e.name)", shape: shape, storage: .float32(Array(adamM[e.offset..<(e.offset + n)]))))
                out.append(ModelTensor(name: "optim.adam_v.\(e.name)", shape: shape, storage: .float32(Array(adamV[e.offset..<(e.offset + n)]))))
            }
        }
        let D = config.embeddingSize
        for (table, ids, chunks) in [("user", userIds, userChunks), ("item", itemIds, itemChunks)] {
            let slots = (0..<Int32(ids.count)).sorted { ids[Int($0)] < ids[Int($1)] }
            out.append(ModelTensor(name: "\(table).ids", shape: [slots.count], storage: .int32(slots.map { ids[Int($0)] })))
            for (part, name) in [(0, "\(table).embedding.weight"), (1, "optim.adam_m.\(table).embedding.weight"),
                                 (2, "optim.adam_v.\(table).embedding.weight")] where part == 0 || includeOptimizer {
                var a = [Float](); a.reserveCapacity(slots.count * D)
                for s in slots {
                    a.append(contentsOf: UnsafeBufferPointer(start: RowStore.row(in: chunks, slot: s, part: part, dim: D, states: 2), count: D))
                }
                out.append(ModelTensor(name: name, shape: [slots.count, D], storage: .float32(a)))
            }
        }
        return out
    }
}

extension ReinforceModel {
    public func snapshot() -> ReinforceSnapshot {
        ReinforceSnapshot(config: config, step: step, layout: layout, itemCount: itemCount,
                          params: params.toArray(), adamM: adamM.toArray(), adamV: adamV.toArray(),
                          userIds: userIndex.idOfSlot, itemIds: itemIndex.idOfSlot,
                          userChunks: userRows.copyChunks(), itemChunks: itemRows.copyChunks())
    }

    /// Every parameter and optimizer state as tensors (see `ReinforceSnapshot.exportTensors`).
    public func exportTensors(includeOptimizer: Bool = true) -> [ModelTensor] {
        snapshot().exportTensors(includeOptimizer: includeOptimizer)
    }

    /// FNV-1a (64-bit) of every exported tensor: equal on two replicas exactly when their
    /// parameters and optimizer state are bit-identical.
    public func parameterDigest() -> UInt64 { ModelTensor.digest(exportTensors(includeOptimizer: true)) }

    /// Builds a model from exported tensors (optimizer state optional: without it Adam's moments
    /// restart). `step` comes from the manifest.
    public static func load(config: ReinforceConfig, tensors: [String: ModelTensor], step: Int) throws -> ReinforceModel {
        try config.validate()
        let model = ReinforceModel(config: config)
        model.step = step
        guard let bias = tensors["policy.items.bias"], bias.shape.count == 1, bias.shape[0] >= 2 else {
            throw ModelError.incompatibleTensor("missing tensor policy.items.bias [items ≥ 2]")
        }
        model.reserveItems(through: Int32(bias.shape[0] - 1))
        func need(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = tensors[name] else { throw ModelError.incompatibleTensor("missing tensor \(name)") }
            guard t.shape == shape, let f = t.floats else {
                throw ModelError.incompatibleTensor("\(name) has shape \(t.shape), this config needs \(shape) (float32)")
            }
            return f
        }
        let hasOptim = tensors["optim.adam_m.policy.dense.0.weight"] != nil
        for e in model.layout.entries {
            var shape = e.shape
            if itemTables.contains(e.name) { shape[0] = model.itemCount }
            for (name, buffer) in [(e.name, model.params), ("optim.adam_m.\(e.name)", model.adamM), ("optim.adam_v.\(e.name)", model.adamV)]
            where name == e.name || hasOptim {
                let v = try need(name, shape)
                for i in v.indices { buffer[e.offset + i] = v[i] }
            }
        }
        let D = config.embeddingSize
        for (table, index, rows) in [("user", model.userIndex, model.userRows), ("item", model.itemIndex, model.itemRows)] {
            guard let ids = tensors["\(table).ids"]?.int32s else { throw ModelError.incompatibleTensor("missing tensor \(table).ids (int32)") }
            let n = ids.count
            let values = try need("\(table).embedding.weight", [n, D])
            let m = hasOptim ? try need("optim.adam_m.\(table).embedding.weight", [n, D]) : []
            let v = hasOptim ? try need("optim.adam_v.\(table).embedding.weight", [n, D]) : []
            for (k, id) in ids.enumerated() {
                guard id >= 0 else { throw ModelError.incompatibleTensor("\(table).ids holds a negative id \(id)") }
                guard index.existingSlot(id) == nil else { throw ModelError.incompatibleTensor("\(table).ids repeats id \(id)") }
                let s = index.slot(id) { _, _ in rows.append() }
                for d in 0..<D { rows.row(s)[d] = values[k * D + d] }
                if hasOptim {
                    for d in 0..<D { rows.state(0, s)[d] = m[k * D + d]; rows.state(1, s)[d] = v[k * D + d] }
                }
            }
        }
        return model
    }
}

extension ModelTensor {
    /// FNV-1a (64-bit) over each tensor's name and bytes, in order.
    public static func digest(_ tensors: [ModelTensor]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<C: Collection>(_ bytes: C) where C.Element == UInt8 {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        }
        for t in tensors {
            mix(t.name.utf8)
            switch t.storage {
            case .float32(let a): a.withUnsafeBytes { mix($0) }
            case .int32(let a): a.withUnsafeBytes { mix($0) }
            }
        }
        return h
    }
}
