import Foundation
import Checkpoint

/// Summary statistics of one tensor, for `streamrec ckpt show`.
public struct TensorSummary: Codable, Sendable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var min: Double?
    public var max: Double?
    public var mean: Double?
    public var l2: Double?
}

/// Per-tensor statistics of a safetensors file (floats and ints; other dtypes report shape only).
public func summarizeTensors(_ file: SafeTensorsFile) throws -> [TensorSummary] {
    try file.tensors.map { info in
        var s = TensorSummary(name: info.name, dtype: info.dtype.rawValue, shape: info.shape)
        let values: [Double]?
        switch info.dtype {
        case .f32: values = try file.floats(info.name).map(Double.init)
        case .f64: values = try file.doubles(info.name)
        case .i32: values = try file.int32s(info.name).map(Double.init)
        case .i64: values = try file.int64s(info.name).map(Double.init)
        case .u8: values = try file.bytes(info.name).map(Double.init)
        }
        if let v = values, !v.isEmpty {
            s.min = v.min(); s.max = v.max()
            s.mean = v.reduce(0, +) / Double(v.count)
            s.l2 = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        }
        return s
    }
}

/// How one tensor changed between two checkpoints.
public struct TensorChange: Codable, Sendable {
    public var name: String
    public var status: String            // "changed", "unchanged", "added", "removed", "reshaped"
    public var shapeA: [Int]?
    public var shapeB: [Int]?
    /// ‖B − A‖₂ over elements present in both (rows matched by id for sparse tensors).
    public var l2Change: Double?
    public var maxAbsChange: Double?
    public var relativeChange: Double?
    /// Sparse tensors: rows whose id is only in B / in both with different values.
    public var rowsAdded: Int?
    public var rowsChanged: Int?
    public var rowsRemoved: Int?

    enum CodingKeys: String, CodingKey {
        case name, status
        case shapeA = "shape_a", shapeB = "shape_b", l2Change = "l2_change", maxAbsChange = "max_abs_change"
        case relativeChange = "relative_change", rowsAdded = "rows_added", rowsChanged = "rows_changed", rowsRemoved = "rows_removed"
    }
}

/// Compares two model files. Tensors whose first dimension is indexed by `sparse.ids` (embedding
/// rows) are matched row by row through their ids, so growth shows as rows added.
public func diffTensors(_ a: SafeTensorsFile, _ b: SafeTensorsFile, idsName: String = "sparse.ids") throws -> [TensorChange] {
    let idsA = a.contains(idsName) ? try a.int32s(idsName) : nil
    let idsB = b.contains(idsName) ? try b.int32s(idsName) : nil
    var out: [TensorChange] = []
    for name in Array(Set(a.names).union(b.names)).sorted() {
        var c = TensorChange(name: name, status: "changed")
        let ia = a.contains(name) ? try a.info(name) : nil, ib = b.contains(name) ? try b.info(name) : nil
        c.shapeA = ia?.shape; c.shapeB = ib?.shape
        guard let ia, let ib else { c.status = ia == nil ? "added" : "removed"; out.append(c); continue }
        guard ia.dtype == .f32, ib.dtype == .f32 else {
            let same = try a.bytes(forAnyDType: name) == b.bytes(forAnyDType: name)
            c.status = same ? "unchanged" : "changed"
            if name == idsName, let idsA, let idsB {
                let sa = Set(idsA), sb = Set(idsB)
                c.rowsAdded = sb.subtracting(sa).count; c.rowsRemoved = sa.subtracting(sb).count
            }
            out.append(c); continue
        }
        let va = try a.floats(name), vb = try b.floats(name)
        var sq = 0.0, maxAbs = 0.0, normA = 0.0
        if let idsA, let idsB, ia.shape.first == idsA.count, ib.shape.first == idsB.count, ia.shape.dropFirst() == ib.shape.dropFirst() {
            let width = ia.shape.dropFirst().reduce(1, *)
            var rowOfA: [Int32: Int] = [:]
            for (r, id) in idsA.enumerated() { rowOfA[id] = r }
            var added = 0, changed = 0
            for (rb, id) in idsB.enumerated() {
                guard let ra = rowOfA[id] else { added += 1; continue }
                var rowChanged = false
                for k in 0..<width {
                    let x = Double(va[ra * width + k]), y = Double(vb[rb * width + k])
                    let d = y - x
                    if d != 0 { rowChanged = true }
                    sq += d * d; normA += x * x; maxAbs = Swift.max(maxAbs, abs(d))
                }
                if rowChanged { changed += 1 }
            }
            c.rowsAdded = added; c.rowsChanged = changed
            c.rowsRemoved = Set(idsA).subtracting(idsB).count
            c.status = (added == 0 && changed == 0 && c.rowsRemoved == 0) ? "unchanged" : "changed"
        } else if ia.shape == ib.shape {
            for (x, y) in zip(va, vb) {
                let d = Double(y) - Double(x)
                sq += d * d; normA += Double(x) * Double(x); maxAbs = Swift.max(maxAbs, abs(d))
            }
            c.status = sq == 0 ? "unchanged" : "changed"
        } else {
            c.status = "reshaped"; out.append(c); continue
        }
        c.l2Change = sq.squareRoot(); c.maxAbsChange = maxAbs
        c.relativeChange = normA > 0 ? sq.squareRoot() / normA.squareRoot() : nil
        out.append(c)
    }
    return out
}

extension SafeTensorsFile {
    /// Raw bytes of any tensor, for equality checks.
    func bytes(forAnyDType name: String) throws -> [UInt8] {
        let info = try self.info(name)
        var out = [UInt8](repeating: 0, count: info.byteRange.count)
        try out.withUnsafeMutableBytes { try copyBytes(name, into: $0) }
        return out
    }
}
